"""Per-window quality checks: the windows the model must not judge. Unit-free, vectorised.

``runtime.contract.WindowConfig`` holds the thresholds, so training (which leaves flagged windows out)
and the device (which reports them instead of a class) flag the same windows.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np

from runtime.contract import WindowConfig


class WindowFlag(StrEnum):
    """Why a window was not given to the model."""

    NON_FINITE = "non_finite"  # NaN or infinite samples: a gap, a dropped packet
    FLAT_LINE = "flat_line"  # (nearly) constant: a lead off, a disconnected sensor
    CLIPPING = "clipping"  # many samples at the window's own extreme: the amplifier saturated


def window_quality(windows: np.ndarray, config: WindowConfig) -> tuple[tuple[str, ...], ...]:
    """The flags of each window of ``windows`` ``(n, samples, channels)`` in raw input units."""
    values = np.asarray(windows, dtype=np.float64)
    if values.ndim == 2:
        values = values[:, :, None]
    count = values.shape[0]
    if count == 0:
        return ()
    non_finite = ~np.isfinite(values).all(axis=(1, 2))
    safe = np.where(np.isfinite(values), values, 0.0)
    unchanged = (np.diff(safe, axis=1) == 0).mean(axis=1)  # (n, channels)
    spread = safe.std(axis=1)
    flat = ((unchanged >= config.flat_fraction) | (spread < config.minimum_std)).any(axis=1) & ~non_finite
    low, high = safe.min(axis=1, keepdims=True), safe.max(axis=1, keepdims=True)
    at_extreme = np.maximum((safe == low).mean(axis=1), (safe == high).mean(axis=1))
    clipped = (at_extreme >= config.clipping_fraction).any(axis=1) & ~non_finite & ~flat
    flags = []
    for index in range(count):
        window_flags = []
        if non_finite[index]:
            window_flags.append(WindowFlag.NON_FINITE.value)
        if flat[index]:
            window_flags.append(WindowFlag.FLAT_LINE.value)
        if clipped[index]:
            window_flags.append(WindowFlag.CLIPPING.value)
        flags.append(tuple(window_flags))
    return tuple(flags)
