"""The cluster bootstrap: correlated test samples (one recording's windows, one record's beats) are resampled as
whole groups, and an interval the groups cannot support is reported undefined, on every task kind."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.clinical import bootstrap_intervals as bootstrap
from pipeline.clinical.anomaly_metrics import evaluate_anomaly_detection
from pipeline.clinical.metrics import EvaluationConfig, evaluate_predictions
from pipeline.clinical.operating_points import AlarmThreshold
from pipeline.clinical.regression_metrics import evaluate_regression
from pipeline.errors import DataError
from pipeline.splits import DataSplits, Split, load_splits, resampling_summary, save_splits

CONFIG = EvaluationConfig(bootstrap_samples=400, seed=3)


def _classifier(count: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, count)
    positive = np.clip(0.55 * labels + rng.normal(0.2, 0.25, count), 0.0, 1.0)
    return labels, np.stack([1.0 - positive, positive], axis=1)


def _bounds(metrics) -> list[tuple[float, float]]:
    estimates = [metrics.accuracy, metrics.macro_f1, *(item.sensitivity for item in metrics.per_class),
                 *(item.auroc for item in metrics.per_class)]
    return [(item.low, item.high) for item in estimates]


def test_one_group_per_sample_in_sample_order_is_the_plain_bootstrap_draw_for_draw() -> None:
    labels, probabilities = _classifier()
    plain = evaluate_predictions(labels, probabilities, ("no", "yes"), CONFIG)
    grouped = evaluate_predictions(labels, probabilities, ("no", "yes"), CONFIG, groups=np.arange(labels.size))
    assert _bounds(grouped) == _bounds(plain)


def test_copies_of_a_sample_resampled_together_give_the_intervals_of_the_samples_alone() -> None:
    """Ten exact copies of every sample carry no more evidence than the samples: grouped, the intervals are those
    of the originals; resampled copy by copy they come out narrower (the error the groups prevent)."""
    labels, probabilities = _classifier()
    copies = np.repeat(labels, 10), np.repeat(probabilities, 10, axis=0)
    original = evaluate_predictions(labels, probabilities, ("no", "yes"), CONFIG)
    grouped = evaluate_predictions(*copies, ("no", "yes"), CONFIG, groups=np.repeat(np.arange(labels.size), 10))
    per_copy = evaluate_predictions(*copies, ("no", "yes"), CONFIG)
    assert np.allclose(_bounds(grouped), _bounds(original))
    assert per_copy.accuracy.value == original.accuracy.value
    width = lambda metrics: metrics.accuracy.high - metrics.accuracy.low  # noqa: E731
    assert width(per_copy) < 0.5 * width(original)


def test_text_ids_are_groups_whatever_their_order() -> None:
    labels, probabilities = _classifier(120)
    ids = np.array([f"record {index % 7}" for index in range(labels.size)])
    grouped = evaluate_predictions(labels, probabilities, ("no", "yes"), CONFIG, groups=ids)
    shuffled = np.array([f"x{index % 7}" for index in range(labels.size)])  # same partition, other names
    assert _bounds(evaluate_predictions(labels, probabilities, ("no", "yes"), CONFIG, groups=shuffled)) == \
        _bounds(grouped)


def test_a_class_held_by_one_group_gets_no_interval_and_the_others_keep_theirs() -> None:
    """Every positive in one recording: the cluster bootstrap cannot vary it, so its sensitivity, PPV, F1 and
    AUROC intervals are undefined (NaN), not a zero-width certainty; the negatives span many groups."""
    labels, probabilities = _classifier(200)
    groups = np.where(labels == 1, "episode", np.array([f"rest {index % 9}" for index in range(labels.size)]))
    metrics = evaluate_predictions(labels, probabilities, ("no", "yes"), CONFIG, groups=groups)
    no, yes = metrics.per_class
    for estimate in (yes.sensitivity, yes.ppv, yes.f1, yes.auroc, no.specificity, no.auroc):
        assert math.isnan(estimate.low) and math.isnan(estimate.high) and not math.isnan(estimate.value)
    for estimate in (no.sensitivity, yes.specificity, metrics.accuracy, metrics.macro_f1):
        assert estimate.low <= estimate.value <= estimate.high


def test_anomaly_and_regression_intervals_follow_the_groups() -> None:
    rng = np.random.default_rng(1)
    labels = np.zeros(240, dtype=np.int64)
    labels[100:116] = 1  # one anomaly, sixteen overlapping windows
    scores = rng.normal(0.0, 1.0, labels.size) + 3.0 * labels
    groups = np.array([f"block {index // 20}" for index in range(labels.size)])
    detection = evaluate_anomaly_detection(labels, scores, AlarmThreshold(1.5, 0.05, 0.05, 100), CONFIG, groups=groups)
    assert math.isnan(detection.sensitivity.low) and math.isnan(detection.auroc.low)
    assert detection.false_alarm_rate.low <= detection.false_alarm_rate.value <= detection.false_alarm_rate.high
    targets = rng.normal(100.0, 10.0, (60, 1))
    predictions = targets + rng.normal(0.0, 2.0, targets.shape)
    one_group = evaluate_regression(targets, predictions, ("sbp",), ("mmHg",), CONFIG, groups=np.zeros(60, int))
    assert math.isnan(one_group.outputs[0].mae.low)
    several = evaluate_regression(targets, predictions, ("sbp",), ("mmHg",), CONFIG, groups=np.arange(60) // 6)
    assert several.outputs[0].mae.low <= several.outputs[0].mae.value <= several.outputs[0].mae.high


def test_groups_that_do_not_fit_the_samples_are_refused_with_what_to_do() -> None:
    labels, probabilities = _classifier(50)
    with pytest.raises(DataError) as raised:
        evaluate_predictions(labels, probabilities, ("no", "yes"), CONFIG, groups=np.arange(49))
    assert "one group id per test sample" in raised.value.expected
    with pytest.raises(DataError, match="group_unit"):
        DataSplits(*(Split(np.zeros((4, 2), np.float32), np.zeros(4, np.int64)) for _ in range(3)),
                   test=Split(np.zeros((4, 2), np.float32), np.zeros(4, np.int64), np.array(list("aabb"))),
                   class_names=("a", "b"))


def test_groups_and_their_unit_survive_the_data_artefact(tmp_path) -> None:
    inputs, labels = np.zeros((6, 3), np.float32), np.array([0, 1, 0, 1, 0, 1])
    splits = DataSplits(Split(inputs, labels), Split(inputs, labels), Split(inputs),
                        Split(inputs, labels, np.array(["r1", "r1", "r2", "r2", "r3", "r3"])),
                        class_names=("a", "b"), group_unit="recording")
    save_splits(splits, tmp_path / "splits.npz")
    loaded = load_splits(tmp_path / "splits.npz")
    assert loaded.group_unit == "recording" and loaded.test.groups.tolist() == ["r1", "r1", "r2", "r2", "r3", "r3"]
    assert loaded.train.groups is None
    assert resampling_summary(loaded) == {"unit": "recording", "groups": 3, "samples": 6,
                                       "note": "whole groups resampled (recording): the samples of one group are "
                                               "correlated"}
    plain = DataSplits(*(Split(inputs, labels) for _ in range(4)), class_names=("a", "b"))
    assert resampling_summary(plain)["unit"] == "sample"


def test_the_weight_chunks_bound_memory_by_the_samples_not_the_groups() -> None:
    groups = np.arange(5_000) // 1_000  # five groups of a thousand
    chunks = list(bootstrap.resampled_weight_chunks(5_000, 2_000, 0, groups))
    assert sum(chunk.shape[1] for chunk in chunks) == 2_000
    assert max(chunk.size for chunk in chunks) <= bootstrap.CHUNK_CELLS
    assert all(np.all(chunk.sum(axis=0) == 5_000) for chunk in chunks)  # five groups drawn of a thousand each
