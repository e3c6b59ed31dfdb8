"""From accepted R-peaks to classified ``BeatEvent``s: heart rates, batched inference, event fields."""

from __future__ import annotations

import bisect
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from runtime.decide import decide
from runtime.events import BeatEvent
from runtime.features import waveform_features


@dataclass
class PendingBeat:
    """A beat whose window is cut, waiting for its inference batch."""

    time_s: float
    flags: tuple[str, ...]
    heart_rate_bpm: float | None
    heart_rate_1min_bpm: int | None
    window: np.ndarray  # model-rate samples; never leaves the stream


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
    """Run the model on the beats in batches of ``batch_size`` (in order) and build their events.

    The class, its probability and the low-confidence flag follow the bundle's decision rule
    (``runtime.decide``); the stream accepts only single-label task kinds.
    """
    events: list[BeatEvent] = []
    for first in range(0, len(beats), batch_size):
        batch = beats[first : first + batch_size]
        windows = np.stack([beat.window for beat in batch])
        started = time.perf_counter()
        outputs = bundle.predict(windows[:, :, None].astype(np.float32))
        latency_us = (time.perf_counter() - started) * 1e6 / len(batch)
        decisions = decide(bundle.output, outputs)
        features = waveform_features(windows) if with_features else None
        for index, (beat, decision) in enumerate(zip(batch, decisions, strict=True)):
            events.append(
                BeatEvent(
                    time_s=beat.time_s,
                    beat_class=decision.label,
                    probability=decision.confidence,
                    probabilities=decision.scores,
                    heart_rate_bpm=beat.heart_rate_bpm,
                    heart_rate_1min_bpm=beat.heart_rate_1min_bpm,
                    quality_flags=beat.flags,
                    low_confidence=decision.low_confidence,
                    latency_us=latency_us,
                    features={name: float(values[index]) for name, values in features.items()} if features else None,
                )
            )
    return events
