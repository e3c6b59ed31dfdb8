"""Signal-quality checks for the ECG stream: repair what can be repaired, flag everything.

* ``non_finite`` — NaN, ±inf or an absurd magnitude; the last good value is held.
* ``clipped`` — runs of identical samples at the stream's running extreme (or at
  the converter limits, when known): the amplifier saturated.
* ``flat_line`` — a whole segment with (almost) no variation: lead off, or a
  held value; no beats are reported inside it.
* ``gap`` — samples are missing (declared, or seen in the timestamps).
* ``rate_mismatch`` — timestamps disagree with the declared sample rate.
* ``partial_window`` — a beat window ran past the start or end of the signal and was padded.
* ``noisy`` / ``no_qrs`` — noise dominates the stretch, or it holds no QRS-like complexes: not a readable ECG
  (``runtime.ecg.noise``); beats are still reported there, never classed.
* ``warming_up`` — beats only (never a quality stretch): after a start, gap or flat line the beat's
  RR history or running template is still below its minimum (``runtime.ecg.beat_inputs``).

Source-rate checks are exact per sample, so their result does not depend on how
the stream is split into chunks.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np


class QualityFlag(StrEnum):
    NON_FINITE = "non_finite"
    FLAT_LINE = "flat_line"
    CLIPPED = "clipped"
    GAP = "gap"
    RATE_MISMATCH = "rate_mismatch"
    PARTIAL_WINDOW = "partial_window"
    NOISY = "noisy"  # broadband noise dominates (muscle, mains, lead-off noise): runtime.ecg.noise
    NO_QRS = "no_qrs"  # no steep, sparse QRS complexes (not an ECG, or heavy motion artefact): runtime.ecg.noise
    WARMING_UP = "warming_up"  # a beat's RR history / template is not yet at its minimum (no class)


# Not a readable ECG: a beat there gets no class from any bundle (with derived inputs, no flagged beat gets one)
UNREADABLE_FLAGS = frozenset({QualityFlag.NOISY.value, QualityFlag.NO_QRS.value})


@dataclass(frozen=True)
class QualityConfig:
    max_abs_sample: float = 1e9  # larger magnitudes are treated like NaN: no ECG front end produces them
    clip_min_run_s: float = 0.01  # identical samples at the running extreme for this long = saturation
    clip_min_run_samples: int = 3  # and never fewer samples than this (low sample rates)
    flat_segment_s: float = 1.0  # flat-line decisions are made per segment of this length
    flat_relative: float = 0.005  # flat if peak-to-peak ≤ this share of the recent non-flat segments' median one
    flat_absolute: float = 1e-9  # … or ≤ this share of the signal level (a held or constant value)
    flat_reference_segments: int = 30  # how many recent non-flat segments define "normal" peak-to-peak
    # the relative rule waits for this many of them: one artefact (a spike, a -999 sentinel) among the first
    # segments, or anywhere, never becomes "normal" (with the largest, one spike made every later segment flat)
    flat_reference_minimum: int = 5
    merge_gap_s: float = 0.1  # flagged stretches closer than this are reported as one
    gap_tolerance_s: float = 0.1  # a timestamp later than expected by more than this is a gap …
    gap_chunk_fraction: float = 0.25  # … plus this share of the previous chunk (clock drift is not a gap)
    rate_tolerance: float = 0.02  # measured vs declared sample rate may differ by this share
    rate_check_min_s: float = 10.0  # measure the rate only over at least this much time


@dataclass
class Interval:
    flag: QualityFlag
    start: int  # model-rate sample index, inclusive
    end: int  # exclusive
    reported: bool = False  # a QualityEvent was emitted for it


class SourceConditioner:
    """Hold-repair of bad samples and saturation detection at the source rate (stateful, exact)."""

    def __init__(self, source_rate_hz: float, config: QualityConfig, adc_range: tuple[float, float] | None = None):
        self.config = config
        self.adc_range = adc_range
        self.min_run = max(config.clip_min_run_samples, round(config.clip_min_run_s * source_rate_hz))
        self.reset()

    def reset(self) -> None:
        self._count = 0  # source samples seen since reset
        self._last_good = 0.0  # held while samples are bad
        self._maximum = -np.inf  # running extremes of repaired samples
        self._minimum = np.inf
        self._run_value = np.nan  # the run of identical values in progress
        self._run_start = 0
        self._run_extreme = False

    def process(self, samples: np.ndarray) -> tuple[np.ndarray, list[tuple[QualityFlag, int, int]]]:
        """(repaired samples, [(flag, start, end) in source indices since reset])."""
        values = np.asarray(samples, dtype=np.float64)
        marks: list[tuple[QualityFlag, int, int]] = []
        if values.size == 0:
            return values, marks
        limit = self.config.max_abs_sample
        low, high = float(values.min()), float(values.max())  # NaN in either: some sample is NaN
        if -limit <= low and high <= limit and math.isfinite(low) and math.isfinite(high):  # every sample is good
            repaired = values.copy()
        else:
            with np.errstate(invalid="ignore", over="ignore"):
                if math.isfinite(limit):  # NaN and ±inf fail the magnitude test too
                    good = np.abs(values) <= limit
                else:
                    good = np.isfinite(values) & (np.abs(values) <= limit)
            last = np.maximum.accumulate(np.where(good, np.arange(values.size), -1))
            repaired = np.where(last >= 0, values[np.maximum(last, 0)], self._last_good)
            marks.extend(self._runs(~good, QualityFlag.NON_FINITE))
            low, high = float(repaired.min()), float(repaired.max())
        self._last_good = float(repaired[-1])
        marks.extend(self._clipped(repaired, low, high))
        self._count += values.size
        return repaired, marks

    def _runs(self, mask: np.ndarray, flag: QualityFlag) -> list[tuple[QualityFlag, int, int]]:
        edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
        return [(flag, self._count + int(start), self._count + int(end)) for start, end in zip(edges[::2], edges[1::2])]

    def _clipped(self, values: np.ndarray, low: float, high: float) -> list[tuple[QualityFlag, int, int]]:
        """Saturated runs among the repaired ``values`` (``low`` / ``high``: their minimum and maximum)."""
        marks: list[tuple[QualityFlag, int, int]] = []
        if self.adc_range is not None:
            marks.extend(self._runs((values <= self.adc_range[0]) | (values >= self.adc_range[1]), QualityFlag.CLIPPED))
        if low > self._minimum and high < self._maximum:  # strictly inside the running extremes
            at_extreme = None  # no sample at one (the extremes stay)
        else:
            maximum = np.maximum.accumulate(np.concatenate([[self._maximum], values]))[1:]
            minimum = np.minimum.accumulate(np.concatenate([[self._minimum], values]))[1:]
            at_extreme = ((values == maximum) | (values == minimum)) & (maximum > minimum)
            self._maximum, self._minimum = float(maximum[-1]), float(minimum[-1])
        if not self._run_extreme and (at_extreme is None or not at_extreme.any()):  # the usual case
            if values.size > 1 and values[-2] != values[-1]:  # the usual case: the last run is the last sample
                self._run_start = self._count + values.size - 1
                self._run_value = float(values[-1])
                return marks
            different = np.flatnonzero(values != values[-1])
            if different.size:  # the last run starts after the last differing sample
                self._run_start = self._count + int(different[-1]) + 1
            elif values[-1] != self._run_value:  # the whole chunk is one new run
                self._run_start = self._count
            self._run_value = float(values[-1])
            return marks
        if at_extreme is None:
            at_extreme = np.zeros(values.size, dtype=bool)
        starts = np.flatnonzero(values != np.concatenate([[self._run_value], values[:-1]]))
        firsts = self._count + starts
        extremes = at_extreme[starts]
        boundaries = self._count + np.append(starts, values.size)
        ends = boundaries[1:]
        if starts.size == 0 or starts[0] != 0:  # the run in progress continues into this chunk
            firsts = np.concatenate([[self._run_start], firsts])
            extremes = np.concatenate([[self._run_extreme], extremes])
            ends = boundaries
        saturated = extremes & ((ends - firsts) >= self.min_run)
        runs = zip(firsts[saturated], ends[saturated])
        marks.extend((QualityFlag.CLIPPED, int(first), int(end)) for first, end in runs)
        self._run_value = float(values[-1])
        self._run_start, self._run_extreme = int(firsts[-1]), bool(extremes[-1])
        return marks


class FlatLineDetector:
    """Per-segment flat-line decision against the median peak-to-peak of the recent non-flat segments (robust: a
    spike is one segment of many, and leaves the reference as later segments come)."""

    def __init__(self, config: QualityConfig):
        self.config = config
        self._reference: deque[float] = deque(maxlen=config.flat_reference_segments)
        self._typical = 0.0  # median of self._reference once it holds flat_reference_minimum segments (0: not yet)

    def flat_segments(self, segments: np.ndarray) -> list[bool]:
        """One decision per row of ``segments`` (whole segments in time order)."""
        if segments.size == 0:
            return [False] * segments.shape[0]
        top, bottom = segments.max(axis=1), segments.min(axis=1)
        spreads = (top - bottom).tolist()
        levels = np.maximum(1.0, np.maximum(np.abs(top), np.abs(bottom))).tolist()
        decisions = []
        absolute, relative = self.config.flat_absolute, self.config.flat_relative
        for spread, level in zip(spreads, levels):
            flat = spread <= absolute * level or spread <= relative * self._typical
            if not flat:
                self._remember(spread)
            decisions.append(flat)
        return decisions

    def _remember(self, spread: float) -> None:
        self._reference.append(spread)
        if len(self._reference) >= self.config.flat_reference_minimum:
            self._typical = statistics.median(self._reference)


@dataclass
class IntervalLog:
    """Flagged stretches in model-rate samples, merged per flag, reported once when closed."""

    merge_gap: int
    intervals: list[Interval] = field(default_factory=list)

    def add(self, flag: QualityFlag, start: int, end: int) -> None:
        if end <= start:
            return
        for interval in reversed(self.intervals):
            near = start <= interval.end + self.merge_gap and end >= interval.start - self.merge_gap
            if interval.flag is flag and near:
                interval.start, interval.end = min(interval.start, start), max(interval.end, end)
                return
        self.intervals.append(Interval(flag, start, end))

    def __bool__(self) -> bool:
        return bool(self.intervals)

    def flags_between(self, start: int, end: int) -> set[QualityFlag]:
        """Flags of every stretch overlapping [start, end)."""
        return {interval.flag for interval in self.intervals if interval.start < end and interval.end > start}

    def inside(self, flag: QualityFlag, index: int) -> bool:
        return any(interval.flag is flag and interval.start <= index < interval.end for interval in self.intervals)

    def pop_closed(self, position: int, final: bool = False) -> list[Interval]:
        """Unreported stretches that cannot grow any more once everything before ``position`` is known."""
        closed = [
            item for item in self.intervals if not item.reported and (final or item.end + self.merge_gap <= position)
        ]
        for interval in closed:
            interval.reported = True
        return sorted(closed, key=lambda interval: (interval.start, interval.flag.value))

    def forget_before(self, position: int) -> None:
        """Drop reported stretches that end before ``position`` (no beat window can reach them)."""
        self.intervals = [item for item in self.intervals if not (item.reported and item.end < position)]


class SourceClock:
    """Gaps and sample-rate mismatch from the timestamps that come with chunks.

    A timestamp later than expected by more than ``gap_tolerance_s`` plus a share
    of the previous chunk's length is a gap; smaller, consistent disagreement is
    clock drift, measured over at least ``rate_check_min_s`` against the declared rate.
    """

    def __init__(self, source_rate_hz: float, config: QualityConfig) -> None:
        self.rate = source_rate_hz
        self.config = config
        self.rate_suspect = False  # the last measurement disagreed with the declared rate
        self.restart()

    def restart(self) -> None:
        """Forget the time base (after a gap)."""
        self._anchor: tuple[float, int] | None = None  # (timestamp, source samples since it)
        self._expected: float | None = None
        self._last_chunk_s = 0.0

    def gap_before(self, timestamp: float) -> float:
        """The gap ``check`` would report for a chunk stamped ``timestamp``, without taking the chunk (the caller
        refuses a gap it cannot represent before the clock moves); NaN for a timestamp that is not finite."""
        if not math.isfinite(timestamp):
            return math.nan
        if self._anchor is None or self._expected is None:
            return 0.0
        jump = timestamp - self._expected
        return jump if jump > self._allowance() else 0.0

    def _allowance(self) -> float:
        return self.config.gap_tolerance_s + self.config.gap_chunk_fraction * self._last_chunk_s

    def check(self, timestamp: float, count: int) -> float:
        """Seconds of gap before this chunk (0.0 when none); updates ``rate_suspect``."""
        if not math.isfinite(timestamp):
            return 0.0
        gap = 0.0
        if self._anchor is not None and self._expected is not None:
            jump = timestamp - self._expected
            allowance = self._allowance()
            if jump > allowance:
                gap, self._anchor = jump, None
            elif jump < -allowance:
                self.rate_suspect, self._anchor = True, None
            elif timestamp - self._anchor[0] >= self.config.rate_check_min_s:
                measured = self._anchor[1] / (timestamp - self._anchor[0])
                self.rate_suspect = abs(measured / self.rate - 1.0) > self.config.rate_tolerance
                self._anchor = None  # measure the next span afresh
        anchor = self._anchor or (timestamp, 0)
        self._anchor = (anchor[0], anchor[1] + count)
        self._last_chunk_s = count / self.rate
        self._expected = timestamp + self._last_chunk_s
        return gap
