"""Stage ``evaluate``: clinical metrics with bootstrap CIs for every variant, and the gate verdicts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from exporters.variants import REFERENCE_VARIANT
from pipeline.build.artifacts import Artifact, StageResult, run_stage
from pipeline.build.context import StageContext
from pipeline.build.stages.data import load_data
from pipeline.build.stages.variants import load_predictions
from pipeline.clinical.gate import GateVerdict, judge_variant, reference_verdict
from pipeline.clinical.metrics import ClinicalMetrics, evaluate_predictions
from pipeline.config import EvaluateConfig

METRICS_FILE = "clinical_metrics.json"
VERDICTS_FILE = "gate_verdicts.json"


def evaluate_variants(
    predictions: dict[str, np.ndarray],
    labels: np.ndarray,
    class_names: Sequence[str],
    config: EvaluateConfig,
) -> tuple[dict[str, ClinicalMetrics], dict[str, GateVerdict]]:
    """Metrics for every variant and each one's verdict against the fp32 reference."""
    metrics = {
        name: evaluate_predictions(labels, probabilities, class_names, config.evaluation)
        for name, probabilities in predictions.items()
    }
    reference = metrics[REFERENCE_VARIANT.value]
    verdicts = {
        name: reference_verdict(name)
        if name == REFERENCE_VARIANT.value
        else judge_variant(name, reference, candidate, config.gate)
        for name, candidate in metrics.items()
    }
    return metrics, verdicts


def run_evaluate_stage(
    config: EvaluateConfig, variants: Artifact, data: Artifact, context: StageContext
) -> tuple[Artifact, bool]:
    def produce(work: Path) -> StageResult:
        splits = load_data(data)
        context.progress("evaluate", 0, 1)
        metrics, verdicts = evaluate_variants(
            load_predictions(variants), splits.test.labels, splits.class_names, config
        )
        (work / METRICS_FILE).write_text(
            json.dumps({name: value.to_dict() for name, value in metrics.items()}, indent=2)
        )
        (work / VERDICTS_FILE).write_text(
            json.dumps({name: value.to_dict() for name, value in verdicts.items()}, indent=2)
        )
        context.progress("evaluate", 1, 1)
        return StageResult(
            {
                "macro_f1": {name: value.macro_f1.to_dict() for name, value in metrics.items()},
                "passed": {name: verdict.passed for name, verdict in verdicts.items()},
            }
        )

    return run_stage("evaluate", config, variants, context.root, produce)


def load_evaluation(artifact: Artifact) -> tuple[dict[str, ClinicalMetrics], dict[str, GateVerdict]]:
    metrics = json.loads(artifact.path(METRICS_FILE).read_text())
    verdicts = json.loads(artifact.path(VERDICTS_FILE).read_text())
    return (
        {name: ClinicalMetrics.from_dict(value) for name, value in metrics.items()},
        {name: GateVerdict.from_dict(value) for name, value in verdicts.items()},
    )
