"""Window bundles end to end: the contract picks the windowed stream for ``run``, ``python -m runtime`` and
``edgemed run``; recordings of one or several channels from .npy, .csv and .h5; telemetry for judged windows
only; and a clear refusal for a file the bundle cannot take (another modality, another rate, other channels)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pipeline.cli.run import run_command
from runtime.__main__ import main as device_main
from runtime.bundle import TrustPolicy
from runtime.contract import TaskKind
from runtime.events import QualityEvent, WindowEvent
from runtime.readers import InputError
from runtime.runner import RunOptions, TelemetryMode, run
from runtime.telemetry import Outbox
from runtime.telemetry.records import validate_record
from tests.runtime.test_telemetry_records import DEVICE_ID
from tests.runtime.window_bundles import RATE, build_window_bundle, synthetic_signal, window_spec

REPOSITORY = Path(__file__).resolve().parents[2]
DEVELOPMENT = RunOptions(sample_rate_hz=RATE, trust=TrustPolicy.development())  # hand-built bundles are unsigned
UNSIGNED = "--allow-unsigned"


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("window-run")
    return {"mono": build_window_bundle(root / "mono", TaskKind.MULTICLASS),
            "anomaly": build_window_bundle(root / "anomaly", TaskKind.ANOMALY),
            "stereo": build_window_bundle(root / "stereo", TaskKind.BINARY, window_spec(channels=2))}


def device(arguments: list[str], capsys) -> tuple[int, list[dict], str]:
    """``python -m runtime`` in this process: (exit status, JSON lines, stderr)."""
    status = device_main(arguments)
    captured = capsys.readouterr()
    return status, [json.loads(line) for line in captured.out.splitlines() if line], captured.err


def test_the_contract_picks_the_windowed_stream(bundles, tmp_path):
    signal = synthetic_signal(10.0, seed=1)
    signal[300:310] = np.nan
    np.save(tmp_path / "eeg.npy", signal)
    events = list(run(bundles["mono"], tmp_path / "eeg.npy", DEVELOPMENT))
    assert len(events) == 39 and all(isinstance(event, WindowEvent) for event in events)
    assert {event.flags for event in events} == {(), ("non_finite",)}


def test_python_m_runtime_on_npy_and_csv_gives_the_same_events(bundles, tmp_path, capsys):
    signal = synthetic_signal(10.0, 100.0, seed=2)  # resampled to the model's 64 Hz
    np.save(tmp_path / "ppg.npy", signal)
    (tmp_path / "ppg.csv").write_text("signal\n" + "\n".join(repr(float(value)) for value in signal) + "\n")
    outputs = []
    for name in ("ppg.npy", "ppg.csv"):
        status, lines, err = device([str(bundles["mono"]), "--input", str(tmp_path / name), "--sample-rate", "100",
                                     UNSIGNED], capsys)
        assert status == 0 and "done: 39 window" in err
        outputs.append([{key: value for key, value in line.items() if key != "latency_us"} for line in lines])
    assert outputs[0] == outputs[1]
    first = outputs[0][0]
    assert first["type"] == "window" and first["judged"] and first["class"] in ("rest", "alert", "artefact")
    assert (first["start_s"], first["end_s"]) == (0.0, 0.5)


def test_python_m_runtime_in_a_subprocess(bundles, tmp_path):
    np.save(tmp_path / "vitals.npy", synthetic_signal(3.0, seed=3))
    completed = subprocess.run(
        [sys.executable, "-m", "runtime", str(bundles["anomaly"]), "--input", str(tmp_path / "vitals.npy"),
         "--sample-rate", "64", UNSIGNED], capture_output=True, text=True, cwd=REPOSITORY, timeout=120, check=False)
    assert completed.returncode == 0, completed.stderr
    lines = [json.loads(line) for line in completed.stdout.splitlines()]
    assert len(lines) == 11 and all({"score", "alarm", "threshold"} <= set(line) for line in lines)


def test_edgemed_run_uses_the_same_stream(bundles, tmp_path):
    np.save(tmp_path / "eeg.npy", synthetic_signal(3.0, seed=4))
    result = CliRunner().invoke(run_command, [str(bundles["mono"]), "--input", str(tmp_path / "eeg.npy"),
                                              "--sample-rate", "64", UNSIGNED])
    assert result.exit_code == 0, result.output
    assert sum(json.loads(line)["type"] == "window" for line in result.stdout.splitlines()) == 11


def test_telemetry_records_judged_windows_only(bundles, tmp_path):
    signal = synthetic_signal(10.0, seed=5)
    signal[300:310] = np.nan
    np.save(tmp_path / "eeg.npy", signal)
    outbox = tmp_path / "outbox.sqlite3"
    options = RunOptions(sample_rate_hz=RATE, device_id=DEVICE_ID, telemetry_outbox=outbox,
                         trust=TrustPolicy.development(), telemetry_mode=TelemetryMode.RECORDS)
    events = list(run(bundles["mono"], tmp_path / "eeg.npy", options))
    judged = [event for event in events if isinstance(event, WindowEvent) and event.judged]
    assert 0 < len(judged) < len(events)
    with Outbox(outbox, DEVICE_ID) as opened:
        records = opened.pending(100)
    assert len(records) == len(judged)
    for record, event in zip(records, judged, strict=True):
        validate_record(record)
        assert record["task"] == "multiclass" and record["quality_flags"] == []
        assert record["result"]["class"] == event.result.label
        assert set(record["features"]) == {"peak_to_peak", "difference_rms", "skewness", "kurtosis", "peak_position"}


def test_every_channel_of_a_recording_reaches_a_multi_channel_model(bundles, tmp_path, capsys):
    h5py = pytest.importorskip("h5py")
    signal = synthetic_signal(4.0, 128.0, channels=2, seed=6)
    np.save(tmp_path / "pair.npy", signal)
    rows = "\n".join(f"{float(red)!r},{float(infrared)!r}" for red, infrared in signal)
    (tmp_path / "pair.csv").write_text(f"red,infrared\n{rows}\n")
    with h5py.File(tmp_path / "pair.h5", "w") as handle:
        group = handle.create_group("00:07:80:3F:F1:0A")
        group.attrs["sampling rate"] = 128
        raw = group.create_group("raw")
        for index in range(2):
            raw.create_dataset(f"channel_{index + 1}", data=signal[:, index])
    outputs = []
    for name in ("pair.npy", "pair.csv", "pair.h5"):
        rate = [] if name.endswith(".h5") else ["--sample-rate", "128"]
        status, lines, err = device([str(bundles["stereo"]), "--input", str(tmp_path / name), *rate, UNSIGNED],
                                    capsys)
        assert status == 0, err
        outputs.append([(line["start_s"], line["class"], line["probability"]) for line in lines])
    assert len(outputs[0]) == 15 and outputs[0] == outputs[1] == outputs[2]


@pytest.mark.parametrize(("name", "content", "arguments", "message"), [
    ("table.csv", "heart_rate,qrs_width,st_level\n72,0.1,0.0\n80,0.1,0.1\n", ["--sample-rate", "64"],
     "none is named as the signal"),
    ("slow.npy", None, ["--sample-rate", "10"], "too low for this model"),
    ("three.npy", np.zeros((640, 3)), ["--sample-rate", "64"], "holds 3 channels"),
    ("no_rate.npy", None, [], "--sample-rate"),
])
def test_a_file_the_bundle_cannot_take_is_refused_clearly(bundles, tmp_path, capsys, name, content, arguments,
                                                          message):
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content)
    else:
        np.save(path, synthetic_signal(10.0) if content is None else content)
    status, lines, err = device([str(bundles["mono"]), "--input", str(path), *arguments, UNSIGNED], capsys)
    assert status == 1 and not lines and err.count("error:") == 1 and message in err


def test_channels_must_match_a_multi_channel_model(bundles, tmp_path, capsys):
    np.save(tmp_path / "three.npy", synthetic_signal(4.0, channels=3))
    np.save(tmp_path / "transposed.npy", synthetic_signal(4.0, channels=2).T)
    for name, argument, message in (("three.npy", [], "holds 3 channels, but the model takes 2"),
                                    ("transposed.npy", [], "(channels, samples)?"),
                                    ("three.npy", ["--channel", "1"], "leave out --channel")):
        status, _, err = device([str(bundles["stereo"]), "--input", str(tmp_path / name), "--sample-rate", "64",
                                 *argument, UNSIGNED], capsys)
        assert status == 1 and message in err


def test_a_recording_too_short_for_one_window_is_said_not_silent(bundles, tmp_path, capsys):
    np.save(tmp_path / "short.npy", synthetic_signal(0.3))
    status, lines, err = device([str(bundles["mono"]), "--input", str(tmp_path / "short.npy"), "--sample-rate", "64",
                                 UNSIGNED], capsys)
    assert status == 0 and lines == [{"type": "quality", "time_s": 0.0, "duration_s": 0.296875, "flag": "too_short"}]
    assert "too short for the model" in err and "done: 1 quality" in err


def test_a_wide_rate_range_for_windows_and_the_ecg_range_for_ecg(bundles, tmp_path):
    slow = build_window_bundle(tmp_path / "vitals", TaskKind.ANOMALY, window_spec(rate=1.0, window=60, hop_s=30.0))
    np.save(tmp_path / "trend.npy", synthetic_signal(600.0, rate=1.0))
    events = list(run(slow, tmp_path / "trend.npy", RunOptions(sample_rate_hz=1.0, trust=TrustPolicy.development())))
    assert len(events) == 19 and all(isinstance(event, WindowEvent) for event in events)
    with pytest.raises(InputError, match="from 50 to 10000 Hz"):  # an ECG recording keeps the ECG range
        from runtime.readers import read_signal

        read_signal(tmp_path / "trend.npy", 1.0)


def test_precut_windows_in_an_npz_still_go_to_the_row_runner(bundles, tmp_path):
    np.savez(tmp_path / "windows.npz", signal=np.random.default_rng(7).normal(size=(5, 32)))
    events = list(run(bundles["mono"], tmp_path / "windows.npz", DEVELOPMENT))
    assert len(events) == 5 and all(event.kind == "prediction" and event.judged for event in events)
    assert not any(isinstance(event, QualityEvent) for event in events)


def test_the_speed_benchmark_writes_its_report(bundles, tmp_path, capsys):
    from pipeline.benchmark.window_stream_speed import main as benchmark

    assert benchmark([str(bundles["stereo"]), "--minutes", "0.5", "--repeats", "1", "--input-rate", "100",
                      "--output", str(tmp_path)]) == 0
    document = json.loads((tmp_path / "window_stream_speed.json").read_text())
    assert [measured["config"]["telemetry"] for measured in document["runs"]] == [True, False]
    for measured in document["runs"]:
        assert measured["windows"] == measured["judged_windows"] == 119 and measured["input"]["resampled"]
        assert measured["real_time_factor"] > 0 and abs(sum(measured["time_share_by_stage"].values()) - 1) < 0.01
    assert "synthetic, for timing only" in (tmp_path / "window_stream_speed.md").read_text()
