"""The clinical gate for binary, multilabel and anomaly outputs.

Each rule compares a candidate variant's point estimates with the fp32 reference's on the
same test split, in percentage points (1 pt = 0.01), like the multiclass gate in
:mod:`pipeline.clinical.gate`; improvements always pass, and every verdict is a
``GateVerdict`` recording the rule, the numbers and a one-line reason.

* **binary**: at each variant's operating point, sensitivity and specificity may drop at most
  ``max_sensitivity_drop_points`` / ``max_specificity_drop_points``, AUROC at most
  ``max_auroc_drop_points``. All three must be defined for the reference.
* **multilabel**: macro-F1 may drop at most ``max_macro_f1_drop_points``; every label's
  sensitivity, specificity and AUROC at most their limits (a label whose value is
  undefined for the reference is reported, not judged, as in the multiclass gate).
* **anomaly, labelled**: AUROC and sensitivity at the configured false-alarm rate may drop
  at most their limits; the achieved false-alarm rate may rise at most
  ``max_false_alarm_rate_rise_points``. Both variants must use the same configured rate.
* **anomaly, unlabelled**: on held-out normal data the candidate's alarms must agree with
  fp32's on all but ``max_alarm_disagreement_points`` of the samples, and its false-alarm
  rate may rise at most ``max_false_alarm_rate_rise_points`` over fp32's.
* **regression**: see :mod:`pipeline.clinical.regression_gate`; one dispatch over every kind in
  :mod:`pipeline.clinical.task_dispatch`.

A value defined for the reference but undefined (NaN) for the candidate fails.

This module must not import tensorflow, keras or onnx.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from pipeline.clinical.anomaly_metrics import AlarmAgreement, AnomalyMetrics
from pipeline.clinical.gate import (
    POINTS_TOLERANCE,
    GateVerdict,
    check_same_split,
    compare_points,
    points_violation,
    signed_points,
    validate_points_limits,
)
from pipeline.clinical.thresholded_metrics import BinaryMetrics, MultilabelMetrics
from pipeline.errors import DataError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BinaryGateConfig:
    """Largest tolerated drops of a binary output versus the reference, in percentage points."""

    max_sensitivity_drop_points: float = 2.0  # sensitivity at the operating point may fall at most 2 pt
    max_specificity_drop_points: float = 2.0  # specificity too: a sensitivity-target threshold shows damage here
    max_auroc_drop_points: float = 1.0  # the threshold-free ranking may fall at most 1 pt

    def __post_init__(self) -> None:
        validate_points_limits(self, tuple(self.__dataclass_fields__))


DEFAULT_BINARY_GATE_CONFIG = BinaryGateConfig()


@dataclass(frozen=True)
class MultilabelGateConfig:
    """Largest tolerated drops of a multilabel output versus the reference, in percentage points."""

    max_macro_f1_drop_points: float = 1.0  # macro-F1 over labels may fall at most 1 pt
    max_sensitivity_drop_points: float = 2.0  # no label's sensitivity may fall more than 2 pt
    max_specificity_drop_points: float = 2.0  # no label's specificity may fall more than 2 pt
    max_auroc_drop_points: float = 1.0  # no label's AUROC may fall more than 1 pt

    def __post_init__(self) -> None:
        validate_points_limits(self, tuple(self.__dataclass_fields__))


DEFAULT_MULTILABEL_GATE_CONFIG = MultilabelGateConfig()


@dataclass(frozen=True)
class AnomalyGateConfig:
    """Largest tolerated changes of an anomaly score versus the reference, in percentage points."""

    max_auroc_drop_points: float = 1.0  # labelled: AUROC may fall at most 1 pt
    max_sensitivity_drop_points: float = 2.0  # labelled: sensitivity at the configured false-alarm rate, 2 pt
    max_false_alarm_rate_rise_points: float = 1.0  # achieved false-alarm rate may rise at most 1 pt (1 % → 2 %)
    # Unlabelled: alarms may differ from fp32's on at most 0.5 % of held-out normal samples. Keep this well
    # below 2 × the false-alarm rate: two unrelated alarm sets at rate r already differ on about 2r.
    max_alarm_disagreement_points: float = 0.5

    def __post_init__(self) -> None:
        validate_points_limits(self, tuple(self.__dataclass_fields__))


DEFAULT_ANOMALY_GATE_CONFIG = AnomalyGateConfig()


def _json_number(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _compare_rise(reference: float, candidate: float) -> dict:
    """Reference, candidate and rise in points (positive = worse, for rates that should stay low)."""
    return {
        "reference": _json_number(reference),
        "candidate": _json_number(candidate),
        "rise_points": _json_number((candidate - reference) * 100.0),
    }


def _required(label: str, comparison: dict, limit: float) -> str | None:
    """Like ``points_violation``, but a value undefined for the reference is itself a violation."""
    if comparison["reference"] is None:
        return f"{label} is undefined for the reference"
    return points_violation(label, comparison, limit)


def _rise_violation(label: str, comparison: dict, limit: float) -> str | None:
    reference, candidate, rise = comparison["reference"], comparison["candidate"], comparison["rise_points"]
    if reference is None:
        return f"{label} is undefined for the reference"
    if candidate is None:
        return f"{label} is undefined for the candidate (reference {reference * 100:.2f} %)"
    if rise > limit + POINTS_TOLERANCE:
        return f"{label} rose {rise:.2f} pt (limit {limit})"
    return None


def _verdict(variant: str, violations: list[str | None], passed_reason: str, rule: str, numbers: dict) -> GateVerdict:
    failures = [violation for violation in violations if violation is not None]
    reason = "failed: " + "; ".join(failures) if failures else "passed: " + passed_reason
    logger.info("gate %s: %s", variant, reason)
    return GateVerdict(variant=variant, passed=not failures, rule=rule, numbers=numbers, reason=reason)


def _change(comparison: dict) -> str:
    if "rise_points" in comparison:
        rise = comparison["rise_points"]
        return "undefined" if rise is None else signed_points(-rise)
    drop = comparison["drop_points"]
    return "undefined" if drop is None else signed_points(drop)


def _worst(comparisons: dict[str, dict]) -> str:
    defined = [(name, item["drop_points"]) for name, item in comparisons.items() if item["drop_points"] is not None]
    if not defined:
        return "undefined"
    name, drop = max(defined, key=lambda pair: pair[1])
    return f"{signed_points(drop)} ({name})"


def judge_binary_variant(
    variant: str,
    reference: BinaryMetrics,
    candidate: BinaryMetrics,
    config: BinaryGateConfig = DEFAULT_BINARY_GATE_CONFIG,
    *,
    reference_name: str = "fp32",
) -> GateVerdict:
    """Judge ``candidate`` against ``reference``, each at its own operating point, on the same test split."""
    check_same_split(reference.metrics, candidate.metrics)
    ref, cand = reference.positive, candidate.positive
    numbers = {
        "threshold": {
            "reference": reference.operating_point.threshold,
            "candidate": candidate.operating_point.threshold,
        },
        **{
            metric: compare_points(getattr(ref, metric).value, getattr(cand, metric).value)
            for metric in ("sensitivity", "specificity", "auroc")
        },
    }
    violations = [
        _required("sensitivity", numbers["sensitivity"], config.max_sensitivity_drop_points),
        _required("specificity", numbers["specificity"], config.max_specificity_drop_points),
        _required("AUROC", numbers["auroc"], config.max_auroc_drop_points),
    ]
    passed = ", ".join(
        f"{label} {_change(numbers[metric])}"
        for metric, label in (("sensitivity", "sensitivity"), ("specificity", "specificity"), ("auroc", "AUROC"))
    )
    rule = (
        f"at each variant's operating point ({reference.operating_point.rule}), drops of sensitivity ≤ "
        f"{config.max_sensitivity_drop_points} pt, specificity ≤ {config.max_specificity_drop_points} pt and "
        f"AUROC ≤ {config.max_auroc_drop_points} pt versus {reference_name}"
    )
    return _verdict(variant, violations, passed, rule, numbers)


def _check_same_labels(reference: MultilabelMetrics, candidate: MultilabelMetrics) -> None:
    reference_support = [metrics.support for metrics in reference.per_label]
    candidate_support = [metrics.support for metrics in candidate.per_label]
    if (reference.label_names, reference.samples, reference_support) != (
        candidate.label_names,
        candidate.samples,
        candidate_support,
    ):
        raise DataError(
            f"evaluations differ: reference has {reference.samples} samples of {list(reference.label_names)} "
            f"{reference_support}, candidate {candidate.samples} samples of {list(candidate.label_names)} "
            f"{candidate_support}",
            expected="both variants evaluated on the same test split with the same label names",
            fix="evaluate every variant with the scenario's label names on the same test split",
        )


def judge_multilabel_variant(
    variant: str,
    reference: MultilabelMetrics,
    candidate: MultilabelMetrics,
    config: MultilabelGateConfig = DEFAULT_MULTILABEL_GATE_CONFIG,
    *,
    reference_name: str = "fp32",
) -> GateVerdict:
    """Judge ``candidate`` against ``reference``, each label at each variant's own threshold."""
    _check_same_labels(reference, candidate)
    limits = {
        "sensitivity": config.max_sensitivity_drop_points,
        "specificity": config.max_specificity_drop_points,
        "auroc": config.max_auroc_drop_points,
    }
    numbers: dict = {
        "macro_f1": compare_points(reference.macro_f1.value, candidate.macro_f1.value),
        **{
            metric: {
                ref.name: compare_points(getattr(ref, metric).value, getattr(cand, metric).value)
                for ref, cand in zip(reference.per_label, candidate.per_label, strict=True)
            }
            for metric in limits
        },
    }
    violations = [_required("macro-F1", numbers["macro_f1"], config.max_macro_f1_drop_points)]
    for metric, limit in limits.items():
        label = "AUROC" if metric == "auroc" else metric
        violations += [
            points_violation(f"{label} of {name}", comparison, limit) for name, comparison in numbers[metric].items()
        ]
    passed = f"macro-F1 {_change(numbers['macro_f1'])}, " + ", ".join(
        f"worst {'AUROC' if metric == 'auroc' else metric} {_worst(numbers[metric])}" for metric in limits
    )
    rule = (
        f"macro-F1 drop ≤ {config.max_macro_f1_drop_points} pt and, for every label at its operating point "
        f"({reference.operating_points[0].rule}), "
        f"drops of sensitivity ≤ {config.max_sensitivity_drop_points} pt, specificity ≤ "
        f"{config.max_specificity_drop_points} pt and AUROC ≤ {config.max_auroc_drop_points} pt "
        f"versus {reference_name}"
    )
    return _verdict(variant, violations, passed, rule, numbers)


def _judge_detection(
    variant: str, reference: AnomalyMetrics, candidate: AnomalyMetrics, config: AnomalyGateConfig, reference_name: str
) -> GateVerdict:
    ref_rate, cand_rate = reference.alarm_threshold.false_alarm_rate, candidate.alarm_threshold.false_alarm_rate
    if (reference.samples, reference.anomalies, ref_rate) != (candidate.samples, candidate.anomalies, cand_rate):
        raise DataError(
            f"evaluations differ: reference has {reference.samples} samples ({reference.anomalies} anomalies) at "
            f"false-alarm rate {ref_rate}, candidate {candidate.samples} ({candidate.anomalies}) at {cand_rate}",
            expected="both variants evaluated on the same labelled test split at the same configured false-alarm rate",
            fix="choose every variant's threshold with the same rate and evaluate on the reference's test split",
        )
    numbers = {
        "threshold": {
            "reference": reference.alarm_threshold.threshold,
            "candidate": candidate.alarm_threshold.threshold,
        },
        "auroc": compare_points(reference.auroc.value, candidate.auroc.value),
        "sensitivity": compare_points(reference.sensitivity.value, candidate.sensitivity.value),
        "false_alarm_rate": _compare_rise(reference.false_alarm_rate.value, candidate.false_alarm_rate.value),
    }
    violations = [
        _required("AUROC", numbers["auroc"], config.max_auroc_drop_points),
        _required("sensitivity", numbers["sensitivity"], config.max_sensitivity_drop_points),
        _rise_violation("false-alarm rate", numbers["false_alarm_rate"], config.max_false_alarm_rate_rise_points),
    ]
    passed = (
        f"AUROC {_change(numbers['auroc'])}, sensitivity {_change(numbers['sensitivity'])}, "
        f"false-alarm rate {_change(numbers['false_alarm_rate'])}"
    )
    rule = (
        f"at each variant's threshold for false-alarm rate {ref_rate:g}, drops of AUROC ≤ "
        f"{config.max_auroc_drop_points} pt and sensitivity ≤ {config.max_sensitivity_drop_points} pt, and a "
        f"false-alarm-rate rise ≤ {config.max_false_alarm_rate_rise_points} pt versus {reference_name}"
    )
    return _verdict(variant, violations, passed, rule, numbers)


def _judge_agreement(
    variant: str, reference: AlarmAgreement, candidate: AlarmAgreement, config: AnomalyGateConfig, reference_name: str
) -> GateVerdict:
    if reference.samples != candidate.samples or reference.reference_threshold != candidate.reference_threshold:
        raise DataError(
            f"alarm agreements differ: reference on {reference.samples} samples at threshold "
            f"{reference.reference_threshold.threshold}, candidate on {candidate.samples} at "
            f"{candidate.reference_threshold.threshold}",
            expected=f"both measured against {reference_name}'s alarms on the same held-out normal samples",
            fix=f"evaluate {reference_name} against itself and each variant against {reference_name} on one split",
        )
    numbers = {
        "samples": candidate.samples,
        "threshold": {
            "reference": candidate.reference_threshold.threshold,
            "candidate": candidate.candidate_threshold.threshold,
        },
        "agreement": compare_points(reference.agreement.value, candidate.agreement.value),
        "false_alarm_rate": _compare_rise(
            candidate.reference_false_alarm_rate.value, candidate.candidate_false_alarm_rate.value
        ),
    }
    violations = [
        _required("alarm agreement", numbers["agreement"], config.max_alarm_disagreement_points),
        _rise_violation("false-alarm rate", numbers["false_alarm_rate"], config.max_false_alarm_rate_rise_points),
    ]
    passed = (
        f"alarms agree on {candidate.agreement.value:.2%} of {candidate.samples} held-out normal samples, "
        f"false-alarm rate {_change(numbers['false_alarm_rate'])}"
    )
    rule = (
        f"on held-out normal data, alarm agreement with {reference_name} drops ≤ "
        f"{config.max_alarm_disagreement_points} pt and the false-alarm rate rises ≤ "
        f"{config.max_false_alarm_rate_rise_points} pt versus {reference_name}"
    )
    return _verdict(variant, violations, passed, rule, numbers)


def judge_anomaly_variant(
    variant: str,
    reference: AnomalyMetrics | AlarmAgreement,
    candidate: AnomalyMetrics | AlarmAgreement,
    config: AnomalyGateConfig = DEFAULT_ANOMALY_GATE_CONFIG,
    *,
    reference_name: str = "fp32",
) -> GateVerdict:
    """Labelled metrics → the detection rule; alarm agreements (fp32 against itself as reference) → agreement."""
    if isinstance(reference, AnomalyMetrics) and isinstance(candidate, AnomalyMetrics):
        return _judge_detection(variant, reference, candidate, config, reference_name)
    if isinstance(reference, AlarmAgreement) and isinstance(candidate, AlarmAgreement):
        return _judge_agreement(variant, reference, candidate, config, reference_name)
    raise DataError(
        f"reference is {type(reference).__name__} but candidate is {type(candidate).__name__}",
        expected="both AnomalyMetrics (labelled test split) or both AlarmAgreement (held-out normal data)",
        fix="evaluate every variant the same way",
    )
