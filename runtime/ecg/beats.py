"""From accepted R-peaks to ``BeatEvent``s: heart rates, batched inference on every input by name, event fields."""

from __future__ import annotations

import bisect
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from runtime.decide import Decision, decide
from runtime.events import BeatEvent
from runtime.input_features import input_features


@dataclass
class PendingBeat:
    """A beat whose window is cut, waiting for its model inputs (``runtime.ecg.beat_inputs``) and its batch."""

    time_s: float
    flags: tuple[str, ...]
    heart_rate_bpm: float | None
    heart_rate_1min_bpm: int | None
    window: np.ndarray  # model-rate samples; never leaves the stream
    peak: int = 0  # model-rate R-peak index from the stream start (gaps included)
    inputs: dict[str, np.ndarray] | None = None  # input name → one sample; None until known (one beat late with RR)
    judged: bool = True  # run the model on it (False: flagged, or warming up, in a bundle with derived inputs)
    rr_ms: tuple[float | None, float | None, float | None] = field(default=(None, None, None))  # pre, post, local

    @property
    def ready(self) -> bool:
        return self.inputs is not None


class HeartRate:
    """Instantaneous (60 / RR) and per-minute (beat count) heart rate, broken by gaps and flat lines."""

    def __init__(self, rate: float, window_s: float) -> None:
        self.rate = rate
        self.window_s = window_s
        self._times: deque[float] = deque()
        self._breaks: list[int] = []  # sample indices where continuity breaks
        self._last: int | None = None

    def interrupt(self, index: int) -> None:
        """No RR interval spans ``index`` (a gap or flat line starts or ends there)."""
        self._breaks.append(index)

    @property
    def last(self) -> int | None:
        return self._last

    def beat(self, index: int) -> tuple[float | None, int | None]:
        """(instantaneous bpm, beats in the last window) for a beat at sample ``index`` (in time order)."""
        previous, self._last = self._last, index
        instantaneous = None
        if previous is not None:
            broken = bisect.bisect_right(self._breaks, index) != bisect.bisect_right(self._breaks, previous)
            if not broken:
                instantaneous = 60.0 * self.rate / (index - previous)
            del self._breaks[: bisect.bisect_right(self._breaks, previous)]
        now = index / self.rate
        self._times.append(now)
        while self._times[0] <= now - self.window_s:
            self._times.popleft()
        return instantaneous, (len(self._times) if now >= self.window_s else None)


def classify(bundle, beats: list[PendingBeat], batch_size: int, with_features: bool) -> list[BeatEvent]:
    """Run the model on the judged beats in batches of ``batch_size`` (in order), every input fed by name,
    and build every beat's event; a beat that is not judged gets no class, probability or latency.

    The class, its probability and the low-confidence flag follow the bundle's decision rule
    (``runtime.decide``); the stream accepts only single-label task kinds.
    """
    judged = [beat for beat in beats if beat.judged]
    outcomes: list[tuple[Decision, float]] = []
    for first in range(0, len(judged), batch_size):
        batch = judged[first : first + batch_size]
        feed = {name: np.stack([beat.inputs[name] for beat in batch]) for name in batch[0].inputs}
        started = time.perf_counter()
        outputs = bundle.predict(feed)
        latency_us = (time.perf_counter() - started) * 1e6 / len(batch)
        outcomes += [(decision, latency_us) for decision in decide(bundle.output, outputs)]
    decided = iter(outcomes)
    # telemetry's summary features, of the arrays the model was fed (the reference profile's, named as there)
    features = input_features({name: np.stack([beat.inputs[name] for beat in judged]) for name in judged[0].inputs},
                              bundle.inputs) if with_features and judged else None
    feature_rows = iter(range(len(judged)))
    events: list[BeatEvent] = []
    for beat in beats:
        decision, latency_us = next(decided) if beat.judged else (None, 0.0)
        pre, post, local = beat.rr_ms
        events.append(
            BeatEvent(
                time_s=beat.time_s,
                beat_class=None if decision is None else decision.label,
                probability=None if decision is None else decision.confidence,
                probabilities={} if decision is None else decision.scores,
                heart_rate_bpm=beat.heart_rate_bpm,
                heart_rate_1min_bpm=beat.heart_rate_1min_bpm,
                quality_flags=beat.flags,
                low_confidence=False if decision is None else decision.low_confidence,
                latency_us=latency_us,
                features=_row(features, next(feature_rows)) if features and beat.judged else None,
                pre_rr_ms=pre,
                post_rr_ms=post,
                local_rr_ms=local,
            )
        )
    return events


def _row(features: dict[str, np.ndarray], row: int) -> dict[str, float]:
    return {name: float(values[row]) for name, values in features.items()}
