"""Stage ``variants``: fp32 (optimized, portable), fp16, int8-dynamic, int8-static (QDQ).

Each is made by ``exporters.variants.make_variant`` from the same prepared fp32 graph. fp32 must be made; a
reduced-precision variant that cannot be (``QuantizationError``: e.g. the fp16 conversion of a model trained in
mixed precision does not load in ONNX Runtime) is left out with its reason (``not_made``), and the later stages
judge and time the variants that were made.
Every variant is loaded back in ONNX Runtime and run on the whole test split — and, for kinds
decided by a threshold, on the data thresholds are chosen on (``pipeline.splits.labelled_split`` /
``normal_split``); its outputs are kept for the ``evaluate`` stage and compared with fp32. Inputs
are one array or, for a model with several inputs, name → array. Each model file has a JSON
sidecar recording how it was made.

The cache key holds what changes the variants besides the config: the task kind, int8 tuning's
accuracy check (the kind's gate and threshold rule), the graph passes in their order, and the
onnxruntime / onnx versions.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from exporters._onnxruntime import PREDICTION_BATCH_SIZE, run_session_in_batches
from exporters.errors import QuantizationError
from exporters.inputs import as_float32
from exporters.parity import compare_outputs
from exporters.passes import DEFAULT_PASSES, QUANTIZATION_PASSES, PassName
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
from pipeline.build.stages.import_model import task_record
from pipeline.clinical.task_evaluation import THRESHOLDED, TaskData
from pipeline.clinical.tuning_check import CheckSplit, choose_check_split, task_accuracy_check
from pipeline.config import EvaluateConfig, VariantsConfig
from pipeline.splits import SPLIT_NAMES, DataSplits, Split, SplitInputs, labelled_split, normal_split
from runtime.contract import TaskKind
from runtime.session import SessionSettings, create_session

logger = logging.getLogger(__name__)

PREDICTIONS_FILE = "test_predictions.npz"
DECISION_SUFFIX = "__decision"  # a variant's outputs on the decision data, beside its test outputs
VARIANT_TOOLS = ("onnxruntime", "onnx")  # what shapes the variants (cache key)


def variant_file(name: VariantName | str) -> str:
    return f"{VariantName(name).value}.onnx"


def predict(model_path: Path, inputs: SplitInputs) -> np.ndarray:
    """Run a model over ``inputs`` (an array, or input name → array) in batches on the CPU provider."""
    session = create_session(model_path, SessionSettings(provider="cpu"))
    return run_session_in_batches(session, as_float32(inputs), PREDICTION_BATCH_SIZE).astype(np.float32)


def decision_split(splits: DataSplits) -> tuple[str, Split] | None:
    """The data a thresholded kind chooses its thresholds on (None for the other kinds)."""
    if splits.task is TaskKind.ANOMALY:
        return normal_split(splits)
    if splits.task in THRESHOLDED:
        return labelled_split(splits)
    return None


def describe_decision_data(splits: DataSplits) -> str | None:
    """Where thresholds are chosen, in words: "validation split (200 samples)" (None without thresholds)."""
    found = decision_split(splits)
    if found is None:
        return None
    name, split = found
    return f"{name}{' split' if name in SPLIT_NAMES else ''} ({len(split)} samples)"


def _check_split(splits: DataSplits, fp32_predict: Callable[[SplitInputs], np.ndarray]) -> CheckSplit:
    """Where int8 tuning judges its candidates (``pipeline.clinical.tuning_check``): never the test split."""
    kind, labelled = splits.task, labelled_split(splits)
    if kind is TaskKind.ANOMALY:
        where, normal = normal_split(splits)
        return CheckSplit(normal.inputs, None, f"{where} ({len(normal)} samples)")
    if labelled is not None:
        name, split = labelled
        return CheckSplit(split.inputs, split.labels, f"{name} split ({len(split)} samples)")
    if kind is TaskKind.MULTICLASS:
        return choose_check_split(splits.validation.inputs, None, splits.calibration.inputs, fp32_predict)
    return CheckSplit(splits.calibration.inputs, None,
                      f"calibration inputs, compared with fp32's outputs ({len(splits.calibration)} samples)")


def _tuning_check(splits: DataSplits, evaluate: EvaluateConfig) -> Callable[[Path], TuningCheck]:
    """int8 tuning's check: the kind's gate (or agreement with fp32) on held-out data."""

    def check(source: Path) -> TuningCheck:
        split = _check_split(splits, lambda inputs: predict(source, inputs))
        data = TaskData(splits.task, splits.class_names, split.labels, splits.units)
        accuracy_check = task_accuracy_check(data, predict(source, split.inputs), evaluate.decision,
                                             evaluate.gate_for(splits.task))
        return TuningCheck(as_float32(split.inputs), accuracy_check, split.description)

    return check


def _request(splits: DataSplits, config: VariantsConfig, evaluate: EvaluateConfig,
             context: StageContext) -> VariantRequest:
    return VariantRequest(
        calibration_inputs=as_float32(splits.calibration.inputs),
        quantization=config.quantization,
        tuning=config.int8_tuning,
        tuning_check=_tuning_check(splits, evaluate),
        progress=context.progress,
        choose_conv_layout=config.choose_conv_layout,
        task=splits.task.value,
    )


def graph_passes() -> dict[str, list[str]]:
    """The graph passes the variants run, in order (part of the cache key)."""
    return {"fp32": [name.value for name in DEFAULT_PASSES],
            "int8_static": [name.value for name in QUANTIZATION_PASSES],
            "conv_layout": [PassName.CONV1D_AS_2D.value]}


def variants_stage_key(config: VariantsConfig, task: dict, evaluate: EvaluateConfig) -> dict:
    """What determines the variants: the config, the task kind, int8 tuning's accuracy check, the graph
    passes and the onnxruntime / onnx versions."""
    kind = TaskKind(task["kind"])
    tuning_check = None
    if config.int8_tuning is not None:
        tuning_check = {"gate": evaluate.gate_for(kind), "decision": evaluate.decision if kind in THRESHOLDED else None}
    return {"variants": config, "task": kind, "tuning_check": tuning_check, "graph_passes": graph_passes(),
            "tools": tool_versions(VARIANT_TOOLS)}


def run_variants_stage(
    config: VariantsConfig,
    export: Artifact,
    data: Artifact,
    context: StageContext,
    evaluate: EvaluateConfig | None = None,
) -> tuple[Artifact, bool]:
    """Make every variant. ``evaluate`` holds the gate (and threshold rule) int8 tuning applies on held-out data."""
    evaluate = evaluate or EvaluateConfig()
    names = [REFERENCE_VARIANT, *[name for name in config.variants if name is not REFERENCE_VARIANT]]
    task = task_record(export)

    def produce(work: Path) -> StageResult:
        with tempfile.TemporaryDirectory(prefix="edgemed-variants-") as scratch:
            return _produce_all(work, Path(scratch) / "fp32-conv1d.onnx")

    def _produce_all(work: Path, source: Path) -> StageResult:
        splits = load_data(data)
        kind = splits.task
        request = _request(splits, config, evaluate, context)
        decision = decision_split(splits)
        predictions: dict[str, np.ndarray] = {}
        metrics: dict[str, dict] = {}
        not_made: dict[str, str] = {}
        for index, name in enumerate(names):
            context.progress("variants", index, len(names))
            destination = work / variant_file(name)
            made: dict = {}
            if name is REFERENCE_VARIANT:
                # fp32 first: its 1-D graph (``source``) is what every variant is made from.
                made = prepare_variant_source(export.path(ONNX_FILE), source, request.calibration_inputs,
                                              task=kind.value)
                made.update(make_variant(name, source, destination, request) or {})
            else:
                try:
                    made.update(make_variant(name, source, destination, request) or {})
                except QuantizationError as error:  # a reduced-precision variant is optional: fp32 still ships
                    destination.unlink(missing_ok=True)
                    not_made[name.value] = error.what
                    logger.warning("variant %s could not be made and is left out: %s", name.value, error.what)
                    continue
            predictions[name.value] = predict(destination, splits.test.inputs)
            if decision is not None:
                predictions[name.value + DECISION_SUFFIX] = predict(destination, decision[1].inputs)
            max_difference, agreement = compare_outputs(
                predictions[REFERENCE_VARIANT.value], predictions[name.value], 0.0, kind.value
            )
            metrics[name.value] = {
                "size_bytes": destination.stat().st_size,
                "max_abs_diff_vs_fp32": max_difference,
                # argmax (multiclass) or > 0.5 (binary, multilabel) agreement; None for values-only kinds
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
        return StageResult({"variants": metrics, "order": [name.value for name in names if name.value in metrics],
                            "not_made": not_made, "task": task, "decision_data": describe_decision_data(splits)})

    return run_stage("variants", variants_stage_key(config, task, evaluate), export, context.root, produce)


def load_predictions(artifact: Artifact) -> dict[str, np.ndarray]:
    """Every variant's outputs on the test split, fp32 first."""
    with np.load(artifact.path(PREDICTIONS_FILE)) as arrays:
        return {name: arrays[name] for name in artifact.metrics["order"]}


def load_decision_predictions(artifact: Artifact) -> dict[str, np.ndarray]:
    """Every variant's outputs on the data its thresholds are chosen on (empty for kinds without thresholds)."""
    with np.load(artifact.path(PREDICTIONS_FILE)) as arrays:
        return {name: arrays[name + DECISION_SUFFIX] for name in artifact.metrics["order"]
                if name + DECISION_SUFFIX in arrays.files}
