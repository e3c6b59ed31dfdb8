"""Per-minute telemetry aggregates (schema 3, ``kind: "aggregate"``): what scales to a fleet of streaming devices.

A device runs one ``MinuteAggregator`` per stream. It is fed the stream's whole output: the events the schema-2
sink records (classified ``BeatEvent``s, judged ``WindowEvent``s, every ``RowPrediction``) and those it does not
(unclassified beats, unjudged windows, ``QualityEvent``s), and keeps, per minute of the stream's clock and per
(bundle, variant, provider):

* counts: records (events that have a schema-2 record form), per class / decision, low-confidence per class,
  multilabel positives, anomaly alarms, unjudged rows, records with any quality flag and per flag; events without
  a record (``no_result``), per flag; quality stretches per flag (count and seconds);
* latency: a ``log10/64`` histogram in µs (``runtime.telemetry.histogram``) with count, sum, min and max;
* per drift feature and numeric output ("tracks"): a fixed-bin histogram on the bundle reference profile's bins
  (``reference-deciles/16``; ``signed-log10/64`` for a feature the profile does not describe) with count, sum,
  sum of squares, min and max.

A minute is emitted when an event (or ``advance``) reaches the next minute, and at ``flush``. Its ``record_id``
hashes (device, bundle, variant, provider, minute, session), so a re-sent aggregate is stored once, and a stream
restarted within a minute (a new ``session``) adds a second partial aggregate instead of overwriting the first;
``merge_aggregates`` adds two aggregates of the same key. ``EventFilter`` (``event_filter``) picks the events that
are also sent on their own as schema-2 records. The layout is protocol.md's "Aggregates (schema 3)".

Values are taken exactly as ``runtime.runner.telemetry_record`` would send them (latency to 0.1 µs, confidence to
six decimals, non-finite features left out), so the dashboard's maths on aggregates match its maths on records.
The per-event work is a few appends; the binning runs once per minute on numpy arrays.

Dependency rule: numpy and the standard library only (this package ships to the device).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
import operator
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from runtime.telemetry.event_filter import EventFilter
from runtime.telemetry.histogram import (
    GENERIC_SCHEME,
    LATENCY_SCHEME,
    REFERENCE_SCHEME,
    block_summaries,
    edges_from_reference,
    fingerprint,
    generic_edges,
    latency_edges,
)
from runtime.telemetry.records import AGGREGATE_KIND, AGGREGATE_SCHEMA_VERSION  # noqa: F401 (defined there once)

MINUTE_S = 60
CONFIDENCE_TRACK = "confidence"  # classifiers: the decided class's probability
SCORE_TRACK = "score"  # anomaly score
SCORES_PREFIX = "scores."  # multilabel: "scores.<label>"
VALUES_PREFIX = "values."  # regression: "values.<target>"
CLASSIFIER_TASKS = frozenset({"multiclass", "binary"})


@dataclass(frozen=True)
class Track:
    """One histogram's bins: a feature or numeric output, its scheme and edges (and where they came from)."""

    name: str
    scheme: str
    edges: np.ndarray = field(repr=False, compare=False)
    source: str = ""  # "decile_edges", "sample deciles", or "" for fixed schemes


def generic_track(name: str) -> Track:
    return Track(name, GENERIC_SCHEME, generic_edges())


@dataclass(frozen=True)
class AggregationPlan:
    """The tracks of one bundle: reference-binned where its profile describes them, generic otherwise.

    The device builds it from the bundle's ``reference_profile.json``, the dashboard from the same file; both get
    the same ``bins_id`` (``histogram.fingerprint`` of the reference tracks), which every aggregate carries.
    """

    task: str
    labels: tuple[str, ...]
    reference: Mapping[str, Track] = field(default_factory=dict)  # track name → reference-binned track
    notes: tuple[str, ...] = ()  # where edges were derived rather than read

    @classmethod
    def from_profile(cls, profile: Mapping[str, Any] | None, task: str, labels: Sequence[str]) -> AggregationPlan:
        """Reference tracks for every profile feature and the task's numeric outputs (``output_references``)."""
        references = {**((profile or {}).get("features") or {}), **output_references(profile, task)}
        tracks, notes = {}, []
        for name, reference in references.items():
            found = edges_from_reference(reference) if isinstance(reference, Mapping) else None
            if found is None:
                notes.append(f"{name}: the profile has no decile edges or sample; binned generically")
                continue
            edges, source = found
            tracks[name] = Track(name, REFERENCE_SCHEME, edges, source)
            if source != "decile_edges":
                notes.append(f"{name}: no decile_edges in the profile; bins from its {source}")
        return cls(task, tuple(labels), tracks, tuple(notes))

    @functools.cached_property
    def bins_id(self) -> str:
        return fingerprint({name: track.edges for name, track in self.reference.items()})

    def track(self, name: str) -> Track:
        return self.reference.get(name) or generic_track(name)


def output_references(profile: Mapping[str, Any] | None, task: str) -> dict[str, Any]:
    """Track name → the profile distribution of each numeric output of ``task`` (``predictions`` section)."""
    predictions = (profile or {}).get("predictions") or {}
    if task in CLASSIFIER_TASKS:
        key, prefix = "confidence", None
    elif task == "anomaly":
        key, prefix = "score", None
    else:
        key, prefix = {"multilabel": ("scores", SCORES_PREFIX), "regression": ("values", VALUES_PREFIX)}.get(
            task, (None, None))
    section = predictions.get(key) if key else None
    if not isinstance(section, Mapping):
        return {}
    if prefix is None:
        return {key: section}
    return {f"{prefix}{name}": reference for name, reference in section.items() if isinstance(reference, Mapping)}


@dataclass(frozen=True)
class AggregateIdentity:
    """Whose aggregates these are: the key of every minute besides the minute itself."""

    device_id: str
    bundle_id: str
    bundle_sha256: str
    variant: str
    provider: str
    task: str

    @classmethod
    def of(cls, bundle, device_id: str) -> AggregateIdentity:
        """From a ``runtime.bundle.Bundle`` (duck-typed: this package must not import onnxruntime)."""
        return cls(device_id, bundle.bundle_id, bundle.manifest_sha256, bundle.variant, bundle.provider,
                   bundle.output.task.value)

    def fields(self) -> dict[str, str]:
        return {"device_id": self.device_id, "bundle_id": self.bundle_id, "bundle_sha256": self.bundle_sha256,
                "variant": self.variant, "provider": self.provider, "task": self.task}


def minute_text(epoch_s: float) -> str:
    """The ISO-8601 UTC start of the minute holding ``epoch_s``: ``2025-01-31T12:00:00Z``."""
    return datetime.fromtimestamp(math.floor(epoch_s / MINUTE_S) * MINUTE_S, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def aggregate_record_id(identity: Mapping[str, str], minute: str, seconds: int, session: str) -> str:
    """32 hex characters: the same for a re-sent aggregate, different for another minute, bundle or session."""
    parts = [AGGREGATE_KIND, *(identity[key] for key in ("device_id", "bundle_id", "bundle_sha256", "variant",
                                                        "provider")), minute, str(seconds), session]
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:32]


# -- one minute's columns -----------------------------------------------------------------------------------------


@dataclass
class Columns:
    """A minute's records as columns; filled from events (device) or schema-2 record dicts (``columns_of_records``)."""

    latency: list[float] = field(default_factory=list)
    flags: list[Sequence[str]] = field(default_factory=list)
    features: list[Mapping[str, float] | None] = field(default_factory=list)
    classes: list[str | None] = field(default_factory=list)  # None: unjudged (or no class for this task)
    confidence: list[float | None] = field(default_factory=list)
    low_confidence: list[bool] = field(default_factory=list)
    results: list[Any] = field(default_factory=list)  # multilabel, regression, anomaly: the result (None: unjudged)
    unjudged: int = 0  # records without a result (rows the model could not judge)

    def __len__(self) -> int:
        return len(self.latency)


_BEAT_COLUMNS = operator.attrgetter("latency_us", "quality_flags", "features", "beat_class", "probability",
                                    "low_confidence")


def columns_of_events(events: Sequence, task: str) -> Columns:
    """Columns of classified ``BeatEvent``s, or of ``RowPrediction``s / judged ``WindowEvent``s (one stream's)."""
    if events and hasattr(events[0], "beat_class"):  # beats: every column in one pass over the events
        latency, flags, features, classes, confidence, low = map(list, zip(*map(_BEAT_COLUMNS, events), strict=True))
        return Columns(latency, flags, features, classes, confidence, low)
    columns = Columns(
        latency=[event.latency_us for event in events],
        flags=[event.quality_flags for event in events],
        features=[event.features for event in events],
    )
    for event in events:
        _append_result(columns, task, None if event.result is None else event.result.to_telemetry())
    return columns


def columns_of_records(records: Iterable[Mapping[str, Any]]) -> Columns:
    """Columns of schema-2 (or schema-1) record dicts, e.g. an older device's, folded into aggregates."""
    columns = Columns()
    for record in records:
        columns.latency.append(float(record["latency_us"]))
        columns.flags.append(record.get("quality_flags") or ())
        columns.features.append(record.get("features"))
        if "task" not in record:  # schema 1: a classifier
            _append_result(columns, "multiclass", {"class": record["predicted_class"],
                                                   "confidence": record["confidence"], "low_confidence": False})
        else:
            _append_result(columns, record["task"], record.get("result"))
    return columns


def _append_result(columns: Columns, task: str, result: Mapping[str, Any] | None) -> None:
    columns.unjudged += result is None
    if task in CLASSIFIER_TASKS:
        columns.classes.append(None if result is None else result["class"])
        columns.confidence.append(None if result is None else result["confidence"])
        columns.low_confidence.append(bool(result and result.get("low_confidence")))
    else:
        columns.classes.append(result["class"] if result is not None and "class" in result else None)
        columns.results.append(result)


def _numbers(values: Iterable[float | None]) -> np.ndarray:
    values = values if isinstance(values, list) else list(values)
    if None not in values:  # the usual case: every value present
        return np.array(values, dtype=np.float64)
    return np.array([math.nan if value is None else value for value in values], dtype=np.float64)


def _feature_block(features: list[Mapping[str, float] | None]) -> tuple[list[str], np.ndarray | None]:
    """(names, rows × names values with NaN where a record lacks one) of the records' feature dicts."""
    present = [item for item in features if item]
    if not present:
        return [], None
    first = tuple(present[0])
    width = len(first)
    if len(present) == len(features) and all(len(item) == width for item in present):
        rows = map(operator.itemgetter(*first), present)  # each dict's values in the first one's order
        try:  # the stream's case: every dict has the first one's names
            values = np.fromiter(itertools.chain.from_iterable(rows) if width > 1 else rows, dtype=np.float64,
                                 count=len(present) * width)
        except KeyError:
            pass  # a dict with other names: the general case below
        else:
            return list(first), values.reshape(len(present), width)
    names = list(dict.fromkeys(name for item in present for name in item))
    block = np.array([[(item or {}).get(name, math.nan) for name in names] for item in features], dtype=np.float64)
    return names, block


def summarise(columns: Columns, plan: AggregationPlan) -> dict[str, Any]:
    """The counting part of an aggregate (everything but identity, minute and ids) for one minute's records."""
    flag_counts: Counter[str] = Counter()
    flagged = 0
    for flags in filter(None, columns.flags):
        flagged += 1
        flag_counts.update(set(flags))
    classes = Counter(columns.classes)  # counted in C, in order of first appearance; None: no class
    classes.pop(None, None)
    summary: dict[str, Any] = {
        "records": len(columns),
        "unjudged": columns.unjudged,
        "classes": dict(classes),
        "low_confidence": dict(Counter(itertools.compress(columns.classes, columns.low_confidence))),
        "flagged": flagged,
        "quality_flags": dict(flag_counts),
    }
    outputs: dict[str, np.ndarray] = {}
    if plan.task in CLASSIFIER_TASKS:
        outputs[CONFIDENCE_TRACK] = np.round(_numbers(columns.confidence), 6)
    else:
        summary |= _result_counts(plan.task, columns.results, outputs)
    names, features = _feature_block(columns.features)
    tracks = [plan.track(name) for name in outputs] + [plan.track(name) for name in names]
    latency = np.round(np.asarray(columns.latency, dtype=np.float64), 1)
    block = np.column_stack([latency, *outputs.values(), *([features] if features is not None else [])])
    found = block_summaries(block, [latency_edges(), *(track.edges for track in tracks)],
                            [False] + [True] * len(tracks))
    summary["latency_us"] = {"scheme": LATENCY_SCHEME, **(found[0] or {"count": 0, "sum": 0.0, "min": 0.0,
                                                                        "max": 0.0, "bins": {}})}
    entries = {track.name: {"scheme": track.scheme, **entry} for track, entry in zip(tracks, found[1:], strict=True)
               if entry is not None}
    summary["features"] = {name: entries[name] for name in names if name in entries}
    summary["outputs"] = {name: entries[name] for name in outputs if name in entries}
    return summary


def _result_counts(task: str, results: list, outputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """Multilabel positives and scores, regression values, anomaly alarms and scores (one value per record: NaN
    for a record without a result)."""
    judged = [result for result in results if result is not None]
    if task in ("multilabel", "regression"):
        key, prefix = ("scores", SCORES_PREFIX) if task == "multilabel" else ("values", VALUES_PREFIX)
        for name in dict.fromkeys(name for result in judged for name in result[key]):
            outputs[f"{prefix}{name}"] = _numbers(result[key].get(name) if result else None for result in results)
        if task == "multilabel":
            return {"labels": dict(Counter(label for result in judged for label in result["labels"]))}
        return {}
    if task == "anomaly":
        outputs[SCORE_TRACK] = _numbers(result["score"] if result else None for result in results)
        return {"alarms": sum(1 for result in judged if result["alarm"])}
    return {}


# -- the aggregator ------------------------------------------------------------------------------------------------


@dataclass
class _Minute:
    start_s: float
    records: list = field(default_factory=list)  # events with a schema-2 record form
    no_result: Counter = field(default_factory=Counter)  # flag → events without a record (no class, not judged)
    no_result_count: int = 0
    quality: dict[str, list[float]] = field(default_factory=dict)  # flag → [stretches, seconds]
    sent: int = 0  # records also sent on their own
    late: int = 0  # events whose time fell before this minute (counted here)


@dataclass
class Emitted:
    """What one ``add`` produced: events to send on their own (with their times) and finished aggregates."""

    individual: list[tuple[Any, float]] = field(default_factory=list)  # (event, epoch seconds)
    aggregates: list[dict[str, Any]] = field(default_factory=list)


class MinuteAggregator:
    """Per-minute aggregates of one stream on one bundle (module docstring)."""

    def __init__(
        self,
        identity: AggregateIdentity,
        plan: AggregationPlan,
        *,
        origin_s: float | None = None,
        event_filter: EventFilter | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.identity = identity
        self.plan = plan
        self.clock = clock
        self.origin_s = clock() if origin_s is None else float(origin_s)  # epoch seconds of stream time 0
        self.session = datetime.fromtimestamp(self.origin_s, UTC).isoformat(timespec="microseconds").replace(
            "+00:00", "Z")
        self.event_filter = event_filter
        self._identity_fields = identity.fields()
        self._bins_id = plan.bins_id
        self._filter = event_filter.config.describe(plan.labels) if event_filter is not None else None
        self._open: _Minute | None = None
        self._closed_until_s = -math.inf  # the end of the last minute emitted: no minute before it opens again
        self.emitted = 0

    def add(self, events: Sequence, times_s: Sequence[float] | None = None) -> Emitted:
        """Count ``events`` (a stream's output: beats, quality events, row predictions) in their minutes.

        ``times_s`` are the events' epoch seconds; by default a beat's or quality event's is ``origin_s + time_s``,
        a window's ``origin_s + start_s`` and a row's the clock's now. Returns the events the filter sends on their
        own and the minutes closed. Events are expected in time order; one earlier than the open minute is counted
        in it (``late``), and so is one whose minute was already emitted (closed by ``advance`` before the event
        arrived): it opens the minute after the last one emitted, never a second aggregate of an emitted minute
        (same ``record_id``, other counts — the collector would keep only the first).
        """
        out = Emitted()
        moments = self._moments(events, times_s)
        position, count = 0, len(moments)
        while position < count:
            minute = self._open
            if minute is None or moments[position] >= minute.start_s + MINUTE_S:
                if minute is not None:
                    out.aggregates.append(self._close())
                start = math.floor(moments[position] / MINUTE_S) * MINUTE_S
                minute = self._open = _Minute(max(start, self._closed_until_s))
            end, stop = minute.start_s + MINUTE_S, position
            while stop < count and moments[stop] < end:
                stop += 1
            if min(moments[position:stop]) < minute.start_s:
                minute.late += sum(1 for moment in moments[position:stop] if moment < minute.start_s)
            self._take(minute, events[position:stop], moments[position:stop], out)
            position = stop
        return out

    def _moments(self, events: Sequence, times_s: Sequence[float] | None) -> list[float]:
        if times_s is not None:
            return [float(moment) for moment in times_s]
        origin = self.origin_s
        try:
            return [origin + event.time_s for event in events]  # beats and quality stretches: the common case
        except AttributeError:
            now = self.clock()
            return [origin + event.time_s if hasattr(event, "time_s") else origin + event.start_s
                    if hasattr(event, "start_s") else now for event in events]

    def _take(self, minute: _Minute, events: Sequence, moments: Sequence[float], out: Emitted) -> None:
        """Sort one minute's events into records, events without a result and quality stretches."""
        records = minute.records
        try:  # the common case: every event a classified beat
            classified = None not in [event.beat_class for event in events]
        except AttributeError:  # rows, windows, quality stretches
            classified = False
        if classified:
            records.extend(events)
            if self.event_filter is not None:
                kept = self.event_filter.positions(events)
                minute.sent += len(kept)
                out.individual.extend((events[position], moments[position]) for position in kept)
            return
        keeps = self.event_filter.keeps if self.event_filter is not None else None
        for event, moment in zip(events, moments, strict=True):
            kind = event.kind
            if kind == "beat":
                recorded = event.beat_class is not None
            elif kind == "quality":  # a stretch of signal with a problem
                tally = minute.quality.setdefault(event.flag, [0, 0.0])
                tally[0] += 1
                tally[1] += event.duration_s
                continue
            else:  # a row is always a record (unjudged or not); a window only when judged
                recorded = kind != "window" or event.result is not None
            if not recorded:  # a beat the stream could not classify, a window it could not judge
                minute.no_result_count += 1
                minute.no_result.update(event.quality_flags)
                continue
            records.append(event)
            if keeps is not None and keeps(event):
                minute.sent += 1
                out.individual.append((event, moment))

    def advance(self, now_s: float) -> list[dict[str, Any]]:
        """Emit the open minute if the stream's clock (``now_s``, epoch seconds) has passed it."""
        if self._open is not None and now_s >= self._open.start_s + MINUTE_S:
            return [self._close()]
        return []

    def flush(self) -> list[dict[str, Any]]:
        """Emit the open minute (end of stream)."""
        return [self._close()] if self._open is not None else []

    def _close(self) -> dict[str, Any]:
        minute, self._open = self._open, None
        self._closed_until_s = minute.start_s + MINUTE_S
        summary = summarise(columns_of_events(minute.records, self.identity.task), self.plan)
        summary["no_result"] = {"count": minute.no_result_count, "quality_flags": dict(minute.no_result)}
        summary["quality_events"] = {flag: {"count": count, "seconds": round(seconds, 3)}
                                     for flag, (count, seconds) in minute.quality.items()}
        summary["sent_individually"] = minute.sent
        summary["late"] = minute.late
        self.emitted += 1
        return self._record(minute_text(minute.start_s), summary)

    def _record(self, minute: str, summary: dict[str, Any]) -> dict[str, Any]:
        return assemble(self._identity_fields, minute, self.session, self._bins_id, self._filter, summary)


def assemble(identity: Mapping[str, str], minute: str, session: str, bins_id: str, event_filter: dict | None,
             summary: dict[str, Any], seconds: int = MINUTE_S) -> dict[str, Any]:
    """A schema-3 aggregate record (protocol.md) from its parts; the outbox adds ``sequence``."""
    return {
        "kind": AGGREGATE_KIND,
        "record_id": aggregate_record_id(identity, minute, seconds, session),
        **identity,
        "minute": minute,
        "seconds": seconds,
        "session": session,
        "bins_id": bins_id,
        "filter": event_filter,
        **{key: summary[key] for key in SUMMARY_KEYS if key in summary},
    }


# Counting fields of an aggregate, in record order (multilabel adds "labels", anomaly "alarms").
SUMMARY_KEYS = ("records", "unjudged", "classes", "low_confidence", "labels", "alarms", "flagged", "quality_flags",
                "no_result", "quality_events", "sent_individually", "late", "latency_us", "features", "outputs")
IDENTITY_KEYS = ("device_id", "bundle_id", "bundle_sha256", "variant", "provider", "task")
