"""One entry point for the clinical gate of every task kind: ``judge_variant_for_task``.

The table ``TASK_GATES`` maps each ``TaskKind`` to the metrics its evaluation produces, its
gate config type (and default) and its judge function; every judge returns the same
``GateVerdict`` (rule, numbers, reason). Metrics or configs of the wrong kind are rejected
with a message naming the expected type.

This module must not import tensorflow, keras or onnx.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pipeline.clinical.anomaly_metrics import AlarmAgreement, AnomalyMetrics
from pipeline.clinical.gate import DEFAULT_GATE_CONFIG, GateConfig, GateVerdict, judge_variant
from pipeline.clinical.metrics import ClinicalMetrics
from pipeline.clinical.regression_gate import (
    DEFAULT_REGRESSION_GATE_CONFIG,
    RegressionGateConfig,
    judge_regression_variant,
)
from pipeline.clinical.regression_metrics import RegressionMetrics
from pipeline.clinical.task_gates import (
    DEFAULT_ANOMALY_GATE_CONFIG,
    DEFAULT_BINARY_GATE_CONFIG,
    DEFAULT_MULTILABEL_GATE_CONFIG,
    AnomalyGateConfig,
    BinaryGateConfig,
    MultilabelGateConfig,
    judge_anomaly_variant,
    judge_binary_variant,
    judge_multilabel_variant,
)
from pipeline.clinical.task_kind import TaskKind, parse_task_kind
from pipeline.clinical.thresholded_metrics import BinaryMetrics, MultilabelMetrics
from pipeline.errors import DataError, GateConfigError


@dataclass(frozen=True)
class TaskGate:
    """What the gate of one task kind judges, with which config, by which function."""

    metrics_types: tuple[type, ...]
    config_type: type
    default_config: object
    judge: Callable[..., GateVerdict]


TASK_GATES: dict[TaskKind, TaskGate] = {
    TaskKind.MULTICLASS: TaskGate((ClinicalMetrics,), GateConfig, DEFAULT_GATE_CONFIG, judge_variant),
    TaskKind.BINARY: TaskGate((BinaryMetrics,), BinaryGateConfig, DEFAULT_BINARY_GATE_CONFIG, judge_binary_variant),
    TaskKind.MULTILABEL: TaskGate(
        (MultilabelMetrics,), MultilabelGateConfig, DEFAULT_MULTILABEL_GATE_CONFIG, judge_multilabel_variant
    ),
    TaskKind.REGRESSION: TaskGate(
        (RegressionMetrics,), RegressionGateConfig, DEFAULT_REGRESSION_GATE_CONFIG, judge_regression_variant
    ),
    TaskKind.ANOMALY: TaskGate(
        (AnomalyMetrics, AlarmAgreement), AnomalyGateConfig, DEFAULT_ANOMALY_GATE_CONFIG, judge_anomaly_variant
    ),
}


def judge_variant_for_task(
    kind: TaskKind | str,
    variant: str,
    reference: object,
    candidate: object,
    config: object | None = None,
    *,
    reference_name: str = "fp32",
) -> GateVerdict:
    """Judge ``candidate`` against ``reference`` with the gate of task ``kind`` (its default config if None)."""
    task_gate = TASK_GATES[parse_task_kind(kind)]
    expected = " or ".join(metrics_type.__name__ for metrics_type in task_gate.metrics_types)
    for role, metrics in (("reference", reference), ("candidate", candidate)):
        if not isinstance(metrics, task_gate.metrics_types):
            raise DataError(
                f"the {role} metrics are {type(metrics).__name__} for a {TaskKind(kind).value} task",
                expected=f"{expected}, from the evaluation of a {TaskKind(kind).value} output",
                fix="evaluate both variants with the evaluation function of the task's kind",
            )
    config = task_gate.default_config if config is None else config
    if not isinstance(config, task_gate.config_type):
        raise GateConfigError(
            f"the gate config is {type(config).__name__} for a {TaskKind(kind).value} task",
            expected=task_gate.config_type.__name__,
            fix=f"pass a {task_gate.config_type.__name__}, or None for its defaults",
        )
    return task_gate.judge(variant, reference, candidate, config, reference_name=reference_name)
