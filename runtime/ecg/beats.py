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
from dataclasses import dataclass

import numpy as np

from runtime.decide import decide_single_label
from runtime.domain import outside_any
from runtime.events import BeatEvent, beat_event
from runtime.input_features import input_features
from runtime.results import OUT_OF_DOMAIN


@dataclass
class BeatBlock:
    """Beats whose windows were cut in one block, in time order, waiting for their model inputs and their batch.

    ``BeatInputStream`` fills the inputs in order (``filled``: the beat's RR context is known); the stream releases
    them in order (``released``), and the inputs are computed then, for a release's beats at once (``BeatRows``).
    """

    peaks: np.ndarray  # int64: model-rate R-peak indices from the stream start (gaps included)
    flags: list[tuple[str, ...]]  # quality flags per beat (warming_up is added when its inputs are computed)
    heart_rate_bpm: list[float | None]
    heart_rate_1min_bpm: list[int | None]
    windows: np.ndarray  # float32, (beats, samples): the model-rate window; never leaves the stream
    rate: float  # the model's sample rate (times are peaks / rate)
    filled: int = 0  # the first ``filled`` beats have their inputs
    released: int = 0  # the first ``released`` beats became events

    def __len__(self) -> int:
        return len(self.peaks)


@dataclass(frozen=True)
class BeatInputColumns:
    """What ``BeatInputStream`` computed for some filled beats, in order: one row per beat."""

    flags: list[tuple[str, ...]]  # the blocks' quality flags, warming_up added
    judged: np.ndarray  # bool: the model runs on it
    rr_ms: np.ndarray  # float64 (beats, 3): pre, post, local RR in ms; NaN: none
    windows: np.ndarray  # float32 (beats, samples): the windows as cut
    rr: np.ndarray | None = None  # float32 RR features (beats, 6), when the bundle uses them
    scored: np.ndarray | None = None  # float64 z-scored windows (template bundles)
    template_starts: np.ndarray | None = None  # int64: each beat's template members (absolute indices)
    template_stops: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.judged)

    def head(self, count: int) -> tuple[BeatInputColumns, BeatInputColumns | None]:
        """(the first ``count`` rows, the rest or None)."""
        if count == len(self):
            return self, None

        def cut(part: slice) -> BeatInputColumns:
            return BeatInputColumns(*(None if value is None else value[part] for value in (
                self.flags, self.judged, self.rr_ms, self.windows, self.rr, self.scored, self.template_starts,
                self.template_stops)))

        return cut(slice(0, count)), cut(slice(count, None))

    @staticmethod
    def joined(first: BeatInputColumns, second: BeatInputColumns) -> BeatInputColumns:
        def join(a, b):
            return None if a is None else a + b if isinstance(a, list) else np.concatenate([a, b])

        return BeatInputColumns(*(join(getattr(first, name), getattr(second, name)) for name in (
            "flags", "judged", "rr_ms", "windows", "rr", "scored", "template_starts", "template_stops")))


@dataclass(frozen=True)
class BeatRows:
    """Some beats of one or more blocks, gathered in order for classification, with their computed inputs."""

    peaks: np.ndarray
    times: list[float]
    heart_rate_bpm: list[float | None]
    heart_rate_1min_bpm: list[int | None]
    inputs: BeatInputColumns

    @classmethod
    def gather(cls, parts: list[tuple[BeatBlock, int, int]], inputs: BeatInputColumns) -> BeatRows:
        """The rows ``parts`` ((block, first row, end row) in order) of the blocks, whose inputs are ``inputs``."""
        if len(parts) == 1:
            block, first, end = parts[0]
            peaks = block.peaks[first:end]
            heart_rate, per_minute = block.heart_rate_bpm[first:end], block.heart_rate_1min_bpm[first:end]
        else:
            peaks = np.concatenate([block.peaks[first:end] for block, first, end in parts])
            heart_rate = [item for block, first, end in parts for item in block.heart_rate_bpm[first:end]]
            per_minute = [item for block, first, end in parts for item in block.heart_rate_1min_bpm[first:end]]
        return cls(peaks, (peaks / parts[0][0].rate).tolist(), heart_rate, per_minute, inputs)

    @property
    def flags(self) -> list[tuple[str, ...]]:
        return self.inputs.flags

    @property
    def judged(self) -> np.ndarray:
        return self.inputs.judged

    @property
    def rr_ms(self) -> np.ndarray:
        return self.inputs.rr_ms

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
    every beat's event; a beat that is not judged gets no class, probability or latency. A beat whose inputs leave
    the bundle's domain (``runtime.domain``) is flagged ``out_of_domain`` and is not judged either.

    ``model_inputs(rows, positions)`` gives the inputs of the beats at ``positions`` of ``rows``. The class, its
    probability and the low-confidence flag follow the bundle's decision rule (``runtime.decide``); the stream
    accepts only single-label task kinds.
    """
    judged = np.flatnonzero(rows.judged)
    inputs = model_inputs(rows, judged)  # with no beat to judge too: the stream traces every beat here
    outside = outside_any(bundle.inputs, inputs) if len(judged) else None
    if outside is not None and outside.any():  # inputs the model was not developed on: flagged, never classified
        for position in judged[outside].tolist():
            rows.flags[position] = (*rows.flags[position], OUT_OF_DOMAIN)
        judged, inputs = judged[~outside], {name: values[~outside] for name, values in inputs.items()}
    count = len(judged)
    labels, confidence, low, latency = [], [], [], [0.0] * count
    probabilities: list[dict[str, float]] = []
    features = None
    if count:
        for first in range(0, count, batch_size):
            feed = {name: values[first : first + batch_size] for name, values in inputs.items()}
            started = time.perf_counter()
            outputs = bundle.predict(feed)
            size = min(batch_size, count - first)
            latency[first : first + size] = [(time.perf_counter() - started) * 1e6 / size] * size
            decided = decide_single_label(bundle.output, outputs)
            labels += map(decided.labels.__getitem__, decided.chosen.tolist())
            confidence += decided.confidence.tolist()
            low += decided.low_confidence.tolist()
            names = decided.labels
            if len(names) == 2:  # binary: a dict display per beat, the same dict as dict(zip(...))
                first_name, second_name = names
                probabilities += [{first_name: one, second_name: two} for one, two in decided.scores.tolist()]
            else:
                probabilities += [dict(zip(names, row, strict=True)) for row in decided.scores.tolist()]
        # telemetry's summary features, of the arrays the model was fed (the reference profile's, named as there)
        if with_features:
            found = input_features(inputs, bundle.inputs)
            names = list(found)
            if names:  # no features: no dict (None), as for a beat without them
                table = np.column_stack([found[name] for name in names]).tolist()  # rows of len(names) values
                features = [dict(zip(names, row)) for row in table]
    return _events(rows, judged.tolist(), (labels, confidence, probabilities, low, latency), features)


def _events(rows: BeatRows, judged: Sequence[int], decided: tuple, features: list[dict] | None) -> list[BeatEvent]:
    labels, confidence, probabilities, low, latency = decided
    count = len(rows)
    pre, post, local = rows.rr_ms.T.tolist()  # one list per column
    if np.isnan(rows.rr_ms).any():  # NaN: none
        pre, post, local = ([None if value != value else value for value in column] for column in (pre, post, local))
    if len(judged) == count:  # every beat judged: one pass over the columns
        return [beat_event(*values) for values in zip(
            rows.times, labels, confidence, probabilities, rows.heart_rate_bpm, rows.heart_rate_1min_bpm, rows.flags,
            low, latency, features if features is not None else [None] * count, pre, post, local, strict=True)]
    events: list[BeatEvent] = []
    slots = dict(zip(judged, range(len(judged)), strict=True))
    for index, (time_s, flags, heart_rate, per_minute, before, after, mean) in enumerate(zip(
            rows.times, rows.flags, rows.heart_rate_bpm, rows.heart_rate_1min_bpm, pre, post, local, strict=True)):
        slot = slots.get(index)
        if slot is None:
            events.append(beat_event(time_s, None, None, {}, heart_rate, per_minute, flags, False, 0.0, None, before,
                                     after, mean))
            continue
        events.append(beat_event(time_s, labels[slot], confidence[slot], probabilities[slot], heart_rate, per_minute,
                                 flags, low[slot], latency[slot], None if features is None else features[slot],
                                 before, after, mean))
    return events
