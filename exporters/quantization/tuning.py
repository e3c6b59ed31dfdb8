"""Choose int8 static quantization settings per model, by measurement on this machine.

No fixed recipe is right for every model and CPU: on x86 CPUs without VNNI, ORT's u8×s8
kernels add pairs of products in saturating int16, so full-range 8-bit weights can
overflow (``reduce_range`` avoids it, at one bit of weight precision); per-tensor scales are
faster but coarser; QDQ and QOperator files run different kernel paths; a layer can lose
more accuracy in int8 than the rest together. ``choose_quantization`` therefore

1. prepares the fp32 graph (with and without the channels-last pass) and calibrates its
   activation ranges once per preparation (the calibration split only);
2. quantizes every combination of format × activation type × per-channel ×
   reduce-range × layout × float linear outputs, and judges each with the caller's accuracy check (the
   pipeline passes its clinical gate on the *validation* split — the test split stays
   untouched for the real gate);
3. when no combination passes, keeps the most accurate one and moves its layers back to
   float one at a time (greedy, the layer whose float copy helps most first), up to
   ``max_float_nodes``;
4. times every candidate and the fp32 model together, interleaved
   (``exporters.timing``), and writes the fastest candidate that passed — or, if none
   passed, the most accurate one, so the real gate reports the failure.

The returned report lists every candidate with its latency, ratio to fp32 and verdict.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from exporters._files import atomic_destination, scratch_directory
from exporters._onnxruntime import PREDICTION_BATCH_SIZE, run_in_batches
from exporters.errors import QuantizationError
from exporters.inputs import ModelInputs, as_float32, sample_count, select
from exporters.inputs import check_inputs as check_model_inputs
from exporters.quantization.settings import ActivationType, QuantizationConfig, QuantizationFormat
from exporters.quantization.static import (
    prepare_for_static_quantization,
    quantizable_node_names,
    quantize_int8_static,
)
from exporters.timing import InterleavedTiming, measure_interleaved, onnx_runner

logger = logging.getLogger(__name__)

FP32 = "fp32"


@dataclass(frozen=True)
class AccuracyVerdict:
    """The caller's judgement of one candidate's outputs on the check inputs."""

    passed: bool
    reason: str
    worst_drop_points: float  # the largest drop of any checked metric vs fp32, in points (lower is better)


AccuracyCheck = Callable[[np.ndarray], AccuracyVerdict]  # probabilities on the check inputs → verdict
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class TuningConfig:
    """The settings searched and how candidates are timed."""

    formats: tuple[QuantizationFormat, ...] = (QuantizationFormat.QDQ, QuantizationFormat.QOPERATOR)
    activation_types: tuple[ActivationType, ...] = (ActivationType.UINT8, ActivationType.INT8)
    per_channel: tuple[bool, ...] = (True, False)
    # 7-bit weights only: full-range weights pass on this (VNNI) machine and then saturate on AVX2 devices
    # (measured under emulation: a two-input model's probabilities 0.45 off fp32). (False, True) for VNNI-only fleets.
    reduce_range: tuple[bool, ...] = (True,)
    channels_last: tuple[bool, ...] = (True, False)
    float_linear_outputs: tuple[bool, ...] = (False, True)
    # QOperator with int8 activations runs ORT's slow reference kernels on x86 (ORT warns; measured
    # 3× slower than fp32 on the ECG model): not worth quantizing and timing on every build.
    skip_qoperator_int8_activations: bool = True
    max_float_nodes: int = 2  # layers the greedy search may keep in float when no setting passes
    timing: InterleavedTiming = field(default_factory=lambda: InterleavedTiming(rounds=15, runs_per_round=60,
                                                                              warmup_runs=50))
    threads: int = 1  # intra-op threads while timing: one core, as on a small device
    # Candidates within this fraction of the fastest count as tied (timing noise on a shared
    # machine is a few per cent); ties go to the earliest in search order, which puts ORT's
    # recommended x86 settings (QDQ, u8s8, per-channel) first.
    tie_fraction: float = 0.03


@dataclass
class _Candidate:
    config: QuantizationConfig
    path: Path
    verdict: AccuracyVerdict

    @property
    def label(self) -> str:
        return self.config.settings_label()


def choose_quantization(
    source: Path,
    destination: Path,
    calibration_inputs: ModelInputs,
    check_inputs: ModelInputs,
    accuracy_check: AccuracyCheck,
    base: QuantizationConfig | None = None,
    config: TuningConfig | None = None,
    progress: Progress | None = None,
) -> dict:
    """Write the chosen int8 static model of fp32 ``source`` to ``destination``; return the report.

    ``base`` supplies the calibration settings (method, samples, percentile); the searched
    fields are overridden. ``check_inputs`` are what ``accuracy_check`` judges (never the
    test split). Both inputs are one array, or a mapping from every model input name to its
    array; ``accuracy_check`` receives the candidate's first output.

    Raises:
        QuantizationError: bad inputs, or no candidate could be quantized at all.
    """
    source, destination = Path(source), Path(destination)
    base, config = base or QuantizationConfig(), config or TuningConfig()
    check_inputs = as_float32(check_inputs)
    check_model_inputs(check_inputs, QuantizationError, "check inputs",
                       fix="pass the validation split's inputs (the test split stays for the clinical gate)")
    with scratch_directory(destination) as scratch:
        searcher = _Search(source, scratch, calibration_inputs, check_inputs, accuracy_check, base, progress)
        candidates = searcher.grid(config)
        if not candidates:
            raise QuantizationError(
                f"no int8 candidate of {source.name} could be quantized ({len(searcher.failures)} tried)",
                expected="at least one quantizable setting in the search",
                fix="see the reasons: " + "; ".join(f"{label}: {reason}" for label, reason in searcher.failures),
            )
        if not any(candidate.verdict.passed for candidate in candidates):
            candidates += searcher.float_layers(min(candidates, key=_badness), config.max_float_nodes)
        timing = _time(source, candidates, select(check_inputs, slice(0, 1)), config, progress)
        passing = [candidate for candidate in candidates if candidate.verdict.passed]
        chosen = _fastest(passing, timing, config.tie_fraction) if passing else min(candidates, key=_badness)
        with atomic_destination(destination) as temporary:
            shutil.copyfile(chosen.path, temporary)
    report = _report(chosen, candidates, timing, bool(passing), sample_count(check_inputs), config)
    report["failed_candidates"] = [{"settings": label, "reason": reason} for label, reason in searcher.failures]
    logger.info("int8 static: chose %s (%.1f µs, %.2f× fp32): %s", chosen.label,
                timing.median_of_windows_us(chosen.label), timing.ratio(chosen.label, FP32), chosen.verdict.reason)
    return report


def _fastest(candidates: list[_Candidate], timing, tie_fraction: float) -> _Candidate:
    """The first candidate (search order) within ``tie_fraction`` of the best ratio to fp32."""
    best = min(timing.ratio(candidate.label, FP32) for candidate in candidates)
    return next(candidate for candidate in candidates
                if timing.ratio(candidate.label, FP32) <= best * (1.0 + tie_fraction))


def _badness(candidate: _Candidate) -> float:
    return candidate.verdict.worst_drop_points


class _Search:
    def __init__(self, source, scratch, calibration_inputs, check_inputs, accuracy_check, base, progress) -> None:
        self.source, self.scratch = source, scratch
        self.calibration_inputs, self.check_inputs = calibration_inputs, check_inputs
        self.accuracy_check, self.base, self.progress = accuracy_check, base, progress
        self.prepared: dict[bool, Path] = {}
        self.count = 0
        self.failures: list[tuple[str, str]] = []  # settings that could not be quantized, and why

    def _prepared(self, channels_last: bool) -> Path:
        if channels_last not in self.prepared:
            path = self.scratch / f"prepared-{'channels-last' if channels_last else 'plain'}.onnx"
            prepare_for_static_quantization(self.source, path, channels_last)
            self.prepared[channels_last] = path
        return self.prepared[channels_last]

    def evaluate(self, settings: QuantizationConfig) -> _Candidate | None:
        """The candidate for ``settings``, or None when they cannot quantize this model (recorded in
        ``failures``: one refused setting, such as the QOperator quantizer on a GRU's Loop, never ends the search)."""
        prepared = self._prepared(settings.channels_last)
        self.count += 1
        path = self.scratch / f"candidate-{self.count}.onnx"
        ranges = self.scratch / f"ranges-{'channels-last' if settings.channels_last else 'plain'}.json"
        try:
            quantize_int8_static(self.source, path, self.calibration_inputs, settings, prepared=prepared,
                                 ranges_cache=ranges)
        except QuantizationError as error:
            logger.warning("int8 candidate %s could not be quantized: %s", settings.settings_label(), error)
            self.failures.append((settings.settings_label(), str(error).split("\n")[0]))
            return None
        verdict = self.accuracy_check(run_in_batches(path, self.check_inputs, PREDICTION_BATCH_SIZE, QuantizationError))
        logger.debug("int8 candidate %s: %s", settings.settings_label(), verdict.reason)
        return _Candidate(settings, path, verdict)

    def grid(self, config: TuningConfig) -> list[_Candidate]:
        combinations = [
            combination for combination in itertools.product(
                config.channels_last, config.formats, config.activation_types, config.per_channel,
                config.reduce_range, config.float_linear_outputs)
            if not (config.skip_qoperator_int8_activations and combination[1] is QuantizationFormat.QOPERATOR
                    and combination[2] is ActivationType.INT8)
        ]
        candidates = []
        for index, (channels_last, quant_format, activation, per_channel, reduce_range, float_outputs) in enumerate(
            combinations
        ):
            if self.progress:
                self.progress("int8 tuning", index, len(combinations))
            settings = dataclasses.replace(
                self.base, quant_format=quant_format, activation_type=activation, per_channel=per_channel,
                reduce_range=reduce_range, channels_last=channels_last, float_linear_outputs=float_outputs,
                excluded_nodes=())
            candidate = self.evaluate(settings)
            if candidate is not None:
                candidates.append(candidate)
        if self.progress:
            self.progress("int8 tuning", len(combinations), len(combinations))
        return candidates

    def float_layers(self, start: _Candidate, limit: int) -> list[_Candidate]:
        """Greedy: keep in float the layer that helps most, then the next, until one passes."""
        tried, current = [], start
        layers = quantizable_node_names(self._prepared(start.config.channels_last))
        for _ in range(min(limit, max(len(layers) - 1, 0))):
            remaining = [layer for layer in layers if layer not in current.config.excluded_nodes]
            excluded = current.config.excluded_nodes
            trials = [trial for trial in (
                self.evaluate(dataclasses.replace(current.config, excluded_nodes=(*excluded, layer)))
                for layer in remaining) if trial is not None]
            if not trials:
                break
            tried += trials
            passing = [trial for trial in trials if trial.verdict.passed]
            if passing:
                break
            current = min(trials, key=_badness)
        return tried


def _time(source: Path, candidates: list[_Candidate], sample: ModelInputs, config: TuningConfig, progress):
    runners = {FP32: onnx_runner(source, sample, config.threads)}
    for candidate in candidates:
        runners[candidate.label] = onnx_runner(candidate.path, sample, config.threads)
    callback = (lambda done, total: progress("int8 timing", done, total)) if progress else None
    return measure_interleaved(runners, config.timing, callback)


def _report(chosen: _Candidate, candidates: list[_Candidate], timing, any_passed: bool, checked: int,
            config: TuningConfig) -> dict:
    def settings(candidate: _Candidate) -> dict:
        return {"quant_format": QuantizationFormat(candidate.config.quant_format).value,
                "activation_type": ActivationType(candidate.config.activation_type).value,
                "weight_type": "int8", "per_channel": candidate.config.per_channel,
                "reduce_range": candidate.config.reduce_range, "channels_last": candidate.config.channels_last,
                "float_linear_outputs": candidate.config.float_linear_outputs,
                "excluded_nodes": list(candidate.config.excluded_nodes),
                "calibration_method": str(candidate.config.calibration_method)}

    rows = [{"label": candidate.label, "settings": settings(candidate),
             "median_of_windows_us": timing.median_of_windows_us(candidate.label),
             "ratio_to_fp32": timing.ratio(candidate.label, FP32),
             "accuracy_passed": candidate.verdict.passed, "worst_drop_points": candidate.verdict.worst_drop_points,
             "reason": candidate.verdict.reason} for candidate in candidates]
    return {
        "chosen": chosen.label,
        "settings": settings(chosen),
        "passed_accuracy_check": chosen.verdict.passed,
        "rule": (f"fastest candidate (ratio to fp32; within {config.tie_fraction:.0%} counts as a tie, "
                 "first in search order wins) that passed the accuracy check" if any_passed
                 else "no candidate passed the accuracy check: the most accurate one is kept (the gate decides)"),
        "checked_samples": checked,
        "fp32_median_of_windows_us": timing.median_of_windows_us(FP32),
        "timing": {"rounds": config.timing.rounds, "runs_per_round": config.timing.runs_per_round,
                   "threads": config.threads, "batch_size": 1, "method": "interleaved rounds, median of window "
                   "medians; ratio = median of per-round ratios"},
        "candidates": sorted(rows, key=lambda row: row["ratio_to_fp32"]),
    }
