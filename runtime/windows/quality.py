"""Per-window quality checks: the windows the model must not judge. Unit-free, vectorised.

``runtime.contract.WindowConfig`` holds the thresholds, so training (which leaves flagged windows out)
and the device (which reports them instead of a class) flag the same windows. The flag names are the ECG
stream's (``runtime.ecg.quality.QualityFlag``) where they mean the same thing, so telemetry and the dashboard
read one vocabulary (``runtime.telemetry.records.KNOWN_QUALITY_FLAGS``).

A window is *clipped* only when at least ``MIN_CLIPPED_SAMPLES`` samples sit at its extreme — within
``clipping_band`` of its range (besides the
share ``clipping_fraction``): a window of fewer than 20 samples always has 5 % of them at its own
maximum, and saturation holds the rail for several samples (the ECG stream's ``clip_min_run_samples``).
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np

from runtime.contract import WindowConfig


class WindowFlag(StrEnum):
    """Why a window was not given to the model."""

    # per window: the model does not judge it
    NON_FINITE = "non_finite"  # NaN or infinite samples (a gap, a dropped packet), or beyond float32 once normalised
    FLAT_LINE = "flat_line"  # (nearly) constant: a lead off, a disconnected sensor
    CLIPPING = "clipped"  # many samples at the window's own extreme: the amplifier saturated
    RATE_MISMATCH = "rate_mismatch"  # the chunks' timestamps disagree with the declared sample rate (stream only)
    # per stretch of the stream (``QualityEvent``), never a window's
    GAP = "gap"  # declared missing signal, or a jump in the timestamps: the window grid restarts after it
    PARTIAL_WINDOW = "partial_window"  # signal at the end of a segment after the last whole window: not judged
    TOO_SHORT = "too_short"  # a segment shorter than one window: nothing in it was judged


MIN_CLIPPED_SAMPLES = 3  # a clipped window has at least this many samples at its extreme


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
    with np.errstate(over="ignore", invalid="ignore"):  # |x| near float64's limit: an infinite step or spread
        # share of unchanged successive samples per (window, channel); a one-sample window has none to compare
        differences = np.diff(safe, axis=1) if values.shape[1] > 1 else np.zeros((count, 1, values.shape[2]))
        unchanged = (differences == 0).mean(axis=1)
        spread = safe.std(axis=1)
    flat = ((unchanged >= config.flat_fraction) | (spread < config.minimum_std)).any(axis=1) & ~non_finite
    low, high = safe.min(axis=1, keepdims=True), safe.max(axis=1, keepdims=True)
    with np.errstate(over="ignore", invalid="ignore"):
        band = config.clipping_band * (high - low)  # a rail jitters a few counts; resampling overshoots it
        band = np.where(np.isfinite(band), band, 0.0)  # a range beyond float64: only the extreme values themselves
        at_extreme = np.maximum((safe <= low + band).sum(axis=1), (safe >= high - band).sum(axis=1))  # (n, channels)
    needed = max(MIN_CLIPPED_SAMPLES, config.clipping_fraction * values.shape[1])
    clipped = (at_extreme >= needed).any(axis=1) & ~non_finite & ~flat
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
