"""Clinical metrics of a classifier on a test split, with percentile bootstrap CIs.

Point estimates come from scikit-learn on the full test set; confidence intervals
from :mod:`pipeline.clinical.bootstrap_intervals` (vectorised, thousands of replicates in about a
second). Values that are undefined — sensitivity of a class with no samples, PPV
of a class never predicted, AUROC without both classes — are NaN in memory and
``None`` in JSON.

This module must not import tensorflow, keras or onnx.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support, roc_auc_score

from pipeline.clinical.bootstrap_intervals import (
    bootstrap_metrics,
    percentile_interval,
    rates_from_confusion,
    thin_groups,
)
from pipeline.errors import DataError

logger = logging.getLogger(__name__)

PER_CLASS_METRICS = ("sensitivity", "specificity", "ppv", "f1", "auroc")


@dataclass(frozen=True)
class EvaluationConfig:
    """How confidence intervals are estimated."""

    bootstrap_samples: int = 1000  # replicates; 1000 gives stable 95 % percentile bounds, 0 skips CIs
    confidence: float = 0.95  # two-sided coverage of each interval
    seed: int = 0  # seeds the resampling so reports are reproducible

    def __post_init__(self) -> None:
        if not isinstance(self.bootstrap_samples, int) or self.bootstrap_samples < 0:
            raise DataError(
                f"bootstrap_samples is {self.bootstrap_samples}",
                expected="zero (no intervals) or a positive whole number of replicates",
                fix="set evaluation.bootstrap_samples to e.g. 1000",
            )
        if not 0.0 < self.confidence < 1.0:
            raise DataError(
                f"confidence is {self.confidence}",
                expected="a fraction strictly between 0 and 1, e.g. 0.95",
                fix="set evaluation.confidence to a fraction, not a percentage",
            )


DEFAULT_EVALUATION_CONFIG = EvaluationConfig()


def _to_json_number(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _from_json_number(value: float | None) -> float:
    return math.nan if value is None else float(value)


@dataclass(frozen=True)
class Estimate:
    """A point estimate and its percentile bootstrap interval (NaN when undefined)."""

    value: float
    low: float
    high: float

    def to_dict(self) -> dict:
        return {name: _to_json_number(getattr(self, name)) for name in ("value", "low", "high")}

    @classmethod
    def from_dict(cls, data: dict) -> Estimate:
        return cls(*(_from_json_number(data[name]) for name in ("value", "low", "high")))


@dataclass(frozen=True)
class ClassMetrics:
    """One-vs-rest metrics of one class."""

    name: str
    support: int  # samples of this class in the test set
    sensitivity: Estimate  # recall, TP/(TP+FN)
    specificity: Estimate  # TN/(TN+FP)
    ppv: Estimate  # precision, TP/(TP+FP)
    f1: Estimate
    auroc: Estimate  # one-vs-rest, from the class's probability column

    def to_dict(self) -> dict:
        data: dict = {"name": self.name, "support": self.support}
        data.update({metric: getattr(self, metric).to_dict() for metric in PER_CLASS_METRICS})
        return data

    @classmethod
    def from_dict(cls, data: dict) -> ClassMetrics:
        estimates = {metric: Estimate.from_dict(data[metric]) for metric in PER_CLASS_METRICS}
        return cls(name=str(data["name"]), support=int(data["support"]), **estimates)


@dataclass(frozen=True)
class ClinicalMetrics:
    """Everything the clinical gate and the reports need about one model on one split."""

    class_names: tuple[str, ...]
    samples: int
    accuracy: Estimate
    macro_f1: Estimate
    per_class: tuple[ClassMetrics, ...]
    confusion_matrix: list[list[int]]  # rows = true class, columns = predicted class

    def to_dict(self) -> dict:
        return {
            "class_names": list(self.class_names),
            "samples": self.samples,
            "accuracy": self.accuracy.to_dict(),
            "macro_f1": self.macro_f1.to_dict(),
            "per_class": [metrics.to_dict() for metrics in self.per_class],
            "confusion_matrix": [list(row) for row in self.confusion_matrix],
        }

    @classmethod
    def from_dict(cls, data: dict) -> ClinicalMetrics:
        return cls(
            class_names=tuple(str(name) for name in data["class_names"]),
            samples=int(data["samples"]),
            accuracy=Estimate.from_dict(data["accuracy"]),
            macro_f1=Estimate.from_dict(data["macro_f1"]),
            per_class=tuple(ClassMetrics.from_dict(item) for item in data["per_class"]),
            confusion_matrix=[[int(cell) for cell in row] for row in data["confusion_matrix"]],
        )

    def class_metrics(self, name: str) -> ClassMetrics:
        for metrics in self.per_class:
            if metrics.name == name:
                return metrics
        raise DataError(
            f"no metrics for class {name!r}",
            expected=f"one of {list(self.class_names)}",
            fix="use a class name from the scenario's class_names",
        )


def _validate_class_names(class_names: Sequence[str]) -> tuple[str, ...]:
    names = tuple(str(name) for name in class_names)
    if len(names) < 2 or len(set(names)) != len(names):
        raise DataError(
            f"class_names is {list(names)}",
            expected="at least two distinct class names, one per probability column",
            fix="pass the scenario's class_names",
        )
    return names


def _validate_labels(labels: np.ndarray, class_count: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] == 0:
        raise DataError(
            f"labels have shape {labels.shape}",
            expected="a non-empty 1-D array of integer class indices",
            fix="pass split.labels, not one-hot labels",
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"labels have dtype {labels.dtype}",
            expected="integer class indices",
            fix="convert one-hot or float labels with argmax / astype(np.int64)",
        )
    if labels.min() < 0 or labels.max() >= class_count:
        raise DataError(
            f"labels range from {labels.min()} to {labels.max()}, outside 0..{class_count - 1}",
            expected=f"class indices in 0..{class_count - 1} (one per class name)",
            fix="check that labels and class_names come from the same scenario",
        )
    return labels.astype(np.int64)


def _validate_probabilities(probabilities: np.ndarray, sample_count: int, class_count: int) -> np.ndarray:
    probabilities = np.asarray(probabilities)
    if probabilities.ndim != 2 or probabilities.shape[1] != class_count:
        raise DataError(
            f"probabilities have shape {probabilities.shape}",
            expected=f"a 2-D array (samples, {class_count}) with one column per class (also for 2 classes)",
            fix="pass the model's softmax output; for a single sigmoid column stack [1 - p, p]",
        )
    if probabilities.shape[0] != sample_count:
        raise DataError(
            f"probabilities have {probabilities.shape[0]} rows but labels have {sample_count}",
            expected="one probability row per label",
            fix="predict on the same split whose labels you pass",
        )
    if not np.issubdtype(probabilities.dtype, np.number) or not np.all(np.isfinite(probabilities)):
        raise DataError(
            "probabilities contain NaN, inf or non-numbers",
            expected="finite class probabilities",
            fix="check the model output (a NaN usually means a broken export or quantization)",
        )
    row_sums = probabilities.sum(axis=1)
    if not np.allclose(row_sums, 1.0, atol=1e-2):  # loose: fp16 softmax rows drift
        logger.warning(
            "probability rows do not sum to 1 (range %.4f..%.4f); metrics use argmax and per-class scores",
            row_sums.min(),
            row_sums.max(),
        )
    return probabilities.astype(np.float64)


def _point_auroc(labels: np.ndarray, probabilities: np.ndarray, cls: int) -> float:
    positive = labels == cls
    if positive.all() or not positive.any():
        return math.nan
    return float(roc_auc_score(positive, probabilities[:, cls]))


def _point_estimates(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, np.ndarray]:
    """Full-set metrics from scikit-learn; NaN where undefined."""
    class_count = probabilities.shape[1]
    classes = list(range(class_count))
    predictions = probabilities.argmax(axis=1)
    matrix = confusion_matrix(labels, predictions, labels=classes)
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predictions, labels=classes, zero_division=np.nan
    )
    return {
        "confusion_matrix": matrix,
        "support": support,
        "accuracy": np.float64(np.trace(matrix) / matrix.sum()),
        "macro_f1": np.float64(f1_score(labels, predictions, labels=classes, average="macro", zero_division=np.nan)),
        "sensitivity": recall,
        "specificity": rates_from_confusion(matrix)["specificity"],
        "ppv": precision,
        "f1": f1,
        "auroc": np.array([_point_auroc(labels, probabilities, cls) for cls in classes]),
    }


def _warn_about_empty_classes(class_names: tuple[str, ...], support: np.ndarray) -> None:
    for name, count in zip(class_names, support, strict=True):
        if count == 0:
            logger.warning(
                "class %r has no samples in the test set; its sensitivity and AUROC are undefined (NaN)", name
            )


def _blank_thin_intervals(intervals: dict[str, tuple[np.ndarray, np.ndarray]], labels: np.ndarray, class_count: int,
                          groups: np.ndarray | None) -> None:
    """Undefined (NaN) intervals where the samples behind a metric span too few groups (``thin_groups``): a class's
    own samples for its sensitivity, PPV, F1 and AUROC, the other classes' for its specificity (and AUROC), the
    whole split for accuracy and macro-F1."""
    if groups is None:
        return
    own = labels[None, :] == np.arange(class_count)[:, None]
    thin_own, thin_other = thin_groups(groups, own), thin_groups(groups, ~own)
    thin_whole = bool(thin_groups(groups, np.ones((1, labels.shape[0]), dtype=bool))[0])
    blanks = {"sensitivity": thin_own, "ppv": thin_own, "f1": thin_own, "specificity": thin_other,
              "auroc": thin_own | thin_other, "accuracy": thin_whole, "macro_f1": thin_whole}
    for metric, blank in blanks.items():
        low, high = (np.array(bound, dtype=np.float64, copy=True) for bound in intervals[metric])
        low[blank], high[blank] = np.nan, np.nan
        intervals[metric] = (low, high)


def evaluate_predictions(
    labels: np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    config: EvaluationConfig = DEFAULT_EVALUATION_CONFIG,
    groups: np.ndarray | None = None,
) -> ClinicalMetrics:
    """Clinical metrics of ``probabilities`` (n, k) against integer ``labels`` (n,), with CIs (resampling whole
    ``groups`` when given: one cluster id per sample, e.g. its recording)."""
    names = _validate_class_names(class_names)
    labels = _validate_labels(labels, len(names))
    probabilities = _validate_probabilities(probabilities, labels.shape[0], len(names))
    point = _point_estimates(labels, probabilities)
    _warn_about_empty_classes(names, point["support"])
    replicates = bootstrap_metrics(labels, probabilities, config.bootstrap_samples, config.seed, groups)
    intervals = {
        metric: percentile_interval(getattr(replicates, metric), config.confidence)
        for metric in ("accuracy", "macro_f1", *PER_CLASS_METRICS)
    }
    _blank_thin_intervals(intervals, labels, len(names), groups)

    def estimate(metric: str, cls: int | None = None) -> Estimate:
        value, (low, high) = point[metric], intervals[metric]
        if cls is not None:
            value, low, high = value[cls], low[cls], high[cls]
        return Estimate(value=float(value), low=float(low), high=float(high))

    per_class = tuple(
        ClassMetrics(
            name=name,
            support=int(point["support"][cls]),
            **{metric: estimate(metric, cls) for metric in PER_CLASS_METRICS},
        )
        for cls, name in enumerate(names)
    )
    return ClinicalMetrics(
        class_names=names,
        samples=int(labels.shape[0]),
        accuracy=estimate("accuracy"),
        macro_f1=estimate("macro_f1"),
        per_class=per_class,
        confusion_matrix=point["confusion_matrix"].astype(int).tolist(),
    )
