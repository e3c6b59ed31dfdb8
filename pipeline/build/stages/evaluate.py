"""Stage ``evaluate``: every variant's decision, clinical metrics with bootstrap CIs, and gate verdict — by task kind.

The kind's table is ``pipeline.clinical.task_evaluation``: binary and multilabel thresholds are
chosen per variant on the labelled decision data (``DecisionConfig``), anomaly alarm thresholds
on normal data; metrics are measured on the test split; each candidate is judged against fp32
with its kind's gate (``EvaluateConfig.gate_for``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.build.artifacts import Artifact, StageResult, run_stage
from pipeline.build.context import StageContext
from pipeline.build.stages.data import load_data
from pipeline.build.stages.variants import (
    decision_split,
    describe_decision_data,
    load_decision_predictions,
    load_predictions,
)
from pipeline.clinical.gate import GateVerdict
from pipeline.clinical.task_evaluation import (
    TaskData,
    TaskEvaluation,
    TaskMetrics,
    evaluate_task_variants,
    headline,
    metrics_from_dict,
)
from pipeline.config import EvaluateConfig
from pipeline.splits import DataSplits
from runtime.contract import TaskKind

METRICS_FILE = "clinical_metrics.json"
VERDICTS_FILE = "gate_verdicts.json"


def task_data(splits: DataSplits) -> TaskData:
    """What the evaluation of ``splits.task`` needs from the data."""
    found = decision_split(splits)
    decision_labels = found[1].labels if found is not None and splits.task is not TaskKind.ANOMALY else None
    return TaskData(splits.task, splits.class_names, splits.test.labels, splits.units, decision_labels,
                    describe_decision_data(splits) or "", splits.test.groups)


def evaluate_variants(
    predictions: dict[str, np.ndarray],
    labels: np.ndarray | None,
    class_names: Sequence[str],
    config: EvaluateConfig,
    *,
    task: TaskKind = TaskKind.MULTICLASS,
    decision_predictions: dict[str, np.ndarray] | None = None,
    data: TaskData | None = None,
) -> tuple[dict[str, TaskMetrics], dict[str, GateVerdict]]:
    """Metrics for every variant and each one's verdict against the fp32 reference.

    ``data``: the task's data (``task_data``); without it, a ``task`` output with ``labels`` and no
    decision data (multiclass, regression without units, unlabelled anomaly on its test outputs)."""
    data = data or TaskData(TaskKind(task), tuple(class_names), labels)
    result = _evaluate(data, predictions, decision_predictions or {}, config)
    return result.metrics, result.verdicts


def _evaluate(data: TaskData, predictions: dict[str, np.ndarray], decision_predictions: dict[str, np.ndarray],
              config: EvaluateConfig) -> TaskEvaluation:
    if data.kind is TaskKind.ANOMALY and not decision_predictions:
        decision_predictions = predictions  # no normal data apart: the test inputs are taken as normal
    return evaluate_task_variants(data, predictions, decision_predictions, config.evaluation, config.decision,
                                  config.gate_for(data.kind))


def progress_task(splits: DataSplits) -> str:
    """The stage's progress task name: ``evaluate (SYNTHETIC test split)`` where the data provenance says synthetic
    (ecg-arrhythmia), so the build's progress line says what the metrics are measured on."""
    return "evaluate (SYNTHETIC test split)" if splits.provenance.get("synthetic") is True else "evaluate"


def run_evaluate_stage(
    config: EvaluateConfig, variants: Artifact, data: Artifact, context: StageContext
) -> tuple[Artifact, bool]:
    kind = TaskKind(variants.metrics.get("task", {}).get("kind", TaskKind.MULTICLASS.value))

    def produce(work: Path) -> StageResult:
        splits = load_data(data)
        task = progress_task(splits)
        context.progress(task, 0, 1)
        details = task_data(splits)
        result = _evaluate(details, load_predictions(variants), load_decision_predictions(variants), config)
        (work / METRICS_FILE).write_text(
            json.dumps({name: value.to_dict() for name, value in result.metrics.items()}, indent=2)
        )
        (work / VERDICTS_FILE).write_text(
            json.dumps({name: value.to_dict() for name, value in result.verdicts.items()}, indent=2)
        )
        context.progress(task, 1, 1)
        metrics = {"task": kind.value, "decision_data": details.decision_data or None}
        if kind is TaskKind.MULTICLASS:
            metrics["macro_f1"] = {name: value.macro_f1.to_dict() for name, value in result.metrics.items()}
        else:
            metrics["headline"] = {name: dict(zip(("name", "estimate"), _headline(value)))
                                   for name, value in result.metrics.items()}
        metrics["passed"] = {name: verdict.passed for name, verdict in result.verdicts.items()}
        return StageResult(metrics)

    return run_stage("evaluate", config.stage_key(kind), variants, context.root, produce)


def _headline(metrics: TaskMetrics) -> tuple[str, dict]:
    name, estimate = headline(metrics)
    return name, estimate.to_dict()


def load_evaluation(artifact: Artifact) -> tuple[dict[str, TaskMetrics], dict[str, GateVerdict]]:
    kind = artifact.metrics.get("task", TaskKind.MULTICLASS.value)
    metrics = json.loads(artifact.path(METRICS_FILE).read_text())
    verdicts = json.loads(artifact.path(VERDICTS_FILE).read_text())
    return (
        {name: metrics_from_dict(kind, value) for name, value in metrics.items()},
        {name: GateVerdict.from_dict(value) for name, value in verdicts.items()},
    )
