"""Per-event records of older devices (telemetry schema 1 and 2) folded into minute aggregates, column-wise.

``fold_records`` gives exactly the aggregates the device's own ``runtime.telemetry.aggregates.summarise`` makes of
each (device, bundle, variant, provider, minute) group of records, but reads the record frame's columns once for
the whole frame instead of rebuilding a record dict per event: the groups come from one factorisation, latency,
confidence and features are rounded and stacked as whole-frame arrays, and each group's histograms are one
``histogram.block_summaries`` call on its slice (the same call on the same values as the device's, so sums and sums
of squares are bit for bit the same). A group the column path does not cover (a task other than a classifier's,
or classifier and other tasks mixed within a minute) is folded record by record with ``summarise`` itself.

Dependency rule: numpy, pandas, ``runtime.telemetry`` and ``aggregate_window`` only (no Streamlit, no store).
"""

from __future__ import annotations

import bisect
import itertools
import operator
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from dashboard.monitoring.aggregate_window import FOLDED_SESSION, PlanFor, SparseBins, aggregate_frame, compact_payload
from runtime.telemetry.aggregates import (
    CLASSIFIER_TASKS,
    CONFIDENCE_TRACK,
    AggregationPlan,
    Track,
    assemble,
    columns_of_records,
    summarise,
)
from runtime.telemetry.histogram import (
    LATENCY_SCHEME,
    REFERENCE_MAX_EDGES,
    block_summaries,
    generic_edges,
    latency_edges,
)

GROUP_KEYS = ("device_id", "bundle_id", "bundle_sha256", "variant", "provider")  # and the minute
_FOLDED_EXTRAS = {"sent_individually": 0, "late": 0}  # what a device adds to a summary that records cannot say
_DENSE_LIMIT = 1 << 24  # grouped bins counted in one dense array up to this many (128 MiB), else sorted
_PADDED_LIMIT = 1 << 21  # values in one padded groups × rows × columns block (16 MiB)
_BIN_SIZE = max(len(latency_edges()), len(generic_edges()), REFERENCE_MAX_EDGES) + 1
_BIN_KEYS = np.array([str(index) for index in range(_BIN_SIZE)], dtype=object)  # "0", "1", …: keys, not formatted


def fold_records(records: pd.DataFrame, plan_for: PlanFor | None = None, *, compact: bool = False) -> pd.DataFrame:
    """Per-event records (``TelemetryReader.records``, with or without features; schema 1 or 2) as minute aggregates.

    One aggregate per (device, bundle, variant, provider, minute), in the order each group's first record comes,
    counted as the device's own ``summarise`` counts them: the dashboard runs one set of maths whether a device
    sends aggregates or records. ``compact``: each payload as ``aggregate_window.compact_payload`` of it, the
    histograms' bins made as ``SparseBins`` straight away (what the pages read; no bin key is written and parsed).
    """
    if records.empty:
        return aggregate_frame([])
    columns = _RecordColumns.of(records)
    groups = list(itertools.pairwise(columns.bounds))
    identities, plans = [], []
    for start, stop in groups:
        key = [column[start] for column in columns.keys]
        task = next((task for task in columns.tasks[start:stop] if isinstance(task, str)), "multiclass")
        identities.append({**dict(zip(GROUP_KEYS, map(str, key), strict=True)), "task": task})  # schema 1: multiclass
        plan = plan_for(identities[-1]["bundle_id"], identities[-1]["bundle_sha256"], task) if plan_for else None
        plans.append(plan or AggregationPlan(task, ()))
    summaries: list[dict[str, Any] | None] = [None] * len(groups)
    batches: dict[tuple[str, str], list[int]] = {}  # classified groups by bins (one set of edges): one batch each
    for group, (start, stop) in enumerate(groups):
        if not columns.classified[start:stop].all():  # another task: the device's code, record by record
            rows = columns_of_records(columns.record(index) for index in range(start, stop))
            summaries[group] = summarise(rows, plans[group])
        elif columns.feature_names is None:  # features of several shapes: each group's block as the device makes it
            summaries[group] = columns.summary(start, stop, plans[group])
        else:
            batches.setdefault((plans[group].task, plans[group].bins_id), []).append(group)
    for members in batches.values():
        for group, summary in zip(members, columns.summaries([groups[group] for group in members],
                                                             plans[members[0]], compact), strict=True):
            summaries[group] = summary
    batched = {group for members in batches.values() for group in members}
    payloads = []
    for group, summary in enumerate(summaries):
        summary |= {"no_result": {"count": 0, "quality_flags": {}}, "quality_events": {}, **_FOLDED_EXTRAS}
        payload = assemble(identities[group], columns.minutes[group], FOLDED_SESSION, plans[group].bins_id, None,
                           summary)
        payloads.append(compact_payload(payload) if compact and group not in batched else payload)
    return aggregate_frame(payloads)


class _RecordColumns:
    """The record frame's columns, rows grouped (stably) by (device, bundle, variant, provider, minute)."""

    def __init__(self, records: pd.DataFrame, order: np.ndarray, bounds: list[int], minutes: list[str]) -> None:
        self.bounds, self.minutes = bounds, minutes
        count = len(records)

        pick = operator.itemgetter(*order.tolist())

        def listed(name: str) -> list[Any]:
            if name not in records:
                return [None] * count
            values = records[name].tolist()
            return [values[order[0]]] if count == 1 else list(pick(values))

        self.keys = [listed(name) for name in GROUP_KEYS]
        self.tasks, self.results = listed("task"), listed("result")
        self.predicted, self.confidences = listed("predicted_class"), listed("confidence")
        self.latency_us, self.flags, self.features = listed("latency_us"), listed("quality_flags"), listed("features")
        # schema 2 (a task) or schema 1 (none): the result a record's ``columns_of_records`` reads
        self.schema_two = [isinstance(task, str) for task in self.tasks]
        self.judged = [result if two and isinstance(result, Mapping) else None
                       for two, result in zip(self.schema_two, self.results, strict=True)]
        classified = [not two or task in CLASSIFIER_TASKS
                      for two, task in zip(self.schema_two, self.tasks, strict=True)]
        self.classified = np.array(classified, dtype=bool)
        # a classifier's class, confidence and low-confidence mark (other tasks' records take the record path)
        judged = [result if two and sure else {} for two, sure, result in zip(self.schema_two, classified, self.judged,
                                                                              strict=True)]
        self.classes = [(None if result is None else result.get("class")) if two else predicted
                        for two, result, predicted in zip(self.schema_two, judged, self.predicted, strict=True)]
        self.low = [bool(result and result.get("low_confidence")) if two else False
                    for two, result in zip(self.schema_two, judged, strict=True)]
        self.unjudged = np.cumsum([0] + [two and result is None
                                        for two, result in zip(self.schema_two, self.judged, strict=True)])
        confidence = [(None if result is None else result.get("confidence")) if two else value
                      for two, result, value in zip(self.schema_two, judged, self.confidences, strict=True)]
        self.latency = np.round(np.array([float(value) for value in self.latency_us], dtype=np.float64), 1)
        self.confidence = np.round(np.array([np.nan if value is None else value for value in confidence],
                                            dtype=np.float64), 6)
        self.flagged = [index for index, flags in enumerate(self.flags) if flags]  # rows with a quality flag
        self.feature_names, self.feature_block = _uniform_features(self.features)

    @classmethod
    def of(cls, records: pd.DataFrame) -> _RecordColumns:
        """Group codes in the order of each group's first record (a dict of tuples would give the same)."""
        floors = pd.Series(records["time"].dt.floor("1min").to_numpy(dtype="datetime64[ns]").view(np.int64))
        codes = np.zeros(len(records), dtype=np.int64)
        for column in (*(records[name] for name in GROUP_KEYS), floors):
            part = pd.factorize(column, use_na_sentinel=False)[0].astype(np.int64)
            codes = pd.factorize(codes * (int(part.max()) + 1) + part)[0].astype(np.int64)  # stays below rows²
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(int(codes.max()) + 2)).tolist()
        firsts = floors.to_numpy()[order[bounds[:-1]]].view("datetime64[ns]")
        minutes = pd.DatetimeIndex(firsts, tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ").tolist()
        return cls(records, order, bounds, minutes)

    def record(self, index: int) -> dict[str, Any]:
        """One record back in its schema-1 or schema-2 shape (what ``columns_of_records`` reads)."""
        record = {"latency_us": self.latency_us[index], "quality_flags": self.flags[index] or [],
                  "features": self.features[index]}
        if self.schema_two[index]:  # a result, or null for an input the model could not judge
            return record | {"task": self.tasks[index], "result": self.judged[index]}
        return record | {"predicted_class": self.predicted[index], "confidence": self.confidences[index]}

    def counts(self, start: int, stop: int) -> dict[str, Any]:
        """The counting part of ``summarise`` for the classified records ``start:stop``."""
        classes = self.classes[start:stop]
        flag_counts: Counter[str] = Counter()
        first, last = bisect.bisect_left(self.flagged, start), bisect.bisect_left(self.flagged, stop)
        for index in self.flagged[first:last]:
            flag_counts.update(set(self.flags[index]))
        return {
            "records": stop - start,
            "unjudged": int(self.unjudged[stop] - self.unjudged[start]),
            "classes": dict(Counter(label for label in classes if label is not None)),
            "low_confidence": dict(Counter(label for label, low in zip(classes, self.low[start:stop], strict=True)
                                           if low)),
            "flagged": last - first,
            "quality_flags": dict(flag_counts),
        }

    def summary(self, start: int, stop: int, plan: AggregationPlan) -> dict[str, Any]:
        """``summarise`` of the classified records ``start:stop``, features read as the device reads them."""
        names, features = _feature_block(self.features[start:stop])
        tracks = [plan.track(CONFIDENCE_TRACK), *(plan.track(name) for name in names)]
        block = np.column_stack([self.latency[start:stop], self.confidence[start:stop],
                                 *([features] if features is not None else [])])
        found = block_summaries(block, [latency_edges(), *(track.edges for track in tracks)],
                                [False] + [True] * len(tracks))
        return self.counts(start, stop) | _tracks(found, names, tracks)

    def summaries(self, groups: list[tuple[int, int]], plan: AggregationPlan, sparse: bool) -> list[dict[str, Any]]:
        """``summarise`` of each classified group (one plan, features of one shape), histograms in one batch
        (``sparse``: their bins as ``SparseBins``)."""
        names = self.feature_names or []
        tracks = [plan.track(CONFIDENCE_TRACK), *(plan.track(name) for name in names)]
        rows = np.concatenate([np.arange(start, stop) for start, stop in groups])
        parts = [self.latency[rows], self.confidence[rows]]
        if self.feature_block is not None:
            parts.append(self.feature_block[rows])
        sizes = [stop - start for start, stop in groups]
        found = grouped_block_summaries(np.column_stack(parts), np.concatenate([[0], np.cumsum(sizes)]),
                                        [latency_edges(), *(track.edges for track in tracks)],
                                        [False] + [True] * len(tracks), sparse=sparse)
        return [self.counts(start, stop) | _tracks(entries, names, tracks, sparse)
                for (start, stop), entries in zip(groups, found, strict=True)]


def _tracks(found: list[dict[str, Any] | None], names: list[str], tracks: list[Track], sparse: bool = False
            ) -> dict[str, Any]:
    """``summarise``'s latency, features and outputs from ``block_summaries``' columns (latency, confidence, …)."""
    entries = {track.name: {"scheme": track.scheme, **entry} for track, entry in zip(tracks, found[1:], strict=True)
               if entry is not None}
    empty = {"count": 0, "sum": 0.0, "min": 0.0, "max": 0.0, "bins": SparseBins.of({}) if sparse else {}}
    return {"latency_us": {"scheme": LATENCY_SCHEME, **(found[0] or empty)},
            "features": {name: entries[name] for name in names if name in entries},
            "outputs": {name: entries[name] for name in (CONFIDENCE_TRACK,) if name in entries}}


def grouped_block_summaries(values: np.ndarray, starts: np.ndarray, edges: list[np.ndarray], squares: list[bool], *,
                            sparse: bool = False) -> list[list[dict[str, Any] | None]]:
    """``histogram.block_summaries`` of each row range ``starts[g]:starts[g + 1]`` of ``values`` (at least two
    columns), the same numbers bit for bit: counts and bins (integers) for every group in one ``searchsorted`` per
    edges array and one ``bincount``; sums, sums of squares, minima and maxima by ``_group_reductions``.
    ``sparse``: bins as ``SparseBins`` (``SparseBins.of`` of the ``{"<index>": count}`` object, not written out)."""
    groups, width = len(starts) - 1, values.shape[1]
    finite = np.isfinite(values)
    counts = np.add.reduceat(finite.astype(np.int64), starts[:-1], axis=0).tolist()
    offsets = np.concatenate([[0], np.cumsum([len(column_edges) + 1 for column_edges in edges])])
    total = int(offsets[-1])
    index = np.empty(values.shape, dtype=np.int64)
    same_edges: dict[int, list[int]] = {}
    for column, column_edges in enumerate(edges):
        same_edges.setdefault(id(column_edges), []).append(column)
    for columns in same_edges.values():
        index[:, columns] = np.searchsorted(edges[columns[0]], values[:, columns], side="left")
    index += offsets[:-1] + (np.repeat(np.arange(groups, dtype=np.int64), np.diff(starts)) * total)[:, None]
    if groups * total <= _DENSE_LIMIT:
        dense = np.bincount(index[finite], minlength=groups * total)
        occupied = np.flatnonzero(dense)
        occupants = dense[occupied]
    else:
        occupied, occupants = np.unique(index[finite], return_counts=True)
    column_starts = (np.arange(groups, dtype=np.int64)[:, None] * total + offsets[:-1]).ravel()
    cuts = np.searchsorted(occupied, np.append(column_starts, groups * total))
    indices = occupied - np.repeat(column_starts, np.diff(cuts))
    if sparse:
        keys, occupants = indices.astype(np.int32), occupants.astype(np.int64)
    else:
        keys, occupants = _BIN_KEYS[indices].tolist(), occupants.tolist()
    cuts = cuts.tolist()
    sums, sum_squares, lows, highs = _group_reductions(values, finite, starts)
    found = []
    for group in range(groups):
        columns: list[dict[str, Any] | None] = []
        for column in range(width):
            count = counts[group][column]
            if not count:
                columns.append(None)
                continue
            first, end = cuts[group * width + column], cuts[group * width + column + 1]
            entry: dict[str, Any] = {"count": count, "sum": sums[group][column]}
            if squares[column]:
                entry["sum_squares"] = sum_squares[group][column]
            entry |= {"min": lows[group][column], "max": highs[group][column],
                      "bins": SparseBins(keys[first:end], occupants[first:end]) if sparse
                      else dict(zip(keys[first:end], occupants[first:end], strict=True))}
            columns.append(entry)
        found.append(columns)
    return found


def _group_reductions(values: np.ndarray, finite: np.ndarray, starts: np.ndarray) -> tuple[list, list, list, list]:
    """Per group and column: sum, sum of squares, min and max as ``block_summaries`` computes them on the group's
    rows alone. On a C-ordered rows × columns block (two columns or more) numpy adds down a column in row order, one
    row at a time; the groups are stacked into groups × rows × columns blocks, each group padded after its last row
    with what changes no result (−0.0, the exact identity of addition; ±∞ for min and max), and reduced along the
    rows the same way. Groups of similar length go together (lengths rounded up to a power of two) so padding at
    most doubles the work."""
    groups, width = len(starts) - 1, values.shape[1]
    sizes = np.diff(starts)
    results = [np.empty((groups, width)) for _ in range(4)]
    lengths = 1 << np.ceil(np.log2(sizes)).astype(np.int64)
    for length in np.unique(lengths).tolist():
        members = np.flatnonzero(lengths == length)
        for chunk in np.array_split(members, -(-len(members) * length * width // _PADDED_LIMIT)):
            rows = np.concatenate([np.arange(starts[group], starts[group + 1]) for group in chunk.tolist()])
            at = (np.repeat(np.arange(len(chunk)), sizes[chunk]), rows - np.repeat(starts[chunk], sizes[chunk]))
            inside, block = finite[rows], values[rows]
            padded = np.full((len(chunk), length, width), -0.0)
            padded[at] = np.where(inside, block, 0.0)
            results[0][chunk] = padded.sum(axis=1)
            results[1][chunk] = np.einsum("gij,gij->gj", padded, padded)
            padded.fill(np.inf)
            padded[at] = np.where(inside, block, np.inf)
            results[2][chunk] = padded.min(axis=1, initial=np.inf)
            padded.fill(-np.inf)
            padded[at] = np.where(inside, block, -np.inf)
            results[3][chunk] = padded.max(axis=1, initial=-np.inf)
    sums, sum_squares, lows, highs = (result.tolist() for result in results)
    return sums, sum_squares, lows, highs


def _uniform_features(features: Sequence[Mapping[str, float] | None]) -> tuple[list[str] | None, np.ndarray | None]:
    """(names, rows × names block) when every record has the same feature names in the same order; ([], None) when
    none has one; (None, None) otherwise (each group is then read as the device reads it)."""
    present = [item for item in features if item]
    if not present:
        return [], None
    first = tuple(present[0])
    if len(present) < len(features) or any(tuple(item) != first for item in present):
        return None, None
    values = np.fromiter(itertools.chain.from_iterable(item.values() for item in present), dtype=np.float64,
                         count=len(present) * len(first))
    return list(first), values.reshape(len(present), len(first))


def _feature_block(features: list[Mapping[str, float] | None]) -> tuple[list[str], np.ndarray | None]:
    """The device's feature block (``summarise``) of one group: names in first-seen order, NaN where missing."""
    names: list[str] = list(dict.fromkeys(name for item in features if item for name in item))
    if not names:
        return [], None
    block = np.array([[(item or {}).get(name, np.nan) for name in names] for item in features], dtype=np.float64)
    return names, block
