"""Drift math against scipy/numpy on constructed distributions: identical → no drift, shifted → drift."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency, ks_2samp, wasserstein_distance

from dashboard.monitoring.drift import (
    CLASS_ROW,
    CONFIDENCE_ROW,
    DriftConfig,
    DriftStatus,
    bin_comparison,
    bin_shares,
    class_drift,
    numeric_drift,
    population_stability_index,
    profile_drift,
    reference_bins,
    worst_status,
)
from pipeline.build.reference_profile import build_reference_profile

CONFIG = DriftConfig()
CLASSES = ["N", "S", "V", "F"]
SHARES = np.array([0.7, 0.1, 0.15, 0.05])


@pytest.fixture(scope="module")
def profile() -> dict:
    """A real reference profile (pipeline.build.reference_profile) of two normal features and four classes."""
    rng = np.random.default_rng(0)
    features = {"level": rng.normal(0.0, 1.0, 4_000), "noise": rng.normal(5.0, 2.0, 4_000)}
    predicted = rng.choice(len(CLASSES), 4_000, p=SHARES)
    probabilities = np.full((4_000, len(CLASSES)), 0.05)
    probabilities[np.arange(4_000), predicted] = 0.85
    return build_reference_profile(features, probabilities, CLASSES, "tabular")


def window(count: int, shift: float = 0.0, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(shift, 1.0, count)


def test_psi_is_the_textbook_formula() -> None:
    expected, actual = np.array([0.25, 0.25, 0.5]), np.array([0.1, 0.4, 0.5])
    assert population_stability_index(expected, actual) == pytest.approx(
        float(np.sum((actual - expected) * np.log(actual / expected)))
    )
    assert population_stability_index(expected, expected) == pytest.approx(0.0)


def test_decile_bins_hold_a_tenth_each_of_the_reference(profile: dict) -> None:
    inner, expected = reference_bins(profile["features"]["level"])
    assert len(inner) == 9 and np.allclose(expected, 0.1)
    assert bin_shares(np.array([-100.0, 100.0]), inner).tolist() == [0.5] + [0.0] * 8 + [0.5]


def test_tied_deciles_are_merged_and_weighted_by_the_sample() -> None:
    values = np.r_[np.zeros(600), np.linspace(1, 2, 400)]  # 60 % of the reference is exactly 0
    reference = build_reference_profile({"x": values}, np.eye(2)[np.zeros(1000, int)], ["a", "b"], "tabular")
    inner, expected = reference_bins(reference["features"]["x"])
    assert inner[0] == 0.0 and len(inner) < 9
    assert expected[0] == pytest.approx(0.6, abs=0.05) and expected.sum() == pytest.approx(1.0)
    assert numeric_drift("x", reference["features"]["x"], values[::2]).status is DriftStatus.OK


def test_small_window_uses_scipy_ks_against_the_reference_sample(profile: dict) -> None:
    reference = profile["features"]["level"]
    current = window(500)
    result = numeric_drift("level", reference, current)
    expected = ks_2samp(reference["sample"], current)
    assert result.method == "KS test"
    assert (result.statistic, result.p_value) == pytest.approx((expected.statistic, expected.pvalue))
    assert result.js_distance is None and result.wasserstein_normalised is None
    assert not result.drift and result.status is DriftStatus.OK and result.psi < CONFIG.psi_warn


def test_small_shifted_window_drifts(profile: dict) -> None:
    result = numeric_drift("level", profile["features"]["level"], window(500, shift=1.0))
    assert result.drift and result.p_value < CONFIG.p_value
    assert result.psi >= CONFIG.psi_alert and result.status is DriftStatus.ALERT


def test_large_window_uses_jensen_shannon_and_normalised_wasserstein(profile: dict) -> None:
    reference = profile["features"]["level"]
    current = window(5_000)
    result = numeric_drift("level", reference, current)
    inner, expected = reference_bins(reference)
    assert result.method == "JS + Wasserstein" and result.p_value is None
    assert result.js_distance == pytest.approx(jensenshannon(expected, bin_shares(current, inner), base=2))
    assert result.wasserstein_normalised == pytest.approx(
        wasserstein_distance(reference["sample"], current) / reference["std"]
    )
    assert result.js_distance < CONFIG.distance_drift and result.wasserstein_normalised < CONFIG.distance_drift
    assert not result.drift and result.status is DriftStatus.OK


def test_large_shifted_window_drifts(profile: dict) -> None:
    result = numeric_drift("level", profile["features"]["level"], window(5_000, shift=0.5))
    assert result.wasserstein_normalised == pytest.approx(0.5, abs=0.1)
    assert result.drift and result.status is DriftStatus.ALERT


def test_window_switch_at_one_thousand_records(profile: dict) -> None:
    reference = profile["features"]["level"]
    assert numeric_drift("level", reference, window(CONFIG.large_window)).method == "KS test"
    assert numeric_drift("level", reference, window(CONFIG.large_window + 1)).method == "JS + Wasserstein"


def test_too_few_records_give_insufficient_data_not_a_score(profile: dict) -> None:
    result = numeric_drift("level", profile["features"]["level"], window(CONFIG.minimum_count - 1, shift=5.0))
    assert result.status is DriftStatus.INSUFFICIENT and result.psi is None and not result.drift
    assert str(CONFIG.minimum_count) in result.note
    assert class_drift({"a": 10.0}, ["a"] * 5).status is DriftStatus.INSUFFICIENT


def test_non_finite_values_are_ignored(profile: dict) -> None:
    current = np.r_[window(300), [np.nan, np.inf]]
    assert numeric_drift("level", profile["features"]["level"], current).count == 300


def test_class_drift_small_window_is_scipy_chi_square(profile: dict) -> None:
    counts = profile["predictions"]["class_counts"]
    same = list(np.random.default_rng(2).choice(CLASSES, 600, p=SHARES))
    result = class_drift(counts, same)
    table = np.array([[counts[label] for label in CLASSES], [same.count(label) for label in CLASSES]])
    expected = chi2_contingency(table)
    assert result.method == "chi-square test"
    assert (result.statistic, result.p_value) == pytest.approx((expected.statistic, expected.pvalue))
    assert not result.drift and result.status is DriftStatus.OK
    skewed = list(np.random.default_rng(3).choice(CLASSES, 600, p=[0.4, 0.3, 0.2, 0.1]))
    drifted = class_drift(counts, skewed)
    assert drifted.drift and drifted.p_value < CONFIG.p_value and drifted.status is DriftStatus.ALERT


def test_class_drift_large_window_is_jensen_shannon(profile: dict) -> None:
    counts = profile["predictions"]["class_counts"]
    skewed = list(np.random.default_rng(4).choice(CLASSES, 3_000, p=[0.3, 0.3, 0.3, 0.1]))
    result = class_drift(counts, skewed)
    reference = np.array([counts[label] for label in CLASSES], dtype=float)
    current = np.array([skewed.count(label) for label in CLASSES], dtype=float)
    assert result.method == "JS distance"
    assert result.js_distance == pytest.approx(jensenshannon(reference / reference.sum(), current / 3_000, base=2))
    assert result.drift and result.status is DriftStatus.ALERT
    same = list(np.random.default_rng(5).choice(CLASSES, 3_000, p=SHARES))
    assert class_drift(counts, same).status is DriftStatus.OK


def test_a_class_the_reference_never_predicted_is_named(profile: dict) -> None:
    predicted = ["N"] * 250 + ["Q"] * 50
    result = class_drift(profile["predictions"]["class_counts"], predicted)
    assert "Q" in result.note and result.drift


def test_one_and_the_same_class_everywhere_is_not_drift() -> None:
    result = class_drift({"a": 500.0, "b": 0.0}, ["a"] * 300)
    assert result.p_value == 1.0 and result.status is DriftStatus.OK


def test_profile_drift_covers_features_confidence_and_classes(profile: dict) -> None:
    rng = np.random.default_rng(6)
    features = pd.DataFrame({"level": window(400, shift=2.0), "unrelated": window(400)})
    predicted = list(rng.choice(CLASSES, 400, p=SHARES))
    confidence = rng.uniform(0.8, 0.9, 400)
    results = {result.name: result for result in profile_drift(profile, features, predicted, confidence)}
    assert list(results) == ["level", "noise", CONFIDENCE_ROW, CLASS_ROW]
    assert results["level"].status is DriftStatus.ALERT
    assert results["noise"].status is DriftStatus.INSUFFICIENT and "no value" in results["noise"].note
    assert results[CLASS_ROW].status is DriftStatus.OK
    assert worst_status(results.values()) is DriftStatus.ALERT
    assert worst_status([]) is DriftStatus.INSUFFICIENT


UNIFORM = {"decile_edges": list(np.linspace(0, 10, 11)), "sample": list(np.linspace(0, 10, 500)), "std": 2.9}


@pytest.mark.parametrize(
    ("extra", "status"),
    [(120, DriftStatus.WARN), (200, DriftStatus.ALERT)],  # a test alone warns; test + PSI ≥ 0.1 alerts
)
def test_a_significant_test_needs_psi_to_alert(extra: int, status: DriftStatus) -> None:
    current = np.r_[np.linspace(0, 10, 600), np.linspace(7, 10, extra)]  # extra weight in the upper bins
    result = numeric_drift("x", UNIFORM, current)
    assert result.drift and result.p_value < CONFIG.p_value
    assert (result.psi >= CONFIG.psi_warn) is (status is DriftStatus.ALERT)
    assert result.psi < CONFIG.psi_alert and result.status is status


def test_bin_comparison_has_both_sources_summing_to_one(profile: dict) -> None:
    shares = bin_comparison(profile["features"]["level"], window(300))
    assert set(shares["source"]) == {"reference", "window"} and len(shares) == 20
    assert shares.groupby("source")["share"].sum().to_numpy() == pytest.approx([1.0, 1.0])
