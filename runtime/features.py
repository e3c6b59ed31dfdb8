"""Summary features of model inputs, computed identically at build time and on the device.

The build stage records their distribution on the test split in the bundle's
``reference_profile.json``; the device computes the same numbers per input for
telemetry, so drift can be measured without ever sending raw signals.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np


class FeatureKind(StrEnum):
    """Which summary a bundle uses: waveform windows or tabular rows."""

    WAVEFORM = "waveform"
    TABULAR = "tabular"


WAVEFORM_FEATURES = ("mean", "std", "minimum", "maximum", "peak_to_peak", "difference_rms")


def waveform_features(windows: np.ndarray) -> dict[str, np.ndarray]:
    """Per-window level, spread, extremes and high-frequency energy (a noise proxy).

    ``windows`` is (n, samples) or (n, samples, channels); channels are averaged.
    """
    values = np.asarray(windows, dtype=np.float64)
    if values.ndim == 3:
        values = values.mean(axis=2)
    minimum = values.min(axis=1)
    maximum = values.max(axis=1)
    return {
        "mean": values.mean(axis=1),
        "std": values.std(axis=1),
        "minimum": minimum,
        "maximum": maximum,
        "peak_to_peak": maximum - minimum,
        "difference_rms": np.sqrt(np.mean(np.diff(values, axis=1) ** 2, axis=1)),
    }


def tabular_features(rows: np.ndarray, feature_names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Each raw column is its own feature."""
    values = np.asarray(rows, dtype=np.float64)
    return {name: values[:, index] for index, name in enumerate(feature_names)}


def summary_features(
    inputs: np.ndarray, kind: FeatureKind, feature_names: tuple[str, ...] = ()
) -> dict[str, np.ndarray]:
    """Dispatch on the bundle's feature kind."""
    if FeatureKind(kind) is FeatureKind.WAVEFORM:
        return waveform_features(inputs)
    return tabular_features(inputs, feature_names)
