"""The bundle's ``reference_profile.json``: what inputs and predictions looked like at validation time.

Drift monitoring compares device telemetry with it. Per summary feature it keeps
decile edges (for PSI on 10 reference-quantile bins), moments and a bounded
sample (for KS / Wasserstein); for predictions, the class distribution and
confidence quantiles. It never stores raw inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PROFILE_SCHEMA_VERSION = 1
SAMPLE_LIMIT = 500
_DECILES = np.linspace(0, 100, 11)


def _distribution(values: np.ndarray, rng: np.random.Generator) -> dict:
    values = np.asarray(values, dtype=np.float64)
    sample = values if len(values) <= SAMPLE_LIMIT else rng.choice(values, SAMPLE_LIMIT, replace=False)
    return {
        "count": len(values),
        "mean": float(values.mean()),
        "std": float(values.std()),
        "decile_edges": [float(edge) for edge in np.percentile(values, _DECILES)],
        "sample": [round(float(value), 6) for value in np.sort(sample)],
    }


def build_reference_profile(
    features: dict[str, np.ndarray],
    probabilities: np.ndarray,
    class_names: Sequence[str],
    feature_kind: str,
    seed: int = 0,
) -> dict:
    """Profile of the test split's summary features and of the shipped variant's predictions."""
    rng = np.random.default_rng(seed)
    predicted = probabilities.argmax(axis=1)
    counts = np.bincount(predicted, minlength=len(class_names))
    confidence = probabilities.max(axis=1)
    return {
        "schema_version": PROFILE_SCHEMA_VERSION,
        "split": "test",
        "samples": len(probabilities),
        "feature_kind": feature_kind,
        "features": {name: _distribution(values, rng) for name, values in features.items()},
        "predictions": {
            "class_counts": {name: int(count) for name, count in zip(class_names, counts)},
            "class_fractions": {name: float(count / counts.sum()) for name, count in zip(class_names, counts)},
            "confidence": _distribution(confidence, rng),
        },
    }
