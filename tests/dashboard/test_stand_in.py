"""``StandIn`` answers the drift tests' questions about a histogram's stand-in sample exactly as the written-out
sample (``runtime.telemetry.histogram.spread``) does, without writing it out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wasserstein_distance

from dashboard.monitoring.drift import bin_shares, empirical_profile, numeric_drift
from dashboard.monitoring.stand_in import StandIn
from runtime.telemetry.histogram import generic_edges


def histograms(count: int = 60, seed: int = 0):
    """Random histograms: uneven edges, empty and crowded bins, outer bins closed by an observed min and max."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        edges = np.unique(np.sort(rng.normal(0, 1, rng.integers(5, 150))))
        counts = np.zeros(len(edges) + 1, dtype=np.int64)
        occupied = rng.choice(len(counts), rng.integers(1, len(counts)), replace=False)
        counts[occupied] = rng.integers(1, 400, len(occupied))
        low = edges[0] - abs(rng.normal()) if counts[0] else edges[max(occupied.min() - 1, 0)] - 0.01
        high = edges[-1] + abs(rng.normal()) if counts[-1] else edges[min(occupied.max(), len(edges) - 1)]
        yield StandIn(edges, counts, min(low, high), high), rng


def test_every_number_equals_the_written_out_sample() -> None:
    quantiles = np.linspace(0, 100, 11)
    for stand_in, rng in histograms():
        values = stand_in.values()
        reference = np.sort(rng.normal(rng.normal(0, 0.3), 1, 500))
        assert stand_in.count == len(values)
        assert stand_in.wasserstein(reference) == pytest.approx(wasserstein_distance(reference, values), rel=1e-9,
                                                                abs=1e-12)
        assert np.allclose(stand_in.percentile(quantiles), np.percentile(values, quantiles), rtol=0, atol=1e-12)
        assert stand_in.mean() == pytest.approx(values.mean()) and stand_in.std() == pytest.approx(values.std())
        inner = np.unique(np.percentile(values, quantiles)[1:-1])  # a baseline's deciles: edges inside bins
        assert np.allclose(stand_in.shares(inner), bin_shares(values, inner))
        step = max(1, len(values) // 500)
        assert np.array_equal(stand_in.order_statistics(np.arange(0, len(values), step)), np.sort(values)[::step])


def test_the_drift_tests_give_the_same_results_on_a_stand_in() -> None:
    rng = np.random.default_rng(3)
    edges = generic_edges()
    baseline = StandIn(edges, np.bincount(np.searchsorted(edges, rng.normal(5, 1, 30_000)), minlength=len(edges) + 1),
                       0.5, 9.5)
    current = StandIn(edges, np.bincount(np.searchsorted(edges, rng.normal(5.3, 1.1, 70_000)),
                                         minlength=len(edges) + 1), 0.4, 10.1)
    written = empirical_profile(pd.DataFrame({"x": baseline.values()}), None, [])
    fast = empirical_profile({"x": baseline}, None, [])
    assert fast["features"]["x"]["count"] == written["features"]["x"]["count"] == 30_000
    for key in ("mean", "std", "decile_edges", "sample"):
        assert fast["features"]["x"][key] == pytest.approx(written["features"]["x"][key], rel=1e-9)
    reference = written["features"]["x"]
    slow, quick = numeric_drift("x", reference, current.values()), numeric_drift("x", reference, current)
    assert quick.method == slow.method == "JS + Wasserstein" and quick.status == slow.status
    for name in ("psi", "js_distance", "wasserstein_normalised"):
        assert getattr(quick, name) == pytest.approx(getattr(slow, name), rel=1e-9)
