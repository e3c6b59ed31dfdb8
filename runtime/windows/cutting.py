"""Cutting a signal into model windows: one implementation for training and the device.

A signal is ``(samples,)`` or ``(samples, channels)`` at the model's rate. Window ``i`` covers samples
``[i × hop, i × hop + window)``; only whole windows are cut (a tail shorter than a window waits for more
signal on the device, and is dropped at the end of a recording).

The device's windowed stream (``runtime.windows.stream``) calls ``model_windows`` on its buffer from the next
window's start, so every window it judges is cut, flagged and normalised by the same code, on the same values,
as training's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runtime.contract import InputSpec, WindowConfig, WindowNormalization
from runtime.windows.quality import WindowFlag, window_quality


def window_starts(total_samples: int, window_samples: int, hop_samples: int) -> np.ndarray:
    """Start index of every whole window of ``total_samples`` (int64; empty when the signal is too short)."""
    if window_samples < 1 or hop_samples < 1:
        raise ValueError(f"window ({window_samples}) and hop ({hop_samples}) must be at least one sample")
    if total_samples < window_samples:
        return np.zeros(0, dtype=np.int64)
    return np.arange(0, total_samples - window_samples + 1, hop_samples, dtype=np.int64)


def cut_windows(signal: np.ndarray, window_samples: int, hop_samples: int) -> np.ndarray:
    """``(windows, window_samples, channels)`` views of ``signal`` every hop (float64, no copy of the signal).

    ``signal`` is ``(samples,)`` (one channel) or ``(samples, channels)``.
    """
    values = np.asarray(signal)
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2:
        raise ValueError(f"a signal is (samples,) or (samples, channels), not {values.shape}")
    starts = window_starts(values.shape[0], window_samples, hop_samples)
    if starts.size == 0:
        return np.zeros((0, window_samples, values.shape[1]), dtype=values.dtype)
    views = np.lib.stride_tricks.sliding_window_view(values, window_samples, axis=0)  # (n, channels, window)
    return views[starts].transpose(0, 2, 1)


def normalize_windows(windows: np.ndarray, config: WindowConfig) -> np.ndarray:
    """What the model is fed: float32 ``windows`` normalised per window and channel as ``config`` says.

    Z-score divides by ``max(std, minimum_std)``; non-finite samples stay non-finite (their window is flagged
    and never given to the model), and so does a window whose spread overflows (finite samples near float64's
    limit): dividing by an infinite spread would feed the model zeros it then classifies.
    """
    values = np.asarray(windows, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):  # inf - inf, beyond float32: flagged by model_windows
        if config.normalization is WindowNormalization.NONE:
            return values.astype(np.float32)
        mean = values.mean(axis=1, keepdims=True)
        spread = np.maximum(values.std(axis=1, keepdims=True), config.minimum_std)
        spread[~np.isfinite(spread)] = np.nan  # an overflowing spread: NaN inputs, flagged non_finite (``_unfit``)
        return ((values - mean) / spread).astype(np.float32)


@dataclass(frozen=True)
class ModelWindows:
    """Windows as the model takes them, with where they start and what the quality checks flagged."""

    inputs: np.ndarray  # float32, shaped as the input spec: (n, samples) or (n, samples, channels)
    starts: np.ndarray  # int64 start sample of each window at the model rate
    flags: tuple[tuple[str, ...], ...]  # per window: its quality flags (empty: the model may judge it)

    @property
    def judged(self) -> np.ndarray:
        """Boolean mask of the windows without quality flags."""
        return np.array([not flags for flags in self.flags], dtype=bool)


def model_windows(signal: np.ndarray, spec: InputSpec) -> ModelWindows:
    """Cut, judge and normalise ``signal`` (at ``spec.sample_rate_hz``) for a ``signal_window`` input."""
    config = spec.derived.window if spec.derived is not None else None
    if config is None or not spec.is_signal_window:
        raise ValueError(f"input '{spec.name}' is not a signal_window input")
    values = np.asarray(signal, dtype=np.float64)
    channels = 1 if values.ndim == 1 else values.shape[1]
    if channels != spec.channels:
        raise ValueError(f"the signal has {channels} channels; input '{spec.name}' takes {spec.channels}")
    raw = cut_windows(values, spec.window_samples, spec.hop_samples)
    starts = window_starts(values.shape[0], spec.window_samples, spec.hop_samples)
    flags = window_quality(raw, config)
    inputs = normalize_windows(raw, config)
    if len(spec.shape) == 2:
        inputs = inputs[:, :, 0]
    return ModelWindows(inputs=inputs, starts=starts, flags=_unfit(inputs, flags))


def _unfit(inputs: np.ndarray, flags: tuple[tuple[str, ...], ...]) -> tuple[tuple[str, ...], ...]:
    """``non_finite`` (alone) for every window whose float32 input is not finite: a value beyond float32 in
    raw units (no normalisation), or a spread that overflows (z-score). The model never sees it."""
    finite = np.isfinite(inputs.reshape(inputs.shape[0], -1)).all(axis=1)
    if finite.all():
        return flags
    return tuple(window if ok else (WindowFlag.NON_FINITE.value,) for window, ok in zip(flags, finite.tolist(),
                                                                                          strict=True))
