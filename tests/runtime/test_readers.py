"""Readers check before they compute: encodings, cell sizes, array headers, channels, sample rates, paths."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest

from pipeline.benchmark.fuzz_inputs import _npy_header
from runtime.__main__ import check_output_path
from runtime.errors import EdgemedError
from runtime.readers import MAX_CELL_CHARS, SAMPLE_RATE_RANGE_HZ, InputError, load_npy, read_signal, read_signal_csv
from runtime.rows import read_npz
from runtime.runner import TelemetryMode
from runtime.tabular import read_feature_csv
from runtime.telemetry.outbox import Outbox, check_outbox_path
from runtime.telemetry.records import TelemetryError


def refusal(function, *arguments) -> str:
    with pytest.raises(EdgemedError) as error:
        function(*arguments)
    return str(error.value)


def test_a_csv_that_is_not_utf8_is_refused_by_name(tmp_path):
    (tmp_path / "latin.csv").write_bytes("a,b\n1,caf\xe9\n".encode("latin-1"))
    assert "latin.csv is not UTF-8 text" in refusal(read_feature_csv, tmp_path / "latin.csv", ("a", "b"))
    (tmp_path / "bom.csv").write_bytes("\ufeffa,b\n1,2\n".encode())
    assert read_feature_csv(tmp_path / "bom.csv", ("a", "b")).tolist() == [[1.0, 2.0]]


def test_a_csv_that_cannot_be_read_or_is_too_large_is_refused_in_one_line(tmp_path, monkeypatch):
    (tmp_path / "folder.csv").mkdir()
    assert "folder.csv cannot be read" in refusal(read_signal_csv, tmp_path / "folder.csv")
    (tmp_path / "locked.csv").write_text("a,b\n1,2\n")

    def denied(self):
        raise PermissionError(13, "Permission denied")

    with monkeypatch.context() as patched:  # root reads a mode-000 file: the denial is the operating system's
        patched.setattr(type(tmp_path), "read_bytes", denied)
        message = refusal(read_feature_csv, tmp_path / "locked.csv", ("a", "b"))
    assert "locked.csv cannot be read (Permission denied)" in message and "permissions" in message
    monkeypatch.setattr("runtime.readers.MAX_CSV_BYTES", 4)
    message = refusal(read_signal_csv, tmp_path / "locked.csv")
    assert "locked.csv is 0 MiB of text" in message and ".npy" in message


def test_a_cell_over_the_limit_is_refused_not_parsed(tmp_path):
    (tmp_path / "cell.csv").write_text("a,b\n1," + "9" * (MAX_CELL_CHARS + 1) + "\n")
    assert f"at most {MAX_CELL_CHARS} characters" in refusal(read_feature_csv, tmp_path / "cell.csv", ("a", "b"))


def test_a_row_with_more_cells_than_the_header_is_refused(tmp_path):
    (tmp_path / "shift.csv").write_text("a,b\n1,2,3\n")  # an unquoted "2,3" would shift every later column
    assert "line 2 has 3 cells" in refusal(read_feature_csv, tmp_path / "shift.csv", ("a", "b"))


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        (_npy_header("<f8", (2**40,)), "claims 8796093022208 bytes"),  # 8 TiB: refused before any allocation
        (_npy_header("<f8", (10,), b"\x00" * 16), "the file holds 16"),
        (_npy_header("<f8", (0,)), "it is empty"),
        (_npy_header("<c16", (2,), b"\x00" * 32), "holds complex128 values"),
        (_npy_header("|O", (2,), b"\x00" * 16), "holds object values"),
        (_npy_header("<f8", (-1, 30), b"\x00" * 240), "shape (-1, 30) is not a tuple of sizes"),
        (_npy_header("<f8", (-2, -30), b"\x00" * 240), "shape (-2, -30) is not a tuple of sizes"),
    ],
)
def test_npy_headers_are_checked_before_allocation(tmp_path, header, problem):
    (tmp_path / "bad.npy").write_bytes(header)
    assert problem in refusal(load_npy, tmp_path / "bad.npy")


def test_a_npy_path_that_is_not_a_regular_file_is_refused_without_opening_it(tmp_path):
    os.mkfifo(tmp_path / "fifo.npy")  # opening it would wait for a writer for ever
    assert "it is not a regular file" in refusal(load_npy, tmp_path / "fifo.npy")
    (tmp_path / "folder.npy").mkdir()
    assert "it is not a regular file" in refusal(load_npy, tmp_path / "folder.npy")


def test_npz_members_are_checked_like_npy_files(tmp_path):
    import zipfile

    with zipfile.ZipFile(tmp_path / "bomb.npz", "w") as archive:
        archive.writestr("x.npy", _npy_header("<f4", (2**40, 30)))
    assert "over the limit" in refusal(read_npz, tmp_path / "bomb.npz")


def test_integers_beyond_float64_precision_are_refused(tmp_path):
    np.save(tmp_path / "big.npy", np.array([1, 2**62], dtype=np.int64))
    assert "±2**53" in refusal(load_npy, tmp_path / "big.npy")


@pytest.mark.parametrize("rate", [1e9, 0.0, 49.0, 10_001.0, float("nan"), float("inf")])
def test_sample_rates_outside_the_stated_range_are_refused_up_front(tmp_path, rate):
    np.save(tmp_path / "signal.npy", np.zeros(100))
    message = refusal(read_signal, tmp_path / "signal.npy", rate)
    assert f"from {SAMPLE_RATE_RANGE_HZ[0]:g} to {SAMPLE_RATE_RANGE_HZ[1]:g} Hz" in message


def test_channels_are_never_interleaved(tmp_path):
    np.save(tmp_path / "three.npy", np.arange(30.0).reshape(10, 3))
    assert "holds 3 channels" in refusal(read_signal, tmp_path / "three.npy", 360.0)
    assert read_signal(tmp_path / "three.npy", 360.0, channel=2).samples.tolist() == list(range(2, 30, 3))
    (tmp_path / "two.csv").write_text("1,2\n3,4\n")
    assert "2 columns" in refusal(read_signal, tmp_path / "two.csv", 360.0)
    assert read_signal(tmp_path / "two.csv", 360.0, channel=1).samples.tolist() == [2.0, 4.0]


def test_hdf5_channels_labelled_other_than_ecg_need_channel(tmp_path):
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "emg.h5", "w") as handle:
        device = handle.create_group("00:07:80:3F:F1:0A")
        device.attrs["sampling rate"] = 1000
        device.attrs["resolution"] = [16]
        device.create_group("raw").create_dataset("channel_1", data=np.arange(2000, dtype=np.uint16))
        device["raw"]["channel_1"].attrs["sensor"] = "EMG"
    assert "none is labelled ECG: channel_1 (EMG)" in refusal(read_signal, tmp_path / "emg.h5")
    recording = read_signal(tmp_path / "emg.h5", channel=1)
    assert recording.sample_rate_hz == 1000 and recording.adc_range == (0.0, 65535.0)


def _plux_file(path, h5py, fill):
    with h5py.File(path, "w") as handle:
        device = handle.create_group("00:07:80:3F:F1:0A")
        device.attrs["sampling rate"] = 1000
        device.attrs["resolution"] = [16]
        fill(device.create_group("raw"))


def test_hdf5_channels_are_the_files_own_datasets_and_hold_what_they_declare(tmp_path):
    h5py = pytest.importorskip("h5py")
    _plux_file(tmp_path / "other.h5", h5py, lambda raw: raw.create_dataset("channel_1", data=np.arange(2000.0)))
    _plux_file(tmp_path / "linked.h5", h5py, lambda raw: raw.__setitem__(
        "channel_1", h5py.ExternalLink(str(tmp_path / "other.h5"), "/00:07:80:3F:F1:0A/raw/channel_1")))
    assert "holds no channel_N datasets" in refusal(read_signal, tmp_path / "linked.h5", None, 1)
    _plux_file(tmp_path / "unwritten.h5", h5py, lambda raw: raw.create_dataset(
        "channel_1", shape=(25_000_000,), dtype="f8", chunks=(100_000,), compression="gzip", fillvalue=1.0))
    assert (tmp_path / "unwritten.h5").stat().st_size < 100_000  # 200 MB declared, nothing stored
    assert "over 1000× expansion" in refusal(read_signal, tmp_path / "unwritten.h5", None, 1)
    assert read_signal(tmp_path / "other.h5", channel=1).samples.size == 2000


def test_output_paths_are_checked_up_front(tmp_path):
    assert "does not exist" in refusal(check_output_path, tmp_path / "missing" / "out.jsonl")
    assert "is a folder" in refusal(check_output_path, tmp_path)
    check_output_path(tmp_path / "out.jsonl")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    assert "cannot be followed" in refusal(check_output_path, tmp_path / "loop")


def test_an_output_folder_that_cannot_be_written_is_refused_before_the_run(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: mode != os.W_OK)  # root may write anywhere: say it may not
    message = refusal(check_output_path, tmp_path / "out.jsonl")
    assert "is not writable" in message and "permissions" in message
    check_output_path(Path(os.devnull))  # a device is written to directly, never replaced


def test_outbox_paths_are_checked_up_front(tmp_path):
    (tmp_path / "notes.txt").write_text("not a database")
    (tmp_path / "file").write_text("x")
    for path, problem in [(tmp_path, "is a folder"), (tmp_path / "notes.txt", "is not a SQLite database"),
                          (tmp_path / "file" / "outbox.sqlite", "cannot be created")]:
        with pytest.raises(TelemetryError, match=problem):
            check_outbox_path(path)
    with pytest.raises(TelemetryError, match="is not a SQLite database"):
        Outbox(tmp_path / "notes.txt", "ab" * 16)
    Outbox(tmp_path / "new" / "outbox.sqlite", "ab" * 16).close()  # a missing folder is created
    assert isinstance(InputError("x"), EdgemedError)


def test_an_absurd_rate_ratio_is_refused_before_the_kernel_is_built():
    from runtime.ecg.resample import ResampleRatioError, StreamingResampler

    with pytest.raises(ResampleRatioError, match="kernel"):
        StreamingResampler(1e9, 360.0)  # would be a ~50 M-tap kernel
    assert StreamingResampler(SAMPLE_RATE_RANGE_HZ[1], 360.0).taps.size < 10_000


def test_a_csv_with_no_data_rows_or_a_feature_named_twice_is_refused(tmp_path):
    (tmp_path / "header.csv").write_text("a,b\n\n")
    assert "has a header but no data rows" in refusal(read_feature_csv, tmp_path / "header.csv", ("a", "b"))
    (tmp_path / "twice.csv").write_text("a,b,a\n1,2,999\n")
    assert "names the column 'a' 2 times" in refusal(read_feature_csv, tmp_path / "twice.csv", ("a", "b"))
    (tmp_path / "other.csv").write_text("a,b,note,note\n1,2,x,y\n")  # a column the model ignores may repeat
    assert read_feature_csv(tmp_path / "other.csv", ("a", "b")).tolist() == [[1.0, 2.0]]


def test_npz_member_names_are_unique_and_the_archive_fits_one_array_budget(tmp_path):
    import io
    import zipfile

    def member(values: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        np.save(buffer, values)
        return buffer.getvalue()

    with zipfile.ZipFile(tmp_path / "twice.npz", "w") as archive:
        archive.writestr("rr.npy", member(np.ones((2, 6))))
        archive.writestr("rr", member(np.zeros((2, 6))))
    assert "two arrays named 'rr'" in refusal(read_npz, tmp_path / "twice.npz")
    with zipfile.ZipFile(tmp_path / "bomb.npz", "w") as archive:  # 1.1 GB declared per array: within one array's
        for name in ("a", "b"):                                       # limit, over it together; refused on the
            archive.writestr(f"{name}.npy", _npy_header("<f8", (140_000_000,)))  # headers, before any data is read
    assert "decode to 2240000000 bytes" in refusal(read_npz, tmp_path / "bomb.npz")


def test_a_cell_that_is_not_a_number_is_described_never_quoted_and_a_folder_is_not_a_file(tmp_path):
    """A signal CSV whose row holds a patient's details: the refusal names the row and how much text, never the
    text (refusals reach logs, reports and worker logs others can read); a folder given as the input is said as
    such."""
    path = tmp_path / "patient.csv"
    path.write_text("ecg\n0.1\nPatient: John Smith MRN 4455667 DOB 1961-02-03\n0.2\n")
    with pytest.raises(InputError) as raised:
        read_signal(path, 360.0)
    message = str(raised.value)
    assert "patient.csv row 2: holds text (46 characters), not a number" in message, message
    assert not any(word in message for word in ("John", "Smith", "4455667", "1961"))
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(InputError, match=r"folder\.csv is a folder, not a file"):
        read_signal(tmp_path / "folder.csv", 360.0)


def test_a_signal_csv_of_several_leads_names_each_lead_and_the_channel_that_picks_it(tmp_path):
    # PhysioNet's CSV export of an MIT-BIH record: quoted names, a sample-number column, two leads
    (tmp_path / "100.csv").write_text("'sample #','MLII','V5'\n0,-0.145,-0.065\n1,-0.150,-0.070\n")
    message = refusal(read_signal_csv, tmp_path / "100.csv")
    assert "has 3 columns and none is named as the signal (column 1 is MLII, column 2 is V5)" in message
    assert "e.g. --channel 1 for MLII" in message
    assert read_signal_csv(tmp_path / "100.csv", channel=1).tolist() == [-0.145, -0.150]
    (tmp_path / "leads.csv").write_text("time,Lead II,V1 (mV)\n0,1,2\n")
    assert "(column 1 is II, column 2 is V1)" in refusal(read_signal_csv, tmp_path / "leads.csv")


def test_a_header_cell_that_is_no_lead_name_is_never_shown(tmp_path):
    # a header row may hold a patient's name or record number: only standard lead names are echoed
    (tmp_path / "named.csv").write_text("Jane Doe,MRN 0042137,Fp1-F7\n1,2,3\n")
    message = refusal(read_signal_csv, tmp_path / "named.csv")
    assert "Jane" not in message and "0042137" not in message and "MRN" not in message
    assert "(column 2 is Fp1-F7)" in message and "--channel 2 for Fp1-F7" in message
    (tmp_path / "bare.csv").write_text("a,b\n1,2\n")
    message = refusal(read_signal_csv, tmp_path / "bare.csv")
    assert "none is named as the signal." in message and "--channel N" in message and "(from 0;" in message


def test_a_channel_a_one_lead_recording_does_not_have_is_refused(tmp_path):
    np.save(tmp_path / "one.npy", np.zeros(1000, dtype=np.float32))
    assert "holds one channel; --channel 2 picks none" in refusal(
        read_signal, tmp_path / "one.npy", 360.0, 2)
    assert read_signal(tmp_path / "one.npy", 360.0, 0).samples.size == 1000  # channel 0 is the one there is


def test_a_version_state_in_a_missing_folder_is_refused_not_started_empty(tmp_path):
    from runtime.trust import TrustPolicy

    message = refusal(TrustPolicy.from_options, None, True, tmp_path / "mistyped" / "versions.json")
    assert "does not exist" in message and "rollback" in message and not (tmp_path / "mistyped").exists()
    assert TrustPolicy.from_options(None, True, tmp_path / "versions.json").version_state == tmp_path / "versions.json"


def test_telemetry_options_without_telemetry_are_refused_not_ignored(tmp_path):
    from runtime.__main__ import check_paths
    from runtime.runner import RunOptions

    for options, named in ((RunOptions(device_id="ab" * 8), "--device-id"),
                           (RunOptions(positive_labels=("V",)), "--positive-labels"),
                           (RunOptions(event_filter_rules=()), "--event-filter"),
                           (RunOptions(telemetry_mode=TelemetryMode.AGGREGATES), "--telemetry-mode")):
        assert f"{named} was given without telemetry" in refusal(check_paths, None, options)
    check_paths(None, RunOptions(device_id="ab" * 8, telemetry_outbox=tmp_path / "outbox.sqlite"))


def test_an_event_filter_in_records_mode_is_refused_not_ignored(tmp_path):
    """Records mode sends every event: a filter or positive labels given with it would change nothing."""
    from runtime.__main__ import check_paths
    from runtime.runner import RunOptions

    outbox = tmp_path / "outbox.sqlite"
    for options, named in ((RunOptions(positive_labels=("V",)), "--positive-labels"),
                           (RunOptions(event_filter_rules=("positive",)), "--event-filter")):
        records = dataclasses.replace(options, telemetry_outbox=outbox, device_id="ab" * 8,
                                      telemetry_mode=TelemetryMode.RECORDS)
        message = refusal(check_paths, None, records)
        assert f"{named} was given with --telemetry-mode records" in message and "aggregates mode" in message
        check_paths(None, dataclasses.replace(records, telemetry_mode=TelemetryMode.AGGREGATES))
        check_paths(None, dataclasses.replace(records, telemetry_mode=None))  # not chosen: aggregates


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are a POSIX thing")
def test_a_named_pipe_is_refused_as_not_a_regular_file_not_as_missing(tmp_path):
    pipe = tmp_path / "signal.npy"
    os.mkfifo(pipe)
    with pytest.raises(InputError, match="is not a regular file") as caught:
        read_signal(pipe, 360.0)
    assert "does not exist" not in str(caught.value) and "write a stream to a file first" in caught.value.fix


def test_a_semicolon_export_with_decimal_commas_is_refused_not_misread(tmp_path):
    """Read as commas, '-0,145;0,0000' gave the cells '-0', '145;0', '0000': 33 beats of the integer parts, every PVC
    lost, exit 0. A line with another number of cells than the first is refused."""
    path = tmp_path / "export.csv"
    path.write_text("ecg;time\n" + "".join(f"{value:.3f};{index / 360:.4f}\n".replace(".", ",")
                                          for index, value in enumerate(np.sin(np.arange(720) / 20))))
    with pytest.raises(InputError, match="line 2 has 3 cells and line 1 has 1") as caught:
        read_signal(path, 360.0)
    assert "decimal commas" in caught.value.fix


def test_a_blank_line_between_samples_is_refused_and_blank_lines_around_them_are_not(tmp_path):
    """A dropped blank line shifted every later beat by its samples, silently (10 lines: 27.8 ms)."""
    samples = [f"{value:.4f}\n" for value in np.sin(np.arange(720) / 20)]
    holed = tmp_path / "holed.csv"
    holed.write_text("ecg\n" + "".join(samples[:300]) + "\n" + "".join(samples[300:]))
    with pytest.raises(InputError, match="line 302 is blank, between samples") as caught:
        read_signal(holed, 360.0)
    assert "nan" in caught.value.fix
    padded = tmp_path / "padded.csv"
    padded.write_text("\n\necg\n" + "".join(samples) + "\n\n")
    assert read_signal(padded, 360.0).samples.size == 720


def test_a_sample_rate_that_contradicts_the_files_own_is_refused(tmp_path):
    """A 360 Hz file run at --sample-rate 250 gave confident classes at a wrong heart rate, after only a warning."""
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "recording.h5"  # an OpenSignals file: 1000 Hz
    _plux_file(path, h5py, lambda raw: raw.create_dataset("channel_1", data=np.sin(np.arange(5000) / 20)))
    assert read_signal(path, None, 1).sample_rate_hz == 1000.0 == read_signal(path, 1000.0, 1).sample_rate_hz
    message = refusal(read_signal, path, 250.0, 1)
    assert "--sample-rate 250 Hz contradicts the 1000 Hz" in message and "leave --sample-rate out" in message
