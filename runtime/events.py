"""What the runtime reports: beat, window, quality and row-prediction events, and a JSON-lines writer.

Events carry derived numbers only: times relative to the start of the stream, each task kind's
result (classes and probabilities, labels and scores, values with units, anomaly scores and
alarms), heart rates, quality flags and summary features. Never a raw waveform, never a patient
identifier.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import ClassVar, TextIO

from runtime.results import Result


def _number(value: float | None, digits: int = 6) -> float | None:
    """JSON-safe rounding: None for missing or non-finite values."""
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), digits)


@dataclass(frozen=True)
class BeatEvent:
    """One detected heartbeat, classified unless its flags say why not.

    A bundle whose inputs the stream derives (``InputSpec.derived``) gives a beat with any quality flag
    (``warming_up`` included) no class: ``beat_class`` and ``probability`` are None, ``probabilities``
    empty. When the bundle uses RR features, every beat carries its RR context (None where there is no
    interval to measure: a segment's first beat has no pre-RR, its last no post-RR).
    """

    kind: ClassVar[str] = "beat"
    time_s: float  # R-peak time from the start of the stream (gaps included)
    beat_class: str | None  # the decided label; None: not classified (see quality_flags)
    probability: float | None  # that label's probability
    probabilities: dict[str, float]  # every label's probability (empty when not classified)
    heart_rate_bpm: float | None  # 60 / RR to the previous beat; None after a start, gap or flat line
    heart_rate_1min_bpm: int | None  # beats in the last 60 s; None during the stream's first minute
    quality_flags: tuple[str, ...]  # quality problems overlapping this beat's window
    low_confidence: bool  # probability below the bundle's low-confidence threshold
    latency_us: float  # inference time of the beat's batch divided by its size
    features: dict[str, float] | None = None  # summary features of the window (telemetry / drift)
    pre_rr_ms: float | None = None  # measured interval from the previous beat of the segment (not clipped)
    post_rr_ms: float | None = None  # measured interval to the next beat of the segment (not clipped)
    local_rr_ms: float | None = None  # the local mean RR the model was given (pauses left out)

    @property
    def classified(self) -> bool:
        return self.beat_class is not None

    @property
    def has_rr_context(self) -> bool:
        return not (self.pre_rr_ms is None and self.post_rr_ms is None and self.local_rr_ms is None)

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
        if self.has_rr_context:  # written only by bundles that use RR features
            record |= {"pre_rr_ms": _number(self.pre_rr_ms, 1), "post_rr_ms": _number(self.post_rr_ms, 1),
                       "local_rr_ms": _number(self.local_rr_ms, 1)}
        if self.features is not None:
            record["features"] = {name: _number(value) for name, value in self.features.items()}
        return record


_BEAT_FIELDS = tuple(item.name for item in fields(BeatEvent))  # declaration order (ClassVar ``kind`` is not one)


def beat_event(*values: object) -> BeatEvent:
    """``BeatEvent(*values)`` (every field, in declaration order) without the frozen dataclass's ``__init__``, which
    sets each field through ``object.__setattr__``: the stream builds tens of thousands of events a minute of CPU.
    The object is the same — a plain instance whose ``__dict__`` holds exactly the fields (tests compare them)."""
    event = object.__new__(BeatEvent)
    event.__dict__.update(zip(_BEAT_FIELDS, values, strict=True))
    return event


@dataclass(frozen=True)
class QualityEvent:
    """A stretch of signal with a quality problem (reported whether or not beats fell in it)."""

    kind: ClassVar[str] = "quality"
    time_s: float  # start of the stretch from the start of the stream
    duration_s: float
    flag: str  # a runtime.ecg.quality.QualityFlag value (ECG stream) or runtime.windows.WindowFlag value

    def to_dict(self) -> dict:
        return {
            "type": self.kind,
            "time_s": _number(self.time_s),
            "duration_s": _number(self.duration_s),
            "flag": self.flag,
        }


@dataclass(frozen=True)
class RowPrediction:
    """The model's answer for one row (a CSV or ``.npy`` row, or one row of every array of an ``.npz``).

    ``result`` is the task kind's typed result (``runtime.results``), or None when the model could not
    judge the row: then ``flags`` says why and ``not_finite`` (or ``out_of_domain``) names the inputs (and columns)
    at fault.
    """

    kind: ClassVar[str] = "prediction"
    row: int  # 0-based data row (the header is not counted)
    task: str  # the bundle's output task kind
    result: Result | None
    latency_us: float  # inference time of the row's batch divided by its size
    flags: tuple[str, ...] = ()  # runtime.results.UNJUDGED_FLAGS when there is no result
    not_finite: tuple[str, ...] = ()  # the inputs or columns holding NaN, ±inf or a value beyond float32
    features: dict[str, float] | None = None  # summary features of the row's inputs by name (telemetry / drift)
    out_of_domain: tuple[str, ...] = ()  # the inputs or columns outside the values the model was developed on

    @property
    def judged(self) -> bool:
        return self.result is not None

    @property
    def quality_flags(self) -> tuple[str, ...]:
        return self.flags

    def to_dict(self) -> dict:
        record = {"type": self.kind, "row": self.row, "task": self.task, "judged": self.judged}
        if self.result is not None:
            record.update(self.result.to_event())
        record["flags"] = list(self.flags)
        if self.not_finite:
            record["not_finite"] = list(self.not_finite)
        if self.out_of_domain:
            record["out_of_domain"] = list(self.out_of_domain)
        record["latency_us"] = _number(self.latency_us, 1)
        if self.features is not None:
            record["features"] = {name: _number(value) for name, value in self.features.items()}
        return record


@dataclass(frozen=True)
class WindowEvent:
    """One fixed window of the windowed stream (``runtime.windows.stream``), judged unless its flags say why not.

    ``result`` is the task kind's typed result (``runtime.results``), or None when the window was not judged:
    then ``flags`` says why (``runtime.windows.WindowFlag``: non-finite samples, flat line, clipping, a rate
    the timestamps contradict; or ``output_not_finite``). Times are in the input's clock from the stream's
    start, gaps included.
    """

    kind: ClassVar[str] = "window"
    index: int  # the window's number from the stream's start (every window, judged or not)
    start_s: float  # first sample of the window
    end_s: float  # just after its last sample: start_s + window length
    task: str  # the bundle's output task kind
    result: Result | None
    flags: tuple[str, ...] = ()  # why there is no result
    latency_us: float = 0.0  # inference time of the window's batch divided by the windows judged in it
    features: dict[str, float] | None = None  # summary features of the model input (telemetry / drift)

    @property
    def judged(self) -> bool:
        return self.result is not None

    @property
    def quality_flags(self) -> tuple[str, ...]:
        return self.flags

    def to_dict(self) -> dict:
        record = {"type": self.kind, "index": self.index, "start_s": _number(self.start_s),
                  "end_s": _number(self.end_s), "task": self.task, "judged": self.judged}
        if self.result is not None:
            record.update(self.result.to_event())
        record["flags"] = list(self.flags)
        record["latency_us"] = _number(self.latency_us, 1)
        if self.features is not None:
            record["features"] = {name: _number(value) for name, value in self.features.items()}
        return record


Event = BeatEvent | QualityEvent | RowPrediction | WindowEvent


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
