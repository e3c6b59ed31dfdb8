"""Clinical metrics of sigmoid outputs at chosen thresholds: binary (one score) and multilabel (one per label).

Thresholds come from :mod:`pipeline.clinical.operating_points`, chosen on validation or
calibration data; the metrics here are measured on the test split at those thresholds.

* **Binary** reuses :func:`pipeline.clinical.metrics.evaluate_predictions` through the
  *two-class form* of the scores: a rank-preserving map of each score to ``[1 − q, q]``
  with ``q > ½`` exactly where score ≥ threshold. Argmax then reproduces the thresholded
  decision, and every AUROC (point and bootstrap) is that of the raw score, because AUROC
  depends only on the order of the scores.
* **Multilabel** bootstraps every label in one pass over shared resamples (so macro-F1
  gets an interval too): per-label 2 × 2 confusion matrices from
  ``weighted_confusion_matrices``, rates from ``rates_from_confusion``, AUROC from
  ``weighted_auroc``. Point estimates come from scikit-learn.

Undefined values are NaN in memory and ``None`` in JSON, as in :mod:`pipeline.clinical.metrics`.

This module must not import tensorflow, keras or onnx.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import f1_score, multilabel_confusion_matrix, roc_auc_score

from pipeline.clinical.bootstrap_intervals import (
    nan_mean_rows,
    rates_from_confusion,
    thin_groups,
    weighted_auroc,
    weighted_confusion_matrices,
)
from pipeline.clinical.metrics import (
    DEFAULT_EVALUATION_CONFIG,
    PER_CLASS_METRICS,
    ClassMetrics,
    ClinicalMetrics,
    Estimate,
    EvaluationConfig,
    evaluate_predictions,
)
from pipeline.clinical.operating_points import OperatingPoint, validate_binary_labels, validate_scores
from pipeline.clinical.weighted_bootstrap import (
    bootstrap_replicates,
    estimate,
    estimates,
    undefined_where,
    whole_split_thin,
)
from pipeline.errors import DataError


def two_class_form(scores: np.ndarray, operating_point: OperatingPoint) -> np.ndarray:
    """``(n, 2)`` rows ``[1 − q, q]``: argmax = the thresholded decision, column 1 ranks like ``scores``."""
    scores = np.asarray(scores, dtype=np.float64)
    _, dense_rank = np.unique(scores, return_inverse=True)
    rank_fraction = (dense_rank + 1.0) / (dense_rank.max() + 2.0)  # strictly inside (0, 1), ties kept
    positive = operating_point.decide(scores)
    # Every positive score exceeds every negative one, so the split below keeps the order.
    q = np.where(positive, 0.5 + 0.5 * rank_fraction, 0.5 * rank_fraction)
    return np.stack([1.0 - q, q], axis=1)


@dataclass(frozen=True)
class BinaryMetrics:
    """Metrics of one sigmoid output at its operating point."""

    operating_point: OperatingPoint  # chosen on calibration data, applied unchanged to the test split
    metrics: ClinicalMetrics  # the two classes (negative, positive) at that threshold

    @property
    def positive(self) -> ClassMetrics:
        """Sensitivity, specificity, PPV, F1 and AUROC of the positive class, with CIs."""
        return self.metrics.per_class[1]

    def to_dict(self) -> dict:
        return {"operating_point": self.operating_point.to_dict(), "metrics": self.metrics.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> BinaryMetrics:
        return cls(OperatingPoint.from_dict(data["operating_point"]), ClinicalMetrics.from_dict(data["metrics"]))


def evaluate_binary(
    labels: np.ndarray,
    scores: np.ndarray,
    operating_point: OperatingPoint,
    class_names: Sequence[str] = ("negative", "positive"),
    config: EvaluationConfig = DEFAULT_EVALUATION_CONFIG,
    groups: np.ndarray | None = None,
) -> BinaryMetrics:
    """Metrics of ``scores`` (n,) against 0/1 ``labels`` (n,) at ``operating_point``; names are (negative, positive)."""
    labels = validate_binary_labels(labels)
    if labels.ndim != 1:
        raise DataError(
            f"labels have shape {labels.shape}",
            expected="a 1-D array, one 0/1 label per sample",
            fix="for several independent labels use evaluate_multilabel",
        )
    scores = validate_scores(scores, labels.shape)
    metrics = evaluate_predictions(
        labels.astype(np.int64), two_class_form(scores, operating_point), class_names, config, groups
    )
    return BinaryMetrics(operating_point=operating_point, metrics=metrics)


@dataclass(frozen=True)
class MultilabelMetrics:
    """Per-label metrics of independent sigmoid outputs, each at its own operating point."""

    label_names: tuple[str, ...]
    samples: int
    operating_points: tuple[OperatingPoint, ...]  # one per label, in label order
    macro_f1: Estimate  # mean of the per-label F1 that are defined
    per_label: tuple[ClassMetrics, ...]  # support = samples carrying the label

    def label_metrics(self, name: str) -> ClassMetrics:
        for metrics in self.per_label:
            if metrics.name == name:
                return metrics
        raise DataError(
            f"no metrics for label {name!r}",
            expected=f"one of {list(self.label_names)}",
            fix="use a label name from the scenario's label names",
        )

    def to_dict(self) -> dict:
        return {
            "label_names": list(self.label_names),
            "samples": self.samples,
            "operating_points": [point.to_dict() for point in self.operating_points],
            "macro_f1": self.macro_f1.to_dict(),
            "per_label": [metrics.to_dict() for metrics in self.per_label],
        }

    @classmethod
    def from_dict(cls, data: dict) -> MultilabelMetrics:
        return cls(
            label_names=tuple(str(name) for name in data["label_names"]),
            samples=int(data["samples"]),
            operating_points=tuple(OperatingPoint.from_dict(item) for item in data["operating_points"]),
            macro_f1=Estimate.from_dict(data["macro_f1"]),
            per_label=tuple(ClassMetrics.from_dict(item) for item in data["per_label"]),
        )


def _validate_multilabel(
    labels: np.ndarray, scores: np.ndarray, operating_points: Sequence[OperatingPoint], label_names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    names = tuple(str(name) for name in label_names)
    labels = validate_binary_labels(labels)
    if not names or len(set(names)) != len(names) or labels.ndim != 2 or labels.shape[1] != len(names):
        raise DataError(
            f"labels have shape {labels.shape} for label names {list(names)}",
            expected="distinct label names and a 2-D 0/1 array (samples, labels), one column per name",
            fix="pass the multi-hot label matrix and the scenario's label names",
        )
    if len(operating_points) != len(names):
        raise DataError(
            f"{len(operating_points)} operating points for {len(names)} labels",
            expected="one operating point per label, in label order",
            fix="choose them with choose_operating_thresholds on the calibration split",
        )
    return labels, validate_scores(scores, labels.shape), names


def _positive_class_rates(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Sensitivity, specificity, PPV and F1 of class 1 of a stack of 2 × 2 confusion matrices ``(..., 2, 2)``."""
    rates = rates_from_confusion(confusion)
    return {metric: rates[metric][..., 1] for metric in ("sensitivity", "specificity", "ppv", "f1")}


def _point_auroc(positive: np.ndarray, scores: np.ndarray) -> float:
    return float(roc_auc_score(positive, scores)) if 0 < positive.sum() < positive.size else math.nan


def _replicate_statistic(labels: np.ndarray, scores: np.ndarray, decisions: np.ndarray):
    def statistic(weights: np.ndarray) -> dict[str, np.ndarray]:
        confusion = np.stack(
            [weighted_confusion_matrices(labels[:, j], decisions[:, j], weights, 2) for j in range(labels.shape[1])],
            axis=1,
        )  # (replicates, labels, 2, 2)
        rates = _positive_class_rates(confusion)
        rates["auroc"] = np.stack(
            [weighted_auroc(labels[:, j], scores[:, j], weights) for j in range(labels.shape[1])], axis=1
        )
        rates["macro_f1"] = nan_mean_rows(rates["f1"])
        return rates

    return statistic


def evaluate_multilabel(
    labels: np.ndarray,
    scores: np.ndarray,
    operating_points: Sequence[OperatingPoint],
    label_names: Sequence[str],
    config: EvaluationConfig = DEFAULT_EVALUATION_CONFIG,
    groups: np.ndarray | None = None,
) -> MultilabelMetrics:
    """Per-label metrics of ``scores`` (n, L) against multi-hot ``labels`` (n, L), each label at its threshold."""
    labels, scores, names = _validate_multilabel(labels, scores, operating_points, label_names)
    decisions = np.stack([point.decide(scores[:, j]) for j, point in enumerate(operating_points)], axis=1)
    confusion = multilabel_confusion_matrix(labels, decisions)  # (labels, 2, 2), rows true, columns predicted
    point = _positive_class_rates(confusion)
    point["auroc"] = np.array([_point_auroc(labels[:, j], scores[:, j]) for j in range(len(names))])
    macro_f1 = float(f1_score(labels, decisions, average="macro", zero_division=np.nan))
    replicates = bootstrap_replicates(
        labels.shape[0], config.bootstrap_samples, config.seed, _replicate_statistic(labels, scores, decisions),
        groups,
    )
    own = labels.T == 1  # (labels, n): each label's positive samples
    thin_own, thin_other = thin_groups(groups, own), thin_groups(groups, ~own)
    blank = {"sensitivity": thin_own, "ppv": thin_own, "f1": thin_own, "specificity": thin_other,
             "auroc": thin_own | thin_other}
    per_metric = {
        metric: undefined_where(estimates(point[metric], replicates[metric], config.confidence), blank[metric])
        for metric in PER_CLASS_METRICS
    }
    support = labels.sum(axis=0)
    return MultilabelMetrics(
        label_names=names,
        samples=int(labels.shape[0]),
        operating_points=tuple(operating_points),
        macro_f1=undefined_where([estimate(macro_f1, replicates["macro_f1"], config.confidence)],
                                 [whole_split_thin(groups, labels.shape[0])])[0],
        per_label=tuple(
            ClassMetrics(name=name, support=int(support[j]), **{m: per_metric[m][j] for m in PER_CLASS_METRICS})
            for j, name in enumerate(names)
        ),
    )
