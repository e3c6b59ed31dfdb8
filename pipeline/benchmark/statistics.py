"""Latency statistics and MLPerf-style "run until stable" timing windows.

A measurement discards warm-up runs, then times consecutive *windows*. A window ends once
it has lasted ``window_min_seconds`` **and** run ``window_min_iterations`` times (or, for
very slow models such as Keras ``predict``, once it has lasted ``window_max_seconds`` with
at least ``window_floor_iterations`` runs). The headline figure is the median of the
window medians; the *spread* is (largest − smallest window median) / that median, and a
run whose spread exceeds ``max_spread`` is flagged unstable (reported, never hidden).
Percentiles and the mean are computed over every timed run of every window.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np


@dataclass(frozen=True)
class StabilityConfig:
    """How long and how often to time one model (defaults: `make bench` < 10 min on 2 cores)."""

    warmup_iterations: int = 30  # runs discarded first (thread pools, allocator, caches)
    warmup_seconds: float = 0.1  # and at least this long
    windows: int = 5  # timing windows; the figure is the median of their medians (MLPerf-style, ≥ 5)
    window_min_seconds: float = 0.15  # a window lasts at least this long ...
    window_min_iterations: int = 50  # ... and runs at least this often
    window_max_seconds: float = 1.0  # ... unless it has lasted this long (slow models)
    window_floor_iterations: int = 3  # never fewer runs than this in a window
    max_spread: float = 0.10  # (max − min) / median of window medians above this → flagged unstable

    def __post_init__(self) -> None:
        if self.windows < 1 or self.window_min_iterations < 1 or self.window_floor_iterations < 1:
            raise ValueError("windows and iteration counts must be positive")


# Seconds-long settings for tests and smoke runs (statistics are still computed the same way).
QUICK_STABILITY = StabilityConfig(
    warmup_iterations=3,
    warmup_seconds=0.0,
    windows=5,
    window_min_seconds=0.0,
    window_min_iterations=5,
    window_max_seconds=0.05,
    window_floor_iterations=2,
)

# Throughput at large batches: the same windows, fewer runs (each run is a whole batch).
THROUGHPUT_ITERATIONS = 10


def throughput_config(stability: StabilityConfig) -> StabilityConfig:
    """``stability`` with at most ``THROUGHPUT_ITERATIONS`` warm-up runs and runs per window."""
    return replace(
        stability,
        warmup_iterations=min(stability.warmup_iterations, THROUGHPUT_ITERATIONS),
        window_min_iterations=min(stability.window_min_iterations, THROUGHPUT_ITERATIONS),
    )


@dataclass(frozen=True)
class LatencyStatistics:
    """Summary of timed runs, in microseconds, with the window-stability verdict."""

    mean_us: float
    p50_us: float
    p90_us: float
    p95_us: float
    p99_us: float
    minimum_us: float
    max_us: float
    std_us: float
    iterations: int  # timed runs, all windows together
    warmup_iterations: int  # runs discarded before timing
    window_medians_us: tuple[float, ...]  # one median per window
    median_of_windows_us: float  # the headline figure
    spread: float  # (max − min) / median of the window medians
    stable: bool  # spread ≤ max_spread
    quantiles_us: tuple[float, ...] = ()  # 0th … 100th percentile in 1-point steps (for distribution plots)

    def to_dict(self) -> dict:
        values = asdict(self)
        values["window_medians_us"] = list(self.window_medians_us)
        values["quantiles_us"] = list(self.quantiles_us)
        return values


def percentile(samples: Sequence[float], percent: float) -> float:
    """Linear-interpolated percentile (numpy's default), NaN for no samples."""
    if len(samples) == 0:
        return math.nan
    return float(np.percentile(np.asarray(samples, dtype=np.float64), percent))


def window_spread(window_medians: Sequence[float]) -> float:
    """(max − min) / median of the window medians; 0 for one window, inf for a zero median."""
    medians = np.asarray(window_medians, dtype=np.float64)
    if len(medians) < 2:
        return 0.0
    center = float(np.median(medians))
    return float((medians.max() - medians.min()) / center) if center > 0 else math.inf


def summarize(windows: Sequence[Sequence[float]], warmup_iterations: int, max_spread: float) -> LatencyStatistics:
    """Statistics over timed windows of durations in microseconds."""
    pooled = np.concatenate([np.asarray(window, dtype=np.float64) for window in windows])
    medians = tuple(float(np.median(window)) for window in windows)
    spread = window_spread(medians)
    return LatencyStatistics(
        mean_us=float(pooled.mean()),
        p50_us=percentile(pooled, 50),
        p90_us=percentile(pooled, 90),
        p95_us=percentile(pooled, 95),
        p99_us=percentile(pooled, 99),
        minimum_us=float(pooled.min()),
        max_us=float(pooled.max()),
        std_us=float(pooled.std()),
        iterations=len(pooled),
        warmup_iterations=warmup_iterations,
        window_medians_us=medians,
        median_of_windows_us=float(np.median(medians)),
        spread=spread,
        stable=spread <= max_spread,
        quantiles_us=tuple(float(value) for value in np.percentile(pooled, np.arange(101))),
    )


def measure(run_once: Callable[[], object], config: StabilityConfig, clock: Callable[[], int] = time.perf_counter_ns):
    """Warm up, then time ``config.windows`` windows of ``run_once``; return ``LatencyStatistics``."""
    warmup_runs = 0
    started = clock()
    while warmup_runs < config.warmup_iterations or (clock() - started) / 1e9 < config.warmup_seconds:
        run_once()
        warmup_runs += 1
    windows: list[list[float]] = []
    for _ in range(config.windows):
        durations: list[float] = []
        window_started = clock()
        while True:
            before = clock()
            run_once()
            after = clock()
            durations.append((after - before) / 1000.0)
            elapsed = (after - window_started) / 1e9
            enough = elapsed >= config.window_min_seconds and len(durations) >= config.window_min_iterations
            too_long = elapsed >= config.window_max_seconds and len(durations) >= config.window_floor_iterations
            if enough or too_long:
                break
        windows.append(durations)
    return summarize(windows, warmup_runs, config.max_spread)
