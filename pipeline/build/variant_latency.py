"""Batch-1 latency of a build's variants on this machine (the bundle stage's selection).

All variants are timed together in interleaved rounds (``exporters.timing``): on a shared
machine whose speed changes from second to second, timing one variant after another
compares moments as much as models. Each variant's figure is the median of its window
medians; the ratio to fp32 is the median of per-round ratios. The fields carry the names of
the benchmark's latency rows (mean_us, p50_us … p99_us, median_of_windows_us, spread). The benchmark harness's
head-to-head phase uses the same method, so ``edgemed bench`` reproduces this choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from exporters.inputs import ModelInputs, arrays
from exporters.timing import InterleavedTiming, measure_interleaved, onnx_runner
from pipeline.errors import StageError

REFERENCE = "fp32"


@dataclass(frozen=True)
class LatencyResult:
    """One variant's batch-1 latency, in the benchmark's names (``pipeline.benchmark.statistics``)."""

    mean_us: float  # mean_us … p99_us and minimum_us: over every timed run
    p50_us: float
    p90_us: float
    p95_us: float
    p99_us: float
    minimum_us: float
    median_of_windows_us: float  # median of the window medians: the headline figure ("p50" in tables)
    spread: float  # (max − min) / median of the window medians
    ratio_to_fp32: float | None  # median of per-round ratios; None without an fp32 variant
    rounds: int
    runs_per_round: int
    warmup_runs: int
    threads: int
    provider: str
    method: str = "interleaved rounds"

    def to_dict(self) -> dict:
        return {key: getattr(self, key) for key in self.__dataclass_fields__}


def measure_variants(
    models: dict[str, Path], sample: ModelInputs, timing: InterleavedTiming, threads: int, progress=None
) -> dict[str, LatencyResult]:
    """Time every model at batch 1 on ``sample``: one real input (an array, or for a model with several
    inputs a mapping input name → array, each with one row), interleaved."""
    shapes = [np.shape(value) for value in arrays(sample)]
    if not shapes or any(len(shape) < 2 or shape[0] != 1 for shape in shapes):
        raise StageError(
            f"latency sample has shape(s) {shapes}",
            expected="one real input with a batch axis of 1 (in every input of a multi-input model)",
            fix="pass the first row of every input (pipeline.splits.select_rows(inputs, slice(0, 1)))",
        )
    result = measure_interleaved({name: onnx_runner(path, sample, threads) for name, path in models.items()},
                                 timing, progress)
    return {
        name: LatencyResult(
            mean_us=float(result.durations_us[name].mean()),
            p50_us=result.percentile_us(name, 50),
            p90_us=result.percentile_us(name, 90),
            p95_us=result.percentile_us(name, 95),
            p99_us=result.percentile_us(name, 99),
            minimum_us=float(result.durations_us[name].min()),
            median_of_windows_us=result.median_of_windows_us(name),
            spread=result.spread(name),
            ratio_to_fp32=result.ratio(name, REFERENCE) if REFERENCE in models else None,
            rounds=timing.rounds,
            runs_per_round=timing.runs_per_round,
            warmup_runs=timing.warmup_runs,
            threads=threads,
            provider="CPUExecutionProvider",
        )
        for name in models
    }
