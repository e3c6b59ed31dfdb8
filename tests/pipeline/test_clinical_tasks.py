"""Clinical evaluation and gate of binary, multilabel, regression and anomaly outputs.

Hand-computed small examples for every metric and threshold rule, bootstrap intervals that
contain their point estimate and narrow with n, a damaged variant rejected and an
undamaged one passed by each kind's gate, and a typed error for every impossible rule.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from pipeline.clinical.anomaly_metrics import (
    AlarmAgreement,
    AnomalyMetrics,
    evaluate_alarm_agreement,
    evaluate_anomaly_detection,
)
from pipeline.clinical.bootstrap_intervals import resampled_index_chunks
from pipeline.clinical.gate import GateConfig, judge_variant
from pipeline.clinical.metrics import EvaluationConfig, evaluate_predictions
from pipeline.clinical.operating_points import (
    AlarmThreshold,
    OperatingPoint,
    TargetSensitivity,
    TargetSpecificity,
    YoudenIndex,
    choose_operating_threshold,
    choose_operating_thresholds,
    threshold_at_false_alarm_rate,
    threshold_rule_from_dict,
)
from pipeline.clinical.regression_gate import RegressionGateConfig
from pipeline.clinical.regression_metrics import RegressionMetrics, evaluate_regression
from pipeline.clinical.task_dispatch import judge_variant_for_task
from pipeline.clinical.task_gates import AnomalyGateConfig, BinaryGateConfig, MultilabelGateConfig
from pipeline.clinical.task_kind import TaskKind
from pipeline.clinical.thresholded_metrics import (
    BinaryMetrics,
    MultilabelMetrics,
    evaluate_binary,
    evaluate_multilabel,
    two_class_form,
)
from pipeline.errors import DataError, GateConfigError, ThresholdRuleError, UsageError

FAST = EvaluationConfig(bootstrap_samples=200, seed=1)
NO_INTERVALS = EvaluationConfig(bootstrap_samples=0)

# A tiny ROC: negatives score 0.1, 0.3, 0.4; positives 0.35, 0.7, 0.8.
TINY_LABELS = np.array([0, 0, 1, 0, 1, 1])
TINY_SCORES = np.array([0.1, 0.3, 0.35, 0.4, 0.7, 0.8])


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


def logit(probabilities: np.ndarray) -> np.ndarray:
    return np.log(probabilities / (1.0 - probabilities))


def binary_data(samples: int, seed: int, labels_shape: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """0/1 labels and sigmoid scores of a decent, imperfect classifier (AUROC ≈ 0.92)."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((samples, *labels_shape)) < 0.3).astype(np.int64)
    return labels, sigmoid((2 * labels - 1) + rng.normal(size=labels.shape))


def damaged(scores: np.ndarray, logit_noise: float, seed: int, shift: float = 0.0) -> np.ndarray:
    """Scores of a variant: Gaussian noise (and a shift) in logit space."""
    rng = np.random.default_rng(seed)
    return sigmoid(logit(scores) + shift + rng.normal(scale=logit_noise, size=scores.shape))


# --- operating thresholds ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "threshold", "sensitivity", "specificity"),
    [
        (TargetSensitivity(0.6), 0.7, 2 / 3, 1.0),  # 2 of 3 positives needed: the 2nd highest positive score
        (TargetSensitivity(1.0), 0.35, 1.0, 2 / 3),  # every positive: the lowest positive score
        (TargetSpecificity(1.0), 0.7, 2 / 3, 1.0),  # no negative flagged: lowest score above the top negative 0.4
        (TargetSpecificity(0.6), 0.35, 1.0, 2 / 3),  # one of three negatives may be flagged
        (YoudenIndex(), 0.7, 2 / 3, 1.0),  # J = 2/3 at 0.7 and at 0.35: ties go to the highest threshold
    ],
    ids=["sensitivity-0.6", "sensitivity-1.0", "specificity-1.0", "specificity-0.6", "youden-tie"],
)
def test_threshold_rules_pick_the_hand_computed_threshold(rule, threshold, sensitivity, specificity) -> None:
    point = choose_operating_threshold(TINY_LABELS, TINY_SCORES, rule)
    assert point.threshold == threshold
    assert point.sensitivity == pytest.approx(sensitivity)
    assert point.specificity == pytest.approx(specificity)
    assert (point.positives, point.negatives) == (3, 3)
    assert point.rule == rule.describe()
    np.testing.assert_array_equal(point.decide(TINY_SCORES), np.greater_equal(TINY_SCORES, threshold))


def test_target_sensitivity_is_exact_at_a_round_target() -> None:
    labels = np.r_[np.ones(20, dtype=int), np.zeros(20, dtype=int)]
    scores = np.r_[np.arange(20) / 100 + 0.5, np.arange(20) / 100]  # positives 0.50..0.69, negatives 0.00..0.19
    point = choose_operating_threshold(labels, scores, TargetSensitivity(0.95))
    assert point.threshold == pytest.approx(0.51)  # 19 of 20 positives at or above it: exactly 0.95
    assert point.sensitivity == 0.95


def test_threshold_rules_round_trip_through_json() -> None:
    for rule in (TargetSensitivity(0.9), TargetSpecificity(0.8), YoudenIndex()):
        assert threshold_rule_from_dict(json.loads(json.dumps(rule.to_dict()))) == rule
    with pytest.raises(DataError, match="target_sensitivity"):
        threshold_rule_from_dict({"rule": "best_guess"})
    for bad_target in (0.0, 1.5, 95, True):
        with pytest.raises(DataError, match="fraction in"):
            TargetSensitivity(bad_target)


@pytest.mark.parametrize(
    ("labels", "scores", "rule", "message"),
    [
        (np.zeros(6, dtype=int), TINY_SCORES, TargetSensitivity(0.9), "0 positive and 6 negative"),
        (np.ones(6, dtype=int), TINY_SCORES, YoudenIndex(), "6 positive and 0 negative"),
        (np.array([1, 0, 0, 1]), np.array([0.2, 0.9, 0.1, 0.5]), TargetSpecificity(1.0), "no threshold"),
        (np.array([1, 0, 1, 0]), np.full(4, 0.5), YoudenIndex(), "best Youden J 0.0000"),
    ],
    ids=["no-positives", "no-negatives", "specificity-only-by-flagging-nothing", "uninformative-scores"],
)
def test_impossible_threshold_rules_raise_a_typed_error(labels, scores, rule, message) -> None:
    with pytest.raises(ThresholdRuleError, match=message) as raised:
        choose_operating_threshold(labels, scores, rule)
    assert raised.value.expected and raised.value.fix
    assert isinstance(raised.value, DataError)  # a usage error: the CLI exits 2


def test_multilabel_thresholds_are_chosen_per_label() -> None:
    labels = np.array([[1, 0], [1, 1], [0, 1], [0, 0], [1, 1], [0, 0]])
    scores = np.array([[0.9, 0.2], [0.6, 0.7], [0.5, 0.4], [0.1, 0.3], [0.4, 0.8], [0.3, 0.1]])
    first, second = choose_operating_thresholds(labels, scores, TargetSensitivity(1.0), ("AF", "PVC"))
    assert first.threshold == 0.4  # lowest positive of label AF: 0.9, 0.6, 0.4
    assert first.specificity == pytest.approx(2 / 3)  # negatives 0.5 ≥ 0.4 flagged; 0.1, 0.3 not
    assert second.threshold == 0.4  # lowest positive of label PVC: 0.7, 0.4, 0.8
    assert second.specificity == 1.0  # negatives 0.2, 0.3, 0.1
    labels[:, 1] = 0
    with pytest.raises(ThresholdRuleError, match="'PVC'"):
        choose_operating_thresholds(labels, scores, TargetSensitivity(1.0), ("AF", "PVC"))


@pytest.mark.parametrize(("rate", "threshold", "alarms"), [(0.01, 100.0, 1), (0.05, 96.0, 5), (0.015, 100.0, 1)])
def test_false_alarm_threshold_is_the_hand_computed_quantile(rate, threshold, alarms) -> None:
    normal = np.random.default_rng(0).permutation(np.arange(1.0, 101.0))  # 1..100 in random order
    alarm = threshold_at_false_alarm_rate(normal, rate)
    assert alarm.threshold == threshold  # the ⌊rate·100⌋-th largest: that many normal scores are ≥ it
    assert alarm.achieved_false_alarm_rate == alarms / 100 <= rate
    assert alarm.decide(normal).sum() == alarms
    assert alarm.normal_samples == 100


def test_false_alarm_threshold_equals_numpys_higher_quantile_and_ties_only_lower_the_rate() -> None:
    normal = np.random.default_rng(1).normal(size=1000)
    assert threshold_at_false_alarm_rate(normal, 0.02).threshold == np.quantile(normal, 0.98, method="higher")
    tied = np.r_[np.zeros(90), np.full(4, 1.0), np.full(6, 2.0)]  # k = 5: the 5th largest ties with the 6th
    alarm = threshold_at_false_alarm_rate(tied, 0.05)
    assert alarm.threshold > 2.0 and alarm.achieved_false_alarm_rate == 0.0  # no normal score lies above 2.0
    tied[-1] = 3.0
    alarm = threshold_at_false_alarm_rate(tied, 0.05)
    assert alarm.threshold == 3.0 and alarm.achieved_false_alarm_rate == 0.01  # moved up past the tie at 2.0


def test_too_few_normal_samples_to_resolve_the_rate_raise_a_typed_error() -> None:
    assert threshold_at_false_alarm_rate(np.arange(100.0), 0.01).threshold == 99.0
    with pytest.raises(ThresholdRuleError, match="99 normal samples cannot resolve") as raised:
        threshold_at_false_alarm_rate(np.arange(99.0), 0.01)
    assert "at least ⌈1/rate⌉ = 100" in str(raised.value)
    with pytest.raises(DataError, match="strictly between 0 and 1"):
        threshold_at_false_alarm_rate(np.arange(100.0), 1.0)


# --- binary and multilabel metrics -------------------------------------------------------------------------------


def test_binary_metrics_at_the_threshold_are_the_hand_computed_ones() -> None:
    point = choose_operating_threshold(TINY_LABELS, TINY_SCORES, TargetSensitivity(1.0))  # 0.35
    labels, scores = np.array([1, 1, 0, 0, 1, 0, 0]), np.array([0.9, 0.3, 0.5, 0.2, 0.35, 0.35, 0.1])
    metrics = evaluate_binary(labels, scores, point, ("normal", "disease"), NO_INTERVALS)
    positive = metrics.positive  # flagged: 0.9 (TP), 0.5 (FP), 0.35 (TP), 0.35 (FP); missed 0.3 (FN)
    assert positive.name == "disease" and positive.support == 3
    assert positive.sensitivity.value == pytest.approx(2 / 3)
    assert positive.specificity.value == pytest.approx(2 / 4)
    assert positive.ppv.value == pytest.approx(2 / 4)
    assert positive.f1.value == pytest.approx(2 * 2 / (2 * 2 + 2 + 1))
    assert positive.auroc.value == pytest.approx(roc_auc_score(labels, scores))  # the raw score's, ties included
    assert math.isnan(positive.auroc.low)  # no replicates, no interval
    np.testing.assert_array_equal(two_class_form(scores, point).argmax(axis=1), scores >= 0.35)


def test_binary_intervals_contain_the_estimate_and_narrow_with_n() -> None:
    widths = []
    for samples in (200, 3200):
        labels, scores = binary_data(samples, seed=samples)
        point = choose_operating_threshold(labels, scores, YoudenIndex())
        positive = evaluate_binary(labels, scores, point, config=FAST).positive
        for metric in ("sensitivity", "specificity", "ppv", "f1", "auroc"):
            estimate = getattr(positive, metric)
            assert estimate.low <= estimate.value <= estimate.high, metric
        widths.append(positive.auroc.high - positive.auroc.low)
    assert widths[1] < widths[0] / 2  # ~1/√16 = 1/4 in theory


def test_multilabel_metrics_equal_each_labels_binary_metrics() -> None:
    labels, scores = binary_data(400, seed=3, labels_shape=(3,))
    names = ("AF", "PVC", "block")
    points = choose_operating_thresholds(labels, scores, TargetSensitivity(0.9), names)
    metrics = evaluate_multilabel(labels, scores, points, names, FAST)
    for column, name in enumerate(names):
        # Same seed, same n: the same resamples, so the intervals must match too.
        alone = evaluate_binary(labels[:, column], scores[:, column], points[column], ("no", name), FAST)
        label = metrics.label_metrics(name)
        assert label.support == alone.positive.support
        for metric in ("sensitivity", "specificity", "ppv", "f1", "auroc"):
            estimate, expected = getattr(label, metric), getattr(alone.positive, metric)
            assert (estimate.value, estimate.low, estimate.high) == pytest.approx(
                (expected.value, expected.low, expected.high)
            ), (name, metric)
            assert estimate.low <= estimate.value <= estimate.high, (name, metric)
    per_label_f1 = [metrics.label_metrics(name).f1.value for name in names]
    assert metrics.macro_f1.value == pytest.approx(np.mean(per_label_f1))
    assert metrics.macro_f1.low <= metrics.macro_f1.value <= metrics.macro_f1.high
    assert MultilabelMetrics.from_dict(json.loads(json.dumps(metrics.to_dict()))) == metrics


def test_multilabel_label_without_positives_is_undefined_not_an_error() -> None:
    labels, scores = binary_data(300, seed=4, labels_shape=(2,))
    points = choose_operating_thresholds(labels, scores, YoudenIndex(), ("a", "b"))
    labels[:, 1] = 0  # the test split happens to lack label b
    metrics = evaluate_multilabel(labels, scores, points, ("a", "b"), FAST)
    assert math.isnan(metrics.label_metrics("b").sensitivity.value)
    assert math.isnan(metrics.label_metrics("b").auroc.value)
    assert metrics.to_dict()["per_label"][1]["auroc"]["value"] is None


# --- regression metrics ------------------------------------------------------------------------------------------


def test_regression_metrics_are_the_hand_computed_ones() -> None:
    targets = np.array([[10.0, 0.0], [20.0, 0.0], [30.0, 0.0], [40.0, 0.0]])
    predictions = targets + np.array([[1.0, 0.5], [-1.0, 0.5], [2.0, 0.5], [2.0, 0.5]])  # errors e = 1, −1, 2, 2
    metrics = evaluate_regression(targets, predictions, ("SBP", "offset"), ("mmHg", ""), NO_INTERVALS)
    sbp = metrics.output("SBP")
    assert sbp.unit == "mmHg"
    assert sbp.mae.value == pytest.approx(6 / 4)
    assert sbp.rmse.value == pytest.approx(math.sqrt((1 + 1 + 4 + 4) / 4))
    assert sbp.bias.value == pytest.approx(1.0)
    sd = math.sqrt((0 + 4 + 1 + 1) / 3)  # deviations from the bias: 0, −2, 1, 1; ddof = 1
    assert sbp.lower_limit.value == pytest.approx(1.0 - 1.96 * sd)
    assert sbp.upper_limit.value == pytest.approx(1.0 + 1.96 * sd)
    assert sbp.limits_width == pytest.approx(2 * 1.96 * sd)
    offset = metrics.output("offset")  # a constant error: all bias, no spread
    assert (offset.mae.value, offset.bias.value, offset.limits_width) == pytest.approx((0.5, 0.5, 0.0))


def test_regression_intervals_contain_the_estimate_and_narrow_with_n() -> None:
    widths = []
    for samples in (100, 1600):
        rng = np.random.default_rng(samples)
        targets = rng.normal(120.0, 15.0, size=samples)
        predictions = targets + 1.0 + rng.normal(0.0, 5.0, size=samples)
        output = evaluate_regression(targets, predictions, ("SBP",), ("mmHg",), FAST).output("SBP")
        for metric in ("mae", "rmse", "bias", "lower_limit", "upper_limit"):
            estimate = getattr(output, metric)
            assert estimate.low <= estimate.value <= estimate.high, metric
        widths.append(output.mae.high - output.mae.low)
    assert widths[1] < widths[0] / 2


def test_regression_and_anomaly_bootstraps_equal_a_plain_loop_over_the_same_resamples() -> None:
    rng = np.random.default_rng(6)
    targets, predictions = rng.normal(size=40), rng.normal(size=40) + 0.3
    labels, scores = (rng.random(40) < 0.4).astype(int), rng.normal(size=40)
    scores[labels == 1] += 1.0
    alarm = AlarmThreshold(threshold=0.5, false_alarm_rate=0.1, achieved_false_alarm_rate=0.1, normal_samples=10)
    config = EvaluationConfig(bootstrap_samples=60, seed=9, confidence=0.9)
    output = evaluate_regression(targets, predictions, ("y",), ("",), config).output("y")
    detection = evaluate_anomaly_detection(labels, scores, alarm, config)
    looped: dict[str, list[float]] = {name: [] for name in ("mae", "rmse", "bias", "upper_limit", "sensitivity")}
    for indices in np.concatenate(list(resampled_index_chunks(40, 60, 9))):
        errors = predictions[indices] - targets[indices]
        looped["mae"].append(np.mean(np.abs(errors)))
        looped["rmse"].append(np.sqrt(np.mean(errors**2)))
        looped["bias"].append(np.mean(errors))
        looped["upper_limit"].append(np.mean(errors) + 1.96 * np.std(errors, ddof=1))
        resampled_labels = labels[indices].astype(bool)
        looped["sensitivity"].append(np.mean(scores[indices][resampled_labels] >= 0.5))
    for name, values in looped.items():
        estimate = getattr(detection if name == "sensitivity" else output, name)
        assert (estimate.low, estimate.high) == pytest.approx(tuple(np.percentile(values, [5, 95]))), name


def test_regression_limits_of_one_sample_are_undefined_and_json_round_trips() -> None:
    metrics = evaluate_regression(np.array([1.0]), np.array([1.5]), ("HR",), ("bpm",), FAST)
    assert metrics.output("HR").mae.value == 0.5
    assert math.isnan(metrics.output("HR").upper_limit.value)
    data = json.loads(json.dumps(metrics.to_dict()))
    assert data["outputs"][0]["upper_limit"]["value"] is None
    restored = RegressionMetrics.from_dict(data)
    assert restored.output("HR").unit == "bpm" and math.isnan(restored.output("HR").lower_limit.value)


def test_regression_rejects_mismatched_names_and_non_finite_values() -> None:
    with pytest.raises(DataError, match="one distinct name and one unit per output"):
        evaluate_regression(np.zeros((3, 2)), np.zeros((3, 2)), ("SBP",), ("mmHg",))
    with pytest.raises(DataError, match="NaN"):
        evaluate_regression(np.zeros(3), np.array([0.0, np.nan, 0.0]), ("SBP",), ("mmHg",))


# --- anomaly metrics ---------------------------------------------------------------------------------------------


def test_anomaly_detection_metrics_are_the_hand_computed_ones() -> None:
    alarm = threshold_at_false_alarm_rate(np.arange(1.0, 101.0), 0.05)  # alarm when score ≥ 96
    labels = np.array([0, 0, 0, 0, 1, 1, 1])
    scores = np.array([10.0, 96.0, 95.0, 50.0, 99.0, 95.0, 120.0])
    metrics = evaluate_anomaly_detection(labels, scores, alarm, FAST)
    assert (metrics.samples, metrics.anomalies) == (7, 3)
    assert metrics.sensitivity.value == pytest.approx(2 / 3)  # 99 and 120 alarm; 95 does not
    assert metrics.false_alarm_rate.value == pytest.approx(1 / 4)  # 96
    assert metrics.auroc.value == pytest.approx(roc_auc_score(labels, scores))
    for metric in ("auroc", "sensitivity", "false_alarm_rate"):
        estimate = getattr(metrics, metric)
        assert estimate.low <= estimate.value <= estimate.high
    assert AnomalyMetrics.from_dict(json.loads(json.dumps(metrics.to_dict()))) == metrics


def test_alarm_agreement_is_the_hand_computed_one() -> None:
    alarm = threshold_at_false_alarm_rate(np.arange(1.0, 101.0), 0.05)  # ≥ 96
    reference = np.array([10.0, 96.0, 97.0, 50.0, 20.0])
    candidate = np.array([10.0, 96.0, 90.0, 99.0, 20.0])  # agrees on 0, 1, 4; flips 2 and 3
    agreement = evaluate_alarm_agreement(reference, candidate, alarm, alarm, FAST)
    assert agreement.agreement.value == pytest.approx(3 / 5)
    assert agreement.reference_false_alarm_rate.value == pytest.approx(2 / 5)
    assert agreement.candidate_false_alarm_rate.value == pytest.approx(2 / 5)
    assert agreement.shared_alarms == 1
    assert AlarmAgreement.from_dict(json.loads(json.dumps(agreement.to_dict()))) == agreement


def test_anomaly_intervals_narrow_with_n() -> None:
    widths = []
    rng = np.random.default_rng(5)
    alarm = threshold_at_false_alarm_rate(rng.normal(size=1000), 0.01)
    for samples in (200, 3200):
        labels = (rng.random(samples) < 0.5).astype(int)
        scores = rng.normal(size=samples) + 3.0 * labels
        metrics = evaluate_anomaly_detection(labels, scores, alarm, FAST)
        widths.append(metrics.sensitivity.high - metrics.sensitivity.low)
    assert widths[1] < widths[0] / 2


# --- the gates ---------------------------------------------------------------------------------------------------


def binary_variant(calibration, test, noise: float, seed: int, shift: float = 0.0) -> BinaryMetrics:
    """A variant's threshold chosen on calibration data by the rule, then evaluated on the test split."""
    (calibration_labels, calibration_scores), (test_labels, test_scores) = calibration, test
    if noise or shift:
        calibration_scores = damaged(calibration_scores, noise, seed, shift)
        test_scores = damaged(test_scores, noise, seed + 1, shift)
    point = choose_operating_threshold(calibration_labels, calibration_scores, TargetSensitivity(0.9))
    return evaluate_binary(test_labels, test_scores, point, ("benign", "malignant"), NO_INTERVALS)


def test_binary_gate_rejects_a_noisy_variant_and_passes_an_undamaged_one() -> None:
    calibration, test = binary_data(2000, seed=10), binary_data(3000, seed=11)
    reference = binary_variant(calibration, test, 0.0, 0)
    undamaged = judge_variant_for_task(TaskKind.BINARY, "fp16", reference, binary_variant(calibration, test, 1e-4, 1))
    assert undamaged.passed, undamaged.reason
    assert undamaged.reason.startswith("passed: sensitivity")
    noisy = judge_variant_for_task("binary", "int8", reference, binary_variant(calibration, test, 1.5, 2))
    assert not noisy.passed
    assert "specificity dropped" in noisy.reason and "AUROC dropped" in noisy.reason
    assert noisy.numbers["auroc"]["drop_points"] > 1.0
    assert "highest threshold with sensitivity ≥ 0.9" in noisy.rule
    json.dumps(noisy.to_dict())


def test_a_score_shift_is_absorbed_by_rechoosing_the_threshold_but_fails_at_the_fp32_threshold() -> None:
    calibration, test = binary_data(2000, seed=12), binary_data(3000, seed=13)
    reference = binary_variant(calibration, test, 0.0, 0)
    shifted = binary_variant(calibration, test, 0.0, 0, shift=1.5)
    assert judge_variant_for_task("binary", "int8", reference, shifted).passed
    shifted_scores = damaged(test[1], 0.0, 0, shift=1.5)
    at_fp32_threshold = evaluate_binary(
        test[0], shifted_scores, reference.operating_point, ("benign", "malignant"), NO_INTERVALS
    )
    verdict = judge_variant_for_task("binary", "int8", reference, at_fp32_threshold)
    assert not verdict.passed and "specificity dropped" in verdict.reason


def test_multilabel_gate_rejects_a_variant_damaged_on_one_label() -> None:
    names = ("AF", "PVC", "block")
    (calibration_labels, calibration_scores), (labels, scores) = (
        binary_data(2000, seed=20, labels_shape=(3,)),
        binary_data(3000, seed=21, labels_shape=(3,)),
    )

    def variant(noise_by_label: tuple[float, ...], seed: int) -> MultilabelMetrics:
        calibration, test = calibration_scores.copy(), scores.copy()
        for column, noise in enumerate(noise_by_label):
            if noise:
                calibration[:, column] = damaged(calibration[:, column], noise, seed)
                test[:, column] = damaged(test[:, column], noise, seed + 1)
        points = choose_operating_thresholds(calibration_labels, calibration, TargetSensitivity(0.9), names)
        return evaluate_multilabel(labels, test, points, names, NO_INTERVALS)

    reference = variant((0.0, 0.0, 0.0), 0)
    undamaged = judge_variant_for_task("multilabel", "fp16", reference, variant((1e-4, 1e-4, 1e-4), 1))
    assert undamaged.passed, undamaged.reason
    damaged_verdict = judge_variant_for_task("multilabel", "int8", reference, variant((0.0, 2.0, 0.0), 2))
    assert not damaged_verdict.passed
    assert "of PVC" in damaged_verdict.reason
    assert "of AF" not in damaged_verdict.reason and "of block" not in damaged_verdict.reason
    assert damaged_verdict.numbers["auroc"]["PVC"]["drop_points"] > 1.0


def regression_variant(targets: np.ndarray, predictions: np.ndarray) -> RegressionMetrics:
    return evaluate_regression(targets, predictions, ("SBP", "DBP"), ("mmHg", "mmHg"), NO_INTERVALS)


@pytest.fixture(scope="module")
def blood_pressure() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(30)
    targets = np.stack([rng.normal(120.0, 15.0, 3000), rng.normal(80.0, 10.0, 3000)], axis=1)
    return targets, targets + rng.normal(0.0, 5.0, size=targets.shape)  # fp32: unbiased, SD 5 mmHg


def test_regression_gate_rejects_added_bias_and_noise_and_passes_an_undamaged_variant(blood_pressure) -> None:
    targets, fp32 = blood_pressure
    rng = np.random.default_rng(31)
    reference = regression_variant(targets, fp32)
    undamaged = judge_variant_for_task(
        "regression", "fp16", reference, regression_variant(targets, fp32 + rng.normal(0.0, 0.01, fp32.shape))
    )
    assert undamaged.passed, undamaged.reason
    assert undamaged.reason.startswith("passed: worst MAE")

    biased = fp32.copy()
    biased[:, 0] += 3.0  # SBP reads 3 mmHg high: MAE grows, the limits shift but do not widen
    verdict = judge_variant_for_task("regression", "int8", reference, regression_variant(targets, biased))
    assert not verdict.passed
    assert "MAE of SBP grew" in verdict.reason and "mmHg" in verdict.reason
    assert "width" not in verdict.reason and "DBP" not in verdict.reason
    assert verdict.numbers["outputs"]["SBP"]["bias"]["candidate"] == pytest.approx(
        verdict.numbers["outputs"]["SBP"]["bias"]["reference"] + 3.0
    )

    noisy = fp32 + np.array([0.0, 1.0]) * rng.normal(0.0, 3.0, fp32.shape)  # DBP's SD 5 → √34 ≈ 5.8 mmHg
    verdict = judge_variant_for_task("regression", "int8", reference, regression_variant(targets, noisy))
    assert not verdict.passed and "limits-of-agreement width of DBP grew" in verdict.reason
    growth = verdict.numbers["outputs"]["DBP"]["limits_width"]
    assert growth["increase"] > growth["allowed_increase"] == pytest.approx(0.10 * growth["reference"])


def test_regression_gate_absolute_allowances_in_units(blood_pressure) -> None:
    targets, fp32 = blood_pressure
    biased = fp32 + np.array([3.0, 0.0])
    reference, candidate = regression_variant(targets, fp32), regression_variant(targets, biased)
    generous = RegressionGateConfig(max_mae_increase={"SBP": 5.0, "DBP": 0.0}, max_mae_increase_fraction=0.0)
    assert judge_variant_for_task("regression", "int8", reference, candidate, generous).passed
    strict_absolute = RegressionGateConfig(max_mae_increase=0.5, max_mae_increase_fraction=0.0)
    verdict = judge_variant_for_task("regression", "int8", reference, candidate, strict_absolute)
    assert not verdict.passed and "(allowed +0.5 mmHg)" in verdict.reason
    with pytest.raises(GateConfigError, match="not for output 'DBP'"):
        judge_variant_for_task(
            "regression", "int8", reference, candidate, RegressionGateConfig(max_mae_increase={"SBP": 1.0})
        )
    with pytest.raises(GateConfigError, match="max_limits_widening_fraction"):
        RegressionGateConfig(max_limits_widening_fraction=-0.1)


@pytest.fixture(scope="module")
def anomaly_data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(40)
    test_labels = np.r_[np.zeros(3000, dtype=int), np.ones(300, dtype=int)]
    return {
        "calibration": rng.normal(size=2000),  # normal only
        "test_labels": test_labels,
        "test": rng.normal(size=test_labels.size) + 3.0 * test_labels,
        "held_out": rng.normal(size=5000),  # normal only, never seen by the threshold
    }


def anomaly_variant(data: dict, noise: float, seed: int, shift: float = 0.0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        key: (value if key == "test_labels" else value + shift + rng.normal(scale=noise, size=value.shape))
        for key, value in data.items()
    }


def test_anomaly_gate_with_labels_rejects_noise_and_a_shift_and_passes_an_undamaged_variant(anomaly_data) -> None:
    labels = anomaly_data["test_labels"]
    reference_threshold = threshold_at_false_alarm_rate(anomaly_data["calibration"], 0.01)
    reference = evaluate_anomaly_detection(labels, anomaly_data["test"], reference_threshold, NO_INTERVALS)

    def judged(variant: dict, threshold=None):
        threshold = threshold or threshold_at_false_alarm_rate(variant["calibration"], 0.01)
        candidate = evaluate_anomaly_detection(labels, variant["test"], threshold, NO_INTERVALS)
        return judge_variant_for_task("anomaly", "int8", reference, candidate)

    undamaged = judged(anomaly_variant(anomaly_data, 1e-4, 1))
    assert undamaged.passed, undamaged.reason
    noisy = judged(anomaly_variant(anomaly_data, 1.0, 2))
    assert not noisy.passed and "AUROC dropped" in noisy.reason and "sensitivity dropped" in noisy.reason
    shifted = judged(anomaly_variant(anomaly_data, 0.0, 3, shift=0.75), threshold=reference_threshold)
    assert not shifted.passed and "false-alarm rate rose" in shifted.reason
    assert shifted.numbers["false_alarm_rate"]["rise_points"] > 1.0


def test_anomaly_gate_without_labels_judges_alarm_agreement_with_fp32(anomaly_data) -> None:
    held_out = anomaly_data["held_out"]
    reference_threshold = threshold_at_false_alarm_rate(anomaly_data["calibration"], 0.01)
    reference = evaluate_alarm_agreement(held_out, held_out, reference_threshold, reference_threshold, NO_INTERVALS)
    assert reference.agreement.value == 1.0

    def judged(variant: dict):
        threshold = threshold_at_false_alarm_rate(variant["calibration"], 0.01)
        candidate = evaluate_alarm_agreement(
            held_out, variant["held_out"], reference_threshold, threshold, NO_INTERVALS
        )
        return judge_variant_for_task("anomaly", "int8", reference, candidate, AnomalyGateConfig())

    undamaged = judged(anomaly_variant(anomaly_data, 1e-4, 1))
    assert undamaged.passed, undamaged.reason
    assert undamaged.reason.startswith("passed: alarms agree on")
    noisy = judged(anomaly_variant(anomaly_data, 1.0, 2))
    assert not noisy.passed and "alarm agreement dropped" in noisy.reason
    assert "held-out normal data" in noisy.rule


# --- dispatch and configs ----------------------------------------------------------------------------------------


def test_dispatch_of_multiclass_is_the_existing_gate() -> None:
    rng = np.random.default_rng(50)
    labels = rng.integers(0, 3, size=300)
    probabilities = rng.dirichlet(np.ones(3), size=300)
    metrics = evaluate_predictions(labels, probabilities, ("N", "S", "V"), NO_INTERVALS)
    assert judge_variant_for_task("multiclass", "fp16", metrics, metrics) == judge_variant(
        "fp16", metrics, metrics, GateConfig()
    )


def test_dispatch_rejects_unknown_kinds_and_mismatched_metrics_or_configs(blood_pressure) -> None:
    metrics = regression_variant(*blood_pressure)
    with pytest.raises(UsageError, match="'multiclass', 'binary', 'multilabel', 'regression', 'anomaly'"):
        judge_variant_for_task("segmentation", "int8", metrics, metrics)
    with pytest.raises(DataError, match="BinaryMetrics"):
        judge_variant_for_task("binary", "int8", metrics, metrics)
    with pytest.raises(GateConfigError, match="RegressionGateConfig"):
        judge_variant_for_task("regression", "int8", metrics, metrics, BinaryGateConfig())
    assert [kind.value for kind in TaskKind] == ["multiclass", "binary", "multilabel", "regression", "anomaly"]


@pytest.mark.parametrize("config_type", [BinaryGateConfig, MultilabelGateConfig, AnomalyGateConfig])
def test_gate_configs_reject_negative_limits(config_type) -> None:
    field = next(iter(config_type.__dataclass_fields__))
    with pytest.raises(GateConfigError, match=field):
        config_type(**{field: -1.0})


def test_binary_gate_fails_when_the_reference_cannot_be_judged() -> None:
    point = OperatingPoint(threshold=0.5, rule="fixed", sensitivity=1.0, specificity=1.0, positives=1, negatives=1)
    no_positives = evaluate_binary(np.zeros(5, dtype=int), np.linspace(0.1, 0.9, 5), point, config=NO_INTERVALS)
    verdict = judge_variant_for_task("binary", "int8", no_positives, no_positives)
    assert not verdict.passed and "sensitivity is undefined for the reference" in verdict.reason
