"""Streaming rational resampling with a windowed-sinc polyphase filter (numpy only), for every stream.

The ECG stream (``runtime.ecg``) and the windowed stream (``runtime.windows``) bring a device's signal to the
model's rate with it; ``runtime.ecg.resample`` re-exports it for the ECG stream's older imports.

Output sample ``m`` is the band-limited value of the input at time
``m * down / up`` input samples, computed from the ``2 * half_width`` input
samples around it with a Blackman-windowed sinc whose cut-off sits below the
lower of the two Nyquist frequencies. The filter is centred, so the output is
not delayed; each output waits for ``half_width`` input samples after it.

Every output is computed from the same inputs in the same order however the
input is split into chunks, so streaming results are bit-identical to a
one-shot run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from runtime.errors import EdgemedError

_OUTPUTS_PER_PASS = 8192  # at most this many outputs per pass …
_SCRATCH_ELEMENTS = 4_000_000  # … and at most this many (outputs × taps) scratch values (32 MB of float64)
MAX_KERNEL_ELEMENTS = 4_000_000  # phases × taps (32 MB of float64): far above any ECG ratio (50–10 000 Hz)


class ResampleRatioError(EdgemedError):
    """The two rates need a kernel too large to build: their ratio is far outside any device's."""


@dataclass(frozen=True)
class ResamplerConfig:
    zero_crossings: int = 8  # sinc lobes on each side of the kernel centre: stop-band attenuation vs. cost
    cutoff_fraction: float = 0.9  # pass-band edge as a share of the lower Nyquist frequency
    max_phases: int = 1000  # largest up-factor; rates whose ratio needs more phases are approximated


def rational_ratio(source_rate_hz: float, target_rate_hz: float, max_phases: int = 1000) -> tuple[int, int]:
    """(up, down) with up/down ≈ target/source and up ≤ max_phases."""
    inverse = Fraction(source_rate_hz).limit_denominator(10**6) / Fraction(target_rate_hz).limit_denominator(10**6)
    inverse = inverse.limit_denominator(max_phases)  # down/up with up bounded
    return inverse.denominator, max(inverse.numerator, 1)


def _kernel_table(up: int, down: int, config: ResamplerConfig) -> tuple[np.ndarray, int]:
    """Per-phase taps (up × 2h), each row summing to 1, and the half width h in input samples."""
    cutoff = 0.5 * min(1.0, up / down) * config.cutoff_fraction  # cycles per input sample
    half = max(2, math.ceil(config.zero_crossings / (2.0 * cutoff)))
    if up * 2 * half > MAX_KERNEL_ELEMENTS:  # checked before anything is allocated
        raise ResampleRatioError(
            f"resampling by {up}/{down} needs a {up} × {2 * half} kernel",
            expected=f"rates whose kernel has at most {MAX_KERNEL_ELEMENTS} taps (e.g. ECG rates of 50–10 000 Hz)",
            fix="pass the recording's real sample rate",
        )
    fractions = np.arange(up)[:, None] / up
    distance = fractions + (half - 1) - np.arange(2 * half)[None, :]  # t - j for taps j = n-h+1 … n+h
    window = 0.42 + 0.5 * np.cos(np.pi * distance / half) + 0.08 * np.cos(2 * np.pi * distance / half)
    window[np.abs(distance) >= half] = 0.0
    taps = 2 * cutoff * np.sinc(2 * cutoff * distance) * window
    return taps / taps.sum(axis=1, keepdims=True), half


class StreamingResampler:
    """Resample a stream from ``source_rate_hz`` to ``target_rate_hz`` chunk by chunk."""

    def __init__(self, source_rate_hz: float, target_rate_hz: float, config: ResamplerConfig = ResamplerConfig()):
        self.up, self.down = rational_ratio(source_rate_hz, target_rate_hz, config.max_phases)
        self.identity = self.up == self.down
        identity_taps = (np.ones((1, 1)), 0)
        self.taps, self.half_width = identity_taps if self.identity else _kernel_table(self.up, self.down, config)
        self.reset()

    def reset(self) -> None:
        """Forget all input: the next sample is input index 0 and output index 0."""
        self._buffer = np.zeros(0)  # input samples from index self._buffer_start on
        self._buffer_start = 0
        self._received = 0  # real input samples so far
        self._next_output = 0

    @property
    def output_per_input(self) -> float:
        return self.up / self.down

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Outputs that the input so far fully determines (a centred filter looks ``half_width`` ahead)."""
        samples = np.asarray(samples, dtype=np.float64).reshape(-1)
        if self.identity:
            self._received += samples.size
            return samples.copy()
        if samples.size == 0:
            return np.zeros(0)
        if self._received == 0:  # the left edge is held: h-1 copies of the first sample before index 0
            self._buffer = np.full(self.half_width - 1, samples[0])
            self._buffer_start = -(self.half_width - 1)
        self._buffer = np.concatenate([self._buffer, samples])
        self._received += samples.size
        return self._produce(self._received - 1 - self.half_width)

    def flush(self) -> np.ndarray:
        """The remaining outputs up to the last input sample, holding the right edge; then reset."""
        if self.identity or self._received == 0:
            self.reset()
            return np.zeros(0)
        self._buffer = np.concatenate([self._buffer, np.full(self.half_width, self._buffer[-1])])
        output = self._produce(self._received - 1)
        self.reset()
        return output

    def _produce(self, last_centre: int) -> np.ndarray:
        """Every output whose centre input index n = floor(m·down/up) is at most ``last_centre``."""
        if last_centre < 0:
            return np.zeros(0)
        last_output = ((last_centre + 1) * self.up - 1) // self.down
        count = last_output - self._next_output + 1
        if count <= 0:
            return np.zeros(0)
        pieces = []
        offsets = np.arange(2 * self.half_width)
        per_pass = max(1, min(_OUTPUTS_PER_PASS, _SCRATCH_ELEMENTS // offsets.size))  # each output's sum is the same
        for first in range(self._next_output, last_output + 1, per_pass):
            outputs = np.arange(first, min(first + per_pass, last_output + 1), dtype=np.int64)
            centres = outputs * self.down // self.up
            phases = outputs * self.down % self.up
            positions = (centres - self.half_width + 1 - self._buffer_start)[:, None] + offsets[None, :]
            pieces.append((self._buffer[positions] * self.taps[phases]).sum(axis=1))
        self._next_output = last_output + 1
        keep_from = (self._next_output * self.down // self.up) - self.half_width + 1
        drop = max(0, keep_from - self._buffer_start)
        self._buffer = self._buffer[drop:]
        self._buffer_start += drop
        return np.concatenate(pieces)


class ChannelResampler:
    """``StreamingResampler`` for ``(samples, channels)`` chunks: one per channel, each exact under any chunking."""

    def __init__(self, source_rate_hz: float, target_rate_hz: float, channels: int,
                 config: ResamplerConfig = ResamplerConfig()):
        self.channels = [StreamingResampler(source_rate_hz, target_rate_hz, config) for _ in range(max(1, channels))]
        first = self.channels[0]
        self.up, self.down, self.identity, self.half_width = first.up, first.down, first.identity, first.half_width

    @property
    def output_per_input(self) -> float:
        return self.up / self.down

    def process(self, samples: np.ndarray) -> np.ndarray:
        """``(outputs, channels)`` that the input so far fully determines (every channel gives as many)."""
        values = np.asarray(samples, dtype=np.float64).reshape(-1, len(self.channels))
        return np.stack([channel.process(values[:, index]) for index, channel in enumerate(self.channels)], axis=1)

    def flush(self) -> np.ndarray:
        """The remaining ``(outputs, channels)``, holding the right edge; then reset."""
        return np.stack([channel.flush() for channel in self.channels], axis=1)

    def reset(self) -> None:
        for channel in self.channels:
            channel.reset()
