"""Streaming QRS detection in numpy, after Pan & Tompkins (1985).

Band-pass (two moving sums ≈ 15 Hz low-pass, minus a centred moving average ≈
5 Hz high-pass), five-point derivative, squaring and a 150 ms moving-window
integration (MWI). Peaks of the MWI that dominate their ±200 ms neighbourhood are
candidates; adaptive signal/noise levels (SPKI/NPKI) with a threshold between
them decide QRS vs noise, with a 200 ms refractory period, T-wave rejection by
slope, and search-back at half threshold when no QRS came for 1.66 mean RR
intervals. A search-back that finds nothing lowers the signal level, so one huge
artefact cannot blind the detector for good.

Filtering is vectorised per block; only the candidate decisions (a few per
second) run in Python. ``process`` returns coarse R positions (the band-passed
signal's extreme, delay-compensated); :func:`refine_peaks` moves each to the
local extreme of the raw signal, where training windows were centred, and
:func:`spaced_peaks` drops a refined peak that came too close to the one before.
:func:`detect_beats` is that whole path over one continuous signal: the R-peaks
``EcgStream`` reports for it, which training cuts its beats at.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from runtime.ecg.decisions import DEFAULT_DETECTOR, Candidate, DecisionState, DetectorConfig


def _box(values: np.ndarray, length: int) -> np.ndarray:
    """Moving sums of ``length`` samples ('valid' part: len(values) − length + 1 values): differences of the running
    sum from 0 (one sequential ``cumsum``: the same numbers however the work is arranged around it)."""
    total = np.empty(values.size + 1)
    total[0] = 0.0
    np.cumsum(values, out=total[1:])
    return total[length:] - total[:-length]


def windows_at(values: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """``values[start : start + width]`` for every start (each inside ``values``, a contiguous 1-D array): a
    (len(starts), width) copy, gathered through a strided view instead of an index array."""
    rows = np.ndarray((values.size - width + 1, width), values.dtype, values, 0, (values.itemsize, values.itemsize))
    return rows[starts]


def _rolling_max(values: np.ndarray, width: int) -> np.ndarray:
    """max(values[i : i + width]) for every i (len(values) − width + 1 values), by doubling spans."""
    result, span = values, 1
    while span * 2 <= width:
        result = np.maximum(result[:-span], result[span:])
        span *= 2
    if span < width:
        result = np.maximum(result[: result.size - (width - span)], result[width - span :])
    return result


class RPeakDetector:
    """Block-wise streaming QRS detector; indices are absolute sample positions."""

    def __init__(self, sample_rate_hz: float, config: DetectorConfig = DEFAULT_DETECTOR):
        self.config = config
        self.rate = float(sample_rate_hz)
        self.lowpass = max(2, round(config.lowpass_box_s * self.rate))
        self.highpass = 2 * max(1, round(config.highpass_box_s * self.rate / 2)) + 1
        self.integration = max(2, round(config.integration_s * self.rate))
        self.tail_length = 2 * (self.lowpass - 1) + (self.highpass - 1) + 4 + (self.integration - 1)
        self.delay = (self.lowpass - 1) + (self.highpass - 1) // 2  # band-pass group delay in samples
        self.radius = max(1, round(config.refractory_s * self.rate))
        self.learning = max(1, round(config.learning_s * self.rate))
        self._integration_offsets = np.arange(self.integration)
        self.reset(0)

    def reset(self, position: int) -> None:
        """Start afresh at absolute index ``position`` (after a gap or a flat line)."""
        self.position = int(position)
        self.origin = int(position)
        self._tail: np.ndarray | None = None
        self._buffer_start = int(position)
        self._mwi = np.zeros(0)
        self._band = np.zeros(0)
        self._slope = np.zeros(0)
        self._decided_until = int(position)
        self._learn_peak = 0.0
        self._learn_sum = 0.0
        self._learn_count = 0
        self._stash: list[Candidate] = []
        self.state: DecisionState | None = None

    def process(self, samples: np.ndarray, start: int | None = None) -> list[int]:
        """Coarse R indices of the QRS complexes this block lets the detector decide."""
        samples = np.asarray(samples, dtype=np.float64)
        if start is not None and start != self.position:
            self.reset(start)
        if samples.size == 0:
            return []
        self._filter(samples)
        return self._decide(final=False)

    def finish(self) -> list[int]:
        """Decide everything left, as if the signal ended here (before a gap, flat line or the end)."""
        if self.position == self.origin:
            return []
        return self._decide(final=True)

    def _filter(self, samples: np.ndarray) -> None:
        if self._tail is None:
            self._tail = np.full(self.tail_length, samples[0])
        joined = np.concatenate([self._tail, samples])
        self._tail = joined[-self.tail_length :].copy()  # (``joined`` is centred in place below)
        # the arithmetic of (x − x₀, two low-pass sums / L², band = low-pass − its moving mean, the five-point
        # derivative, its moving mean square), operation by operation and in the same order, in place where it can
        with np.errstate(over="ignore", invalid="ignore"):
            joined -= joined[0]
            lowpassed = _box(_box(joined, self.lowpass), self.lowpass)
            lowpassed /= self.lowpass * self.lowpass
            half = (self.highpass - 1) // 2
            mean = _box(lowpassed, self.highpass)
            mean /= self.highpass
            band = np.subtract(lowpassed[half : lowpassed.size - half], mean, out=mean)
            derivative = np.multiply(band[4:], 2)
            derivative += band[3:-1]
            derivative -= band[1:-3]
            derivative -= 2 * band[:-4]
            derivative /= 8.0
            mwi = _box(np.square(derivative), self.integration)
            mwi /= self.integration
        count = samples.size
        keep_from = min(self._decided_until, self.position) - max(self.radius, self.integration) - 4
        drop = max(0, keep_from - self._buffer_start)
        self._mwi = np.concatenate([self._mwi[drop:], mwi])
        self._band = np.concatenate([self._band[drop:], np.abs(band[-count:])])
        self._slope = np.concatenate([self._slope[drop:], np.abs(derivative[-count:])])
        self._buffer_start += drop
        self._track_learning(mwi)
        self.position += count

    def _track_learning(self, mwi: np.ndarray) -> None:
        if self.state is not None:
            return
        inside = mwi[: max(0, self.origin + self.learning - self.position)]
        finite = inside[np.isfinite(inside)]
        if finite.size:
            self._learn_peak = max(self._learn_peak, float(finite.max()))
            self._learn_sum += float(finite.sum())
            self._learn_count += finite.size

    def _candidates(self, final: bool) -> list[Candidate]:
        """MWI peaks that are the largest value within ±radius, decided up to where the lookahead allows."""
        low = self._decided_until
        limit = self.position - 2 if final else self.position - self.radius - 2  # a peak needs radius after it
        if limit < low:
            return []
        first, last = low - self.radius, limit + self.radius  # the neighbourhood every decided peak needs
        window = self._mwi[max(first, self._buffer_start) - self._buffer_start : last + 1 - self._buffer_start]
        missing_left = max(0, self._buffer_start - first)  # right after a reset
        missing_right = (last + 1 - first) - missing_left - window.size  # at the end of the signal
        if missing_left or missing_right:
            window = np.concatenate([np.full(missing_left, -np.inf), window, np.full(missing_right, -np.inf)])
        centre = window[self.radius : self.radius + limit - low + 1]
        left = window[self.radius - 1 : self.radius + limit - low]
        right = window[self.radius + 1 : self.radius + limit - low + 2]
        with np.errstate(invalid="ignore"):
            is_peak = (centre > left) & (centre >= right) & (centre == _rolling_max(window, 2 * self.radius + 1))
        self._decided_until = limit + 1
        local = np.flatnonzero(is_peak)
        if local.size == 0:
            return []
        peaks = low + local
        values = centre[local]
        last_index = self._mwi.size - 1
        band_first = int(local[0]) + low - self.integration - 1 - self._buffer_start  # first band row (slopes: + 2)
        if band_first >= 0 and int(local[-1]) + low - self._buffer_start <= last_index:  # every row in the buffers
            slopes = windows_at(self._slope, peaks - (self.integration - 1 + self._buffer_start), self.integration
                                ).max(axis=1)
            band = windows_at(self._band, peaks - (self.integration + 1 + self._buffer_start), self.integration)
            coarse = peaks + band.argmax(axis=1)
            coarse -= self.integration + 1 + self.delay
        else:
            slope_rows = (peaks - self.integration + 1 - self._buffer_start)[:, None] + self._integration_offsets
            slopes = self._slope[np.minimum(np.maximum(slope_rows, 0, out=slope_rows), last_index,
                                            out=slope_rows)].max(axis=1)
            band_rows = (peaks - self.integration - 1 - self._buffer_start)[:, None] + self._integration_offsets
            np.minimum(np.maximum(band_rows, 0, out=band_rows), last_index, out=band_rows)
            coarse = band_rows[np.arange(peaks.size), self._band[band_rows].argmax(axis=1)] + (
                self._buffer_start - self.delay)
        return list(map(Candidate, peaks.tolist(), values.tolist(), slopes.tolist(), coarse.tolist()))

    def _decide(self, final: bool) -> list[int]:
        candidates = self._candidates(final)
        if self.state is None:
            self._stash.extend(candidates)
            if self.position - self.origin < self.learning and not final:
                return []
            self.state = self._learned_state()
            candidates, self._stash = self._stash, []
        accepted = self.state.run(candidates, self._decided_until)
        return accepted

    def _learned_state(self) -> DecisionState:
        mean = self._learn_sum / self._learn_count if self._learn_count else 0.0
        state = DecisionState(self.config, self.rate, signal_level=self._learn_peak / 3.0, noise_level=mean / 2.0)
        state.start(self.origin, self.origin + self.learning)
        return state


def refine_peaks(
    signal: np.ndarray, coarse: np.ndarray, rate: float, reach_s: float, context: tuple[int, int]
) -> np.ndarray:
    """Each coarse index moved to the largest |signal − median| within ±reach_s.

    The median is taken over ``context`` = (samples before, samples after) the
    coarse index; indices are positions in ``signal`` and are clipped to it.
    """
    coarse = np.asarray(coarse, dtype=np.int64)
    if coarse.size == 0 or signal.size == 0:
        return coarse
    last = signal.size - 1
    reach = max(0, round(reach_s * rate))
    width = context[0] + context[1]
    if (signal.ndim == 1 and signal.dtype == np.float64 and signal.flags.c_contiguous and width > 0
            and int(coarse.min()) - max(context[0], reach) >= 0 and int(coarse.max()) + max(context[1] - 1, reach)
            <= last):  # the usual case: nothing to clip, windows through a strided view
        around = windows_at(signal, coarse - context[0], width)
        low, high = (width - 1) // 2, width // 2
        around.partition((low, high), axis=1)
        median = around[:, low] + around[:, high]  # np.median: the mean of the middle pair (one value twice if odd)
        median /= 2
        distance = windows_at(signal, coarse - reach, 2 * reach + 1)
        distance -= median[:, None]
        found = np.abs(distance, out=distance).argmax(axis=1)
        found += coarse
        found -= reach
        return found
    around = coarse[:, None] + np.arange(-context[0], context[1])
    np.minimum(np.maximum(around, 0, out=around), last, out=around)
    low, high = (around.shape[1] - 1) // 2, around.shape[1] // 2
    ranked = np.partition(signal[around], (low, high), axis=1)
    median = ranked[:, low] + ranked[:, high]  # np.median: the mean of the middle pair (one value twice if odd)
    median /= 2
    local = coarse[:, None] + np.arange(-reach, reach + 1)
    np.minimum(np.maximum(local, 0, out=local), last, out=local)
    distance = signal[local]
    distance -= median[:, None]
    return local[np.arange(coarse.size), np.abs(distance, out=distance).argmax(axis=1)]


def detect_r_peaks(
    signal: np.ndarray,
    sample_rate_hz: float,
    config: DetectorConfig = DEFAULT_DETECTOR,
    block_s: float = 2.0,
    reach_s: float = 0.05,
) -> np.ndarray:
    """Offline convenience: R-peak indices of a whole clean signal (same code path as the stream)."""
    values = np.asarray(signal, dtype=np.float64).reshape(-1)
    detector = RPeakDetector(sample_rate_hz, config)
    block = max(1, round(block_s * sample_rate_hz))
    coarse: list[int] = []
    for start in range(0, values.size, block):
        coarse.extend(detector.process(values[start : start + block]))
    coarse.extend(detector.finish())
    context = (round(0.25 * sample_rate_hz), round(0.45 * sample_rate_hz))
    refined = refine_peaks(values, np.asarray(coarse, dtype=np.int64), sample_rate_hz, reach_s, context)
    return np.unique(refined) if refined.size else refined


def minimum_peak_spacing(sample_rate_hz: float, config: DetectorConfig = DEFAULT_DETECTOR) -> float:
    """Samples a refined R-peak keeps from the one before it: half the refractory period."""
    return config.refractory_s * float(sample_rate_hz) / 2


def spaced_peaks(peaks: Sequence[int], previous: int | None, minimum: float) -> list[int]:
    """Positions in ``peaks`` (refined, in detection order) that are kept: each at least ``minimum`` samples
    after the last kept peak. Refinement can move two coarse peaks together (or past each other); the later
    one goes. ``previous``: the last peak kept before these (None at the start)."""
    kept: list[int] = []
    for position, peak in enumerate(peaks):
        if previous is None or peak - previous >= minimum:
            kept.append(position)
            previous = peak
    return kept


def detect_beats(
    signal: np.ndarray,
    sample_rate_hz: float,
    window: tuple[int, int],
    config: DetectorConfig = DEFAULT_DETECTOR,
    block_s: float = 2.0,
    reach_s: float = 0.05,
) -> np.ndarray:
    """The R-peaks ``EcgStream`` reports for one continuous signal at the model rate (no gap, no flat line):
    detection in blocks, refinement within ±``reach_s`` against the median of the beat ``window`` (samples
    before, samples from the R-peak on), then ``spaced_peaks``. int64 sample indices."""
    values = np.asarray(signal, dtype=np.float64).reshape(-1)
    detector = RPeakDetector(sample_rate_hz, config)
    block = max(1, round(block_s * sample_rate_hz))
    coarse: list[int] = []
    for start in range(0, values.size, block):
        coarse.extend(detector.process(values[start : start + block]))
    coarse.extend(detector.finish())
    refined = refine_peaks(values, np.asarray(coarse, dtype=np.int64), sample_rate_hz, reach_s, window).tolist()
    kept = spaced_peaks(refined, None, minimum_peak_spacing(sample_rate_hz, config))
    return np.asarray([refined[position] for position in kept], dtype=np.int64)
