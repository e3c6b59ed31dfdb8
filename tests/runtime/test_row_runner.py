"""The row runner for every task kind: hand-built bundles on CSV, .npy and .npz rows with known decisions;
rows the model cannot judge are flagged and get no answer; multi-input .npz files are checked whole."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runtime.__main__ import main as device_main
from runtime.bundle import TrustPolicy
from runtime.contract import TaskKind
from runtime.results import AnomalyResult, ClassResult, LabelsResult, ValuesResult
from runtime.runner import RunOptions, TelemetryMode, run
from runtime.telemetry import Outbox
from tests.runtime.hand_built import FEATURES, TWO_INPUT_WEIGHTS, build_bundle, expected_outputs
from tests.runtime.test_telemetry_records import DEVICE_ID

REPOSITORY = Path(__file__).resolve().parents[2]
ROWS = np.array([[2.0, 0.0, -1.0], [-0.5, 3.0, 0.0], [-1.0, 0.5, 2.5], [0.3, 0.1, 0.1], [1.0, -2.0, 0.4]])
# Cells the model cannot judge: NaN, infinity, and a number beyond float32 (3.4e38).
DEVELOPMENT = RunOptions(trust=TrustPolicy.development())  # hand-built bundles are unsigned
UNSIGNED = "--allow-unsigned"
BAD_CELLS = {5: (0, "nan"), 6: (1, "inf"), 7: (2, "1e39")}
ANSWER_KEYS = ("class", "probability", "labels", "scores", "values", "units", "score", "alarm", "threshold")


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[TaskKind | None, Path]:
    root = tmp_path_factory.mktemp("hand-built")
    built = {kind: build_bundle(root / kind.value, kind) for kind in TaskKind}
    built[None] = build_bundle(root / "two-input")
    return built


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    """``rows`` (cells in FEATURES order) under a header in reverse order, plus a column the model ignores."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["note", *FEATURES[::-1]])
        writer.writerows([f"row {index}", *row[::-1]] for index, row in enumerate(rows))
    return path


def plain_rows() -> list[list[str]]:
    return [[repr(float(value)) for value in row] for row in ROWS]


def with_bad_rows() -> list[list[str]]:
    rows = plain_rows()
    for _, (column, text) in sorted(BAD_CELLS.items()):
        row = ["1.0", "1.0", "1.0"]
        row[column] = text
        rows.append(row)
    return rows


def predictions(bundle: Path, path: Path, options: RunOptions = DEVELOPMENT) -> list:
    return list(run(bundle, path, options))


def test_multiclass_rows_get_the_argmax_its_probability_and_the_low_confidence_flag(bundles, tmp_path):
    events = predictions(bundles[TaskKind.MULTICLASS], write_csv(tmp_path / "rows.csv", plain_rows()))
    expected = expected_outputs(TaskKind.MULTICLASS, ROWS)
    assert all(isinstance(event.result, ClassResult) for event in events)
    assert [event.result.label for event in events] == ["low", "mid", "high", "low", "low"]
    assert [event.result.low_confidence for event in events] == [False, False, False, True, False]  # under 0.6
    assert [event.result.probability for event in events] == pytest.approx(expected.max(axis=1), abs=1e-6)
    assert list(events[2].result.probabilities) == ["low", "mid", "high"]


def test_binary_rows_are_positive_at_or_above_the_threshold(bundles, tmp_path):
    events = predictions(bundles[TaskKind.BINARY], write_csv(tmp_path / "rows.csv", plain_rows()))
    positive = expected_outputs(TaskKind.BINARY, ROWS)[:, 0]
    assert [event.result.label for event in events] == ["event", "no-event", "no-event", "event", "event"]
    assert [event.result.probabilities["event"] for event in events] == pytest.approx(positive, abs=1e-6)
    assert [event.result.probability for event in events] == pytest.approx(np.maximum(positive, 1 - positive),
                                                                          abs=1e-6)


def test_multilabel_rows_report_the_labels_over_their_own_thresholds_and_every_score(bundles, tmp_path):
    events = predictions(bundles[TaskKind.MULTILABEL], write_csv(tmp_path / "rows.csv", plain_rows()))
    assert all(isinstance(event.result, LabelsResult) for event in events)
    # af ≥ 0.5, lbbb ≥ 0.7, rbbb ≥ 0.3 on the sigmoid of each feature
    assert [event.result.labels for event in events] == [("af",), ("lbbb", "rbbb"), ("rbbb",),
                                                         ("af", "rbbb"), ("af", "rbbb")]
    probabilities = 1 / (1 + np.exp(-expected_outputs(TaskKind.MULTILABEL, ROWS)))
    line = events[1].to_dict()
    assert line["scores"] == pytest.approx(dict(zip(("af", "lbbb", "rbbb"), probabilities[1], strict=True)), abs=1e-6)
    assert "class" not in line and line["labels"] == ["lbbb", "rbbb"]


def test_regression_rows_report_values_with_units_named_by_output(bundles, tmp_path):
    events = predictions(bundles[TaskKind.REGRESSION], write_csv(tmp_path / "rows.csv", plain_rows()))
    expected = expected_outputs(TaskKind.REGRESSION, ROWS)
    first = events[0].to_dict()
    assert first["values"] == pytest.approx({"qt_interval": 4.0, "heart_rate_estimate": 1.0})
    assert first["units"] == {"qt_interval": "ms", "heart_rate_estimate": "bpm"} and first["task"] == "regression"
    for event, values in zip(events, expected, strict=True):
        if np.isfinite(values).all():
            assert isinstance(event.result, ValuesResult)
            assert list(event.result.values.values()) == pytest.approx(values, abs=1e-5)
    # row 1: sqrt(heart_rate + st_level) of −0.5 is NaN in the model itself: flagged, no value
    assert events[1].result is None and events[1].flags == ("output_not_finite",) and not events[1].not_finite
    assert "values" not in events[1].to_dict() and events[1].to_dict()["judged"] is False


def test_anomaly_rows_report_score_alarm_and_threshold(bundles, tmp_path):
    events = predictions(bundles[TaskKind.ANOMALY], write_csv(tmp_path / "rows.csv", plain_rows()))
    assert all(isinstance(event.result, AnomalyResult) for event in events)
    assert [event.result.alarm for event in events] == [False, True, True, False, False]  # score ≥ 1.0
    assert [event.result.label for event in events] == ["normal", "anomalous", "anomalous", "normal", "normal"]
    scores = expected_outputs(TaskKind.ANOMALY, ROWS)[:, 0]
    assert [event.result.score for event in events] == pytest.approx(scores, abs=1e-6)
    line = events[2].to_dict()
    assert (line["alarm"], line["threshold"], line["class"]) == (True, 1.0, "anomalous")
    assert line["score"] == pytest.approx(2.25)


@pytest.mark.parametrize("kind", list(TaskKind))
def test_csv_npy_and_npz_rows_give_the_same_answers(bundles, tmp_path, kind):
    np.save(tmp_path / "rows.npy", ROWS)
    np.savez(tmp_path / "rows.npz", x=ROWS.astype(np.float32), labels=np.arange(len(ROWS)))  # extra arrays ignored
    answers = [
        [{key: value for key, value in event.to_dict().items() if key != "latency_us"} for event in
         predictions(bundles[kind], path)]
        for path in (write_csv(tmp_path / "rows.csv", plain_rows()), tmp_path / "rows.npy", tmp_path / "rows.npz")
    ]
    assert answers[0] == answers[1] == answers[2] and len(answers[0]) == len(ROWS)
    assert [line["row"] for line in answers[0]] == list(range(len(ROWS)))


@pytest.mark.parametrize("kind", list(TaskKind))
def test_rows_with_nan_inf_or_float32_overflow_are_flagged_and_get_no_answer(bundles, tmp_path, kind):
    events = predictions(bundles[kind], write_csv(tmp_path / "rows.csv", with_bad_rows()))
    clean = predictions(bundles[kind], write_csv(tmp_path / "clean.csv", plain_rows()))
    assert [event.result for event in events[: len(ROWS)]] == [event.result for event in clean]
    for row, (column, _) in BAD_CELLS.items():
        event = events[row]
        assert event.result is None and not event.judged and event.flags == ("input_not_finite",)
        assert event.not_finite == (FEATURES[column],)
        line = event.to_dict()
        assert line["judged"] is False and line["not_finite"] == [FEATURES[column]]
        assert not set(ANSWER_KEYS) & set(line), line
    rows = np.vstack([ROWS, [[1.0, np.nan, 1.0], [1e300, 0.0, 0.0]]])  # float64 beyond float32 in a .npy
    np.save(tmp_path / "rows.npy", rows)
    from_npy = predictions(bundles[kind], tmp_path / "rows.npy")
    assert [event.not_finite for event in from_npy[-2:]] == [("qrs_width",), ("heart_rate",)]
    assert all(event.result is None for event in from_npy[-2:])


def test_two_input_npz_rows_run_together_and_are_decided_by_the_rule(bundles, tmp_path):
    rng = np.random.default_rng(0)
    beats, rr = rng.normal(size=(9, 4)), rng.normal(size=(9, 1))
    scores = np.concatenate([beats, rr], axis=1) @ TWO_INPUT_WEIGHTS[:, 0]
    np.savez(tmp_path / "rows.npz", beat=beats[..., None], rr=rr)
    events = predictions(bundles[None], tmp_path / "rows.npz")
    assert [event.result.score for event in events] == pytest.approx(scores, abs=1e-5)
    assert [event.result.alarm for event in events] == list(scores >= 0.5)
    beats[2, 1], rr[5, 0] = np.nan, np.inf
    np.savez(tmp_path / "bad.npz", beat=beats, rr=rr)  # (rows, 4) beats get their channel axis
    flagged = predictions(bundles[None], tmp_path / "bad.npz")
    assert [event.not_finite for event in flagged if not event.judged] == [("beat",), ("rr.rr_ratio",)]
    assert [event.row for event in flagged if not event.judged] == [2, 5]
    assert [event.result for event in flagged if event.judged] == [
        event.result for event in events if event.row not in (2, 5)]


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"beat": np.zeros((3, 4, 1))}, "no array for the input(s) rr"),
        ({"beat": np.zeros((3, 4, 1)), "rr": np.zeros((2, 1))}, "different numbers of rows (beat: 3, rr: 2)"),
        ({"beat": np.zeros((3, 5)), "rr": np.zeros((3, 1))}, "input 'beat' has shape (3, 5)"),
        ({"beat": np.zeros((3, 4, 1)), "rr": np.array([["a"], ["b"], ["c"]])}, "input 'rr' holds <U1 values"),
    ],
)
def test_bad_npz_files_are_refused_whole_with_exit_1(bundles, tmp_path, capsys, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    output = tmp_path / "events.jsonl"
    arguments = [str(bundles[None]), "--input", str(tmp_path / "bad.npz"), "--output", str(output), UNSIGNED]
    assert device_main(arguments) == 1
    error = capsys.readouterr().err
    assert message in error and "Expected:" in error and "Fix:" in error
    assert not output.exists() or output.read_text() == ""


def test_files_that_are_not_npz_archives_of_arrays_are_refused(bundles, tmp_path, capsys):
    np.save(tmp_path / "single.npy", np.zeros((3, 1)))
    (tmp_path / "single.npy").rename(tmp_path / "single.npz")
    (tmp_path / "garbage.npz").write_text("not an archive")
    np.savez(tmp_path / "objects.npz", beat=np.zeros((1, 4)), rr=np.array([{"rr": 1.0}], dtype=object))
    problems = {"single.npz": " is not a readable .npz archive", "garbage.npz": " is not a readable .npz archive",
                "objects.npz": ": input 'rr' holds object values"}  # each member's header is checked first
    for name, problem in problems.items():
        assert device_main([str(bundles[None]), "--input", str(tmp_path / name), UNSIGNED]) == 1
        assert f"{name}{problem}" in capsys.readouterr().err


def test_a_multi_input_bundle_asks_for_an_npz_through_python_dash_m_runtime(bundles, tmp_path):
    write_csv(tmp_path / "rows.csv", plain_rows())
    np.savez(tmp_path / "rr_only.npz", rr=np.zeros((2, 1)))
    for path, message in ((tmp_path / "rows.csv", "an .npz with one array per input, named beat, rr"),
                          (tmp_path / "rr_only.npz", "no array for the input(s) beat")):
        finished = subprocess.run([sys.executable, "-m", "runtime", str(bundles[None]), "--input", str(path), UNSIGNED],
                                  cwd=REPOSITORY, capture_output=True, text=True, timeout=120)
        assert finished.returncode == 1 and message in finished.stderr and not finished.stdout


def test_json_lines_of_every_kind_through_the_device_command(bundles, tmp_path):
    path = write_csv(tmp_path / "rows.csv", with_bad_rows())
    for kind in TaskKind:
        output = tmp_path / f"{kind.value}.jsonl"
        assert device_main([str(bundles[kind]), "--input", str(path), "--output", str(output), UNSIGNED]) == 0
        lines = [json.loads(line) for line in output.read_text().splitlines()]
        assert len(lines) == len(ROWS) + len(BAD_CELLS) and {line["task"] for line in lines} == {kind.value}
        assert sum(not line["judged"] for line in lines) == len(BAD_CELLS) + (kind is TaskKind.REGRESSION)


@pytest.mark.parametrize("kind", list(TaskKind))
def test_telemetry_of_every_kind_passes_the_outbox_validator(bundles, tmp_path, kind):
    outbox = tmp_path / "outbox.sqlite3"
    options = RunOptions(telemetry_outbox=outbox, device_id=DEVICE_ID, trust=TrustPolicy.development(),
                         telemetry_mode=TelemetryMode.RECORDS)
    events = predictions(bundles[kind], write_csv(tmp_path / "rows.csv", with_bad_rows()), options)
    with Outbox(outbox, DEVICE_ID) as opened:  # every record was validated on append
        records = opened.pending(100)
    assert len(records) == len(events) and {record["task"] for record in records} == {kind.value}
    for record, event in zip(records, events, strict=True):
        if event.judged:
            assert record["result"] == json.loads(json.dumps(event.result.to_telemetry()))
        else:
            assert record["result"] is None and record["quality_flags"] == list(event.flags)
    nan_row = records[5]  # heart_rate is NaN: that feature is left out, the others are sent
    assert set(nan_row["features"]) == {"qrs_width", "st_level"} and nan_row["result"] is None
    assert set(records[0]["features"]) == set(FEATURES)
