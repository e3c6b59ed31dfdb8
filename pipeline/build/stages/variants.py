"""Stage ``variants``: fp32 (optimized, portable), fp16, int8-dynamic, int8-static (QDQ).

Every variant is loaded back in ONNX Runtime and run on the whole test split;
its probabilities are kept for the ``evaluate`` stage and compared with fp32.
Each model file has a JSON sidecar recording how it was made.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np

from exporters.optimization.conv_layout import choose_conv_layout
from exporters.optimization.graph_passes import optimize_for_speed
from exporters.optimization.portable import optimize_portable
from exporters.parity import compare_outputs
from exporters.quantize import convert_fp16, quantize_int8_dynamic, quantize_int8_static
from exporters.tuning import choose_quantization
from pipeline.build.artifacts import Artifact, StageResult, run_stage, to_jsonable, tool_versions
from pipeline.build.context import StageContext
from pipeline.build.stages.data import load_data
from pipeline.build.stages.export import ONNX_FILE
from pipeline.clinical.gate import DEFAULT_GATE_CONFIG, GateConfig
from pipeline.clinical.tuning_check import choose_check_split, gate_accuracy_check
from pipeline.config import REFERENCE_VARIANT, VariantName, VariantsConfig
from pipeline.splits import DataSplits
from runtime.session import SessionSettings, create_session

logger = logging.getLogger(__name__)

PREDICTIONS_FILE = "test_predictions.npz"
_INFERENCE_BATCH = 256


def variant_file(name: VariantName | str) -> str:
    return f"{VariantName(name).value}.onnx"


def predict(model_path: Path, inputs: np.ndarray) -> np.ndarray:
    """Run a model over ``inputs`` in batches on the CPU provider."""
    session = create_session(model_path, SessionSettings(provider="cpu"))
    input_name = session.get_inputs()[0].name
    outputs = [
        session.run(None, {input_name: inputs[start : start + _INFERENCE_BATCH].astype(np.float32)})[0]
        for start in range(0, len(inputs), _INFERENCE_BATCH)
    ]
    return np.concatenate(outputs).astype(np.float32)


def _make_fp32(export_model: Path, destination: Path, one_dimensional: Path, calibration: np.ndarray,
               config: VariantsConfig) -> dict:
    """fp32: portable ORT basic optimization, our passes (→ ``one_dimensional``, the graph the
    reduced-precision variants start from), then the faster convolution layout (→ ``destination``)."""
    optimize_portable(export_model, one_dimensional)
    made = {"graph_passes": optimize_for_speed(one_dimensional, one_dimensional, calibration)}
    if config.choose_conv_layout:
        made["conv_layout"] = choose_conv_layout(one_dimensional, destination, calibration)
    else:
        shutil.copyfile(one_dimensional, destination)
    return made


def _make_variant(name: VariantName, source: Path, destination: Path, splits: DataSplits, config: VariantsConfig,
                  gate: GateConfig, context: StageContext) -> dict | None:
    """Write reduced-precision variant ``name`` of fp32 ``source``; return what its making measured (or None)."""
    calibration = splits.calibration.inputs
    if name is VariantName.FP16:
        convert_fp16(source, destination)
    elif name is VariantName.INT8_DYNAMIC:
        quantize_int8_dynamic(source, destination)
    elif config.int8_tuning is not None:
        check = choose_check_split(splits.validation.inputs, splits.validation.labels, calibration,
                                   lambda inputs: predict(source, inputs))
        accuracy_check = gate_accuracy_check(check.labels, predict(source, check.inputs), splits.class_names, gate)
        tuning = choose_quantization(source, destination, calibration, check.inputs, accuracy_check,
                                     config.quantization, config.int8_tuning, context.progress)
        return {"int8_tuning": {**tuning, "checked_on": check.description}}
    else:
        quantize_int8_static(
            source,
            destination,
            calibration,
            config.quantization,
            lambda done, total: context.progress("calibration", done, total),
        )
    return None


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
        predictions: dict[str, np.ndarray] = {}
        metrics: dict[str, dict] = {}
        for index, name in enumerate(names):
            context.progress("variants", index, len(names))
            destination = work / variant_file(name)
            if name is REFERENCE_VARIANT:
                # fp32 first: its 1-D graph (``source``) is what every other variant is made from.
                made = _make_fp32(export.path(ONNX_FILE), destination, source, splits.calibration.inputs, config)
            else:
                made = _make_variant(name, source, destination, splits, config, gate, context)
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
            for key, value in (made or {}).items():
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
