"""What the harness measures for one scenario (or one model file), gathered from the artefacts.

Inputs are ``exporters.inputs``'s: one array for a single-input model, or input name → array for a
model with several (the ECG PVC model takes a beat residual and a row of RR features). A scenario is timed on
the first ``TIMING_SAMPLES`` samples of its test split (synthetic where the scenario's data is: ecg-arrhythmia);
a bare model file on seeded N(0,1) random inputs (``RANDOM_INPUTS``: synthetic, not real data).
``ScenarioInputs.inputs`` says which, and ``bench.json`` and ``bench.md`` carry it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from exporters.inputs import ModelInputs, as_float32, select
from pipeline.benchmark.errors import ModelNotFoundError, NoVariantsError
from pipeline.benchmark.same_gate import GateSetting, Judgement
from pipeline.splits import DataSplits, data_kind

logger = logging.getLogger(__name__)

TIMING_SAMPLES = 64  # test-split samples cycled through while timing batch-1 runs
_RANDOM_SEED = 0  # inputs for a bare model file (no data): seeded standard normal
RANDOM_INPUTS = (f"synthetic: seeded standard normal N(0,1) random inputs (seed {_RANDOM_SEED}, {TIMING_SAMPLES} "
                 "samples per graph input), not real data")
UNDESCRIBED_INPUTS = "not described (ScenarioInputs built without saying what its timing inputs are)"


@dataclass(frozen=True)
class ScenarioInputs:
    """One scenario's models, data and accuracy, ready to benchmark."""

    name: str
    variants: dict[str, Path]  # ONNX variant name → file
    timing_inputs: ModelInputs  # float32 samples cycled through while timing
    inputs: str = UNDESCRIBED_INPUTS  # what the timing inputs are, in words (bench.json "inputs", bench.md)
    inputs_synthetic: bool | None = None  # whether they are synthetic (None: not known)
    keras_model: Path | None = None  # the Keras model the variants came from (peers need it)
    test_inputs: ModelInputs | None = None  # the test split (ablation accuracy)
    test_labels: np.ndarray | None = None
    calibration_inputs: ModelInputs | None = None  # LiteRT int8 representative dataset, ablation calibration
    gate_passed: dict[str, bool] = field(default_factory=dict)  # ONNX variant → the build's verdict (all its gates)
    judgements: dict[str, Judgement] = field(default_factory=dict)  # ONNX variant → accuracy, verdict, data
    gate: GateSetting | None = None  # how the build judged, to judge the peers the same way (None: no data)
    peer_folder: Path | None = None  # where converted LiteRT models are cached
    lineage: dict[str, str] = field(default_factory=dict)  # stage → artefact id
    export_model: Path | None = None  # the exported ONNX model the variants came from (ablation baseline)


def _variants(name: str, artifacts: dict) -> dict[str, Path]:
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
    return variants


def describe_timing_inputs(name: str, splits: DataSplits) -> str:
    """``ecg-arrhythmia test split: its first 64 of 2,000 samples, cycled (SYNTHETIC data)``."""
    count = min(TIMING_SAMPLES, len(splits.test))
    return (f"{name} test split: its first {count} of {len(splits.test):,} samples, cycled "
            f"({data_kind(splits.provenance)})")


def from_build(name: str, artifacts: dict, artifacts_root: Path, scenario=None, config=None) -> ScenarioInputs:
    """Inputs from a ``BuildOutcome.artifacts`` dict built at least up to ``evaluate`` (and ``validate`` where the
    scenario has held-out recordings). ``scenario`` and its build ``config``: to judge the peers by the build's
    own gate (without them the peers get no verdict)."""
    from pipeline.benchmark.gate_settings import build_judgements, gate_setting
    from pipeline.build.stages.data import load_data

    variants = _variants(name, artifacts)
    splits = load_data(artifacts["data"])
    setting, judgements = None, {}
    if "evaluate" in artifacts and scenario is not None and config is not None:
        setting = gate_setting(name, splits, artifacts, scenario, config)
        judgements = build_judgements(setting, artifacts)
    model = artifacts.get("train") or artifacts.get("import")
    keras_path = model.path("model.keras") if model is not None else None
    test_inputs = as_float32(splits.test.inputs)
    return ScenarioInputs(
        name=name,
        variants=variants,
        timing_inputs=select(test_inputs, slice(0, TIMING_SAMPLES)),
        inputs=describe_timing_inputs(name, splits),
        inputs_synthetic=splits.provenance.get("synthetic"),
        keras_model=keras_path if keras_path is not None and keras_path.is_file() else None,
        test_inputs=test_inputs,
        test_labels=np.asarray(splits.test.labels) if splits.test.labels is not None else None,
        calibration_inputs=as_float32(splits.calibration.inputs),
        gate_passed={variant: bool(judged.passed) for variant, judged in judgements.items()},
        judgements=judgements,
        gate=setting,
        peer_folder=Path(artifacts_root) / "bench-peers" / (model.id if model is not None else name),
        lineage={stage: artifact.id for stage, artifact in artifacts.items()},
        export_model=artifacts["export"].path("model.onnx") if "export" in artifacts else None,
    )


def from_model_path(path: Path) -> ScenarioInputs:
    """Inputs for a bundle folder (its ``model.onnx``) or a bare ``.onnx`` file, with seeded random inputs for
    every graph input (``RANDOM_INPUTS``: synthetic)."""
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
    graph_inputs = [value for value in model.graph.input if value.name not in initializers]
    generator = np.random.default_rng(_RANDOM_SEED)
    samples = {}
    for graph_input in graph_inputs:
        shape = [dimension.dim_value or 1 for dimension in graph_input.type.tensor_type.shape.dim[1:]]
        samples[graph_input.name] = generator.standard_normal((TIMING_SAMPLES, *shape)).astype(np.float32)
    name = path.name if path.is_dir() else path.stem
    timing = samples if len(samples) > 1 else next(iter(samples.values()))
    return ScenarioInputs(name=name, variants={"model": model_file}, timing_inputs=timing, inputs=RANDOM_INPUTS,
                          inputs_synthetic=True)
