"""Decision thresholds for score outputs, chosen by a typed rule on validation or calibration data.

Every threshold is applied as *score ≥ threshold*, as the device does (``runtime.decide``,
``BinaryRule`` / ``MultilabelRule`` / ``AnomalyRule`` of ``runtime.contract``); each result
type carries its ``decide`` and the rule in words for the contract's ``chosen_by``.

* **Binary / multilabel** (``OperatingPoint``): a sample is positive when score ≥ threshold
  (scikit-learn's ``roc_curve`` convention). Candidate thresholds are the observed scores.
  - ``TargetSensitivity(t)``: the *highest* threshold whose sensitivity is ≥ t (the most
    specific operating point that still catches the target share of positives);
  - ``TargetSpecificity(t)``: the *lowest* threshold whose specificity is ≥ t (the most
    sensitive operating point that still clears the target share of negatives);
  - ``YoudenIndex()``: the threshold maximising sensitivity + specificity − 1; ties go to
    the highest such threshold;
  - ``MaxF1()``: the threshold maximising the positive class's F1 = 2·TP / (2·TP + FP + FN)
    (sensitivity and positive predictivity weigh alike; the prevalence of the data counts, unlike
    Youden's J); ties go to the highest such threshold.
  A rule that only "flagging nothing" would meet, or data without both classes, raises
  ``ThresholdRuleError``.

* **Anomaly** (``AlarmThreshold``): a sample alarms when score ≥ threshold. The threshold at
  false-alarm rate ``r`` on ``n`` normal scores is the ``k``-th largest normal score with
  ``k = ⌊r·n⌋`` (for untied scores, numpy's ``quantile(scores, 1 − k/n, method="higher")``),
  so exactly ``k`` normal samples (a share ≤ r) alarm. When normal scores tie across that
  position the threshold moves up to the next higher normal score (or just above the
  largest), so ties only lower the achieved rate. Resolving ``r`` takes at least ``⌈1/r⌉``
  normal samples (one allowed alarm); fewer raise ``ThresholdRuleError``.

This module must not import tensorflow, keras or onnx.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real

import numpy as np
from sklearn.metrics import roc_curve

from pipeline.errors import DataError, ThresholdRuleError

# Rates within this of a target count as meeting it (k/n in floating point versus a decimal target).
RATE_TOLERANCE = 1e-12


def _check_target(rule: str, target: float) -> None:
    if isinstance(target, bool) or not isinstance(target, Real) or not 0.0 < target <= 1.0:
        raise DataError(
            f"{rule} target is {target!r}",
            expected="a fraction in (0, 1], e.g. 0.95",
            fix="give the target as a fraction, not a percentage",
        )


@dataclass(frozen=True)
class TargetSensitivity:
    """The highest threshold whose sensitivity on the calibration data is ≥ ``target``."""

    target: float = 0.95  # catch at least 95 % of positives, the usual screening operating point

    def __post_init__(self) -> None:
        _check_target("TargetSensitivity", self.target)

    def describe(self) -> str:
        return f"highest threshold with sensitivity ≥ {self.target}"

    def to_dict(self) -> dict:
        return {"rule": "target_sensitivity", "target": self.target}


@dataclass(frozen=True)
class TargetSpecificity:
    """The lowest threshold whose specificity on the calibration data is ≥ ``target``."""

    target: float = 0.95  # clear at least 95 % of negatives, i.e. at most 5 % false positives

    def __post_init__(self) -> None:
        _check_target("TargetSpecificity", self.target)

    def describe(self) -> str:
        return f"lowest threshold with specificity ≥ {self.target}"

    def to_dict(self) -> dict:
        return {"rule": "target_specificity", "target": self.target}


@dataclass(frozen=True)
class YoudenIndex:
    """The threshold maximising Youden's J = sensitivity + specificity − 1 (ties: the highest)."""

    def describe(self) -> str:
        return "threshold maximising Youden's J = sensitivity + specificity − 1 (ties: highest threshold)"

    def to_dict(self) -> dict:
        return {"rule": "youden_index"}


@dataclass(frozen=True)
class MaxF1:
    """The threshold maximising the positive class's F1 (ties: the highest)."""

    def describe(self) -> str:
        return "threshold maximising the positive class's F1 = 2·TP / (2·TP + FP + FN) (ties: highest threshold)"

    def to_dict(self) -> dict:
        return {"rule": "max_f1"}


ThresholdRule = TargetSensitivity | TargetSpecificity | YoudenIndex | MaxF1
_RULES = {"target_sensitivity": TargetSensitivity, "target_specificity": TargetSpecificity, "youden_index": YoudenIndex,
          "max_f1": MaxF1}


def threshold_rule_from_dict(data: dict) -> ThresholdRule:
    """The rule written by ``to_dict``; unknown names raise ``DataError`` listing the known ones."""
    name = data.get("rule")
    if name not in _RULES:
        raise DataError(
            f"unknown threshold rule {name!r}",
            expected=f"one of {sorted(_RULES)}",
            fix="write the rule as {'rule': 'target_sensitivity', 'target': 0.95} or {'rule': 'youden_index'}",
        )
    return _RULES[name](**{key: value for key, value in data.items() if key != "rule"})


@dataclass(frozen=True)
class OperatingPoint:
    """A binary decision threshold (positive when score ≥ threshold) and what it achieved where it was chosen."""

    threshold: float
    rule: str  # the rule in words, with its target
    sensitivity: float  # on the calibration data
    specificity: float  # on the calibration data
    positives: int  # calibration samples of each class
    negatives: int

    def decide(self, scores: np.ndarray) -> np.ndarray:
        """Boolean decisions: True where score ≥ threshold."""
        return np.asarray(scores) >= self.threshold

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict) -> OperatingPoint:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})


def validate_binary_labels(labels: np.ndarray, what: str = "labels") -> np.ndarray:
    """``labels`` as a bool array; they must be 0/1 (or bool), at least 1-D and non-empty."""
    labels = np.asarray(labels)
    if labels.size == 0 or not (labels.dtype == bool or np.issubdtype(labels.dtype, np.integer)):
        raise DataError(
            f"{what} have shape {labels.shape} and dtype {labels.dtype}",
            expected="a non-empty array of 0/1 integers or booleans",
            fix="pass 1 for positive (or anomalous) samples and 0 for the rest",
        )
    if labels.dtype != bool and not np.isin(labels, (0, 1)).all():
        raise DataError(
            f"{what} contain values other than 0 and 1: {sorted(set(np.unique(labels).tolist()) - {0, 1})[:5]}",
            expected="0/1 labels",
            fix="binarise the labels (1 = positive) before evaluating",
        )
    return labels.astype(bool)


def validate_scores(scores: np.ndarray, shape: tuple[int, ...], what: str = "scores") -> np.ndarray:
    """``scores`` as float64 of exactly ``shape``, finite everywhere."""
    scores = np.asarray(scores)
    if scores.shape != shape:
        raise DataError(
            f"{what} have shape {scores.shape}",
            expected=f"shape {shape}, one score per sample (and per label)",
            fix="pass the model's sigmoid output (or score) for the same samples as the labels",
        )
    if not np.issubdtype(scores.dtype, np.number) or not np.all(np.isfinite(scores)):
        raise DataError(
            f"{what} contain NaN, inf or non-numbers",
            expected="finite scores",
            fix="check the model output (a NaN usually means a broken export or quantization)",
        )
    return scores.astype(np.float64)


def _first(condition: np.ndarray) -> int | None:
    hits = np.flatnonzero(condition)
    return int(hits[0]) if hits.size else None


def _chosen_index(rule: ThresholdRule, true_positive_rate: np.ndarray, false_positive_rate: np.ndarray,
                  positives: int = 0, negatives: int = 0) -> int | None:
    """Index into the (descending) candidate thresholds, or None if no candidate meets the rule."""
    if isinstance(rule, MaxF1):
        true_positives = true_positive_rate * positives
        f1 = 2 * true_positives / (2 * true_positives + false_positive_rate * negatives
                                   + (1.0 - true_positive_rate) * positives)
        if f1.max() <= RATE_TOLERANCE:
            return None  # no threshold catches a single positive before flagging everything
        return _first(f1 >= f1.max() - RATE_TOLERANCE)  # first = highest of the tied thresholds
    if isinstance(rule, TargetSensitivity):
        return _first(true_positive_rate >= rule.target - RATE_TOLERANCE)
    if isinstance(rule, TargetSpecificity):
        meets = np.flatnonzero(1.0 - false_positive_rate >= rule.target - RATE_TOLERANCE)
        return int(meets[-1]) if meets.size else None
    youden = true_positive_rate - false_positive_rate
    if youden.max() <= RATE_TOLERANCE:
        return None  # the scores do not separate the classes at any threshold
    return _first(youden >= youden.max() - RATE_TOLERANCE)  # first = highest of the tied thresholds


def choose_operating_threshold(
    labels: np.ndarray, scores: np.ndarray, rule: ThresholdRule, *, label_name: str = "positive"
) -> OperatingPoint:
    """The threshold ``rule`` picks on calibration ``labels`` (0/1) and ``scores`` (higher = more positive)."""
    labels = validate_binary_labels(labels)
    if labels.ndim != 1:
        raise DataError(
            f"labels have shape {labels.shape}",
            expected="a 1-D array, one 0/1 label per sample",
            fix="for several labels use choose_operating_thresholds",
        )
    scores = validate_scores(scores, labels.shape)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        missing = "positive" if positives == 0 else "negative"
        raise ThresholdRuleError(
            f"cannot choose a threshold for {label_name!r} ({rule.describe()}): the calibration data has "
            f"{positives} positive and {negatives} negative samples",
            expected="at least one positive and one negative sample, so sensitivity and specificity are defined",
            fix=f"choose the threshold on a validation or calibration split that contains {missing} samples",
        )
    # Point 0 of the ROC is "flag nothing" (threshold +inf); it is never an operating point.
    false_positive_rate, true_positive_rate, thresholds = (
        values[1:] for values in roc_curve(labels, scores, drop_intermediate=False)
    )
    index = _chosen_index(rule, true_positive_rate, false_positive_rate, positives, negatives)
    if index is None:
        raise ThresholdRuleError(
            f"no threshold for {label_name!r} meets the rule '{rule.describe()}' on the calibration data "
            f"({positives} positive, {negatives} negative samples; the best specificity at which anything is "
            f"flagged is {1.0 - false_positive_rate[0]:.4f}, the best Youden J "
            f"{(true_positive_rate - false_positive_rate).max():.4f})",
            expected="a threshold that flags at least one sample and meets the rule",
            fix="lower the target, use a larger calibration split, or check that higher scores mean positive",
        )
    return OperatingPoint(
        threshold=float(thresholds[index]),
        rule=rule.describe(),
        sensitivity=float(true_positive_rate[index]),
        specificity=float(1.0 - false_positive_rate[index]),
        positives=positives,
        negatives=negatives,
    )


def choose_operating_thresholds(
    labels: np.ndarray, scores: np.ndarray, rule: ThresholdRule, label_names: Sequence[str]
) -> tuple[OperatingPoint, ...]:
    """One threshold per label of multilabel ``labels`` / ``scores`` (n, L), each by the same ``rule``."""
    labels = validate_binary_labels(labels)
    names = tuple(str(name) for name in label_names)
    if labels.ndim != 2 or labels.shape[1] != len(names):
        raise DataError(
            f"labels have shape {labels.shape} for {len(names)} label names",
            expected=f"a 2-D array (samples, {len(names)}), one 0/1 column per label name",
            fix="pass the multi-hot label matrix and the scenario's label names",
        )
    scores = validate_scores(scores, labels.shape)
    return tuple(
        choose_operating_threshold(labels[:, column], scores[:, column], rule, label_name=name)
        for column, name in enumerate(names)
    )


@dataclass(frozen=True)
class AlarmThreshold:
    """An anomaly threshold (alarm when score ≥ threshold) chosen on normal samples at a false-alarm rate."""

    threshold: float
    false_alarm_rate: float  # the configured rate
    achieved_false_alarm_rate: float  # share of the calibration normals at or above the threshold (≤ the rate)
    normal_samples: int

    @property
    def rule(self) -> str:
        return (
            f"alarm when score ≥ the ⌊{self.false_alarm_rate:g}·n⌋-th largest of n = {self.normal_samples} normal "
            f"calibration scores (false-alarm rate ≤ {self.false_alarm_rate:g})"
        )

    def decide(self, scores: np.ndarray) -> np.ndarray:
        """Boolean alarms: True where score ≥ threshold."""
        return np.asarray(scores) >= self.threshold

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict) -> AlarmThreshold:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})


def threshold_at_false_alarm_rate(normal_scores: np.ndarray, rate: float) -> AlarmThreshold:
    """The alarm threshold at false-alarm ``rate`` on ``normal_scores`` (quantile rule, module docstring)."""
    if isinstance(rate, bool) or not isinstance(rate, Real) or not 0.0 < rate < 1.0:
        raise DataError(
            f"false-alarm rate is {rate!r}",
            expected="a fraction strictly between 0 and 1, e.g. 0.01",
            fix="give the rate as a fraction, not a percentage",
        )
    normal_scores = np.asarray(normal_scores)
    if normal_scores.ndim != 1:
        raise DataError(
            f"normal scores have shape {normal_scores.shape}",
            expected="a 1-D array, one anomaly score per normal sample",
            fix="flatten a (samples, 1) score column with .ravel()",
        )
    normal_scores = validate_scores(normal_scores, normal_scores.shape, "normal scores")
    sample_count = normal_scores.shape[0]
    allowed_alarms = math.floor(rate * sample_count + 1e-9)
    if allowed_alarms < 1:
        needed = math.ceil(1.0 / rate - 1e-9)
        raise ThresholdRuleError(
            f"{sample_count} normal samples cannot resolve a false-alarm rate of {rate}: "
            f"not even one alarm would be allowed",
            expected=f"at least ⌈1/rate⌉ = {needed} normal samples for rate {rate}",
            fix=f"calibrate on at least {needed} normal samples, or raise the false-alarm rate",
        )
    ordered = np.sort(normal_scores)
    threshold = ordered[sample_count - allowed_alarms]  # the k-th largest
    if sample_count - np.searchsorted(ordered, threshold, side="left") > allowed_alarms:  # ties below it alarm too
        higher = ordered[ordered > threshold]
        threshold = higher[0] if higher.size else np.nextafter(threshold, np.inf)
    return AlarmThreshold(
        threshold=float(threshold),
        false_alarm_rate=float(rate),
        achieved_false_alarm_rate=float(np.mean(normal_scores >= threshold)),
        normal_samples=sample_count,
    )
