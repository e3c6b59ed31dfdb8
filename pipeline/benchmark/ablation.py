"""Ablation: what each speed step buys, in µs of batch-1 p50 (1 thread, CPU), per scenario.

Steps, each on top of the previous one: the raw export; the fp32 variant before our passes (ORT
BASIC offline); each graph pass of ``exporters.passes`` in order; I/O binding with a pre-allocated
output; the conv1d-as-2d layout (fp32); then int8 static quantization of the 1-D sped-up graph
with onnxruntime's default settings,
with the channels-last pass, and the build's int8-static variant (settings chosen by
``exporters.quantization.tuning``), each with its macro-F1 on the test split at its own threshold (the
build's gate setting, ``same_gate``). Multi-input models take every input by name.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
from pathlib import Path

import numpy as np

from exporters.inputs import ModelInputs, select
from exporters.timing import InterleavedTiming
from pipeline.benchmark.harness import BenchmarkConfig, Progress
from pipeline.benchmark.onnx_runner import Binding
from pipeline.benchmark.same_gate import judge_samples
from pipeline.benchmark.scenario_inputs import ScenarioInputs
from pipeline.clinical.task_evaluation import headline

logger = logging.getLogger(__name__)

# ~12 steps × 61 rounds × 200 runs: ~9 s for the ECG model (~60 µs a run), ~2 s for the MLP.
TIMING = InterleavedTiming(rounds=61, runs_per_round=200, warmup_runs=200)
QUICK_TIMING = InterleavedTiming(rounds=3, runs_per_round=10, warmup_runs=5)


def _steps(scenario: ScenarioInputs, folder: Path) -> list[tuple[str, Path, Binding]]:
    from exporters.optimization.graph_passes import optimize_for_speed
    from exporters.optimization.portable import optimize_portable
    from exporters.passes import DEFAULT_PASSES, PassName

    steps = []
    fp32 = scenario.variants["fp32"]  # already carries every pass: the baseline is rebuilt from the export
    if scenario.export_model is not None:
        steps.append(("export (tf2onnx)", scenario.export_model, Binding.RUN))
        fp32 = folder / f"{scenario.name}-basic.onnx"
        optimize_portable(scenario.export_model, fp32)
    steps.append(("ORT basic offline optimization (portable)", fp32, Binding.RUN))
    for index, name in enumerate(DEFAULT_PASSES):
        path = folder / f"{scenario.name}-pass{index}.onnx"
        optimize_for_speed(fp32, path, scenario.calibration_inputs, DEFAULT_PASSES[: index + 1])
        steps.append((f"+ {name.value}", path, Binding.RUN))
    fast = steps[-1][1]
    steps.append(("+ I/O binding, pre-allocated output", fast, Binding.IO_BINDING))
    lifted = folder / f"{scenario.name}-conv-as-2d.onnx"
    if optimize_for_speed(fast, lifted, scenario.calibration_inputs,
                          [PassName.CONV1D_AS_2D])["passes"][PassName.CONV1D_AS_2D.value]:
        steps.append(("+ conv1d-as-2d (fp32: ORT's NCHWc kernels)", lifted, Binding.IO_BINDING))
    return steps


def _quantized_steps(scenario: ScenarioInputs, fast: Path, folder: Path) -> list[tuple[str, Path, Binding]]:
    from exporters.quantization import QuantizationConfig, quantize_int8_static

    plain = QuantizationConfig(channels_last=False)  # onnxruntime's own defaults: QDQ, u8s8, per-channel
    default = folder / f"{scenario.name}-int8-default.onnx"
    quantize_int8_static(fast, default, scenario.calibration_inputs, plain)
    laid_out = folder / f"{scenario.name}-int8-channels-last.onnx"
    quantize_int8_static(fast, laid_out, scenario.calibration_inputs, dataclasses.replace(plain, channels_last=True))
    steps = [("int8 static of the 1-D sped-up graph (QDQ u8s8 per-channel)", default, Binding.IO_BINDING),
             ("+ channels-last-boundaries", laid_out, Binding.IO_BINDING)]
    tuned = scenario.variants.get("int8-static")
    if tuned is not None:
        steps.append((f"int8-static variant: {_tuned_label(tuned)}", tuned, Binding.IO_BINDING))
    return steps


def _tuned_label(model: Path) -> str:
    """The settings exporters.quantization.tuning chose, from the variant's JSON sidecar."""
    sidecar = model.with_suffix(".json")
    try:
        tuning = json.loads(sidecar.read_text()).get("int8_tuning")
    except (OSError, ValueError):
        tuning = None
    return f"settings chosen by measurement ({tuning['chosen']})" if tuning else "fixed settings (no tuning)"


def _outputs(model: Path, inputs: ModelInputs) -> np.ndarray:
    from exporters._onnxruntime import PREDICTION_BATCH_SIZE, run_session_in_batches
    from runtime.session import open_session

    return run_session_in_batches(open_session(model), inputs, PREDICTION_BATCH_SIZE)  # CPU, ORT's defaults


def _macro_f1s(steps: list[tuple[str, Path, Binding]], scenario: ScenarioInputs) -> list[float | None]:
    """Every step's macro-F1 on the test split at its own threshold (None without the build's data, or for a task
    whose headline is not macro-F1)."""
    setting = scenario.gate
    if setting is None:
        return [None] * len(steps)
    outputs = {str(index): (_outputs(path, setting.test_inputs),
                            _outputs(path, setting.decision_inputs) if setting.decision_inputs is not None else None)
               for index, (_, path, _) in enumerate(steps)}
    results = judge_samples(setting, outputs)
    values = []
    for index in range(len(steps)):
        name, estimate = headline(results[str(index)].metrics)
        values.append(float(estimate.value) if name == "macro-F1" else None)
    return values


def _interleaved(steps: list[tuple[str, Path, Binding]], samples: ModelInputs, config: BenchmarkConfig):
    """Every step's session, timed together in rotating rounds (``exporters.timing``)."""
    from exporters.timing import measure_interleaved
    from pipeline.benchmark.onnx_runner import BoundRunner, open_session
    from runtime.session import CPU_PROVIDER

    runners = {}
    for index, (_, path, binding) in enumerate(steps):
        tuning = dataclasses.replace(config.session, binding=binding)  # I/O binding or not, per step
        session = open_session(path, CPU_PROVIDER, 1, tuning)
        runners[str(index)] = BoundRunner(session, select(samples, slice(0, 1)), CPU_PROVIDER, binding)
    timing = QUICK_TIMING if config.quick else TIMING
    return measure_interleaved(runners, timing)


def run_ablation(scenarios: list[ScenarioInputs], config: BenchmarkConfig, progress: Progress | None = None) -> dict:
    results = {}
    with tempfile.TemporaryDirectory(prefix="edgemed-ablation-") as name:
        folder = Path(name)
        for position, scenario in enumerate(scenarios):
            if progress:
                progress("ablation", position, len(scenarios))
            if "fp32" not in scenario.variants or scenario.calibration_inputs is None:
                continue
            steps = _steps(scenario, folder)
            one_dimensional = next(path for step, path, _ in steps if step.startswith("+ I/O binding"))
            steps += _quantized_steps(scenario, one_dimensional, folder)
            timed = _interleaved(steps, scenario.timing_inputs, config)
            accuracies = _macro_f1s(steps, scenario)
            rows = []
            for index, (step, path, _) in enumerate(steps):
                key, previous = str(index), str(index - 1)
                p50 = timed.median_of_windows_us(key)
                rows.append({"step": step, "p50_us": p50, "spread": timed.spread(key),
                             "delta_us": None if index == 0 else p50 - timed.median_of_windows_us(previous),
                             "ratio_to_previous": None if index == 0 else timed.ratio(key, previous),
                             "nodes": _node_count(path), "macro_f1": accuracies[index], "error": None})
            results[scenario.name] = {"steps": rows, "rounds": len(timed.window_medians_us["0"]),
                                      "inputs": scenario.inputs,  # what the steps were timed on, in words
                                      "method": "in-process, every step timed in rotating rounds; ratio to the "
                                                "previous step = median of per-round ratios"}
        if progress:
            progress("ablation", len(scenarios), len(scenarios))
    return results


def _node_count(path: Path) -> int:
    import onnx

    return len(onnx.load_model(str(path), load_external_data=False).graph.node)
