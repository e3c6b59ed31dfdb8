"""Tabular bundles: CSV columns by name, clear errors, predictions identical to Bundle.predict; runner and CLIs."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pipeline.cli.run import run_command
from runtime.__main__ import main as device_main
from runtime.readers import InputError
from runtime.runner import RunOptions, TelemetryMode, TelemetryUnavailableError, run, telemetry_record
from runtime.tabular import MissingColumnError, NonNumericCellError, predict_csv, read_feature_csv
from tests.runtime.conftest import synthetic_ecg


def _rows(bundle, count: int = 12) -> np.ndarray:
    """Real Wisconsin rows (scikit-learn's copy) in the bundle's column order: inside the domain it was built on."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    columns = [str(name).replace(" ", "_") for name in bunch.feature_names]
    order = [columns.index(name) for name in bundle.input_spec.feature_names]
    rows = np.random.default_rng(0).choice(len(bunch.data), size=count, replace=False)
    return bunch.data[rows][:, order].astype(np.float32)


def _write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _shuffled_csv(bundle, rows: np.ndarray, path: Path) -> Path:
    """The features in reverse order plus an extra column the model does not use."""
    names = list(bundle.input_spec.feature_names)
    order = names[::-1]
    table = [[f"note {i}"] + [repr(float(row[names.index(n)])) for n in order] for i, row in enumerate(rows)]
    return _write_csv(path, ["comment", *order], table)


def test_predictions_equal_bundle_predict(breast_bundle, tmp_path):
    rows = _rows(breast_bundle)
    predictions = list(predict_csv(breast_bundle, _shuffled_csv(breast_bundle, rows, tmp_path / "t.csv")))
    expected = breast_bundle.predict(rows)
    assert [p.row for p in predictions] == list(range(len(rows)))
    probabilities = [list(p.result.probabilities.values()) for p in predictions]
    assert np.array_equal(np.asarray(probabilities, dtype=np.float32), expected)
    assert [p.result.label for p in predictions] == [breast_bundle.labels[i] for i in expected.argmax(axis=1)]


def test_missing_column_is_named(breast_bundle, tmp_path):
    names = list(breast_bundle.input_spec.feature_names)
    path = _write_csv(tmp_path / "t.csv", names[2:], [[1.0] * (len(names) - 2)])
    with pytest.raises(MissingColumnError) as raised:
        read_feature_csv(path, tuple(names))
    assert names[0] in str(raised.value) and names[1] in str(raised.value) and names[2] not in str(raised.value)


def test_a_file_without_a_header_row_is_told_so_and_given_the_row_to_add(breast_bundle, tmp_path):
    names = list(breast_bundle.input_spec.feature_names)
    path = tmp_path / "t.csv"
    path.write_text("\n".join(",".join(["1.5"] * len(names)) for _ in range(3)) + "\n")
    with pytest.raises(MissingColumnError) as raised:
        read_feature_csv(path, tuple(names))
    message = str(raised.value)
    assert f"t.csv has no header row: its first row is {len(names)} numbers" in message
    assert ",".join(names) in message  # the row to add, in the manifest's order


def test_near_miss_names_are_offered_for_renaming_and_other_cells_are_never_echoed(breast_bundle, tmp_path):
    names = list(breast_bundle.input_spec.feature_names)
    spelled = [names[0].replace("_", " ").title(), names[1] + "s"]  # 'Mean Radius', 'mean_textures'
    path = _write_csv(tmp_path / "t.csv", [*spelled, "John Smith MRN 4455667", *names[3:]],
                      [[1.0] * len(names)])
    with pytest.raises(MissingColumnError) as raised:
        read_feature_csv(path, tuple(names))
    message = str(raised.value)
    assert f"rename '{spelled[0]}' to '{names[0]}', '{spelled[1]}' to '{names[1]}', and add {names[2]}" in message
    assert f"its header has {len(names)} column(s), {len(names) - 3} of them feature names" in message
    assert "John" not in message and "4455667" not in message
    path = _write_csv(tmp_path / "u.csv", ["spo2_means", "note"], [[1.0, 2.0]])
    with pytest.raises(MissingColumnError) as raised:  # a column that is a feature already is never to be renamed
        read_feature_csv(path, ("spo2_mean", "spo2_means"))
    assert "rename" not in str(raised.value) and "add the column(s) spo2_mean" in str(raised.value)


@pytest.mark.parametrize(("cell", "problem"), [("John Smith MRN 4455667", "holds text (22 characters), not a "
                                                                    "number"), ("", "empty")])
def test_bad_cell_names_row_and_column(breast_bundle, tmp_path, cell, problem):
    names = list(breast_bundle.input_spec.feature_names)
    rows = [[1.0] * len(names) for _ in range(4)]
    rows[2][5] = cell
    path = _write_csv(tmp_path / "t.csv", names, rows)
    with pytest.raises(NonNumericCellError) as raised:
        read_feature_csv(path, tuple(names))
    message = str(raised.value)
    assert "row 2 (line 4)" in message and f"'{names[5]}'" in message and problem in message
    assert "Smith" not in message and "4455667" not in message  # a cell's content is never echoed


def test_non_finite_numbers_are_read_as_they_are_for_the_runner_to_flag(breast_bundle, tmp_path):
    names = list(breast_bundle.input_spec.feature_names)
    rows = [[1.0] * len(names) for _ in range(3)]
    rows[0][1], rows[1][2], rows[2][3] = "nan", "-inf", "1e39"  # the last overflows float32
    values = read_feature_csv(_write_csv(tmp_path / "t.csv", names, rows), tuple(names))
    assert np.isnan(values[0, 1]) and values[1, 2] == -np.inf and values[2, 3] == np.inf
    assert np.isfinite(np.delete(values, [1, 2 + len(names), 3 + 2 * len(names)])).all()


def test_runner_streams_tabular_and_waveform_inputs(breast_bundle_path, breast_bundle, ecg_bundle_path, tmp_path,
                                                    trust):
    rows = _rows(breast_bundle, 5)
    np.save(tmp_path / "rows.npy", rows)
    predictions = list(run(breast_bundle_path, tmp_path / "rows.npy", RunOptions(trust=trust)))
    assert len(predictions) == 5 and predictions[0].kind == "prediction"
    signal, _ = synthetic_ecg(12, seed=3)
    np.save(tmp_path / "ecg.npy", signal)
    with pytest.raises(InputError, match="--sample-rate"):
        list(run(ecg_bundle_path, tmp_path / "ecg.npy", RunOptions(trust=trust, allow_unvalidated=True)))
    events = list(run(ecg_bundle_path, tmp_path / "ecg.npy", RunOptions(sample_rate_hz=360.0, trust=trust,
                                                                  allow_unvalidated=True)))
    assert sum(event.kind == "beat" for event in events) >= 12
    _write_csv(tmp_path / "ecg.csv", ["time", "ecg"], [[i / 360, v] for i, v in enumerate(signal)])
    from_csv = list(run(ecg_bundle_path, tmp_path / "ecg.csv", RunOptions(sample_rate_hz=360.0, trust=trust,
                                                                    allow_unvalidated=True)))
    assert [e.time_s for e in from_csv] == [e.time_s for e in events]


def test_telemetry_record_has_the_agreed_keys_and_no_raw_data(breast_bundle, ecg_bundle, tmp_path):
    prediction = next(
        iter(
            predict_csv(
                breast_bundle,
                _shuffled_csv(breast_bundle, _rows(breast_bundle, 1), tmp_path / "t.csv"),
                with_features=True,
            )
        )
    )
    record = telemetry_record(breast_bundle, prediction)
    assert set(record) == {
        "time",
        "bundle_id",
        "bundle_sha256",
        "variant",
        "provider",
        "latency_us",
        "task",
        "result",
        "quality_flags",
        "features",
    }
    assert record["task"] == "multiclass" and set(record["result"]) == {"class", "confidence", "low_confidence"}
    assert set(record["features"]) == set(breast_bundle.input_spec.feature_names)
    assert record["time"].endswith("+00:00") and json.dumps(record)


def test_missing_telemetry_package_is_a_clear_error(breast_bundle_path, tmp_path, monkeypatch, trust):
    import sys

    monkeypatch.setitem(sys.modules, "runtime.telemetry.outbox", None)  # import now raises ImportError
    rows = tmp_path / "rows.npy"
    np.save(rows, np.ones((1, 30), dtype=np.float32))
    with pytest.raises(TelemetryUnavailableError, match=r"runtime\.telemetry"):
        run(breast_bundle_path, rows, RunOptions(telemetry_outbox=tmp_path / "outbox", device_id="ab" * 16,
                                                 trust=trust))
    with pytest.raises(TelemetryUnavailableError, match="device id"):
        run(breast_bundle_path, rows, RunOptions(telemetry_outbox=tmp_path / "outbox", trust=trust))


def test_device_cli_writes_json_lines(breast_bundle_path, breast_bundle, tmp_path, capsys, trust):
    path = _shuffled_csv(breast_bundle, _rows(breast_bundle, 3), tmp_path / "t.csv")
    trusted = ["--trust-store", str(trust.store), "--version-state", str(tmp_path / "versions.json")]
    assert device_main([str(breast_bundle_path), "--input", str(path), "--output", str(tmp_path / "o.jsonl"),
                        *trusted]) == 0
    lines = (tmp_path / "o.jsonl").read_text().splitlines()
    assert [json.loads(line)["row"] for line in lines] == [0, 1, 2]
    assert device_main([str(breast_bundle_path), "--input", str(tmp_path / "missing.csv"), *trusted]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_click_run_command(breast_bundle_path, breast_bundle, tmp_path, trust):
    path = _shuffled_csv(breast_bundle, _rows(breast_bundle, 2), tmp_path / "t.csv")
    trusted = ["--trust-store", str(trust.store), "--version-state", str(tmp_path / "versions.json")]
    result = CliRunner().invoke(run_command, [str(breast_bundle_path), "--input", str(path), *trusted])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["type"] for line in result.output.splitlines() if line.startswith("{")] == [
        "prediction",
        "prediction",
    ]
    names = list(breast_bundle.input_spec.feature_names)
    broken = _write_csv(tmp_path / "b.csv", names[1:], [[1.0] * (len(names) - 1)])
    result = CliRunner().invoke(run_command, [str(breast_bundle_path), "--input", str(broken), *trusted])
    # The device contract, shared with ``python -m runtime``: 2 is a usage error, 1 a refused input or bundle.
    # A table missing a feature column is a refused input, so 1 (``edgemed run`` used to say 2 here).
    assert result.exit_code == 1 and names[0] in result.output


def test_runner_records_telemetry_through_the_agreed_interface(ecg_bundle_path, tmp_path, monkeypatch, trust):
    """A stand-in runtime.telemetry (Outbox/Uploader as agreed) receives one record per beat."""
    import sys
    import types

    appended, uploads = [], []

    class Outbox:
        def __init__(self, path: Path, device_id: str) -> None:
            self.path, self.device_id = path, device_id

        def append_many(self, records: list[dict]) -> list[int]:
            appended.extend(records)
            return list(range(len(appended) - len(records) + 1, len(appended) + 1))

    class Uploader:
        def __init__(self, outbox: Outbox, url: str) -> None:
            self.outbox, self.url = outbox, url

        def upload_pending(self) -> int:
            uploads.append(self.url)
            return len(appended)

    package = types.ModuleType("runtime.telemetry")
    package.__path__ = []
    monkeypatch.setitem(sys.modules, "runtime.telemetry", package)
    monkeypatch.setitem(sys.modules, "runtime.telemetry.outbox", types.SimpleNamespace(Outbox=Outbox))
    monkeypatch.setitem(sys.modules, "runtime.telemetry.uploader", types.SimpleNamespace(
        Uploader=Uploader, CollectorRejectedError=type("CollectorRejectedError", (Exception,), {})))
    signal, _ = synthetic_ecg(12, seed=4)
    np.save(tmp_path / "ecg.npy", signal)
    options = RunOptions(sample_rate_hz=360.0, telemetry_url="https://collector.invalid/v1", device_id="0f" * 16,
                         trust=trust, telemetry_mode=TelemetryMode.RECORDS, allow_unvalidated=True)  # synthetic
    events = list(run(ecg_bundle_path, tmp_path / "ecg.npy", options))
    beats = [event for event in events if event.kind == "beat"]
    assert len(appended) == len(beats) >= 12 and uploads == ["https://collector.invalid/v1"]
    profile = json.loads((ecg_bundle_path / "reference_profile.json").read_text())
    assert set(appended[0]["features"]) == set(profile["features"])
    assert appended[0]["result"]["class"] == beats[0].beat_class and appended[0]["variant"]


def test_device_cli_without_onnxruntime_says_which_package_and_how_to_fix(breast_bundle_path, breast_bundle, tmp_path,
                                                                         capsys, trust, monkeypatch):
    """A system Python without the device packages (README: plain `python -m runtime`) gets one error line, no
    traceback."""
    path = _shuffled_csv(breast_bundle, _rows(breast_bundle, 2), tmp_path / "t.csv")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ModuleNotFoundError
    assert device_main([str(breast_bundle_path), "--input", str(path), "--trust-store", str(trust.store),
                        "--version-state", str(tmp_path / "versions.json")]) == 1
    error = capsys.readouterr().err
    assert "needs the Python package 'onnxruntime'" in error and "pip install" in error
    assert "Traceback" not in error
