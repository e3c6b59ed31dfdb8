"""Bad inputs for the device runtime, one generator per kind (``python -m pipeline.benchmark.fuzz``, tests).

``make_case(kind, rng, folder, bundles)`` writes the files of one case into ``folder`` and returns a
``FuzzCase``: the arguments of ``python -m runtime`` and what an honest runtime must do with them:

* ``REFUSE`` — exit 1 (input, bundle or path refused) or 2 (usage), one ``error:`` line, no events;
* ``FLAG`` — exit 0 is allowed only when every row event is unjudged (``"judged": false``, no class);
* ``VALID`` — a control that must run (exit 0), proving the harness reaches the model at all.

Kinds (``KINDS``): text encodings and field sizes of CSVs, ``.npy`` headers and dtypes, ``.npz`` members,
malformed OpenSignals HDF5 (structure, attributes, dtype, shape), channel counts, sample rates, output and
outbox paths, command-line usage, non-finite tabular rows, tabular rows outside the bundle's input domain — each
drawn with random parameters. Every case is generated: SYNTHETIC, no patient data (``fuzz.json`` says so).
"""

from __future__ import annotations

import enum
import io
import json
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class Expect(enum.StrEnum):
    REFUSE = "refuse"  # exit 1 or 2, no events
    FLAG = "flag"  # exit 0 only with every row unjudged
    VALID = "valid"  # control: exit 0


@dataclass(frozen=True)
class FuzzBundles:
    ecg: Path  # a waveform bundle (beat windows from a signal)
    table: Path  # a tabular bundle
    feature_names: tuple[str, ...]  # the tabular bundle's columns
    trust_store: Path  # trusts both bundles' signing key
    table_low: tuple[float, ...] = ()  # the tabular bundle's input domain per column (empty: it declares none)
    table_high: tuple[float, ...] = ()

    @classmethod
    def of(cls, ecg: Path, table: Path, trust_store: Path) -> FuzzBundles:
        """The bundles, with the tabular one's columns and domain read from its manifest."""
        spec = json.loads((Path(table) / "manifest.json").read_text())["inputs"][0]
        domain = spec.get("domain") or {}
        return cls(Path(ecg), Path(table), tuple(spec["feature_names"]), Path(trust_store),
                   tuple(domain.get("low", ())), tuple(domain.get("high", ())))


@dataclass(frozen=True)
class FuzzCase:
    kind: str
    arguments: list[str]  # argv of runtime.__main__.main
    expect: Expect
    input_bytes: int  # size of the input file(s), for the memory bound


def _ecg(rng: np.random.Generator, seconds: float = 12.0, rate: float = 360.0) -> np.ndarray:
    """A plain synthetic ECG-like signal (spikes at ~75 bpm on noise), ADC-like counts."""
    t = np.arange(int(seconds * rate)) / rate
    beats = np.arange(0.5, seconds, 0.8 + rng.uniform(-0.05, 0.05))
    signal = sum(np.exp(-0.5 * ((t - beat) / 0.012) ** 2) for beat in beats)
    return 2000.0 + 500.0 * signal + rng.normal(0.0, 5.0, t.size)


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _npy_header(descr: str, shape: tuple[int, ...], body: bytes = b"", fortran: bool = False) -> bytes:
    """A hand-written .npy (version 1.0) with any header, e.g. one claiming terabytes."""
    header = f"{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape!r}, }}".encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + body


def _table_csv(names: tuple[str, ...], rows: list[list[str]]) -> str:
    return "\n".join([",".join(names), *(",".join(row) for row in rows)]) + "\n"


def _good_rows(rng: np.random.Generator, bundles: FuzzBundles, count: int,
               names: tuple[str, ...] | None = None) -> list[list[str]]:
    """Rows the tabular bundle can judge: every value well inside its declared domain (0.1–100 without one)."""
    names = bundles.feature_names if names is None else names
    if bundles.table_low and names == bundles.feature_names:
        low, high = np.asarray(bundles.table_low), np.asarray(bundles.table_high)
        return [[f"{value:.6g}" for value in low + (high - low) * rng.uniform(0.3, 0.7, len(names))]
                for _ in range(count)]
    return [[f"{value:.4g}" for value in rng.uniform(0.1, 100.0, len(names))] for _ in range(count)]


# -- one writer per kind: (rng, folder, bundles) -> (bundle, input file, extra arguments, expectation) --------

Written = tuple[Path, Path, list[str], Expect]


def csv_not_utf8(rng, folder, bundles) -> Written:
    rows = _table_csv(bundles.feature_names, _good_rows(rng, bundles, 3)).encode()
    bad = bytes(rng.choice([0xFF, 0xFE, 0xC3, 0x80, 0xE9, 0xA0], int(rng.integers(1, 5))).astype(np.uint8))
    spot = int(rng.integers(0, len(rows)))
    path = folder / "latin.csv"
    path.write_bytes(rows[:spot] + bad + rows[spot:])
    return bundles.table, path, [], Expect.REFUSE


def csv_nul_bytes(rng, folder, bundles) -> Written:
    text = _table_csv(bundles.feature_names, _good_rows(rng, bundles, 2))
    spot = int(rng.integers(0, len(text)))
    path = folder / "nul.csv"
    path.write_text(text[:spot] + "\x00" * int(rng.integers(1, 4)) + text[spot:])
    return bundles.table, path, [], Expect.REFUSE


def csv_huge_cell(rng, folder, bundles) -> Written:
    rows = _good_rows(rng, bundles, 2)
    size = int(rng.choice([1_001, 5_000, 131_073, 400_000]))
    rows[int(rng.integers(0, 2))][int(rng.integers(0, len(bundles.feature_names)))] = (
        '"' + "9" * size + '"' if rng.random() < 0.5 else "1" * size
    )
    path = folder / "huge-cell.csv"
    path.write_text(_table_csv(bundles.feature_names, rows))
    return bundles.table, path, [], Expect.REFUSE


def csv_unclosed_quote(rng, folder, bundles) -> Written:
    text = _table_csv(bundles.feature_names, _good_rows(rng, bundles, 2)) + '"' + "x" * 2_000
    path = folder / "quote.csv"
    path.write_text(text)
    return bundles.table, path, [], Expect.REFUSE


def csv_bad_cells(rng, folder, bundles) -> Written:
    rows = _good_rows(rng, bundles, 3)
    rows[int(rng.integers(0, 3))][int(rng.integers(0, len(bundles.feature_names)))] = str(
        rng.choice(["", "abc", "1,2", "0x1F", "--1", "1e", "∞", "None"])
    )
    path = folder / "cells.csv"
    path.write_text(_table_csv(bundles.feature_names, rows).replace(",1,2,", ',"1,2",'))
    return bundles.table, path, [], Expect.REFUSE


def csv_missing_column(rng, folder, bundles) -> Written:
    names = list(bundles.feature_names)
    names.pop(int(rng.integers(0, len(names))))
    path = folder / "columns.csv"
    path.write_text(_table_csv(tuple(names), _good_rows(rng, bundles, 2, tuple(names))))
    return bundles.table, path, [], Expect.REFUSE


def csv_not_finite_rows(rng, folder, bundles) -> Written:
    rows = _good_rows(rng, bundles, int(rng.integers(1, 5)))
    for row in rows:  # every row holds at least one value the model cannot judge
        for _ in range(int(rng.integers(1, 4))):
            row[int(rng.integers(0, len(row)))] = str(rng.choice(["nan", "inf", "-inf", "1e39", "-3.5e38", "NaN"]))
    path = folder / "not-finite.csv"
    path.write_text(_table_csv(bundles.feature_names, rows))
    return bundles.table, path, [], Expect.FLAG


def csv_out_of_domain_rows(rng, folder, bundles) -> Written:
    """Rows the bundle was not developed on: in each, one to three columns pushed beyond the declared domain (a
    value in other units, a transcription error); without a declared domain, the non-finite rows instead."""
    if not bundles.table_low:
        return csv_not_finite_rows(rng, folder, bundles)
    low, high = np.asarray(bundles.table_low), np.asarray(bundles.table_high)
    span = np.maximum(high - low, 1e-6)
    rows = []
    for row in _good_rows(rng, bundles, int(rng.integers(1, 5))):
        for column in rng.choice(len(row), size=int(rng.integers(1, 4)), replace=False).tolist():
            beyond = span[column] * float(rng.choice([0.1, 1.0, 10.0, 1000.0]))
            value = high[column] + beyond if rng.random() < 0.5 else low[column] - beyond
            row[column] = f"{value:.6g}"
        rows.append(row)
    path = folder / "out-of-domain.csv"
    path.write_text(_table_csv(bundles.feature_names, rows))
    return bundles.table, path, [], Expect.FLAG


def csv_signal_garbage(rng, folder, bundles) -> Written:
    choice = int(rng.integers(0, 4))
    values = _ecg(rng, 3.0)
    if choice == 0:  # several unnamed columns
        text = "\n".join(f"{v:.1f},{v:.1f},{v:.1f}" for v in values)
    elif choice == 1:  # a word in the signal
        lines = [f"{v:.1f}" for v in values]
        lines[int(rng.integers(1, len(lines)))] = "lead-off"
        text = "\n".join(lines)
    elif choice == 2:  # header only
        text = "ecg\n"
    else:  # two columns named as the signal
        text = "ecg,signal\n" + "\n".join(f"{v:.1f},{v:.1f}" for v in values)
    path = folder / "signal.csv"
    path.write_text(text)
    return bundles.ecg, path, ["--sample-rate", "360"], Expect.REFUSE


def npy_huge_header(rng, folder, bundles) -> Written:
    rows = int(rng.choice([2**40, 2**43 // 8, 10**12, 2**62 // 8, 3 * 10**9]))
    shape = (rows,) if rng.random() < 0.5 else (rows // 30 or 1, 30)
    path = folder / "huge.npy"
    path.write_bytes(_npy_header("<f8", shape, b"\x00" * int(rng.integers(0, 256))))
    target = bundles.ecg if len(shape) == 1 else bundles.table
    return target, path, ["--sample-rate", "360"] if target == bundles.ecg else [], Expect.REFUSE


def npy_empty(rng, folder, bundles) -> Written:
    shape = [(0,), (0, 30), (0, 1), (5, 0)][int(rng.integers(0, 4))]
    path = folder / "empty.npy"
    path.write_bytes(_npy_bytes(np.zeros(shape)))
    target = bundles.table if len(shape) == 2 and shape[1] in (0, 30) else bundles.ecg
    return target, path, ["--sample-rate", "360"], Expect.REFUSE


def npy_bad_dtype(rng, folder, bundles) -> Written:
    values = _ecg(rng, 3.0)
    choice = int(rng.integers(0, 5))
    path = folder / "dtype.npy"
    if choice == 0:
        path.write_bytes(_npy_bytes(values.astype(np.complex128) * (1 + 1j)))
    elif choice == 1:
        path.write_bytes(_npy_bytes(values.astype("U8")))
    elif choice == 2:
        path.write_bytes(_npy_header("|O", (4,), b"\x80\x04N." * 4))
    elif choice == 3:
        structured = np.zeros(values.size, dtype=[("a", "<f8"), ("b", "<f8")])
        path.write_bytes(_npy_bytes(structured))
    else:
        path.write_bytes(_npy_bytes(values.astype(np.complex64)))
    return bundles.ecg, path, ["--sample-rate", "360"], Expect.REFUSE


def npy_integer_range(rng, folder, bundles) -> Written:
    values = _ecg(rng, 3.0).astype(np.int64)
    values[int(rng.integers(0, values.size))] = int(rng.choice([2**53 + 1, 2**62, -(2**63)]))
    array = values if rng.random() < 0.5 else values.astype(np.uint64)
    path = folder / "integers.npy"
    path.write_bytes(_npy_bytes(array))
    return bundles.ecg, path, ["--sample-rate", "360"], Expect.REFUSE


def npy_truncated_or_garbage(rng, folder, bundles) -> Written:
    data = _npy_bytes(_ecg(rng, 3.0))
    choice = int(rng.integers(0, 4))
    if choice == 0:
        data = data[: int(rng.integers(0, len(data) - 1))]
    elif choice == 1:
        data = bytes(rng.integers(0, 256, int(rng.integers(0, 600))).astype(np.uint8))
    elif choice == 2:  # a header that is not a Python literal
        header = b"{'descr': __import__('os'), 'shape': (3,)}".ljust(69) + b"\n"
        data = b"\x93NUMPY\x01\x00" + struct.pack("<H", 70) + header
    else:  # an unknown format version
        data = b"\x93NUMPY\x07\x00" + data[8:]
    path = folder / "broken.npy"
    path.write_bytes(data)
    return bundles.ecg, path, ["--sample-rate", "360"], Expect.REFUSE


def npy_channels(rng, folder, bundles) -> Written:
    values = _ecg(rng, 4.0)
    channels = int(rng.integers(2, 6))
    array = np.stack([values] * channels, axis=1)
    if rng.random() < 0.3:
        array = array.reshape(values.size, channels, 1)  # 3-D: never a lead
    path = folder / "channels.npy"
    path.write_bytes(_npy_bytes(array))
    return bundles.ecg, path, ["--sample-rate", "360"], Expect.REFUSE


def npz_bad_member(rng, folder, bundles) -> Written:
    path = folder / "bad.npz"
    choice = int(rng.integers(0, 4))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        if choice == 0:
            archive.writestr("x.npy", _npy_header("<f4", (2**40, 30)))
        elif choice == 1:
            archive.writestr("x.npy", _npy_bytes(np.zeros((0, len(bundles.feature_names)))))
        elif choice == 2:
            archive.writestr("x.npy", bytes(rng.integers(0, 256, 300).astype(np.uint8)))
    data = buffer.getvalue() if choice < 3 else bytes(rng.integers(0, 256, 500).astype(np.uint8))
    path.write_bytes(data)
    return bundles.table, path, [], Expect.REFUSE


def sample_rate_out_of_range(rng, folder, bundles) -> Written:
    path = folder / "signal.npy"
    path.write_bytes(_npy_bytes(_ecg(rng, 3.0)))
    rate = str(rng.choice(["1e9", "0", "-360", "nan", "inf", "-inf", "49.9", "10000.5", "1e308", "abc", "3e4"]))
    return bundles.ecg, path, ["--sample-rate", rate], Expect.REFUSE


def usage_errors(rng, folder, bundles) -> Written:
    path = folder / "signal.npy"
    path.write_bytes(_npy_bytes(_ecg(rng, 3.0)))
    extra = [["--channel", "-1"], ["--threads", "-3"], ["--channel", "x"], ["--unknown-flag"],
             ["--sample-rate"], ["--threads", "1e3"]][int(rng.integers(0, 6))]
    return bundles.ecg, path, ["--sample-rate", "360", *extra], Expect.REFUSE


def paths(rng, folder, bundles) -> Written:
    path = folder / "signal.npy"
    path.write_bytes(_npy_bytes(_ecg(rng, 3.0)))
    (folder / "a-folder").mkdir(exist_ok=True)
    (folder / "not-sqlite").write_bytes(bytes(rng.integers(1, 256, 64).astype(np.uint8)))
    (folder / "a-file").write_text("x")
    extra = [
        ["--output", str(folder / "missing" / "out.jsonl")],
        ["--output", str(folder / "a-folder")],
        ["--telemetry-outbox", str(folder / "a-folder"), "--device-id", "ab" * 16],
        ["--telemetry-outbox", str(folder / "not-sqlite"), "--device-id", "ab" * 16],
        ["--telemetry-outbox", str(folder / "a-file" / "outbox.sqlite"), "--device-id", "ab" * 16],
        ["--input", str(folder / "does-not-exist.npy")],
        ["--input", str(folder / "a-folder")],
        ["--input", str(folder / "a-file")],
    ][int(rng.integers(0, 8))]
    return bundles.ecg, path, ["--sample-rate", "360", *extra], Expect.REFUSE


def h5_malformed(rng, folder, bundles) -> Written:
    """OpenSignals files broken in one of ``H5_DEFECTS`` ways."""
    import h5py

    defect = H5_DEFECTS[int(rng.integers(0, len(H5_DEFECTS)))]
    path = folder / "recording.h5"
    values = _ecg(rng, 4.0, 1000.0).astype(np.uint16)
    if defect == "not_hdf5":
        path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(rng.integers(0, 256, 400).astype(np.uint8)))
        return bundles.ecg, path, [], Expect.REFUSE
    with h5py.File(path, "w") as handle:
        if defect == "no_device":
            handle.create_dataset("data", data=values)
            return bundles.ecg, path, [], Expect.REFUSE
        device = handle.create_dataset("00:07:80", data=values) if defect == "device_dataset" else \
            handle.create_group("00:07:80:3F:F1:0A")
        if defect == "device_dataset":
            return bundles.ecg, path, [], Expect.REFUSE
        rate_values = {"rate_missing": None, "rate_string": "1000", "rate_huge": 1e9, "rate_nan": np.nan,
                       "rate_negative": -1000, "rate_array": np.array([1000.0, 500.0]), "rate_zero": 0}
        rate = rate_values.get(defect, 1000)
        if rate is not None:
            device.attrs["sampling rate"] = rate
        resolution = {"resolution_overflow": [10**6], "resolution_string": "16", "resolution_negative": [-4],
                      "resolution_empty": np.zeros(0)}.get(defect, [16])
        device.attrs["resolution"] = resolution
        if defect == "raw_missing":
            device.create_dataset("other", data=values)
            return bundles.ecg, path, [], Expect.REFUSE
        if defect == "raw_dataset":
            device.create_dataset("raw", data=values)
            return bundles.ecg, path, [], Expect.REFUSE
        raw = device.create_group("raw")
        data = {"zero_length": np.zeros(0, np.uint16), "two_d": np.stack([values] * 3, axis=1),
                "three_d": values.reshape(-1, 2, 2)[: values.size // 4], "complex": values.astype(np.complex64),
                "strings": values.astype("S6"), "int_overflow": np.full(8, 2**62, np.int64)}.get(defect, values)
        if defect == "channel_group":
            raw.create_group("channel_1")
        else:
            channel = raw.create_dataset("channel_1", data=data)
            if defect in ("emg_only", "emg_single"):
                channel.attrs["sensor"] = "EMG"
        if defect in ("emg_only", "two_unlabelled", "two_ecg"):
            second = raw.create_dataset("channel_2", data=values)
            if defect == "two_ecg":
                second.attrs["sensor"] = "ECG"
                raw["channel_1"].attrs["sensor"] = b"ECG"
        if defect == "sensor_number":
            raw["channel_1"].attrs["sensor"] = 7
            raw.create_dataset("channel_2", data=values)
        if defect == "no_channels":
            del raw["channel_1"]
            raw.create_dataset("digital_1", data=values)
    return bundles.ecg, path, [], Expect.REFUSE


H5_DEFECTS = (
    "not_hdf5", "no_device", "device_dataset", "raw_missing", "raw_dataset", "no_channels", "channel_group",
    "rate_missing", "rate_string", "rate_huge", "rate_nan", "rate_negative", "rate_array", "rate_zero",
    "resolution_overflow", "resolution_string", "resolution_negative", "resolution_empty", "zero_length",
    "two_d", "three_d", "complex", "strings", "int_overflow", "emg_only", "emg_single", "two_unlabelled", "two_ecg",
    "sensor_number",
)


def valid_signal(rng, folder, bundles) -> Written:
    path = folder / "good.npy"
    rate = float(rng.choice([250.0, 360.0, 500.0]))
    path.write_bytes(_npy_bytes(_ecg(rng, 8.0, rate)))
    return bundles.ecg, path, ["--sample-rate", f"{rate:g}"], Expect.VALID


def valid_table(rng, folder, bundles) -> Written:
    path = folder / "good.csv"
    path.write_text(_table_csv(bundles.feature_names, _good_rows(rng, bundles, 3)))
    return bundles.table, path, [], Expect.VALID


KINDS: dict[str, Callable[..., Written]] = {
    function.__name__: function
    for function in (
        csv_not_utf8, csv_nul_bytes, csv_huge_cell, csv_unclosed_quote, csv_bad_cells, csv_missing_column,
        csv_not_finite_rows, csv_out_of_domain_rows, csv_signal_garbage, npy_huge_header, npy_empty, npy_bad_dtype,
        npy_integer_range, npy_truncated_or_garbage, npy_channels, npz_bad_member, sample_rate_out_of_range,
        usage_errors, paths, h5_malformed, valid_signal, valid_table,
    )
}


def make_case(kind: str, rng: np.random.Generator, folder: Path, bundles: FuzzBundles) -> FuzzCase:
    """Write one case of ``kind`` into ``folder`` (which must exist) and say what must happen."""
    bundle, path, extra, expect = KINDS[kind](rng, folder, bundles)
    arguments = [str(bundle), *extra] if "--input" in extra else [str(bundle), "--input", str(path), *extra]
    arguments += ["--trust-store", str(bundles.trust_store), "--threads", "1", "--provider", "cpu",
                  "--allow-unvalidated"]  # input handling is what is fuzzed: the synthetic ECG bundle runs too
    size = sum(item.stat().st_size for item in folder.rglob("*") if item.is_file())
    return FuzzCase(kind, arguments, expect, size)
