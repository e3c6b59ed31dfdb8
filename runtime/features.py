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


WAVEFORM_FEATURES = ("peak_to_peak", "difference_rms", "skewness", "kurtosis", "peak_position")
_FLAT_STD = 1e-12


def waveform_features(windows: np.ndarray) -> dict[str, np.ndarray]:
    """Per-window shape statistics of the z-scored window (what the model itself sees).

    They are independent of gain and offset, so a device's raw ADC counts and the
    build's millivolts give the same numbers: drift in them means the *signal* changed
    (noise, morphology, alignment), not the electrode gain, which the model ignores.
    ``windows`` is (n, samples) or (n, samples, channels); channels are averaged.
    """
    values = np.asarray(windows, dtype=np.float64)
    if values.ndim == 3:  # one channel: its "mean" is the value itself (plus 0.0, as a sum from 0 gives: −0 → 0)
        values = values[:, :, 0] + 0.0 if values.shape[2] == 1 else values.mean(axis=2)
    centred = values - np.add.reduce(values, axis=1, keepdims=True) / values.shape[1]  # np.mean's arithmetic
    spread = centred.std(axis=1, keepdims=True)
    spread_enough = spread > _FLAT_STD
    if spread_enough.all():  # the usual case: no flat window, nothing to leave at zero
        z = centred / spread
    else:
        z = np.divide(centred, spread, out=np.zeros_like(centred), where=spread_enough)
    squared = z * z  # z**3 and z**4 through powers cost ~7× more per window (a device computes this per event)
    return {
        "peak_to_peak": z.max(axis=1) - z.min(axis=1),
        "difference_rms": np.sqrt(np.mean(np.diff(z, axis=1) ** 2, axis=1)),
        "skewness": np.mean(squared * z, axis=1),
        "kurtosis": np.mean(squared * squared, axis=1),
        "peak_position": np.argmax(np.abs(z), axis=1) / max(values.shape[1] - 1, 1),
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
