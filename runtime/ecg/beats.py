"""From accepted R-peaks to ``BeatEvent``s: heart rates, batched inference on every input by name, event fields.

A block's accepted beats travel together as columns (``BeatBlock``): their heart rates, flags and windows are
computed for the whole block, their model inputs as the bundle declares them (``runtime.ecg.beat_inputs``), and
a release's beats are classified in batches and turned into events in one pass — no per-beat objects but the events.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from runtime.decide import decide_single_label
from runtime.events import BeatEvent, beat_event
from runtime.input_features import input_features


@dataclass
class BeatBlock:
    """Beats whose windows were cut in one block, in time order, waiting for their model inputs and their batch.

    ``BeatInputStream`` fills the inputs in order (``filled``); the stream releases them in order (``released``).
    """

    peaks: np.ndarray  # int64: model-rate R-peak indices from the stream start (gaps included)
    flags: list[tuple[str, ...]]  # quality flags per beat (warming_up added when its inputs are filled)
    heart_rate_bpm: list[float | None]
    heart_rate_1min_bpm: list[int | None]
    windows: np.ndarray  # float32, (beats, samples): the model-rate window; never leaves the stream
    rate: float  # the model's sample rate (times are peaks / rate)
    filled: int = 0  # the first ``filled`` beats have their inputs
    released: int = 0  # the first ``released`` beats became events
    judged: np.ndarray = field(init=False)  # bool: the model runs on it
    rr: np.ndarray | None = field(init=False, default=None)  # float32 RR features (beats, 6), when the bundle uses them
    rr_ms: np.ndarray = field(init=False)  # float64 (beats, 3): pre, post, local RR in ms; NaN: none
    scored: np.ndarray | None = field(init=False, default=None)  # float64 z-scored windows (template bundles)
    template_starts: np.ndarray = field(init=False)  # int64: each beat's template members (absolute indices)
    template_stops: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        count = len(self.peaks)
        self.judged = np.ones(count, dtype=bool)
        self.rr_ms = np.full((count, 3), np.nan)
        self.template_starts = np.zeros(count, dtype=np.int64)
        self.template_stops = np.zeros(count, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.peaks)


@dataclass(frozen=True)
class BeatRows:
    """Some beats of one or more blocks, gathered in order for classification."""

    peaks: np.ndarray
    times: list[float]
    flags: list[tuple[str, ...]]
    heart_rate_bpm: list[float | None]
    heart_rate_1min_bpm: list[int | None]
    judged: np.ndarray
    rr_ms: np.ndarray
    parts: list[tuple[BeatBlock, int, int]]  # (block, first row, end row) in order

    @classmethod
    def gather(cls, parts: list[tuple[BeatBlock, int, int]]) -> BeatRows:
        def joined(name: str) -> list:
            return [item for block, first, end in parts for item in getattr(block, name)[first:end]]

        def stacked(name: str) -> np.ndarray:
            return np.concatenate([getattr(block, name)[first:end] for block, first, end in parts])

        peaks = stacked("peaks")
        return cls(peaks, (peaks / parts[0][0].rate).tolist(), joined("flags"), joined("heart_rate_bpm"),
                   joined("heart_rate_1min_bpm"), stacked("judged"), stacked("rr_ms"), parts)

    def column(self, name: str) -> np.ndarray:
        """One of the blocks' arrays (``windows``, ``rr``, ``scored``, ``template_starts`` …) for these beats."""
        return np.concatenate([getattr(block, name)[first:end] for block, first, end in self.parts])

    def __len__(self) -> int:
        return len(self.peaks)


class HeartRate:
    """Instantaneous (60 / RR) and per-minute (beat count) heart rate, broken by gaps and flat lines."""

    def __init__(self, rate: float, window_s: float) -> None:
        self.rate = rate
        self.window_s = window_s
        self._times: list[float] = []  # beat times (s) that may still be inside the window
        self._breaks: list[int] = []  # sample indices where continuity breaks
        self._last: int | None = None

    def interrupt(self, index: int) -> None:
        """No RR interval spans ``index`` (a gap or flat line starts or ends there)."""
        self._breaks.append(index)

    @property
    def last(self) -> int | None:
        return self._last

    def beats(self, indices: np.ndarray) -> tuple[list[float | None], list[int | None]]:
        """(instantaneous bpm, beats in the last window) of beats at sample ``indices`` (increasing, after the
        previous call's). A dozen beats a block: plain Python numbers (the same IEEE arithmetic as numpy's)."""
        peaks = np.asarray(indices, dtype=np.int64).tolist()
        if not peaks:
            return [], []
        previous = [-1 if self._last is None else self._last, *peaks[:-1]]
        breaks = self._breaks
        if breaks:
            missing = [bisect.bisect_right(breaks, peak) != bisect.bisect_right(breaks, before)
                       for peak, before in zip(peaks, previous, strict=True)]
        else:
            missing = [False] * len(peaks)
        if self._last is None:
            missing[0] = True
        scale = 60.0 * self.rate
        bpm = [None if gap else scale / (peak - before) if peak != before else math.inf
               for gap, peak, before in zip(missing, peaks, previous, strict=True)]
        if self._last is not None or len(peaks) > 1:
            del breaks[: bisect.bisect_right(breaks, previous[-1])]
        self._last = peaks[-1]
        times = self._times
        kept = len(times)
        now = [peak / self.rate for peak in peaks]
        times += now
        window = self.window_s
        per_minute: list[int | None] = []
        gone = 0
        for count, moment in enumerate(now, start=kept + 1):
            gone = bisect.bisect_right(times, moment - window)
            per_minute.append(count - gone if moment >= window else None)
        del times[:gone]
        return bpm, per_minute


def classify(bundle, rows: BeatRows, model_inputs: Callable[[BeatRows, np.ndarray], dict[str, np.ndarray]],
             batch_size: int, with_features: bool) -> list[BeatEvent]:
    """Run the model on the judged beats in batches of ``batch_size`` (in order), every input fed by name, and build
    every beat's event; a beat that is not judged gets no class, probability or latency.

    ``model_inputs(rows, positions)`` gives the inputs of the beats at ``positions`` of ``rows``. The class, its
    probability and the low-confidence flag follow the bundle's decision rule (``runtime.decide``); the stream
    accepts only single-label task kinds.
    """
    judged = np.flatnonzero(rows.judged)
    count = len(judged)
    labels, confidence, low, latency = [], [], [], [0.0] * count
    probabilities: list[dict[str, float]] = []
    features = None
    inputs = model_inputs(rows, judged)  # with no beat to judge too: the stream traces every beat here
    if count:
        for first in range(0, count, batch_size):
            feed = {name: values[first : first + batch_size] for name, values in inputs.items()}
            started = time.perf_counter()
            outputs = bundle.predict(feed)
            size = min(batch_size, count - first)
            latency[first : first + size] = [(time.perf_counter() - started) * 1e6 / size] * size
            decided = decide_single_label(bundle.output, outputs)
            labels += [decided.labels[index] for index in decided.chosen.tolist()]
            confidence += decided.confidence.tolist()
            low += decided.low_confidence.tolist()
            probabilities += [dict(zip(decided.labels, row, strict=True)) for row in decided.scores.tolist()]
        # telemetry's summary features, of the arrays the model was fed (the reference profile's, named as there)
        if with_features:
            found = input_features(inputs, bundle.inputs)
            names = list(found)
            if names:  # no features: no dict (None), as for a beat without them
                table = np.column_stack([found[name] for name in names]).tolist()
                features = [dict(zip(names, row, strict=True)) for row in table]
    return _events(rows, judged.tolist(), (labels, confidence, probabilities, low, latency), features)


def _events(rows: BeatRows, judged: Sequence[int], decided: tuple, features: list[dict] | None) -> list[BeatEvent]:
    labels, confidence, probabilities, low, latency = decided
    rr_ms = [[None if value != value else value for value in row] for row in rows.rr_ms.tolist()]  # NaN: none
    events: list[BeatEvent] = []
    slots = dict(zip(judged, range(len(judged)), strict=True))
    for index, (time_s, flags, heart_rate, per_minute, (pre, post, local)) in enumerate(zip(
            rows.times, rows.flags, rows.heart_rate_bpm, rows.heart_rate_1min_bpm, rr_ms, strict=True)):
        slot = slots.get(index)
        if slot is None:
            events.append(beat_event(time_s, None, None, {}, heart_rate, per_minute, flags, False, 0.0, None, pre,
                                     post, local))
            continue
        events.append(beat_event(time_s, labels[slot], confidence[slot], probabilities[slot], heart_rate, per_minute,
                                 flags, low[slot], latency[slot], None if features is None else features[slot], pre,
                                 post, local))
    return events
