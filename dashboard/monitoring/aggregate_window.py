"""Minute aggregates (telemetry schema 3) merged over the window a page shows, in the shapes the monitoring maths take.

An aggregate frame has one row per stored aggregate: ``device_id``, ``bundle_id``, ``bundle_sha256``, ``variant``,
``provider``, ``task``, ``minute`` (UTC start), ``seconds`` (60; 3 600 for an hourly rollup), ``records`` and
``payload`` (the aggregate dict, as the collector's ``aggregates`` table stores it, or ``compact_payload`` of it).
``aggregate_frame`` builds it from payloads, with the numbers every payload carries as columns (``NUMBER_COLUMNS``)
and its bins and counter sections as Arrow list columns (``aggregate_entries``): read once per block, never changed
in place (a frame whose payloads changed would no longer match them). ``record_fold.fold_records`` turns schema-1/2
per-event records (older devices) into the same aggregates, with the device's own code, so one set of maths serves
both. A row counts in a window when its start does: an hourly rollup is in a window only when its whole hour starts
inside it.

Windows are whole minutes: ``minute_window(frame, end, span)`` keeps the minutes starting in [E − span, E), E being
``end`` rounded up to a minute, i.e. the raw window (end − span, end] when ``end`` is on a minute, else shifted
later by under a minute. ``WindowSummary`` adds up a window's aggregates (``summary_by_rows``, row by row: the
reference for ``aggregate_sums.summary_of``, which adds them up in columns); ``stand_in`` gives, per drift row, a
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
from operator import attrgetter, itemgetter
from typing import Any

import numpy as np
import pandas as pd

from dashboard.monitoring.aggregate_entries import entry_columns, latency_bins
from dashboard.monitoring.predictions import ANOMALY_SCORE_ROW
from dashboard.monitoring.stand_in import StandIn
from runtime.ecg.quality import QualityFlag
from runtime.results import OUT_OF_DOMAIN
from runtime.telemetry.aggregates import (
    CONFIDENCE_TRACK,
    IDENTITY_KEYS,
    MINUTE_S,
    SCORE_TRACK,
    SCORES_PREFIX,
    VALUES_PREFIX,
    AggregationPlan,
)
from runtime.telemetry.histogram import (
    GENERIC_SCHEME,
    LATENCY_SCHEME,
    dense_counts,
    generic_edges,
    latency_edges,
    spread,
)

FRAME_COLUMNS = (*IDENTITY_KEYS, "minute", "seconds", "records", "session", "payload")
# Numbers every payload carries, read into columns once when the frame is made (a page's cached blocks keep them), so
# sums over thousands of rows are column sums (``aggregate_sums``): the counts, and the latency histogram's count,
# sum, sum of squares (0.0 when absent), minimum and maximum (inf and -inf for an empty histogram). The payloads'
# bins and counter sections are Arrow list columns beside them (``aggregate_entries``).
# out_of_domain: records flagged out_of_domain (a refused row: its only flag); no_result and no_result_out_of_domain:
# beats and windows refused without a record, and those of them outside the input domain; no_result_quality: those
# refused for the signal's quality (``quality_refused``).
NUMBER_COLUMNS = {"flagged": np.int64, "unjudged": np.int64, "alarms": np.int64, "latency_count": np.int64,
                  "latency_sum": np.float64, "latency_squares": np.float64, "latency_low": np.float64,
                  "latency_high": np.float64, "out_of_domain": np.int64, "no_result": np.int64,
                  "no_result_out_of_domain": np.int64, "no_result_quality": np.int64}
# A stream's own start (and restart after a gap or lead-off): its first beats wait for their RR history, a state of
# the stream, not of the signal's quality.
NOT_SIGNAL_QUALITY = frozenset({OUT_OF_DOMAIN, QualityFlag.WARMING_UP.value})
FOLDED_SESSION = "folded"  # the session of aggregates the dashboard folded from per-event records
PlanFor = Callable[[str, str, str], AggregationPlan | None]  # (bundle_id, bundle_sha256, task) → its plan


def aggregate_frame(payloads: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per aggregate, oldest minute first (the shape the collector's ``aggregates`` table gives), with the
    ``NUMBER_COLUMNS`` of its payload."""
    payloads = list(payloads)
    rows = [{**{key: payload[key] for key in IDENTITY_KEYS}, "minute": payload["minute"],
             "seconds": payload.get("seconds", MINUTE_S), "records": payload["records"],
             "session": payload["session"], "payload": payload} for payload in payloads]
    frame = pd.DataFrame(rows, columns=list(FRAME_COLUMNS))
    frame["minute"] = pd.to_datetime(frame["minute"], utc=True, format="ISO8601")
    try:
        numbers = payload_numbers(payloads)
    except (KeyError, TypeError, ValueError, OverflowError):  # not every payload has them: sums read the payloads
        numbers = {}
    for name, values in (numbers | entry_columns(payloads)).items():
        frame[name] = values
    return frame.sort_values(["minute", "device_id", "session"], kind="stable").reset_index(drop=True)


def payload_numbers(payloads: list[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """The ``NUMBER_COLUMNS`` of ``payloads``, one array each (what ``WindowSummary.add`` reads of each)."""
    rows = [(payload["flagged"], payload["unjudged"], payload.get("alarms") or 0, latency["count"], latency["sum"],
             latency.get("sum_squares", 0.0), *((latency["min"], latency["max"]) if latency["count"]
                                                else (math.inf, -math.inf)),
             _domain_count(payload.get("quality_flags")), refused.get("count", 0),
             _domain_count(refused.get("quality_flags")), quality_refused(refused))
            for payload in payloads for latency, refused in ((payload["latency_us"], payload.get("no_result") or {}),)]
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(NUMBER_COLUMNS)
    return {name: np.array(column, dtype=dtype) for (name, dtype), column in zip(NUMBER_COLUMNS.items(), columns,
                                                                                 strict=True)}


def quality_refused(refused: Mapping[str, Any]) -> int:
    """Of a ``no_result`` section's beats and windows, those refused for the signal's quality (clipped, non-finite
    samples, a rate mismatch …): the refused ones not outside the input domain, at most as many as their
    signal-quality flags (``NOT_SIGNAL_QUALITY`` left out) — exact when each refused beat carries one such flag, as
    a clipped stretch's do; a beat with two is counted once where the section allows it."""
    flags = refused.get("quality_flags") or {}
    if not isinstance(flags, dict):
        flags = Counter(flags)
    named = sum(count for flag, count in flags.items() if flag not in NOT_SIGNAL_QUALITY)
    return max(0, min(int(refused.get("count", 0)) - int(flags.get(OUT_OF_DOMAIN, 0)), int(named)))


def _domain_count(flags: object) -> int:
    """How many ``out_of_domain`` a quality-flag section counts (as ``Counter.update`` adds one that is not an
    object)."""
    if isinstance(flags, dict):
        return flags.get(OUT_OF_DOMAIN, 0)
    return Counter(flags or ()).get(OUT_OF_DOMAIN, 0)


def frame_numbers(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The ``NUMBER_COLUMNS`` of ``frame``'s rows: its columns, or read from its payloads when it has none of their
    types (a frame made by hand, or concatenated with one that had none)."""
    if all(name in frame and frame[name].dtype == dtype for name, dtype in NUMBER_COLUMNS.items()):
        return {name: frame[name].to_numpy() for name in NUMBER_COLUMNS}
    return payload_numbers(frame["payload"].tolist())


@dataclass(frozen=True, slots=True)
class SparseBins:
    """A histogram's non-empty bins as two arrays: what ``compact_payload`` keeps instead of ``{"<index>": count}``
    (about a tenth of the memory, and added without parsing a key)."""

    indices: np.ndarray  # int32 bin indices, each once
    counts: np.ndarray  # int64 counts

    @classmethod
    def of(cls, bins: Mapping[str, int]) -> SparseBins:
        return cls(np.fromiter(map(int, bins), dtype=np.int32, count=len(bins)),
                   np.fromiter(bins.values(), dtype=np.int64, count=len(bins)))


def add_bins(counts: np.ndarray, bins: Mapping[str, int] | SparseBins) -> None:
    """Add a histogram's ``bins`` (an object of the wire format, or ``SparseBins``) into dense ``counts``."""
    if isinstance(bins, SparseBins):
        counts[bins.indices] += bins.counts
    elif bins:
        counts += dense_counts(bins, len(counts))


def _sparse(bins: Mapping[str, int] | SparseBins) -> SparseBins:
    return bins if isinstance(bins, SparseBins) else SparseBins.of(bins or {})


def latency_entries(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every row's non-empty latency bins as three aligned arrays: (row position in ``frame``, bin, count)."""
    if frame.empty:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, empty
    flat = latency_bins(frame)
    if flat is not None:
        return flat
    parts = list(map(_sparse, map(itemgetter("bins"), map(itemgetter("latency_us"), frame["payload"].tolist()))))
    indices = list(map(attrgetter("indices"), parts))
    lengths = np.fromiter(map(len, indices), dtype=np.int64, count=len(parts))
    rows = np.repeat(np.arange(len(parts), dtype=np.int64), lengths)
    if not lengths.sum():
        return rows, rows, rows
    return rows, np.concatenate(indices).astype(np.int64), np.concatenate(list(map(attrgetter("counts"), parts)))


def _compact_histogram(entry: Mapping[str, Any]) -> dict[str, Any]:
    bins = entry.get("bins")
    return {**entry, "bins": SparseBins.of(bins) if isinstance(bins, Mapping) else bins}


def compact_payload(payload: Mapping[str, Any], *, features: bool = True) -> dict[str, Any]:
    """``payload`` with every histogram's bins as ``SparseBins``; without its feature histograms when
    ``features`` is False (pages that draw no drift need only counts, latency and outputs)."""
    compact = dict(payload)
    compact["latency_us"] = _compact_histogram(payload["latency_us"])
    compact["outputs"] = {name: _compact_histogram(entry) for name, entry in (payload.get("outputs") or {}).items()}
    compact["features"] = ({name: _compact_histogram(entry) for name, entry in (payload.get("features") or {}).items()}
                           if features else {})
    return compact


def _merged_histogram(entries: list[Mapping[str, Any]]) -> dict[str, Any]:
    parts = [entry["bins"] if isinstance(entry["bins"], SparseBins) else SparseBins.of(entry["bins"])
             for entry in entries]
    indices, inverse = np.unique(np.concatenate([part.indices for part in parts]), return_inverse=True)
    counts = np.bincount(inverse, weights=np.concatenate([part.counts for part in parts]).astype(np.float64),
                         minlength=len(indices)).astype(np.int64)
    filled = [entry for entry in entries if entry["count"]]
    merged = {"scheme": entries[0]["scheme"], "count": sum(entry["count"] for entry in entries),
              "sum": math.fsum(entry["sum"] for entry in entries),
              "min": min((entry["min"] for entry in filled), default=0.0),
              "max": max((entry["max"] for entry in filled), default=0.0),
              "bins": SparseBins(indices.astype(np.int32), counts)}
    if any("sum_squares" in entry for entry in entries):
        merged["sum_squares"] = math.fsum(entry.get("sum_squares", 0.0) for entry in entries)
    return merged


def _merged_tracks(tracks: list[Mapping[str, Mapping[str, Any]]]) -> dict[str, Any]:
    names = list(dict.fromkeys(name for section in tracks for name in section))
    merged = {}
    for name in names:
        entries = [section[name] for section in tracks if name in section]
        if len({entry["scheme"] for entry in entries}) == 1:  # a name on two bin schemes is not added up
            merged[name] = _merged_histogram(entries)
    return merged


def merge_compact(payloads: list[Mapping[str, Any]], **identity: Any) -> dict[str, Any]:
    """Aggregates of one device and bundle as one compact payload (e.g. a day of hourly rollups): counts and
    histograms added; ``identity`` (minute, seconds, session, …) overrides the first payload's."""
    first = payloads[0]
    merged = {key: first.get(key) for key in (*IDENTITY_KEYS, "kind", "bins_id", "filter")}
    if any(payload.get("bins_id") != first.get("bins_id") for payload in payloads):
        merged["bins_id"] = None
    for key in ("records", "unjudged", "flagged", "alarms", "sent_individually", "late"):
        merged[key] = sum(payload.get(key) or 0 for payload in payloads)
    for key in ("classes", "low_confidence", "labels", "quality_flags"):
        total: Counter = Counter()
        for payload in payloads:
            total.update(payload.get(key) or {})
        merged[key] = dict(total)
    merged["latency_us"] = _merged_histogram([payload["latency_us"] for payload in payloads])
    for section in ("features", "outputs"):
        merged[section] = _merged_tracks([payload.get(section) or {} for payload in payloads])
    return merged | identity


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


class TrackSum:
    """One histogram added up over a window. Bins are added in one ``numpy.bincount`` when ``counts`` is first
    read after ``add`` (a day of a fleet is a million histograms: one numpy call each would dominate)."""

    def __init__(self, edges: np.ndarray, counts: np.ndarray) -> None:
        self.edges = edges
        self._counts = counts
        self._pending: list[Mapping[str, int] | SparseBins] = []
        self.count = 0
        self.total = 0.0
        self.squares = 0.0
        self.low = math.inf
        self.high = -math.inf

    @classmethod
    def summed(cls, edges: np.ndarray, counts: np.ndarray, count: int, sums: tuple[float, float],
               extremes: tuple[float, float]) -> TrackSum:
        """A track already added up (``aggregate_sums``): dense ``counts``, ``count``, (sum, sum of squares) and
        (low, high)."""
        track = cls(edges, counts)
        track.count, (track.total, track.squares), (track.low, track.high) = count, sums, extremes
        return track

    def add(self, entry: Mapping[str, Any], bins: SparseBins | None = None) -> None:
        """Add a histogram entry (``bins``: its bins already made sparse, else read from the entry)."""
        self._pending.append(entry["bins"] if bins is None else bins)
        self.count += entry["count"]
        self.total += entry["sum"]
        self.squares += entry.get("sum_squares", 0.0)
        if entry["count"]:
            self.low, self.high = min(self.low, entry["min"]), max(self.high, entry["max"])

    @property
    def counts(self) -> np.ndarray:
        if self._pending:
            parts = [_sparse(bins) for bins in self._pending]
            self._pending = []
            indices = np.concatenate([part.indices for part in parts])
            if len(indices):
                weights = np.concatenate([part.counts for part in parts]).astype(np.float64)
                self._counts = self._counts + np.bincount(indices, weights=weights,
                                                          minlength=len(self._counts)).astype(np.int64)
        return self._counts

    def values(self) -> np.ndarray:
        """A stand-in sample with this histogram (``histogram.spread``)."""
        return spread(self.edges, self.counts, self.low, self.high) if self.count else np.empty(0)

    def stand_in(self) -> StandIn:
        """The same sample, not written out (``stand_in.StandIn``: the drift tests' numbers from the bins)."""
        return StandIn(self.edges, self.counts.copy(), self.low, self.high)


@dataclass
class WindowSummary:
    """The aggregates of one window added up: counts, latency histogram and every decodable track."""

    records: int = 0
    unjudged: int = 0
    flagged: int = 0
    alarms: int = 0  # anomaly: records at or above the threshold
    classes: Counter = field(default_factory=Counter)
    labels: Counter = field(default_factory=Counter)  # multilabel: positives per label
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

    def add(self, payload: Mapping[str, Any], plan: AggregationPlan | None, *, tracks: bool = True,
            features: bool = True) -> None:
        """Add one aggregate; ``tracks`` False: counts and latency only; ``features`` False: outputs, no features."""
        self.records += payload["records"]
        self.unjudged += payload["unjudged"]
        self.flagged += payload["flagged"]
        self.alarms += payload.get("alarms") or 0
        self.classes.update(payload["classes"])
        self.labels.update(payload.get("labels") or {})
        self.quality_flags.update(payload["quality_flags"])
        self.latency.add(payload["latency_us"])
        if not tracks:
            return
        usable = plan if plan is not None and plan.bins_id == payload["bins_id"] else None
        sections = (("features", self.features), ("outputs", self.outputs)) if features else (
            ("outputs", self.outputs),)
        for section, sums in sections:
            for name, entry in payload[section].items():
                edges = _edges(name, entry["scheme"], usable)
                if edges is None:
                    self.undecodable.add(name)
                    continue
                track = sums.setdefault(name, TrackSum(edges, np.zeros(len(edges) + 1, dtype=np.int64)))
                if track.edges is not edges and not np.array_equal(track.edges, edges):
                    self.undecodable.add(name)  # the same name on other bins (another bundle version): not added
                    continue
                bins = _sparse(entry["bins"])
                if len(bins.indices) and int(bins.indices.max()) > len(edges):
                    self.undecodable.add(name)  # bins beyond the track's edges: not this bundle's bins, not added
                    continue
                track.add(entry, bins)

    def categories(self) -> list[str]:
        """The judged records' classes, as ``dashboard.monitoring.predictions.categories`` lists them."""
        return [label for label, count in self.classes.items() for _ in range(count)]

    def confidences(self) -> np.ndarray:
        """Stand-in values of the confidence histogram (empty for other kinds)."""
        track = self.outputs.get(CONFIDENCE_TRACK)
        return track.values() if track is not None else np.empty(0)

    def confidence_stand_in(self) -> StandIn | None:
        track = self.outputs.get(CONFIDENCE_TRACK)
        return track.stand_in() if track is not None and track.count else None

    def stand_ins(self) -> dict[str, StandIn]:
        """``compared``'s columns as ``StandIn``s (the tracks with values), not written out."""
        columns = {name: track.stand_in() for name, track in self.features.items() if track.count}
        for name, track in self.outputs.items():
            row = drift_row(name)
            if row is not None and row not in columns and track.count:
                columns[row] = track.stand_in()
        return columns

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


def summary_by_rows(frame: pd.DataFrame, plan_for: PlanFor | None = None, *, tracks: bool = True,
                    features: bool = True) -> WindowSummary:
    """``WindowSummary`` of every aggregate in ``frame``, added row by row (``WindowSummary.add``): tracks decoded with
    each row's bundle plan (generic ones always), or left out (``tracks=False``) when only counts and latency are
    needed (``features=False``: the output tracks only). The reference ``aggregate_sums.summary_in_columns`` is
    tested against, and what ``aggregate_sums.summary_of`` runs on a few rows."""
    summary = WindowSummary()
    if not tracks or plan_for is None:
        for payload in frame["payload"].tolist():
            summary.add(payload, None, tracks=tracks, features=features)
        return summary
    columns = (frame[name].tolist() for name in ("bundle_id", "bundle_sha256", "task", "payload"))
    for bundle_id, sha256, task, payload in zip(*columns, strict=True):
        summary.add(payload, plan_for(bundle_id, sha256, task), tracks=tracks, features=features)
    return summary
