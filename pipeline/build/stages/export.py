"""Stage ``export``: Keras → ONNX with parity against Keras on real test inputs and an op census."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from exporters.census import op_census
from exporters.keras_to_onnx import export_keras_to_onnx
from exporters.parity import check_keras_parity
from pipeline.build.artifacts import Artifact, StageResult, run_stage
from pipeline.build.context import StageContext
from pipeline.build.stages.data import load_data
from pipeline.build.stages.train import MODEL_FILE
from pipeline.config import ExportStageConfig
from pipeline.splits import DataSplits
from pipeline.training.keras_files import load_keras_model

logger = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"


def parity_inputs(splits: DataSplits, wanted: int) -> tuple[np.ndarray, list[str]]:
    """Real held-out inputs for the parity check: the test split first, topped up from
    calibration and validation when it is smaller than ``wanted`` (never training data)."""
    chosen, sources, remaining = [], [], wanted
    for name in ("test", "calibration", "validation"):
        inputs = splits.split(name).inputs[:remaining]
        if len(inputs):
            chosen.append(inputs)
            sources.append(name)
            remaining -= len(inputs)
        if remaining <= 0:
            break
    return np.concatenate(chosen), sources


def run_export_stage(
    config: ExportStageConfig, model: Artifact, data: Artifact, context: StageContext
) -> tuple[Artifact, bool]:
    def produce(work: Path) -> StageResult:
        keras_model = load_keras_model(model.path(MODEL_FILE))
        onnx_path = work / ONNX_FILE
        context.progress("export", 0, 2)
        export_keras_to_onnx(keras_model, onnx_path, config.export)
        context.progress("export", 1, 2)
        inputs, sources = parity_inputs(load_data(data), config.parity.samples)
        parity = check_keras_parity(
            keras_model,
            onnx_path,
            inputs,
            batch_sizes=config.parity.batch_sizes,
            tolerance=config.parity.tolerance,
        )
        census = op_census(onnx_path)
        for warning in census.warnings:
            logger.warning("export: %s", warning)
        context.progress("export", 2, 2)
        return StageResult(
            {
                "parity": {**parity.to_dict(), "splits": sources},
                "op_census": census.counts,
                "opset": census.opset,
                "warnings": census.warnings,
                "size_bytes": onnx_path.stat().st_size,
            }
        )

    return run_stage("export", config, model, context.root, produce)
