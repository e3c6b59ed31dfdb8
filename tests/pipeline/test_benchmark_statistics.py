"""Statistics of the benchmark harness: percentiles, windows, the stability flag."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from pipeline.benchmark.statistics import StabilityConfig, measure, percentile, summarize, window_spread


def test_percentiles_match_numpy_linear_interpolation() -> None:
    samples = [float(value) for value in range(1, 101)]
    assert percentile(samples, 50) == pytest.approx(50.5)
    assert percentile(samples, 90) == pytest.approx(90.1)
    assert percentile(samples, 99) == pytest.approx(99.01)
    assert math.isnan(percentile([], 50))


def test_summary_pools_windows_and_reports_median_of_window_medians() -> None:
    windows = [[10.0, 11.0, 12.0], [20.0, 21.0, 22.0], [11.0, 12.0, 13.0], [12.0, 12.0, 12.0], [10.0, 10.0, 14.0]]
    statistics = summarize(windows, warmup_iterations=4, max_spread=0.1)
    pooled = np.concatenate(windows)
    assert statistics.iterations == 15 and statistics.warmup_iterations == 4
    assert statistics.window_medians_us == (11.0, 21.0, 12.0, 12.0, 10.0)
    assert statistics.median_of_windows_us == 12.0
    assert statistics.mean_us == pytest.approx(pooled.mean())
    assert statistics.p95_us == pytest.approx(np.percentile(pooled, 95))
    assert statistics.spread == pytest.approx((21.0 - 10.0) / 12.0)
    assert not statistics.stable
    assert len(statistics.quantiles_us) == 101 and statistics.quantiles_us[0] == 10.0
    assert statistics.quantiles_us[-1] == 22.0


def test_stable_when_windows_agree() -> None:
    statistics = summarize([[100.0, 101.0]] * 5, warmup_iterations=0, max_spread=0.05)
    assert statistics.stable and statistics.spread == 0.0
    assert window_spread([100.0]) == 0.0
    assert window_spread([0.0, 0.0]) == math.inf


def test_measure_runs_warmup_then_windows_with_a_fake_clock() -> None:
    ticks = itertools.count(step=1_000)  # every clock read advances 1 µs
    calls = []
    config = StabilityConfig(warmup_iterations=7, warmup_seconds=0.0, windows=5, window_min_seconds=0.0,
                             window_min_iterations=4, window_max_seconds=10.0, window_floor_iterations=1)
    statistics = measure(lambda: calls.append(1), config, clock=lambda: next(ticks))
    assert statistics.warmup_iterations == 7
    assert statistics.iterations == 20 and len(statistics.window_medians_us) == 5
    assert len(calls) == 27
    assert statistics.median_of_windows_us == pytest.approx(1.0)
    assert statistics.stable


def test_slow_runs_end_a_window_at_its_time_cap() -> None:
    ticks = itertools.count(step=600_000_000)  # 0.6 s per clock read
    config = StabilityConfig(warmup_iterations=1, warmup_seconds=0.0, windows=5, window_min_seconds=0.0,
                             window_min_iterations=1000, window_max_seconds=1.0, window_floor_iterations=2)
    statistics = measure(lambda: None, config, clock=lambda: next(ticks))
    assert statistics.iterations == 10  # floor of 2 per window, not 1000


def test_invalid_config_is_rejected() -> None:
    with pytest.raises(ValueError):
        StabilityConfig(windows=0)
