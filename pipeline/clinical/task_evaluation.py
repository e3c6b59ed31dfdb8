"""Every variant's evaluation by task kind: its decision (threshold), its metrics, and the gate verdict.

One entry point, ``evaluate_task_variants``, behind a table per kind (decision: chosen per variant
on the decision data; metrics: on the test split; gate: what it compares with fp32):

| kind | decision | metrics | gate |
|---|---|---|---|
| multiclass | argmax (nothing to choose) | ``evaluate_predictions`` | macro-F1, per-class sensitivity |
| binary | ``DecisionConfig`` rule, labelled data | ``evaluate_binary`` | sensitivity, specificity, AUROC |
| multilabel | the same rule, per label | ``evaluate_multilabel`` | macro-F1, per-label rates, AUROC |
| regression | none (values with units) | ``evaluate_regression`` | MAE, limits of agreement |
| anomaly | false-alarm rate, normal data | detection metrics (*) | AUROC, sensitivity, false-alarm rate (*) |

(*) with test labels; without them, alarm agreement with fp32 on the test inputs (taken as normal).

Every variant chooses its own threshold on the same decision data with its own scores, as a
device shipping it would be configured; the reference (fp32) must be able to, a candidate that
cannot fails the gate. Which data is the decision data is the caller's (``pipeline.splits``).

This module must not import tensorflow, keras or onnx.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from numbers import Real

import numpy as np

from pipeline.clinical.anomaly_metrics import (
    AlarmAgreement,
    AnomalyMetrics,
    evaluate_alarm_agreement,
    evaluate_anomaly_detection,
)
from pipeline.clinical.gate import GateVerdict, reference_verdict
from pipeline.clinical.metrics import ClinicalMetrics, Estimate, EvaluationConfig, evaluate_predictions
from pipeline.clinical.operating_points import (
    AlarmThreshold,
    OperatingPoint,
    ThresholdRule,
    choose_operating_threshold,
    choose_operating_thresholds,
    threshold_at_false_alarm_rate,
    threshold_rule_from_dict,
)
from pipeline.clinical.regression_metrics import RegressionMetrics, evaluate_regression
from pipeline.clinical.task_dispatch import judge_variant_for_task
from pipeline.clinical.task_kind import TaskKind, parse_task_kind
from pipeline.clinical.thresholded_metrics import BinaryMetrics, MultilabelMetrics, evaluate_binary, evaluate_multilabel
from pipeline.errors import DataError, ThresholdRuleError

REFERENCE = "fp32"
# Kinds whose decision is a threshold the build chooses per variant.
THRESHOLDED = frozenset({TaskKind.BINARY, TaskKind.MULTILABEL, TaskKind.ANOMALY})
# Kinds whose evaluation needs test labels (anomaly falls back to agreement with fp32 without them).
NEEDS_TEST_LABELS = frozenset({TaskKind.MULTICLASS, TaskKind.BINARY, TaskKind.MULTILABEL, TaskKind.REGRESSION})


class ThresholdRuleName(StrEnum):
    """How binary and multilabel thresholds are chosen (``pipeline.clinical.operating_points``)."""

    TARGET_SENSITIVITY = "target_sensitivity"
    TARGET_SPECIFICITY = "target_specificity"
    YOUDEN_INDEX = "youden_index"
    MAX_F1 = "max_f1"


@dataclass(frozen=True)
class DecisionConfig:
    """How the build sets the thresholds a device decides by."""

    # Binary and multilabel: the highest threshold that still catches 95 % of the positives on the
    # decision data (a screening operating point: a missed finding costs more than a second look).
    threshold_rule: ThresholdRuleName = ThresholdRuleName.TARGET_SENSITIVITY
    threshold_target: float = 0.95  # the rule's target; unused by youden_index and max_f1
    # Anomaly: alarm on at most 1 % of the normal samples (needs ≥ 100 of them to resolve).
    false_alarm_rate: float = 0.01

    def __post_init__(self) -> None:
        self.rule()  # an unknown rule or a bad target fails here, before any stage runs
        rate = self.false_alarm_rate
        if isinstance(rate, bool) or not isinstance(rate, Real) or not 0.0 < rate < 1.0:
            raise DataError(
                f"false_alarm_rate is {rate!r}",
                expected="a fraction strictly between 0 and 1, e.g. 0.01",
                fix="give the rate as a fraction, not a percentage",
            )

    def rule(self) -> ThresholdRule:
        name = str(getattr(self.threshold_rule, "value", self.threshold_rule))
        data: dict = {"rule": name}
        if name not in (ThresholdRuleName.YOUDEN_INDEX.value, ThresholdRuleName.MAX_F1.value):
            data["target"] = self.threshold_target
        return threshold_rule_from_dict(data)

    def describe(self, kind: TaskKind | str) -> str:
        """The decision rule of ``kind`` in words."""
        kind = parse_task_kind(kind)
        if kind in (TaskKind.BINARY, TaskKind.MULTILABEL):
            return self.rule().describe() + (" per label" if kind is TaskKind.MULTILABEL else "")
        if kind is TaskKind.ANOMALY:
            return f"alarm threshold at a false-alarm rate ≤ {self.false_alarm_rate:g} on normal data"
        return "argmax over the classes" if kind is TaskKind.MULTICLASS else "none: values in their units"


DEFAULT_DECISION_CONFIG = DecisionConfig()

Decision = OperatingPoint | tuple[OperatingPoint, ...] | AlarmThreshold | None
TaskMetrics = ClinicalMetrics | BinaryMetrics | MultilabelMetrics | RegressionMetrics | AnomalyMetrics | AlarmAgreement


@dataclass(frozen=True)
class TaskData:
    """What a kind's evaluation needs besides each variant's outputs."""

    kind: TaskKind
    names: tuple[str, ...]  # classes; (negative, positive); labels; targets; (normal, anomalous)
    test_labels: np.ndarray | None  # None: unlabelled (anomaly only)
    units: tuple[str, ...] = ()  # regression: one per target
    decision_labels: np.ndarray | None = None  # binary/multilabel: labels of the decision data
    decision_data: str = ""  # where thresholds are chosen, in words (for the manifest)
    test_groups: np.ndarray | None = None  # one cluster id per test sample: the bootstrap draws whole groups


def scores(kind: TaskKind, outputs: np.ndarray) -> np.ndarray:
    """The model's outputs as the kind reads them: one column (binary, anomaly) or ``(n, columns)``."""
    values = np.asarray(outputs, dtype=np.float64).reshape(len(outputs), -1)
    return values[:, 0] if kind in (TaskKind.BINARY, TaskKind.ANOMALY) else values


def choose_decision(data: TaskData, outputs: np.ndarray | None, config: DecisionConfig) -> Decision:
    """The threshold(s) ``config`` picks on one variant's ``outputs`` for the decision data (None when the
    kind has none). ``ThresholdRuleError`` when the rule cannot be met."""
    if data.kind not in THRESHOLDED:
        return None
    if outputs is None:
        raise DataError(f"no decision data for a {data.kind.value} output", expected="outputs on the decision data",
                        fix="predict every variant on the split thresholds are chosen on")
    values = scores(data.kind, outputs)
    if data.kind is TaskKind.ANOMALY:
        return threshold_at_false_alarm_rate(values, config.false_alarm_rate)
    if data.decision_labels is None:
        raise ThresholdRuleError(
            f"a {data.kind.value} threshold needs labelled decision data; none was given",
            expected="validation_inputs + validation_labels, or calibration_labels",
            fix="add labelled validation data to the .npz",
        )
    if data.kind is TaskKind.BINARY:
        return choose_operating_threshold(data.decision_labels, values, config.rule(), label_name=data.names[1])
    return choose_operating_thresholds(data.decision_labels, values, config.rule(), data.names)


def evaluate_outputs(data: TaskData, outputs: np.ndarray, decision: Decision, evaluation: EvaluationConfig,
                     reference: tuple[np.ndarray, AlarmThreshold] | None = None) -> TaskMetrics:
    """One variant's metrics on the test split at its ``decision``; ``reference`` (fp32's test outputs and
    alarm threshold) for an unlabelled anomaly test split, whose metric is agreement with fp32."""
    kind, labels, values = data.kind, data.test_labels, scores(data.kind, outputs)
    if labels is None and kind in NEEDS_TEST_LABELS:
        raise DataError(f"the test split has no labels for a {kind.value} output", expected="test_labels",
                        fix="add test_labels to the .npz")
    if kind is TaskKind.MULTICLASS:
        return evaluate_predictions(labels, values, data.names, evaluation, data.test_groups)
    if kind is TaskKind.BINARY:
        return evaluate_binary(labels, values, decision, data.names, evaluation, data.test_groups)
    if kind is TaskKind.MULTILABEL:
        return evaluate_multilabel(labels, values, decision, data.names, evaluation, data.test_groups)
    if kind is TaskKind.REGRESSION:
        return evaluate_regression(labels, values, data.names, data.units, evaluation, data.test_groups)
    if labels is not None:
        return evaluate_anomaly_detection(labels, values, decision, evaluation, data.test_groups)
    reference_values, reference_threshold = reference if reference is not None else (outputs, decision)
    return evaluate_alarm_agreement(scores(kind, reference_values), values, reference_threshold, decision, evaluation,
                                    data.test_groups)


@dataclass(frozen=True)
class TaskEvaluation:
    """Every variant's decision, metrics and verdict."""

    decisions: dict[str, Decision]
    metrics: dict[str, TaskMetrics]
    verdicts: dict[str, GateVerdict]


def evaluate_task_variants(
    data: TaskData,
    test_outputs: dict[str, np.ndarray],
    decision_outputs: dict[str, np.ndarray],
    evaluation: EvaluationConfig,
    decision: DecisionConfig,
    gate: object | None = None,
) -> TaskEvaluation:
    """Decisions, metrics and gate verdicts of every variant in ``test_outputs`` (fp32, the reference, first).

    ``decision_outputs``: each variant's outputs on the decision data (thresholded kinds). ``gate``:
    the kind's gate config (its default when None). A candidate whose own threshold cannot be chosen
    is evaluated at fp32's and fails the gate.
    """
    if REFERENCE not in test_outputs:
        raise DataError(f"no {REFERENCE} outputs among {sorted(test_outputs)}", expected="the fp32 reference",
                        fix="make the fp32 variant first")
    decisions: dict[str, Decision] = {REFERENCE: choose_decision(data, decision_outputs.get(REFERENCE), decision)}
    reference = (test_outputs[REFERENCE], decisions[REFERENCE])
    metrics = {REFERENCE: evaluate_outputs(data, test_outputs[REFERENCE], decisions[REFERENCE], evaluation,
                                           reference)}
    verdicts = {REFERENCE: reference_verdict(REFERENCE)}
    for name, outputs in test_outputs.items():
        if name == REFERENCE:
            continue
        failure = None
        try:
            decisions[name] = choose_decision(data, decision_outputs.get(name), decision)
        except ThresholdRuleError as error:
            decisions[name], failure = decisions[REFERENCE], error.what
        metrics[name] = evaluate_outputs(data, outputs, decisions[name], evaluation, reference)
        verdict = judge_variant_for_task(data.kind, name, metrics[REFERENCE], metrics[name], gate)
        if failure is not None:
            verdict = GateVerdict(name, False, verdict.rule, verdict.numbers,
                                  f"failed: its own threshold could not be chosen ({failure}); measured at "
                                  f"{REFERENCE}'s")
        verdicts[name] = verdict
    return TaskEvaluation(decisions, metrics, verdicts)


# ----------------------------------------------------------------------------- reading and summarising


def metrics_from_dict(kind: TaskKind | str, data: dict) -> TaskMetrics:
    """The metrics a kind's ``to_dict`` wrote."""
    kind = parse_task_kind(kind)
    if kind is TaskKind.ANOMALY:
        return AlarmAgreement.from_dict(data) if "agreement" in data else AnomalyMetrics.from_dict(data)
    parsers = {TaskKind.MULTICLASS: ClinicalMetrics, TaskKind.BINARY: BinaryMetrics,
               TaskKind.MULTILABEL: MultilabelMetrics, TaskKind.REGRESSION: RegressionMetrics}
    return parsers[kind].from_dict(data)


def headline(metrics: TaskMetrics) -> tuple[str, Estimate]:
    """The one number a summary table shows for a variant: (its name, the estimate)."""
    if isinstance(metrics, ClinicalMetrics | MultilabelMetrics):
        return "macro-F1", metrics.macro_f1
    if isinstance(metrics, BinaryMetrics):
        return "macro-F1", metrics.metrics.macro_f1
    if isinstance(metrics, RegressionMetrics):
        first = metrics.outputs[0]
        return f"MAE {first.name}" + (f" ({first.unit})" if first.unit else ""), first.mae
    if isinstance(metrics, AnomalyMetrics):
        return "AUROC", metrics.auroc
    return "alarm agreement", metrics.agreement


def summary(metrics: TaskMetrics) -> dict:
    """What a bundle manifest records of a variant's metrics (estimates as {value, low, high})."""
    name, estimate = headline(metrics)
    result: dict = {"headline": {"name": name, **estimate.to_dict()}}
    if isinstance(metrics, BinaryMetrics):
        result["operating_point"] = metrics.operating_point.to_dict()
        metrics_of_classes = metrics.metrics
        result["specificity"] = metrics.positive.specificity.to_dict()
        result["auroc"] = metrics.positive.auroc.to_dict()
    else:
        metrics_of_classes = metrics
    if isinstance(metrics_of_classes, ClinicalMetrics):
        result["macro_f1"] = metrics_of_classes.macro_f1.to_dict()
        result["accuracy"] = metrics_of_classes.accuracy.to_dict()
        result["sensitivity"] = {item.name: item.sensitivity.to_dict() for item in metrics_of_classes.per_class}
    elif isinstance(metrics, MultilabelMetrics):
        result["macro_f1"] = metrics.macro_f1.to_dict()
        result["thresholds"] = {name: point.threshold for name, point in
                                zip(metrics.label_names, metrics.operating_points, strict=True)}
        for key in ("sensitivity", "specificity", "auroc"):
            result[key] = {item.name: getattr(item, key).to_dict() for item in metrics.per_label}
    elif isinstance(metrics, RegressionMetrics):
        result["outputs"] = {output.name: output.to_dict() for output in metrics.outputs}
    elif isinstance(metrics, AnomalyMetrics):
        result["alarm_threshold"] = metrics.alarm_threshold.to_dict()
        result.update({key: getattr(metrics, key).to_dict() for key in ("auroc", "sensitivity", "false_alarm_rate")})
    elif isinstance(metrics, AlarmAgreement):
        result["alarm_threshold"] = metrics.candidate_threshold.to_dict()
        result["agreement"] = metrics.agreement.to_dict()
        result["false_alarm_rate"] = metrics.candidate_false_alarm_rate.to_dict()
    return result


def gate_rule(kind: TaskKind | str, gate: object, labelled: bool = True) -> str:
    """The gate of ``kind`` in words, before anything is measured (``gate``: that kind's config;
    ``labelled``: an anomaly test split with labels, else agreement with fp32)."""
    kind = parse_task_kind(kind)
    if kind is TaskKind.MULTICLASS:
        return (f"macro-F1 drop ≤ {gate.max_macro_f1_drop_points} pt and every class's sensitivity drop ≤ "
                f"{gate.max_sensitivity_drop_points} pt versus fp32")
    if kind is TaskKind.BINARY:
        return (f"at each variant's own threshold, drops of sensitivity ≤ {gate.max_sensitivity_drop_points} pt, "
                f"specificity ≤ {gate.max_specificity_drop_points} pt and AUROC ≤ {gate.max_auroc_drop_points} pt "
                "versus fp32")
    if kind is TaskKind.MULTILABEL:
        return (f"macro-F1 drop ≤ {gate.max_macro_f1_drop_points} pt and, per label at its own threshold, drops of "
                f"sensitivity ≤ {gate.max_sensitivity_drop_points} pt, specificity ≤ "
                f"{gate.max_specificity_drop_points} pt and AUROC ≤ {gate.max_auroc_drop_points} pt versus fp32")
    if kind is TaskKind.REGRESSION:
        return (f"per output, MAE growth ≤ {gate.max_mae_increase} units + {gate.max_mae_increase_fraction:g} × "
                f"fp32's MAE and limits-of-agreement widening ≤ {gate.max_limits_widening} units + "
                f"{gate.max_limits_widening_fraction:g} × fp32's width")
    if labelled:
        return (f"at each variant's own alarm threshold, drops of AUROC ≤ {gate.max_auroc_drop_points} pt and "
                f"sensitivity ≤ {gate.max_sensitivity_drop_points} pt, false-alarm-rate rise ≤ "
                f"{gate.max_false_alarm_rate_rise_points} pt versus fp32")
    return (f"no labelled anomalies: alarms agree with fp32's on all but {gate.max_alarm_disagreement_points} pt of "
            f"the test inputs (taken as normal), false-alarm-rate rise ≤ {gate.max_false_alarm_rate_rise_points} pt")
