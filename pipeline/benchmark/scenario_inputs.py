"""What the harness measures for one scenario (or one model file), gathered from the artefacts."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.benchmark.errors import ModelNotFoundError, MultiInputModelError, NoVariantsError

logger = logging.getLogger(__name__)

TIMING_SAMPLES = 64  # real test inputs cycled through while timing batch-1 runs
_RANDOM_SEED = 0  # inputs for a bare model file (no data): seeded standard normal


@dataclass(frozen=True)
class ScenarioInputs:
    """One scenario's models, data and accuracy, ready to benchmark."""

    name: str
    variants: dict[str, Path]  # ONNX variant name → file
    timing_inputs: np.ndarray  # float32 samples cycled through while timing
    keras_model: Path | None = None  # the Keras model the variants came from (peers need it)
    test_inputs: np.ndarray | None = None  # for peers' macro-F1
    test_labels: np.ndarray | None = None
    calibration_inputs: np.ndarray | None = None  # LiteRT int8 representative dataset
    macro_f1: dict[str, float] = field(default_factory=dict)  # variant → macro-F1 (evaluate artefact)
    gate_passed: dict[str, bool] = field(default_factory=dict)  # variant → clinical gate verdict
    peer_folder: Path | None = None  # where converted LiteRT models are cached
    lineage: dict[str, str] = field(default_factory=dict)  # stage → artefact id
    export_model: Path | None = None  # the exported ONNX model the variants came from (ablation baseline)


def from_build(name: str, artifacts: dict, artifacts_root: Path) -> ScenarioInputs:
    """Inputs from a ``BuildOutcome.artifacts`` dict built at least up to ``evaluate``."""
    from pipeline.build.stages.data import load_data
    from pipeline.build.stages.evaluate import METRICS_FILE, VERDICTS_FILE

    variants_artifact = artifacts.get("variants")
    if variants_artifact is None:
        raise NoVariantsError(
            f"scenario {name} has no variants yet",
            expected="a build that ran at least up to the variants stage",
            fix=f"run 'edgemed quantize {name}' (or let 'edgemed bench' build it)",
        )
    order = variants_artifact.metrics.get("order", [])
    variants = {variant: variants_artifact.path(f"{variant}.onnx") for variant in order}
    missing = [variant for variant, path in variants.items() if not path.is_file()]
    if not variants or missing:
        raise NoVariantsError(
            f"scenario {name} has no usable variant files in {variants_artifact.directory}"
            + (f" (missing: {', '.join(missing)})" if missing else ""),
            expected="fp32, fp16, int8-dynamic and int8-static .onnx files from the variants stage",
            fix=f"re-run 'edgemed quantize {name}'",
        )
    splits = load_data(artifacts["data"])
    if isinstance(splits.test.inputs, dict):
        raise MultiInputModelError(
            f"scenario {name}'s model takes {len(splits.test.inputs)} inputs ({', '.join(splits.test.inputs)})",
            expected="a single-input model: the harness, its Keras and LiteRT peers time one input array",
            fix=f"benchmark the stream path instead (edgemed bench-stream bundles/{name}), or a single-input scenario",
        )
    macro_f1: dict[str, float] = {}
    gate: dict[str, bool] = {}
    evaluate = artifacts.get("evaluate")
    if evaluate is not None:
        metrics = json.loads(evaluate.path(METRICS_FILE).read_text())
        verdicts = json.loads(evaluate.path(VERDICTS_FILE).read_text())
        macro_f1 = {variant: float(values["macro_f1"]["value"]) for variant, values in metrics.items()}
        gate = {variant: bool(values["passed"]) for variant, values in verdicts.items()}
    model = artifacts.get("train")
    keras_path = model.path("model.keras") if model is not None else None
    return ScenarioInputs(
        name=name,
        variants=variants,
        timing_inputs=splits.test.inputs[:TIMING_SAMPLES].astype(np.float32),
        keras_model=keras_path if keras_path is not None and keras_path.is_file() else None,
        test_inputs=splits.test.inputs.astype(np.float32),
        test_labels=np.asarray(splits.test.labels),
        calibration_inputs=splits.calibration.inputs.astype(np.float32),
        macro_f1=macro_f1,
        gate_passed=gate,
        peer_folder=Path(artifacts_root) / "bench-peers" / (model.id if model is not None else name),
        lineage={stage: artifact.id for stage, artifact in artifacts.items()},
        export_model=artifacts["export"].path("model.onnx") if "export" in artifacts else None,
    )


def from_model_path(path: Path) -> ScenarioInputs:
    """Inputs for a bundle folder (its ``model.onnx``) or a bare ``.onnx`` file, with seeded random inputs."""
    import onnx

    path = Path(path)
    model_file = path / "model.onnx" if path.is_dir() else path
    if not model_file.is_file():
        raise ModelNotFoundError(
            f"no model at {model_file}",
            expected="a bundle folder holding model.onnx, or the path of an .onnx file",
            fix="check the path; build a bundle with 'edgemed build'",
        )
    model = onnx.load_model(str(model_file), load_external_data=False)
    initializers = {initializer.name for initializer in model.graph.initializer}
    graph_input = next(value for value in model.graph.input if value.name not in initializers)
    shape = [dimension.dim_value or 1 for dimension in graph_input.type.tensor_type.shape.dim[1:]]
    samples = np.random.default_rng(_RANDOM_SEED).standard_normal((TIMING_SAMPLES, *shape)).astype(np.float32)
    name = path.name if path.is_dir() else path.stem
    return ScenarioInputs(name=name, variants={"model": model_file}, timing_inputs=samples)
