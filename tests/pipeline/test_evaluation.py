"""Clinical metrics: point estimates equal scikit-learn's, bootstrap CIs behave."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
from sklearn.metrics import (
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)

from pipeline.clinical import bootstrap_intervals as bootstrap
from pipeline.clinical.metrics import (
    ClinicalMetrics,
    EvaluationConfig,
    evaluate_predictions,
)
from pipeline.errors import DataError

CLASS_NAMES = ("N", "S", "V", "F")
FAST = EvaluationConfig(bootstrap_samples=200, seed=3)


def noisy_predictions(
    samples: int, class_count: int = len(CLASS_NAMES), seed: int = 0, decimals: int | None = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Labels and softmax probabilities of a decent but imperfect classifier (with score ties)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, class_count, size=samples)
    logits = rng.normal(size=(samples, class_count))
    logits[np.arange(samples), labels] += 1.5
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    if decimals is not None:
        probabilities = np.round(probabilities, decimals)  # creates many tied scores
    return labels, probabilities


@pytest.fixture(scope="module")
def predictions() -> tuple[np.ndarray, np.ndarray]:
    return noisy_predictions(600)


@pytest.fixture(scope="module")
def metrics(predictions: tuple[np.ndarray, np.ndarray]) -> ClinicalMetrics:
    labels, probabilities = predictions
    return evaluate_predictions(labels, probabilities, CLASS_NAMES, FAST)


def per_class_values(metrics: ClinicalMetrics, metric: str) -> np.ndarray:
    return np.array([getattr(item, metric).value for item in metrics.per_class])


def test_point_estimates_equal_scikit_learn(predictions, metrics) -> None:
    labels, probabilities = predictions
    predicted = probabilities.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted)
    matrix = confusion_matrix(labels, predicted)
    true_positive = np.diag(matrix)
    false_positive = matrix.sum(axis=0) - true_positive
    true_negative = matrix.sum() - matrix.sum(axis=1) - false_positive
    np.testing.assert_allclose(per_class_values(metrics, "sensitivity"), recall, atol=1e-12)
    np.testing.assert_allclose(per_class_values(metrics, "ppv"), precision, atol=1e-12)
    np.testing.assert_allclose(per_class_values(metrics, "f1"), f1, atol=1e-12)
    np.testing.assert_allclose(
        per_class_values(metrics, "specificity"), true_negative / (true_negative + false_positive), atol=1e-12
    )
    aurocs = [roc_auc_score(labels == cls, probabilities[:, cls]) for cls in range(len(CLASS_NAMES))]
    np.testing.assert_allclose(per_class_values(metrics, "auroc"), aurocs, atol=1e-12)
    assert metrics.macro_f1.value == pytest.approx(f1_score(labels, predicted, average="macro"), abs=1e-12)
    assert metrics.accuracy.value == pytest.approx(np.mean(labels == predicted), abs=1e-12)
    assert metrics.confusion_matrix == matrix.tolist()
    assert [item.support for item in metrics.per_class] == support.tolist()
    assert metrics.samples == len(labels)
    assert metrics.class_names == CLASS_NAMES


def test_intervals_contain_the_point_estimate(metrics) -> None:
    estimates = [metrics.accuracy, metrics.macro_f1]
    for item in metrics.per_class:
        estimates += [item.sensitivity, item.specificity, item.ppv, item.f1, item.auroc]
    for estimate in estimates:
        assert estimate.low <= estimate.value <= estimate.high
        assert estimate.low < estimate.high


def test_intervals_narrow_with_more_samples() -> None:
    small = evaluate_predictions(*noisy_predictions(200, seed=1), CLASS_NAMES, FAST)
    large = evaluate_predictions(*noisy_predictions(5000, seed=1), CLASS_NAMES, FAST)
    for name in ("accuracy", "macro_f1"):
        small_width = getattr(small, name).high - getattr(small, name).low
        large_width = getattr(large, name).high - getattr(large, name).low
        assert large_width < small_width / 2
    for small_class, large_class in zip(small.per_class, large.per_class, strict=True):
        assert (large_class.sensitivity.high - large_class.sensitivity.low) < (
            small_class.sensitivity.high - small_class.sensitivity.low
        )


def test_perfect_predictions_give_one_with_degenerate_interval() -> None:
    labels = np.repeat(np.arange(3), 20)
    probabilities = np.full((60, 3), 0.1)
    probabilities[np.arange(60), labels] = 0.8
    metrics = evaluate_predictions(labels, probabilities, ("A", "B", "C"), FAST)
    estimates = [metrics.accuracy, metrics.macro_f1]
    for item in metrics.per_class:
        estimates += [item.sensitivity, item.specificity, item.ppv, item.f1, item.auroc]
    for estimate in estimates:
        assert (estimate.value, estimate.low, estimate.high) == (1.0, 1.0, 1.0)


@pytest.mark.parametrize(("seed", "decimals"), [(0, 1), (1, 2), (2, None), (3, 0)])
def test_vectorised_auroc_equals_scikit_learn_with_ties(seed: int, decimals: int | None) -> None:
    rng = np.random.default_rng(seed)
    positive = rng.random(300) < 0.3
    scores = rng.random(300) + 0.3 * positive
    if decimals is not None:
        scores = np.round(scores, decimals)
    ones = np.ones((300, 1))
    assert bootstrap.weighted_auroc(positive, scores, ones)[0] == pytest.approx(
        roc_auc_score(positive, scores), abs=1e-9
    )


def test_replicate_metrics_equal_scikit_learn_on_the_resampled_set(predictions) -> None:
    labels, probabilities = predictions
    indices = next(bootstrap.resampled_index_chunks(len(labels), 3, seed=5))
    replicates = bootstrap.metrics_for_indices(labels, probabilities, probabilities.argmax(axis=1), indices)
    for row, drawn in enumerate(indices):
        resampled_labels, resampled_probabilities = labels[drawn], probabilities[drawn]
        predicted = resampled_probabilities.argmax(axis=1)
        precision, recall, f1, _ = precision_recall_fscore_support(resampled_labels, predicted)
        np.testing.assert_allclose(replicates.sensitivity[row], recall, atol=1e-12)
        np.testing.assert_allclose(replicates.ppv[row], precision, atol=1e-12)
        np.testing.assert_allclose(replicates.f1[row], f1, atol=1e-12)
        assert replicates.macro_f1[row] == pytest.approx(f1_score(resampled_labels, predicted, average="macro"))
        assert replicates.accuracy[row] == pytest.approx(np.mean(resampled_labels == predicted))
        for cls in range(len(CLASS_NAMES)):
            expected = roc_auc_score(resampled_labels == cls, resampled_probabilities[:, cls])
            assert replicates.auroc[row, cls] == pytest.approx(expected, abs=1e-9)


def test_results_do_not_depend_on_chunking(predictions, metrics, monkeypatch) -> None:
    monkeypatch.setattr(bootstrap, "CHUNK_CELLS", 7 * len(predictions[0]))  # 7 replicates per chunk
    assert evaluate_predictions(*predictions, CLASS_NAMES, FAST).to_dict() == metrics.to_dict()


def test_same_seed_same_intervals_other_seed_other_intervals(predictions, metrics) -> None:
    again = evaluate_predictions(*predictions, CLASS_NAMES, FAST)
    other = evaluate_predictions(*predictions, CLASS_NAMES, EvaluationConfig(bootstrap_samples=200, seed=4))
    assert again.to_dict() == metrics.to_dict()
    assert other.macro_f1.value == metrics.macro_f1.value
    assert (other.macro_f1.low, other.macro_f1.high) != (metrics.macro_f1.low, metrics.macro_f1.high)


def test_binary_case() -> None:
    labels, probabilities = noisy_predictions(400, class_count=2, seed=2, decimals=None)
    metrics = evaluate_predictions(labels, probabilities, ("negative", "positive"), FAST)
    predicted = probabilities.argmax(axis=1)
    positive = metrics.class_metrics("positive")
    negative = metrics.class_metrics("negative")
    assert positive.auroc.value == pytest.approx(roc_auc_score(labels, probabilities[:, 1]))
    assert negative.auroc.value == pytest.approx(positive.auroc.value)
    assert positive.sensitivity.value == pytest.approx(negative.specificity.value)
    assert metrics.macro_f1.value == pytest.approx(f1_score(labels, predicted, average="macro"))
    assert len(metrics.confusion_matrix) == 2


def test_class_without_samples_is_nan_with_a_warning(caplog) -> None:
    labels, probabilities = noisy_predictions(300, seed=4)
    keep = labels != 3  # no "F" samples in the test set
    with caplog.at_level(logging.WARNING, logger="pipeline.clinical.metrics"):
        metrics = evaluate_predictions(labels[keep], probabilities[keep], CLASS_NAMES, FAST)
    missing = metrics.class_metrics("F")
    assert missing.support == 0
    for estimate in (missing.sensitivity, missing.auroc):
        assert math.isnan(estimate.value) and math.isnan(estimate.low) and math.isnan(estimate.high)
    assert not math.isnan(missing.specificity.value)
    assert not math.isnan(metrics.macro_f1.value)
    assert "'F' has no samples" in caplog.text


def test_class_absent_from_some_replicates_still_has_an_interval() -> None:
    labels, probabilities = noisy_predictions(200, seed=6)
    labels[:] = np.where(labels == 3, 0, labels)
    labels[0] = 3  # one "F" sample: absent from about a third of the replicates
    metrics = evaluate_predictions(labels, probabilities, CLASS_NAMES, FAST)
    rare = metrics.class_metrics("F")
    assert rare.sensitivity.low <= rare.sensitivity.value <= rare.sensitivity.high


def _bad_inputs() -> list:
    labels, probabilities = noisy_predictions(20)
    with_nan = probabilities.copy()
    with_nan[3, 1] = np.nan
    return [
        pytest.param(labels[:-1], probabilities, CLASS_NAMES, "rows", id="length-mismatch"),
        pytest.param(labels + 4, probabilities, CLASS_NAMES, "outside 0..3", id="label-out-of-range"),
        pytest.param(labels - 1, probabilities, CLASS_NAMES, "outside 0..3", id="negative-label"),
        pytest.param(labels, probabilities[:, 0], CLASS_NAMES, "shape (20,)", id="probabilities-1d"),
        pytest.param(labels, probabilities[:, :3], CLASS_NAMES, "shape (20, 3)", id="too-few-columns"),
        pytest.param(labels, with_nan, CLASS_NAMES, "NaN", id="nan-probability"),
        pytest.param(labels.astype(float), probabilities, CLASS_NAMES, "dtype", id="float-labels"),
        pytest.param(labels[:, None], probabilities, CLASS_NAMES, "labels have shape", id="labels-2d"),
        pytest.param(labels[:0], probabilities[:0], CLASS_NAMES, "labels have shape (0,)", id="empty"),
        pytest.param(labels, probabilities, ("N", "N", "V", "F"), "class_names", id="duplicate-names"),
    ]


@pytest.mark.parametrize(("labels", "probabilities", "class_names", "named"), _bad_inputs())
def test_bad_input_raises_data_error_naming_the_problem(labels, probabilities, class_names, named) -> None:
    with pytest.raises(DataError) as raised:
        evaluate_predictions(labels, probabilities, class_names, FAST)
    assert named in str(raised.value)
    assert raised.value.expected and raised.value.fix


@pytest.mark.parametrize(
    "settings",
    [{"bootstrap_samples": -1}, {"bootstrap_samples": 10.5}, {"confidence": 95.0}, {"confidence": 0.0}],
    ids=str,
)
def test_bad_config_raises_data_error(settings: dict) -> None:
    with pytest.raises(DataError):
        EvaluationConfig(**settings)


def test_zero_bootstrap_samples_gives_point_estimates_only(predictions, metrics) -> None:
    plain = evaluate_predictions(*predictions, CLASS_NAMES, EvaluationConfig(bootstrap_samples=0))
    assert plain.macro_f1.value == metrics.macro_f1.value
    assert math.isnan(plain.macro_f1.low) and math.isnan(plain.macro_f1.high)


def test_round_trip_through_json_without_nan(predictions) -> None:
    labels, probabilities = predictions
    keep = labels != 2  # class "V" is missing → NaN estimates
    metrics = evaluate_predictions(labels[keep], probabilities[keep], CLASS_NAMES, FAST)
    text = json.dumps(metrics.to_dict(), allow_nan=False)
    assert "NaN" not in text
    restored = ClinicalMetrics.from_dict(json.loads(text))
    assert restored.to_dict() == metrics.to_dict()
    assert math.isnan(restored.class_metrics("V").sensitivity.value)
    assert restored.class_names == CLASS_NAMES
    assert json.loads(text)["per_class"][2]["sensitivity"]["value"] is None


def test_unknown_class_name_raises_data_error(metrics) -> None:
    with pytest.raises(DataError, match="'X'"):
        metrics.class_metrics("X")
