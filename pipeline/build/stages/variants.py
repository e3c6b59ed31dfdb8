"""Stage ``variants``: fp32 (optimized, portable), fp16, int8-dynamic, int8-static (QDQ).

Each is made by ``exporters.variants.make_variant`` from the same prepared fp32 graph.
Every variant is loaded back in ONNX Runtime and run on the whole test split;
its probabilities are kept for the ``evaluate`` stage and compared with fp32.
Each model file has a JSON sidecar recording how it was made.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from exporters._onnxruntime import PREDICTION_BATCH_SIZE, run_session_in_batches
from exporters.parity import compare_outputs
from exporters.variants import (
    REFERENCE_VARIANT,
    TuningCheck,
    VariantName,
    VariantRequest,
    make_variant,
    prepare_variant_source,
)
from pipeline.build.artifacts import Artifact, StageResult, run_stage, to_jsonable, tool_versions
from pipeline.build.context import StageContext
from pipeline.build.stages.data import load_data
from pipeline.build.stages.export import ONNX_FILE
from pipeline.clinical.gate import DEFAULT_GATE_CONFIG, GateConfig
from pipeline.clinical.tuning_check import choose_check_split, gate_accuracy_check
from pipeline.config import VariantsConfig
from pipeline.splits import DataSplits
from runtime.session import SessionSettings, create_session

logger = logging.getLogger(__name__)

PREDICTIONS_FILE = "test_predictions.npz"


def variant_file(name: VariantName | str) -> str:
    return f"{VariantName(name).value}.onnx"


def predict(model_path: Path, inputs: np.ndarray) -> np.ndarray:
    """Run a model over ``inputs`` in batches on the CPU provider."""
    session = create_session(model_path, SessionSettings(provider="cpu"))
    samples = np.asarray(inputs, dtype=np.float32)
    return run_session_in_batches(session, samples, PREDICTION_BATCH_SIZE).astype(np.float32)


def _tuning_check(splits: DataSplits, gate: GateConfig) -> Callable[[Path], TuningCheck]:
    """int8 tuning's check: ``gate`` on the validation split (or fp32-labelled calibration inputs)."""

    def check(source: Path) -> TuningCheck:
        split = choose_check_split(splits.validation.inputs, splits.validation.labels, splits.calibration.inputs,
                                   lambda inputs: predict(source, inputs))
        accuracy_check = gate_accuracy_check(split.labels, predict(source, split.inputs), splits.class_names, gate)
        return TuningCheck(split.inputs, accuracy_check, split.description)

    return check


def _request(splits: DataSplits, config: VariantsConfig, gate: GateConfig, context: StageContext) -> VariantRequest:
    return VariantRequest(
        calibration_inputs=splits.calibration.inputs,
        quantization=config.quantization,
        tuning=config.int8_tuning,
        tuning_check=_tuning_check(splits, gate),
        progress=context.progress,
        choose_conv_layout=config.choose_conv_layout,
    )


def run_variants_stage(
    config: VariantsConfig,
    export: Artifact,
    data: Artifact,
    context: StageContext,
    gate: GateConfig = DEFAULT_GATE_CONFIG,
) -> tuple[Artifact, bool]:
    """Make every variant. ``gate`` is the clinical gate int8 tuning applies on the validation split."""
    names = [REFERENCE_VARIANT, *[name for name in config.variants if name is not REFERENCE_VARIANT]]

    def produce(work: Path) -> StageResult:
        with tempfile.TemporaryDirectory(prefix="edgemed-variants-") as scratch:
            return _produce_all(work, Path(scratch) / "fp32-conv1d.onnx")

    def _produce_all(work: Path, source: Path) -> StageResult:
        splits = load_data(data)
        request = _request(splits, config, gate, context)
        predictions: dict[str, np.ndarray] = {}
        metrics: dict[str, dict] = {}
        for index, name in enumerate(names):
            context.progress("variants", index, len(names))
            destination = work / variant_file(name)
            made: dict = {}
            if name is REFERENCE_VARIANT:
                # fp32 first: its 1-D graph (``source``) is what every variant is made from.
                made = prepare_variant_source(export.path(ONNX_FILE), source, splits.calibration.inputs)
            made.update(make_variant(name, source, destination, request) or {})
            predictions[name.value] = predict(destination, splits.test.inputs)
            max_difference, agreement = compare_outputs(
                predictions[REFERENCE_VARIANT.value], predictions[name.value], 0.0
            )
            metrics[name.value] = {
                "size_bytes": destination.stat().st_size,
                "max_abs_diff_vs_fp32": max_difference,
                "argmax_agreement_vs_fp32": agreement,
            }
            origin = ("export/" + ONNX_FILE if name is REFERENCE_VARIANT
                      else "fp32 with 1-D convolutions (before the layout choice)")
            sidecar = {"variant": name.value, "source": origin, "config": to_jsonable(config)}
            for key, value in made.items():
                sidecar[key] = value
                metrics[name.value][key] = value
            sidecar["tool_versions"] = tool_versions()
            (work / f"{name.value}.json").write_text(json.dumps(sidecar, indent=2))
            logger.info("variant %s: %s", name.value, metrics[name.value])
        context.progress("variants", len(names), len(names))
        with (work / PREDICTIONS_FILE).open("wb") as handle:
            np.savez_compressed(handle, **predictions)
        return StageResult({"variants": metrics, "order": [name.value for name in names]})

    # The gate is part of the cache key: int8 tuning's choice depends on it.
    return run_stage("variants", {"variants": config, "tuning_gate": gate if config.int8_tuning else None},
                     export, context.root, produce)


def load_predictions(artifact: Artifact) -> dict[str, np.ndarray]:
    with np.load(artifact.path(PREDICTIONS_FILE)) as arrays:
        return {name: arrays[name] for name in artifact.metrics["order"]}
