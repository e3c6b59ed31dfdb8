"""The recording-level validation (``pipeline.validation.recordings``) and its gate, on hand-checkable cases."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.clinical.gate import GateVerdict
from pipeline.clinical.operating_points import MaxF1, choose_operating_threshold
from pipeline.clinical.recording_gate import RecordingFloors, RecordingGateConfig, combine_verdicts, judge_recordings
from pipeline.errors import DataError, GateConfigError
from pipeline.validation import recordings
from pipeline.validation.ec57 import Ec57Config
from pipeline.validation.recordings import (
    AnnotatedRecording,
    RecordingValidationConfig,
    false_pvc_rate,
    gate_figures,
    score_events,
    summarise_counts,
)
from runtime.events import BeatEvent

CONFIG = RecordingValidationConfig(ec57=Ec57Config(replicates=200), healthy=False)


def beat(time_s: float, label: str | None, flags: tuple[str, ...] = ()) -> BeatEvent:
    """A stream beat event: classified as ``label``, or unclassified (None) with ``flags``."""
    return BeatEvent(time_s, label, None if label is None else 0.9, {} if label is None else {label: 0.9}, 70.0,
                     None, flags, False, 0.0)


def recording(name: str, beats_s: list[float], v: list[bool]) -> AnnotatedRecording:
    return AnnotatedRecording(name, np.zeros(3600), 360.0, np.array(beats_s), np.array(v))


# Reference: 5 beats at 1..5 s, the 3rd and 5th are V. The stream: beat 1 called non-V (TN), beat 2 not
# classified — warming up — (TN), beat 3 called V 40 ms late (TP), beat 4 missed (QRS FN), a false detection at
# 4.5 s called V (QRS FP and V FP), beat 5 called non-V (V FN) 200 ms late: outside ±150 ms, so it is also a false
# detection (called non-V: a V TN) and reference beat 5 is a missed V beat (QRS FN, V FN).
REFERENCE = recording("hand", [1.0, 2.0, 3.0, 4.0, 5.0], [False, False, True, False, True])
EVENTS = [beat(1.0, "non-V"), beat(2.01, None, ("warming_up",)), beat(3.04, "V"), beat(4.5, "V"), beat(5.2, "non-V")]


def test_one_recording_scored_by_hand():
    counts, skipped = score_events(REFERENCE, EVENTS, CONFIG)
    assert (counts.qrs_true_positives, counts.qrs_false_negatives, counts.qrs_false_positives) == (3, 2, 2)
    assert (counts.v_true_positives, counts.v_false_negatives, counts.v_false_positives,
            counts.v_true_negatives) == (1, 1, 1, 3)
    assert skipped == {"beats": 1, "flags": {"warming_up": 1}}


def test_gross_figures_pool_the_records_and_name_what_the_gate_reads():
    first, skipped_first = score_events(REFERENCE, EVENTS, CONFIG)
    perfect = recording("perfect", [1.0, 2.0], [True, False])
    second, skipped_second = score_events(perfect, [beat(1.0, "V"), beat(2.0, "non-V")], CONFIG)
    summary = summarise_counts([first, second], {"hand": skipped_first, "perfect": skipped_second}, CONFIG,
                               healthy={"available": True, "false_pvc_rate": 0.004})
    gross = summary["gross"]
    assert gross["qrs_sensitivity"] == pytest.approx(5 / 7)
    assert gross["qrs_positive_predictivity"] == pytest.approx(5 / 7)
    assert gross["v_sensitivity"] == pytest.approx(2 / 3) and gross["v_positive_predictivity"] == pytest.approx(2 / 3)
    assert gross["v_false_positive_rate"] == pytest.approx(1 / 5)
    assert [row["record"] for row in summary["per_record"]] == ["hand", "perfect"]
    assert summary["per_record"][0]["unclassified"]["beats"] == 1 and summary["unclassified"] == 1
    low, high = summary["intervals"]["v_sensitivity"]
    assert 0.0 <= low <= 2 / 3 <= high <= 1.0
    figures = gate_figures(summary)
    assert figures["healthy_false_pvc_rate"] == 0.004 and figures["v_sensitivity"] == pytest.approx(2 / 3)


def test_false_pvc_rate_counts_only_classified_beats():
    events = [beat(1.0, "non-V"), beat(2.0, "V"), beat(3.0, None, ("warming_up",)), beat(4.0, "non-V")]
    assert false_pvc_rate(events) == {"beats": 4, "classified": 3, "called_v": 1, "false_pvc_rate": 1 / 3}
    assert false_pvc_rate([beat(1.0, None, ("noise",))])["false_pvc_rate"] is None


def test_missing_healthy_recordings_are_reported_not_fatal(monkeypatch):
    monkeypatch.setattr(recordings, "signal_samples_folder", lambda: None)
    result = recordings.healthy_recordings(bundle=None, config=CONFIG)
    assert result["available"] is False and "biosignalsnotebooks is not installed" in result["note"]
    assert gate_figures({"gross": {}, "healthy": result})["healthy_false_pvc_rate"] is None


@pytest.mark.parametrize(("beats_s", "v", "match"), [
    ([1.0, 2.0], [True], "one boolean"),
    ([2.0, 1.0], [True, False], "sorted"),
    ([1.0, 20.0], [True, False], "outside"),
])
def test_annotations_that_do_not_fit_the_signal_are_refused(beats_s, v, match):
    with pytest.raises(DataError, match=match):
        recording("bad", beats_s, v)


# ------------------------------------------------------------------------------------------------ the gate

FP32 = {"qrs_sensitivity": 0.998, "qrs_positive_predictivity": 0.996, "v_sensitivity": 0.97,
        "v_positive_predictivity": 0.98, "v_false_positive_rate": 0.002, "healthy_false_pvc_rate": 0.0}


def test_fp32_is_judged_against_the_floors_only():
    verdict = judge_recordings("fp32", FP32, None)
    assert verdict.passed and "versus_fp32" not in verdict.numbers
    assert verdict.numbers["floors"]["v_sensitivity"] == {"value": 0.97, "floor": 0.90, "passed": True}
    low = judge_recordings("fp32", {**FP32, "v_positive_predictivity": 0.85, "healthy_false_pvc_rate": 0.02}, None)
    assert not low.passed
    assert "V +P 85.00% is under its floor 90.00%" in low.reason
    assert "false PVC rate on healthy recordings 2.00% is over its floor 1.00%" in low.reason


def test_a_candidate_must_hold_the_floors_and_stay_within_the_limits_of_fp32():
    close = judge_recordings("int8", {**FP32, "v_sensitivity": 0.955, "healthy_false_pvc_rate": 0.004}, FP32)
    assert close.passed, close.reason
    assert close.numbers["versus_fp32"]["v_sensitivity"]["change_points"] == pytest.approx(-1.5)
    worse = judge_recordings("int8", {**FP32, "v_sensitivity": 0.94, "v_false_positive_rate": 0.01}, FP32)
    assert not worse.passed
    assert "V Se dropped 3.00 pt (limit 2.0)" in worse.reason and "V FPR rose 0.80 pt (limit 0.5)" in worse.reason
    qrs = judge_recordings("int8", {**FP32, "qrs_sensitivity": 0.996}, FP32)
    assert not qrs.passed and "QRS Se dropped 0.20 pt" in qrs.reason


def test_undefined_figures_are_reported_not_judged_unless_fp32_had_them():
    without_healthy = {**FP32, "healthy_false_pvc_rate": None}
    verdict = judge_recordings("fp32", without_healthy, None)
    assert verdict.passed and "not checked (undefined): false PVC rate on healthy recordings" in verdict.reason
    assert judge_recordings("fp16", without_healthy, without_healthy).passed
    lost = judge_recordings("fp16", {**FP32, "v_positive_predictivity": None}, FP32)
    assert not lost.passed and "V +P is undefined (fp32 98.00%)" in lost.reason


def test_no_floors_for_smoke_builds_and_bad_settings_are_refused():
    smoke = RecordingGateConfig(floors=None)
    assert judge_recordings("fp32", {**FP32, "v_sensitivity": 0.1}, None, smoke).passed
    assert "no absolute floors" in smoke.describe()
    with pytest.raises(GateConfigError):
        RecordingFloors(v_sensitivity=95)
    with pytest.raises(GateConfigError):
        RecordingGateConfig(max_v_sensitivity_drop_points=-1)


def test_verdicts_combine_only_when_both_pass():
    evaluate = GateVerdict("fp16", True, "beat-level rule", {"auroc": {}}, "passed: beats")
    recording_verdict = judge_recordings("fp16", {**FP32, "v_sensitivity": 0.5}, FP32)
    combined = combine_verdicts(evaluate, recording_verdict)
    assert not combined.passed and combined.reason.startswith("passed: beats | recordings failed:")
    assert "recordings" in combined.numbers and combined.rule.startswith("beat-level rule; and on recordings:")


def test_max_f1_threshold_by_hand():
    # Scores high → low: V V n V n n. Calling the top 1, 2, 3, 4 gives F1 2/4, 4/5, 4/6, 6/7: the 4th score wins.
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    labels = np.array([1, 1, 0, 1, 0, 0])
    point = choose_operating_threshold(labels, scores, MaxF1())
    assert point.threshold == pytest.approx(0.6)
    assert (point.sensitivity, point.specificity) == (1.0, pytest.approx(2 / 3))
    assert "F1" in point.rule
