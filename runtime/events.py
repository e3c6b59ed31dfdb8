"""What the runtime reports: beat, quality and tabular-prediction events, and a JSON-lines writer.

Events carry derived numbers only: times relative to the start of the stream,
classes, probabilities, heart rates, quality flags and summary features. Never a
raw waveform, never a patient identifier.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, TextIO


def _number(value: float | None, digits: int = 6) -> float | None:
    """JSON-safe rounding: None for missing or non-finite values."""
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), digits)


@dataclass(frozen=True)
class BeatEvent:
    """One classified heartbeat."""

    kind: ClassVar[str] = "beat"
    time_s: float  # R-peak time from the start of the stream (gaps included)
    beat_class: str  # label with the highest probability
    probability: float  # that label's probability
    probabilities: dict[str, float]  # every label's probability
    heart_rate_bpm: float | None  # 60 / RR to the previous beat; None after a start, gap or flat line
    heart_rate_1min_bpm: int | None  # beats in the last 60 s; None during the stream's first minute
    quality_flags: tuple[str, ...]  # quality problems overlapping this beat's window
    low_confidence: bool  # probability below the bundle's low-confidence threshold
    latency_us: float  # inference time of the beat's batch divided by its size
    features: dict[str, float] | None = None  # summary features of the window (telemetry / drift)

    def to_dict(self) -> dict:
        record = {
            "type": self.kind,
            "time_s": _number(self.time_s),
            "class": self.beat_class,
            "probability": _number(self.probability),
            "probabilities": {label: _number(p) for label, p in self.probabilities.items()},
            "heart_rate_bpm": _number(self.heart_rate_bpm, 2),
            "heart_rate_1min_bpm": self.heart_rate_1min_bpm,
            "quality_flags": list(self.quality_flags),
            "low_confidence": self.low_confidence,
            "latency_us": _number(self.latency_us, 1),
        }
        if self.features is not None:
            record["features"] = {name: _number(value) for name, value in self.features.items()}
        return record


@dataclass(frozen=True)
class QualityEvent:
    """A stretch of signal with a quality problem (reported whether or not beats fell in it)."""

    kind: ClassVar[str] = "quality"
    time_s: float  # start of the stretch from the start of the stream
    duration_s: float
    flag: str  # a runtime.ecg.quality.QualityFlag value

    def to_dict(self) -> dict:
        return {
            "type": self.kind,
            "time_s": _number(self.time_s),
            "duration_s": _number(self.duration_s),
            "flag": self.flag,
        }


@dataclass(frozen=True)
class TabularPrediction:
    """The model's answer for one CSV row."""

    kind: ClassVar[str] = "prediction"
    row: int  # 0-based data row (the header is not counted)
    predicted_class: str
    probability: float
    probabilities: dict[str, float]
    latency_us: float  # inference time of the row's batch divided by its size
    features: dict[str, float] | None = None  # the row's model inputs by name (telemetry / drift)

    @property
    def quality_flags(self) -> tuple[str, ...]:
        return ()

    def to_dict(self) -> dict:
        record = {
            "type": self.kind,
            "row": self.row,
            "class": self.predicted_class,
            "probability": _number(self.probability),
            "probabilities": {label: _number(p) for label, p in self.probabilities.items()},
            "latency_us": _number(self.latency_us, 1),
        }
        if self.features is not None:
            record["features"] = {name: _number(value) for name, value in self.features.items()}
        return record


Event = BeatEvent | QualityEvent | TabularPrediction


class JsonLinesWriter:
    """One JSON object per line; with ``follow`` it flushes after each line so a reader can tail it."""

    def __init__(self, stream: TextIO, follow: bool = False) -> None:
        self.stream = stream
        self.follow = follow
        self.count = 0

    def write(self, event: Event) -> None:
        self.stream.write(json.dumps(event.to_dict(), allow_nan=False) + "\n")
        if self.follow:
            self.stream.flush()
        self.count += 1

    def write_all(self, events: Iterable[Event]) -> int:
        for event in events:
            self.write(event)
        return self.count
