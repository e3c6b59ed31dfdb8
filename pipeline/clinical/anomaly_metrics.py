"""Clinical metrics of an anomaly score (higher = more anomalous) at a false-alarm-rate threshold.

The threshold comes from :func:`pipeline.clinical.operating_points.threshold_at_false_alarm_rate`
on normal calibration data (alarm when score ≥ threshold, as on the device). Two evaluations:

* **With labelled anomalies** (``evaluate_anomaly_detection``): AUROC (anomaly = positive),
  sensitivity at the threshold (share of anomalies that alarm) and the false-alarm rate
  the threshold actually achieves on the normal test samples, each with a percentile
  bootstrap interval.
* **Without labels** (``evaluate_alarm_agreement``): on held-out normal data, how often a
  variant's alarms agree with the fp32 reference's (both alarm or both stay silent), and
  both false-alarm rates, with intervals over the same resamples. Evaluating fp32 against
  itself gives the reference record the gate compares with.

Undefined values (sensitivity without anomalies, false-alarm rate without normals, AUROC
without both) are NaN in memory and ``None`` in JSON.

This module must not import tensorflow, keras or onnx.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score

from pipeline.clinical.bootstrap_intervals import safe_divide, thin_groups, weighted_auroc
from pipeline.clinical.metrics import DEFAULT_EVALUATION_CONFIG, Estimate, EvaluationConfig
from pipeline.clinical.operating_points import AlarmThreshold, validate_binary_labels, validate_scores
from pipeline.clinical.weighted_bootstrap import (
    bootstrap_replicates,
    estimate,
    undefined_where,
    weighted_means,
    whole_split_thin,
)
from pipeline.errors import DataError

DETECTION_METRICS = ("auroc", "sensitivity", "false_alarm_rate")
AGREEMENT_METRICS = ("agreement", "reference_false_alarm_rate", "candidate_false_alarm_rate")


@dataclass(frozen=True)
class AnomalyMetrics:
    """Detection metrics on a test split with labelled anomalies."""

    samples: int
    anomalies: int  # labelled anomalous samples in the test split
    alarm_threshold: AlarmThreshold  # chosen on normal calibration data
    auroc: Estimate  # anomaly versus normal, from the raw score
    sensitivity: Estimate  # share of anomalies with score ≥ threshold
    false_alarm_rate: Estimate  # share of normal test samples with score ≥ threshold (achieved, not configured)

    def to_dict(self) -> dict:
        data: dict = {
            "samples": self.samples,
            "anomalies": self.anomalies,
            "alarm_threshold": self.alarm_threshold.to_dict(),
        }
        data.update({metric: getattr(self, metric).to_dict() for metric in DETECTION_METRICS})
        return data

    @classmethod
    def from_dict(cls, data: dict) -> AnomalyMetrics:
        return cls(
            samples=int(data["samples"]),
            anomalies=int(data["anomalies"]),
            alarm_threshold=AlarmThreshold.from_dict(data["alarm_threshold"]),
            **{metric: Estimate.from_dict(data[metric]) for metric in DETECTION_METRICS},
        )


def evaluate_anomaly_detection(
    labels: np.ndarray,
    scores: np.ndarray,
    alarm_threshold: AlarmThreshold,
    config: EvaluationConfig = DEFAULT_EVALUATION_CONFIG,
    groups: np.ndarray | None = None,
) -> AnomalyMetrics:
    """AUROC, sensitivity and achieved false-alarm rate of ``scores`` against 0/1 ``labels`` (1 = anomaly)."""
    labels = validate_binary_labels(labels, "anomaly labels")
    if labels.ndim != 1:
        raise DataError(
            f"anomaly labels have shape {labels.shape}",
            expected="a 1-D array, one 0/1 label per sample (1 = anomaly)",
            fix="pass one label per scored sample",
        )
    scores = validate_scores(scores, labels.shape)
    alarms = alarm_threshold.decide(scores)
    both_classes = 0 < labels.sum() < labels.size
    point = {
        "auroc": float(roc_auc_score(labels, scores)) if both_classes else math.nan,
        "sensitivity": float(safe_divide((alarms & labels).sum(), labels.sum())),
        "false_alarm_rate": float(safe_divide((alarms & ~labels).sum(), (~labels).sum())),
    }
    anomalous, alarmed_anomaly, alarmed_normal = (
        labels.astype(np.float64),
        (alarms & labels).astype(np.float64),
        (alarms & ~labels).astype(np.float64),
    )

    def statistic(weights: np.ndarray) -> dict[str, np.ndarray]:
        anomaly_weight = anomalous @ weights
        return {
            "auroc": weighted_auroc(labels, scores, weights),
            "sensitivity": safe_divide(alarmed_anomaly @ weights, anomaly_weight),
            "false_alarm_rate": safe_divide(alarmed_normal @ weights, weights.sum(axis=0) - anomaly_weight),
        }

    replicates = bootstrap_replicates(labels.shape[0], config.bootstrap_samples, config.seed, statistic, groups)
    return AnomalyMetrics(
        samples=int(labels.shape[0]),
        anomalies=int(labels.sum()),
        alarm_threshold=alarm_threshold,
        **{metric: undefined_where([estimate(point[metric], replicates[metric], config.confidence)], [blank])[0]
           for metric, blank in _thin_detection(labels, groups).items()},
    )


def _thin_detection(labels: np.ndarray, groups: np.ndarray | None) -> dict[str, bool]:
    """Which detection intervals the groups cannot support (``thin_groups``): sensitivity needs the anomalies to span
    two groups, the false-alarm rate the normal samples, AUROC both."""
    thin_anomalies, thin_normals = (bool(flag) for flag in thin_groups(groups, np.stack([labels, ~labels])))
    return {"auroc": thin_anomalies or thin_normals, "sensitivity": thin_anomalies, "false_alarm_rate": thin_normals}


@dataclass(frozen=True)
class AlarmAgreement:
    """How a variant's alarms on held-out normal data compare with the reference's (no labels needed)."""

    samples: int  # held-out normal samples
    reference_threshold: AlarmThreshold
    candidate_threshold: AlarmThreshold
    agreement: Estimate  # share of samples where both alarm or both stay silent
    reference_false_alarm_rate: Estimate  # share of samples the reference alarms on
    candidate_false_alarm_rate: Estimate  # share of samples the candidate alarms on
    shared_alarms: int  # samples on which both alarm

    def to_dict(self) -> dict:
        data: dict = {
            "samples": self.samples,
            "reference_threshold": self.reference_threshold.to_dict(),
            "candidate_threshold": self.candidate_threshold.to_dict(),
            "shared_alarms": self.shared_alarms,
        }
        data.update({metric: getattr(self, metric).to_dict() for metric in AGREEMENT_METRICS})
        return data

    @classmethod
    def from_dict(cls, data: dict) -> AlarmAgreement:
        return cls(
            samples=int(data["samples"]),
            reference_threshold=AlarmThreshold.from_dict(data["reference_threshold"]),
            candidate_threshold=AlarmThreshold.from_dict(data["candidate_threshold"]),
            shared_alarms=int(data["shared_alarms"]),
            **{metric: Estimate.from_dict(data[metric]) for metric in AGREEMENT_METRICS},
        )


def evaluate_alarm_agreement(
    reference_scores: np.ndarray,
    candidate_scores: np.ndarray,
    reference_threshold: AlarmThreshold,
    candidate_threshold: AlarmThreshold,
    config: EvaluationConfig = DEFAULT_EVALUATION_CONFIG,
    groups: np.ndarray | None = None,
) -> AlarmAgreement:
    """Agreement of the candidate's alarms with the reference's on the same held-out normal samples."""
    reference_scores = np.asarray(reference_scores)
    if reference_scores.ndim != 1 or reference_scores.shape[0] == 0:
        raise DataError(
            f"reference scores have shape {reference_scores.shape}",
            expected="a non-empty 1-D array, one anomaly score per held-out normal sample",
            fix="score the held-out normal split with the reference model",
        )
    reference_scores = validate_scores(reference_scores, reference_scores.shape, "reference scores")
    candidate_scores = validate_scores(candidate_scores, reference_scores.shape, "candidate scores")
    reference_alarms = reference_threshold.decide(reference_scores)
    candidate_alarms = candidate_threshold.decide(candidate_scores)
    indicators = np.stack([reference_alarms == candidate_alarms, reference_alarms, candidate_alarms], axis=1).astype(
        np.float64
    )
    point = indicators.mean(axis=0)

    def statistic(weights: np.ndarray) -> dict[str, np.ndarray]:
        means = weighted_means(indicators, weights)
        return {metric: means[:, column] for column, metric in enumerate(AGREEMENT_METRICS)}

    replicates = bootstrap_replicates(indicators.shape[0], config.bootstrap_samples, config.seed, statistic,
                                      groups)
    return AlarmAgreement(
        samples=int(indicators.shape[0]),
        reference_threshold=reference_threshold,
        candidate_threshold=candidate_threshold,
        shared_alarms=int((reference_alarms & candidate_alarms).sum()),
        **{
            metric: undefined_where([estimate(float(point[column]), replicates[metric], config.confidence)],
                                    [whole_split_thin(groups, indicators.shape[0])])[0]
            for column, metric in enumerate(AGREEMENT_METRICS)
        },
    )
