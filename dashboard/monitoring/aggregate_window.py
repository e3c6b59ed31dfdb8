"""Minute aggregates (telemetry schema 3) merged over the window a page shows, in the shapes the monitoring maths take.

An aggregate frame has one row per stored aggregate: ``device_id``, ``bundle_id``, ``bundle_sha256``, ``variant``,
``provider``, ``task``, ``minute`` (UTC start), ``records`` and ``payload`` (the aggregate dict, as the collector's
``aggregates`` table stores it). ``aggregate_frame`` builds it from payloads; ``fold_records`` turns schema-1/2
per-event records (older devices) into the same aggregates, with the device's own code, so one set of maths serves
both.

Windows are whole minutes: ``minute_window(frame, end, span)`` keeps the minutes starting in [E − span, E), E being
``end`` rounded up to a minute, i.e. the raw window (end − span, end] when ``end`` is on a minute, else shifted
later by under a minute. ``WindowSummary`` adds up a window's aggregates; ``stand_in`` gives, per drift row, a
sample with the window's histogram (``runtime.telemetry.histogram.spread``), so the drift tests run unchanged
(``dashboard.monitoring.drift``): PSI and JS distance on the reference deciles are exact, KS and Wasserstein are
within one sub-bin per value (protocol.md, "Aggregates").
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from dashboard.monitoring.predictions import ANOMALY_SCORE_ROW
from runtime.telemetry.aggregates import (
    CONFIDENCE_TRACK,
    IDENTITY_KEYS,
    SCORE_TRACK,
    SCORES_PREFIX,
    VALUES_PREFIX,
    AggregationPlan,
    assemble,
    columns_of_records,
    summarise,
)
from runtime.telemetry.histogram import (
    GENERIC_SCHEME,
    LATENCY_SCHEME,
    dense_counts,
    generic_edges,
    latency_edges,
    spread,
)

FRAME_COLUMNS = (*IDENTITY_KEYS, "minute", "records", "session", "payload")
FOLDED_SESSION = "folded"  # the session of aggregates the dashboard folded from per-event records
PlanFor = Callable[[str, str, str], AggregationPlan | None]  # (bundle_id, bundle_sha256, task) → its plan


def aggregate_frame(payloads: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per aggregate, oldest minute first (the shape the collector's ``aggregates`` table gives)."""
    rows = [{**{key: payload[key] for key in IDENTITY_KEYS}, "minute": payload["minute"],
             "records": payload["records"], "session": payload["session"], "payload": payload} for payload in payloads]
    frame = pd.DataFrame(rows, columns=list(FRAME_COLUMNS))
    frame["minute"] = pd.to_datetime(frame["minute"], utc=True, format="ISO8601")
    return frame.sort_values(["minute", "device_id", "session"], kind="stable").reset_index(drop=True)


def window_end(end: datetime) -> pd.Timestamp:
    """``end`` rounded up to a whole minute: the end of the last minute a window includes."""
    return pd.Timestamp(end).ceil("1min")


def minute_window(frame: pd.DataFrame, end: datetime, span: timedelta) -> pd.DataFrame:
    """Aggregates of the minutes starting in [E − span, E), E = ``window_end(end)``."""
    stop = window_end(end)
    return frame[(frame["minute"] >= stop - pd.Timedelta(span)) & (frame["minute"] < stop)]


def latest_bundle_minutes(frame: pd.DataFrame, end: datetime, span: timedelta) -> pd.DataFrame:
    """``minute_window`` of the bundle the latest aggregate ran (the newest session within its minute)."""
    inside = minute_window(frame, end, span)
    if inside.empty:
        return inside
    last = inside.sort_values(["minute", "session"], kind="stable").iloc[-1]
    return inside[(inside["bundle_sha256"] == last["bundle_sha256"]) & (inside["bundle_id"] == last["bundle_id"])]


@dataclass
class TrackSum:
    """One histogram added up over a window."""

    edges: np.ndarray
    counts: np.ndarray
    count: int = 0
    total: float = 0.0
    squares: float = 0.0
    low: float = math.inf
    high: float = -math.inf

    def add(self, entry: Mapping[str, Any]) -> None:
        self.counts += dense_counts(entry["bins"], len(self.counts))
        self.count += entry["count"]
        self.total += entry["sum"]
        self.squares += entry.get("sum_squares", 0.0)
        if entry["count"]:
            self.low, self.high = min(self.low, entry["min"]), max(self.high, entry["max"])

    def values(self) -> np.ndarray:
        """A stand-in sample with this histogram (``histogram.spread``)."""
        return spread(self.edges, self.counts, self.low, self.high) if self.count else np.empty(0)


@dataclass
class WindowSummary:
    """The aggregates of one window added up: counts, latency histogram and every decodable track."""

    records: int = 0
    unjudged: int = 0
    flagged: int = 0
    classes: Counter = field(default_factory=Counter)
    quality_flags: Counter = field(default_factory=Counter)
    latency: TrackSum = field(default_factory=lambda: TrackSum(latency_edges(), np.zeros(len(latency_edges()) + 1,
                                                                                         dtype=np.int64)))
    features: dict[str, TrackSum] = field(default_factory=dict)
    outputs: dict[str, TrackSum] = field(default_factory=dict)
    undecodable: set[str] = field(default_factory=set)  # reference tracks without the bundle's profile (or bins)

    @classmethod
    def of(cls, payloads: Iterable[Mapping[str, Any]], plan: AggregationPlan | None = None) -> WindowSummary:
        summary = cls()
        for payload in payloads:
            summary.add(payload, plan)
        return summary

    def add(self, payload: Mapping[str, Any], plan: AggregationPlan | None, *, tracks: bool = True) -> None:
        self.records += payload["records"]
        self.unjudged += payload["unjudged"]
        self.flagged += payload["flagged"]
        self.classes.update(payload["classes"])
        self.quality_flags.update(payload["quality_flags"])
        self.latency.add(payload["latency_us"])
        if not tracks:
            return
        usable = plan if plan is not None and plan.bins_id == payload["bins_id"] else None
        for section, sums in (("features", self.features), ("outputs", self.outputs)):
            for name, entry in payload[section].items():
                edges = _edges(name, entry["scheme"], usable)
                if edges is None:
                    self.undecodable.add(name)
                    continue
                track = sums.setdefault(name, TrackSum(edges, np.zeros(len(edges) + 1, dtype=np.int64)))
                if track.edges is not edges and not np.array_equal(track.edges, edges):
                    self.undecodable.add(name)  # the same name on other bins (another bundle version): not added
                    continue
                track.add(entry)

    def categories(self) -> list[str]:
        """The judged records' classes, as ``dashboard.monitoring.predictions.categories`` lists them."""
        return [label for label, count in self.classes.items() for _ in range(count)]

    def confidences(self) -> list[float]:
        track = self.outputs.get(CONFIDENCE_TRACK)
        return track.values().tolist() if track is not None else []

    def compared(self) -> pd.DataFrame:
        """Features and numeric outputs as drift rows (``checks.compared_numbers``' columns), stand-in values."""
        columns = {name: track.values() for name, track in self.features.items()}
        for name, track in self.outputs.items():
            row = drift_row(name)
            if row is not None and row not in columns:
                columns[row] = track.values()
        return pd.DataFrame({name: pd.Series(values, dtype=np.float64) for name, values in columns.items()})


def drift_row(track: str) -> str | None:
    """The drift row of an output track (the confidence has a row of its own: None)."""
    if track == SCORE_TRACK:
        return ANOMALY_SCORE_ROW
    if track.startswith(SCORES_PREFIX):
        return f"score {track.removeprefix(SCORES_PREFIX)}"
    if track.startswith(VALUES_PREFIX):
        return f"value {track.removeprefix(VALUES_PREFIX)}"
    return None


def _edges(name: str, scheme: str, plan: AggregationPlan | None) -> np.ndarray | None:
    if scheme == GENERIC_SCHEME:
        return generic_edges()
    if scheme == LATENCY_SCHEME:
        return latency_edges()
    if plan is None or name not in plan.reference:
        return None
    return plan.reference[name].edges


def plan_resolver(profiles: Callable[[str, str], tuple[Mapping[str, Any] | None, tuple[str, ...]] | None]) -> PlanFor:
    """A cached ``PlanFor`` from ``profiles(bundle_id, bundle_sha256)`` → (reference profile, labels) or None."""
    cache: dict[tuple[str, str, str], AggregationPlan | None] = {}

    def plan_for(bundle_id: str, bundle_sha256: str, task: str) -> AggregationPlan | None:
        key = (bundle_id, bundle_sha256, task)
        if key not in cache:
            found = profiles(bundle_id, bundle_sha256)
            cache[key] = None if found is None else AggregationPlan.from_profile(found[0], task, found[1])
        return cache[key]

    return plan_for


def catalog_plans(catalog) -> PlanFor:
    """``PlanFor`` over a ``dashboard.data.bundles.BundleCatalog``: published bundles' profiles."""
    def profiles(bundle_id: str, bundle_sha256: str):
        bundle = catalog.match(bundle_id, bundle_sha256)
        return None if bundle is None else (bundle.profile, tuple(bundle.labels))

    return plan_resolver(profiles)


def summary_of(frame: pd.DataFrame, plan_for: PlanFor | None = None, *, tracks: bool = True) -> WindowSummary:
    """``WindowSummary`` of every aggregate in ``frame``: tracks decoded with each row's bundle plan (generic ones
    always), or left out (``tracks=False``) when only counts and latency are needed."""
    summary = WindowSummary()
    for row in frame.itertuples(index=False):
        plan = plan_for(row.bundle_id, row.bundle_sha256, row.task) if plan_for is not None and tracks else None
        summary.add(row.payload, plan, tracks=tracks)
    return summary


def fold_records(records: pd.DataFrame, plan_for: PlanFor | None = None) -> pd.DataFrame:
    """Per-event records (``TelemetryReader.records(with_features=True)``, schema 1 or 2) as minute aggregates.

    One aggregate per (device, bundle, variant, provider, minute), made by the device's own ``summarise``: the
    dashboard runs one set of maths whether a device sends aggregates or records.
    """
    if records.empty:
        return aggregate_frame([])
    keys = ("device_id", "bundle_id", "bundle_sha256", "variant", "provider")
    columns = {name: records[name].tolist() for name in (*keys, "latency_us", "quality_flags", "result",
                                                           "predicted_class", "confidence")}
    columns["task"] = records["task"].tolist() if "task" in records else [None] * len(records)
    columns["features"] = records["features"].tolist() if "features" in records else [None] * len(records)
    minutes = records["time"].dt.floor("1min").dt.strftime("%Y-%m-%dT%H:%M:%SZ").tolist()
    groups: dict[tuple, list[int]] = {}
    for index, key in enumerate(zip(*(columns[name] for name in keys), minutes, strict=True)):
        groups.setdefault(key, []).append(index)
    payloads = []
    for key, indices in groups.items():
        rows = [_record_dict(columns, index) for index in indices]
        task = next((row["task"] for row in rows if "task" in row), "multiclass")  # schema 1: a classifier
        identity = {**dict(zip(keys, map(str, key[:-1]), strict=True)), "task": task}
        plan = plan_for(identity["bundle_id"], identity["bundle_sha256"], task) if plan_for is not None else None
        plan = plan or AggregationPlan(task, ())
        summary = summarise(columns_of_records(rows), plan)
        summary |= {"no_result": {"count": 0, "quality_flags": {}}, "quality_events": {}, "sent_individually": 0,
                    "late": 0}
        payloads.append(assemble(identity, key[-1], FOLDED_SESSION, plan.bins_id, None, summary))
    return aggregate_frame(payloads)


def _record_dict(columns: Mapping[str, list], index: int) -> dict[str, Any]:
    """One stored record back in its schema-1 or schema-2 shape (what ``columns_of_records`` reads)."""
    flags = columns["quality_flags"][index] or []
    record = {"latency_us": columns["latency_us"][index], "quality_flags": flags,
              "features": columns["features"][index]}
    result, task = columns["result"][index], columns["task"][index]
    if isinstance(task, str):  # schema 2: a result, or null for an input the model could not judge
        return record | {"task": task, "result": result if isinstance(result, Mapping) else None}
    return record | {"predicted_class": columns["predicted_class"][index], "confidence": columns["confidence"][index]}
