"""Stage ``export``: Keras → ONNX, the task's head appended, parity against Keras on real inputs, an op census.

The task (``import_model.task_record`` of the model artefact) decides the graph output's name
(``probabilities`` for classifiers, ``values`` for a regression, ``anomaly_score`` for an anomaly
score), the in-graph head ``exporters.heads.append_head`` adds (a softmax/sigmoid on logits, an
autoencoder's reconstruction error) and the decision parity compares (argmax, > 0.5, none). A model trained in
mixed precision is exported computing in float32 with its own float32 weights (``exporters.precision``; the
manifest's export warnings say so).
The cache key holds the exporter's tool versions: a new tf2onnx, TensorFlow, Keras or onnx re-exports.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import replace
from pathlib import Path

from exporters.census import op_census
from exporters.heads import ANOMALY_SCORE_OUTPUT, HeadKind, append_head
from exporters.keras_to_onnx import export_keras_to_onnx
from exporters.parity import check_keras_parity
from exporters.precision import float32_compute
from pipeline.build.artifacts import Artifact, StageResult, run_stage, tool_versions
from pipeline.build.context import StageContext
from pipeline.build.stages.data import load_data
from pipeline.build.stages.import_model import task_record
from pipeline.build.stages.train import MODEL_FILE
from pipeline.config import ExportStageConfig
from pipeline.splits import DataSplits, SplitInputs, join_inputs, select_rows
from pipeline.training.keras_files import load_keras_model
from runtime.contract import TaskKind

logger = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
EXPORT_TOOLS = ("tf2onnx", "tensorflow", "keras", "onnx")  # what shapes the exported graph (cache key)
# The graph output's name per kind (a classifier's is ExportConfig.output_name, "probabilities").
OUTPUT_NAMES = {TaskKind.REGRESSION: "values", TaskKind.ANOMALY: ANOMALY_SCORE_OUTPUT}


def parity_inputs(splits: DataSplits, wanted: int) -> tuple[SplitInputs, list[str]]:
    """Real held-out inputs for the parity check: the test split first, topped up from
    calibration and validation when it is smaller than ``wanted`` (never training data)."""
    chosen, sources, remaining = [], [], wanted
    for name in ("test", "calibration", "validation"):
        split = splits.split(name)
        taken = min(len(split), remaining)
        if taken:
            chosen.append(select_rows(split.inputs, slice(0, taken)))
            sources.append(name)
            remaining -= taken
        if remaining <= 0:
            break
    return join_inputs(chosen), sources


def export_stage_key(config: ExportStageConfig, task: dict) -> dict:
    """What determines the export: the config, the task (head, output name) and the exporter's versions."""
    return {"export": config, "task": {key: task.get(key) for key in ("kind", "logits", "head")},
            "tools": tool_versions(EXPORT_TOOLS)}


def run_export_stage(
    config: ExportStageConfig, model: Artifact, data: Artifact, context: StageContext
) -> tuple[Artifact, bool]:
    task = task_record(model)
    kind, head = TaskKind(task["kind"]), task.get("head")

    def produce(work: Path) -> StageResult:
        keras_model, precision = float32_compute(load_keras_model(model.path(MODEL_FILE)))
        onnx_path = work / ONNX_FILE
        export = config.export
        if head == HeadKind.RECONSTRUCTION_ERROR:  # the head's output is the score; this is its input
            export = replace(export, output_name="reconstruction")
        elif kind in OUTPUT_NAMES:
            export = replace(export, output_name=OUTPUT_NAMES[kind])
        context.progress("export", 0, 2)
        appended = None
        if head is None:
            export_keras_to_onnx(keras_model, onnx_path, export)
        else:
            with tempfile.TemporaryDirectory(prefix="edgemed-export-") as scratch:
                plain = Path(scratch) / "keras.onnx"
                export_keras_to_onnx(keras_model, plain, export)
                appended = append_head(plain, onnx_path, head)
        context.progress("export", 1, 2)
        inputs, sources = parity_inputs(load_data(data), config.parity.samples)
        parity = check_keras_parity(
            keras_model,
            onnx_path,
            inputs,
            batch_sizes=config.parity.batch_sizes,
            tolerance=config.parity.tolerance,
            head=head,
            task=kind.value,
        )
        census = op_census(onnx_path)
        for warning in census.warnings:
            logger.warning("export: %s", warning)
        warnings = [*([precision] if precision is not None else []), *census.warnings]
        context.progress("export", 2, 2)
        return StageResult(
            {
                "task": task,
                "head": appended,
                "inputs": _graph_inputs(onnx_path),
                "parity": {**parity.to_dict(), "splits": sources},
                "op_census": census.counts,
                "opset": census.opset,
                "warnings": warnings,
                "size_bytes": onnx_path.stat().st_size,
            }
        )

    return run_stage("export", export_stage_key(config, task), model, context.root, produce)


def _graph_inputs(onnx_path: Path) -> list[str]:
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    initializers = {initializer.name for initializer in graph.initializer}
    return [value.name for value in graph.input if value.name not in initializers]


def export_outputs(export: Artifact) -> tuple[str, ...]:
    """The exported graph's output names (what the bundle's output spec names)."""
    return tuple(export.metrics["parity"]["outputs"])
