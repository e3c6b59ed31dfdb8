"""Drift of device telemetry against a bundle's ``reference_profile.json``.

Per summary feature (and the prediction confidence) and for the predicted-class distribution:

* **PSI** on the 10 reference-quantile bins (decile edges; outer bins open-ended so values outside
  the reference range count), both windows: warn at 0.1, alert at 0.25.
* **Windows over 1 000 records**: Jensen–Shannon distance (base 2, so 0…1) between the binned
  reference and window shares and, for numbers, the Wasserstein distance divided by the reference
  standard deviation; either ≥ 0.1 is drift.
* **Smaller windows**: two-sample Kolmogorov–Smirnov test against the profile's reference sample
  (numbers) or a chi-square test of homogeneity on reference vs window class counts (classes);
  p < 0.05 is drift.
* Below ``minimum_count`` records: "insufficient data", never a score.

A row's status combines both: **alert** when PSI ≥ 0.25, or when the window's test/distance finds
drift and PSI ≥ 0.1; **warn** when either PSI ≥ 0.1 or the test/distance finds drift alone (one of 30
features passing p < 0.05 by chance is expected, so a test alone never raises an alert).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial.distance import jensenshannon
from scipy.special import rel_entr
from scipy.stats import chi2_contingency, ks_2samp, wasserstein_distance

from dashboard.monitoring.stand_in import StandIn

CLASS_ROW = "predicted class"
CONFIDENCE_ROW = "prediction confidence"


@dataclass(frozen=True)
class DriftConfig:
    """Drift decision thresholds and the window they are applied to."""

    psi_warn: float = 0.1  # PSI ≥ 0.1: a moderate shift (the usual credit-scoring convention)
    psi_alert: float = 0.25  # PSI ≥ 0.25: a major shift
    distance_drift: float = 0.1  # JS distance (base 2) or Wasserstein / reference std at or above this is drift
    p_value: float = 0.05  # KS / chi-square p-values below this are drift (windows up to large_window)
    minimum_count: int = 200  # fewer records give "insufficient data": PSI's noise (≈ 9/n) nears 0.1 at ~100
    large_window: int = 1_000  # windows with more records than this use distances instead of tests
    psi_floor: float = 1e-4  # an empty bin counts as this share so PSI stays finite
    window: timedelta = timedelta(hours=24)  # a device's drift window: its telemetry in the 24 h before its last record
    baseline_fraction: float = 0.3  # alerts compare the rest of the window with its first 30 % (the device's baseline)


DEFAULT_DRIFT_CONFIG = DriftConfig()


class DriftStatus(StrEnum):
    INSUFFICIENT = "insufficient data"
    OK = "ok"
    WARN = "warn"
    ALERT = "alert"


_SEVERITY = {DriftStatus.INSUFFICIENT: 0, DriftStatus.OK: 1, DriftStatus.WARN: 2, DriftStatus.ALERT: 3}


@dataclass(frozen=True)
class DriftResult:
    """One feature's (or the class distribution's) drift over one window."""

    name: str
    count: int  # records in the window with a value for this row
    method: str  # "KS test", "chi-square test", "JS + Wasserstein", "JS distance" or "—"
    psi: float | None = None
    js_distance: float | None = None
    wasserstein_normalised: float | None = None  # Wasserstein distance / reference standard deviation
    statistic: float | None = None  # KS D or chi-square statistic
    p_value: float | None = None
    drift: bool = False  # what the window's test or distances say
    status: DriftStatus = DriftStatus.INSUFFICIENT
    note: str = ""

    def to_row(self) -> dict[str, Any]:
        return {
            "name": self.name, "status": self.status.value, "records": self.count, "method": self.method,
            "psi": self.psi, "js_distance": self.js_distance, "wasserstein_per_std": self.wasserstein_normalised,
            "statistic": self.statistic, "p_value": self.p_value, "drift": self.drift, "note": self.note,
        }


def population_stability_index(expected: np.ndarray, actual: np.ndarray, floor: float = 1e-4) -> float:
    """PSI = Σ (a − e) ln(a / e) = KL(a‖e) + KL(e‖a), with shares floored at ``floor``."""
    expected = np.clip(np.asarray(expected, dtype=np.float64), floor, None)
    actual = np.clip(np.asarray(actual, dtype=np.float64), floor, None)
    expected, actual = expected / expected.sum(), actual / actual.sum()
    return float(np.sum(rel_entr(actual, expected) + rel_entr(expected, actual)))


def bin_shares(values: np.ndarray, inner_edges: np.ndarray) -> np.ndarray:
    """Shares of ``values`` in the bins (-inf, e1], (e1, e2], …, (e_last, inf)."""
    indices = np.searchsorted(inner_edges, values, side="left")
    counts = np.bincount(indices, minlength=len(inner_edges) + 1)
    return counts / max(len(values), 1)


def reference_bins(reference: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(inner edges, reference shares) of the 10 reference-quantile bins.

    Distinct deciles hold 10 % each by construction; tied deciles (a feature with a repeated
    value) are merged and their shares taken from the reference sample.
    """
    edges = np.asarray(reference["decile_edges"], dtype=np.float64)
    inner = np.unique(edges[1:-1])
    if len(inner) == len(edges) - 2:
        return inner, np.full(len(inner) + 1, 1.0 / (len(inner) + 1))
    sample = np.asarray(reference.get("sample") or [], dtype=np.float64)
    if len(sample) == 0:
        return inner, np.full(len(inner) + 1, 1.0 / (len(inner) + 1))
    return inner, bin_shares(sample, inner)


def _status(psi: float | None, drift: bool, config: DriftConfig) -> DriftStatus:
    psi_value = psi or 0.0
    if psi_value >= config.psi_alert or (drift and psi_value >= config.psi_warn):
        return DriftStatus.ALERT
    if drift or psi_value >= config.psi_warn:
        return DriftStatus.WARN
    return DriftStatus.OK


def numeric_drift(
    name: str, reference: Mapping[str, Any], values: Iterable[float], config: DriftConfig = DEFAULT_DRIFT_CONFIG
) -> DriftResult:
    """Drift of one numeric summary (``values`` from the window) against its reference distribution."""
    stand_in = values if isinstance(values, StandIn) and values.count > config.large_window else None
    if stand_in is None:  # values, or a small window's stand-in written out (the KS test needs them)
        values = values.values() if isinstance(values, StandIn) else values
        current = np.asarray(values if isinstance(values, np.ndarray | pd.Series) else list(values),
                             dtype=np.float64)
        current = current[np.isfinite(current)]
    count = stand_in.count if stand_in is not None else len(current)
    if count < config.minimum_count:
        return DriftResult(name, count, "—", note=f"needs at least {config.minimum_count} records")
    inner, expected = reference_bins(reference)
    actual = stand_in.shares(inner) if stand_in is not None else bin_shares(current, inner)
    psi = population_stability_index(expected, actual, config.psi_floor)
    sample = np.asarray(reference.get("sample") or [], dtype=np.float64)
    if count > config.large_window:
        js = float(jensenshannon(expected, actual, base=2))
        normalised = None
        if len(sample):
            distance = stand_in.wasserstein(sample) if stand_in is not None else wasserstein_distance(sample, current)
            std = float(reference.get("std") or 0.0)
            normalised = distance / std if std > 0 else (0.0 if distance == 0 else float("inf"))
        drift = js >= config.distance_drift or (normalised is not None and normalised >= config.distance_drift)
        return DriftResult(name, count, "JS + Wasserstein", psi=psi, js_distance=js, wasserstein_normalised=normalised,
                           drift=drift, status=_status(psi, drift, config))
    if not len(sample):
        return DriftResult(name, count, "PSI only", psi=psi, status=_status(psi, False, config),
                           note="the reference profile has no sample for a KS test")
    test = ks_2samp(sample, current)
    drift = bool(test.pvalue < config.p_value)
    return DriftResult(name, count, "KS test", psi=psi, statistic=float(test.statistic), p_value=float(test.pvalue),
                       drift=drift, status=_status(psi, drift, config))


def reference_class_counts(predictions: Mapping[str, Any]) -> dict[str, float]:
    """Reference class counts (or fractions when the profile has no counts)."""
    counts = predictions.get("class_counts")
    if isinstance(counts, dict) and counts:
        return {str(key): float(value) for key, value in counts.items()}
    fractions = predictions.get("class_fractions") or {}
    return {str(key): float(value) for key, value in fractions.items()}


def _observed(predicted: Sequence[str] | Mapping[str, int]) -> pd.Series:
    """Count per class of ``predicted``: one label per record, or already counted (label → count)."""
    if isinstance(predicted, Mapping):
        counts = pd.Series({str(label): int(count) for label, count in predicted.items() if count}, dtype="int64")
        return counts.sort_values(ascending=False, kind="stable")
    return pd.Series(list(predicted), dtype="object").value_counts()


def class_drift(
    reference_counts: Mapping[str, float], predicted: Sequence[str] | Mapping[str, int],
    config: DriftConfig = DEFAULT_DRIFT_CONFIG,
) -> DriftResult:
    """Drift of the predicted-class distribution (one label per record, or label → count) against the reference
    class counts."""
    observed = _observed(predicted)
    count = int(observed.sum())
    if count < config.minimum_count:
        return DriftResult(CLASS_ROW, count, "—", note=f"needs at least {config.minimum_count} records")
    classes = list(reference_counts) + sorted(set(observed.index) - set(reference_counts))
    reference = np.array([reference_counts.get(label, 0.0) for label in classes], dtype=np.float64)
    current = np.array([float(observed.get(label, 0)) for label in classes], dtype=np.float64)
    expected, actual = reference / max(reference.sum(), 1e-12), current / count
    psi = population_stability_index(expected, actual, config.psi_floor)
    unknown = [label for label in classes if label not in reference_counts]
    note = f"classes not in the reference: {', '.join(unknown)}" if unknown else ""
    if count > config.large_window:
        js = float(jensenshannon(expected, actual, base=2))
        drift = js >= config.distance_drift
        return DriftResult(CLASS_ROW, count, "JS distance", psi=psi, js_distance=js, drift=drift,
                           status=_status(psi, drift, config), note=note)
    table = np.vstack([reference, current])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:  # both windows predict one and the same class: nothing to test
        statistic, p_value = 0.0, 1.0
    else:
        test = chi2_contingency(table)
        statistic, p_value = float(test.statistic), float(test.pvalue)
    drift = p_value < config.p_value
    return DriftResult(CLASS_ROW, count, "chi-square test", psi=psi, statistic=statistic, p_value=p_value,
                       drift=drift, status=_status(psi, drift, config), note=note)


def profile_drift(
    profile: Mapping[str, Any],
    features: pd.DataFrame | Mapping[str, StandIn],
    predicted: Sequence[str] | Mapping[str, int] | None,
    confidence: Sequence[float] = (),
    config: DriftConfig = DEFAULT_DRIFT_CONFIG,
) -> list[DriftResult]:
    """Every feature of the profile, the prediction confidence and the class distribution, in that order.

    ``predicted`` None: the bundle's task kind has no classes (multilabel, regression), so no class row; its
    numeric outputs come as columns of ``features`` with their references among the profile's features.
    """
    results = []
    table = isinstance(features, pd.DataFrame)
    for name, reference in (profile.get("features") or {}).items():
        if name not in (features.columns if table else features):
            results.append(DriftResult(name, 0, "—", note="the devices send no value for this feature"))
            continue
        results.append(numeric_drift(name, reference, features[name].dropna() if table else features[name], config))
    predictions = profile.get("predictions") or {}
    if isinstance(predictions.get("confidence"), dict) and len(confidence):
        results.append(numeric_drift(CONFIDENCE_ROW, predictions["confidence"], confidence, config))
    if predicted is None:
        return results
    reference = reference_class_counts(predictions)
    if not reference:
        results.append(DriftResult(CLASS_ROW, int(_observed(predicted).sum()), "—",
                                   note="the reference profile has no class counts"))
    else:
        results.append(class_drift(reference, predicted, config))
    return results


def empirical_profile(features: pd.DataFrame | Mapping[str, StandIn],
                      predicted: Sequence[str] | Mapping[str, int] | None,
                      confidence: Sequence[float] | StandIn, sample_limit: int = 500) -> dict[str, Any]:
    """A reference profile (same shape as a bundle's) built from observed records, e.g. a device's baseline.

    Columns without a finite value, and an empty confidence, are left out; ``predicted`` None: no classes."""

    def distribution(values: np.ndarray | StandIn) -> dict[str, Any]:
        if isinstance(values, StandIn):  # a histogram's stand-in: the same numbers, from its bins
            step = max(1, values.count // sample_limit)
            return {"count": values.count, "mean": values.mean(), "std": values.std(),
                    "decile_edges": [float(edge) for edge in values.percentile(np.linspace(0, 100, 11))],
                    "sample": [float(value) for value in values.order_statistics(np.arange(0, values.count, step))]}
        values = values[np.isfinite(values)]
        step = max(1, len(values) // sample_limit)
        return {"count": len(values), "mean": float(values.mean()), "std": float(values.std()),
                "decile_edges": [float(edge) for edge in np.percentile(values, np.linspace(0, 100, 11))],
                "sample": [float(value) for value in np.sort(values)[::step]]}

    def usable(values: np.ndarray | StandIn) -> bool:
        return values.count > 0 if isinstance(values, StandIn) else bool(np.isfinite(values).any())

    columns = ({name: features[name].to_numpy(dtype=np.float64) for name in features.columns}
               if isinstance(features, pd.DataFrame) else dict(features))
    predictions: dict[str, Any] = {}
    if predicted is not None:
        classes = _observed(predicted)
        predictions["class_counts"] = {str(key): int(value) for key, value in classes.items()}
    scores = confidence if isinstance(confidence, StandIn) else np.asarray(confidence, dtype=np.float64)
    if usable(scores):
        predictions["confidence"] = distribution(scores)
    return {
        "features": {name: distribution(values) for name, values in columns.items() if usable(values)},
        "predictions": predictions,
    }


def worst_status(results: Iterable[DriftResult]) -> DriftStatus:
    """The most severe status among ``results`` ("insufficient data" when there are none)."""
    return max((result.status for result in results), key=_SEVERITY.__getitem__, default=DriftStatus.INSUFFICIENT)


def results_frame(results: Iterable[DriftResult]) -> pd.DataFrame:
    return pd.DataFrame([result.to_row() for result in results])


def bin_comparison(reference: Mapping[str, Any], values: Iterable[float] | StandIn) -> pd.DataFrame:
    """Reference vs window shares on the reference-quantile bins (the bins PSI and JS use)."""
    inner, expected = reference_bins(reference)
    if isinstance(values, StandIn):
        actual = values.shares(inner)
    else:
        current = np.asarray(list(values), dtype=np.float64)
        actual = bin_shares(current[np.isfinite(current)], inner)
    if len(inner):
        names = [f"≤ {inner[0]:.4g}", *(f"{low:.4g}–{high:.4g}" for low, high in pairwise(inner)), f"> {inner[-1]:.4g}"]
    else:  # every reference decile is the same value
        names = ["all values"]
    return pd.DataFrame({
        "bin": names * 2, "source": ["reference"] * len(names) + ["window"] * len(names),
        "share": np.concatenate([expected, actual]),
    })


def class_comparison(reference_counts: Mapping[str, float], predicted: Sequence[str] | Mapping[str, int]
                     ) -> pd.DataFrame:
    """Reference vs window shares per predicted class (one label per record, or label → count)."""
    counts = _observed(predicted)
    observed = counts / counts.sum() if counts.sum() else counts.astype("float64")
    total = sum(reference_counts.values()) or 1.0
    classes = list(reference_counts) + sorted(set(observed.index) - set(reference_counts))
    rows = [{"class": label, "source": "reference", "share": reference_counts.get(label, 0.0) / total}
            for label in classes]
    rows += [{"class": label, "source": "window", "share": float(observed.get(label, 0.0))} for label in classes]
    return pd.DataFrame(rows)
