"""Sums over the rows of an aggregate frame (``aggregate_window``) in columns: what a page adds up over an hour of a
thousand devices (sixty thousand aggregates) in a few numpy calls instead of a Python step per row.

``summary_in_columns`` gives exactly the ``WindowSummary`` that adding the payloads one by one gives
(``aggregate_window.summary_by_rows``, the reference it is tested against on varied frames):

* counts are integer sums of the frame's ``NUMBER_COLUMNS``, and bins and counter sections are read from its Arrow
  entry columns (``aggregate_entries``), all made once per block when the frame was made (a frame without them is
  read from its payloads: the same sums);
* Counter sections (classes, labels, quality flags) hold each key once, in the order it first appears, with the
  integer sum of its counts (a key counted 0 is kept, as ``Counter.update`` keeps it);
* float sums (a histogram's sum and sum of squares) are added left to right (``numpy.cumsum`` from 0.0: bit for bit
  the loop's ``+=``); minima and maxima are the loop's ``min``/``max``: NaN never chosen, the first of equal values
  (0.0 and -0.0) kept;
* bins are one ``numpy.bincount`` per histogram, as ``TrackSum.counts`` adds its pending bins;
* a track is decoded with each row's bundle plan when the row's bins match it, added when its edges equal those of
  the first row that decoded it, else named undecodable (``WindowSummary.add``'s rule, per distinct plan and edges).

``summary_of`` is what the pages call: row by row under ``ROWS_IN_COLUMNS`` rows (a device's few minutes), in
columns above. ``counter_sum`` and ``grouped_counts`` add Counter sections of many rows (``aggregate_fleet``'s flag
rates).

Dependency rule: numpy, pandas, ``runtime.telemetry``, ``aggregate_entries`` and ``aggregate_window`` only (no
Streamlit, no store).
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from operator import attrgetter, itemgetter
from typing import Any

import numpy as np
import pandas as pd

from dashboard.monitoring.aggregate_entries import SECTIONS, KeyCodes, counter_entries
from dashboard.monitoring.aggregate_window import (
    PlanFor,
    SparseBins,
    TrackSum,
    WindowSummary,
    _edges,
    _sparse,
    frame_numbers,
    latency_entries,
    summary_by_rows,
)
from runtime.telemetry.aggregates import AggregationPlan
from runtime.telemetry.histogram import latency_edges

ROWS_IN_COLUMNS = 48  # frames of at least this many rows are summed in columns (fewer: row by row, the same sums)
_INDICES, _COUNTS = attrgetter("indices"), attrgetter("counts")


def summary_of(frame: pd.DataFrame, plan_for: PlanFor | None = None, *, tracks: bool = True,
               features: bool = True) -> WindowSummary:
    """``WindowSummary`` of every aggregate in ``frame``: tracks decoded with each row's bundle plan (generic ones
    always), or left out (``tracks=False``) when only counts and latency are needed (``features=False``: the output
    tracks only). The same summary whichever way it is added up (module docstring)."""
    if len(frame) < ROWS_IN_COLUMNS:
        return summary_by_rows(frame, plan_for, tracks=tracks, features=features)
    return summary_in_columns(frame, plan_for, tracks=tracks, features=features)


def summary_in_columns(frame: pd.DataFrame, plan_for: PlanFor | None = None, *, tracks: bool = True,
                       features: bool = True) -> WindowSummary:
    """``summary_by_rows``' summary, added up in columns (module docstring)."""
    summary = WindowSummary()
    if frame.empty:
        return summary
    payloads = frame["payload"].tolist()
    numbers = frame_numbers(frame)
    summary.records = int(np.asarray(frame["records"]).sum())
    summary.unjudged, summary.flagged, summary.alarms = (int(numbers[name].sum())
                                                         for name in ("unjudged", "flagged", "alarms"))
    summary.classes, summary.labels, summary.quality_flags = (section_sum(frame, name, payloads) for name in SECTIONS)
    summary.latency = TrackSum.summed(latency_edges(), _latency_counts(frame), int(numbers["latency_count"].sum()),
                                      (sequential_sum(numbers["latency_sum"]),
                                       sequential_sum(numbers["latency_squares"])),
                                      (loop_extreme(numbers["latency_low"], np.inf, lowest=True),
                                       loop_extreme(numbers["latency_high"], -np.inf, lowest=False)))
    if not tracks:
        return summary
    row_plans, plans = _row_plans(frame, payloads, plan_for)
    for section, sums in (("features", summary.features), ("outputs", summary.outputs)) if features else (
            ("outputs", summary.outputs),):
        _add_tracks(payloads, section, row_plans, plans, sums, summary.undecodable)
    return summary


def section_sum(frame: pd.DataFrame, section: str, payloads: list[Mapping[str, Any]] | None = None) -> Counter:
    """Counter section ``section`` of ``frame``'s rows added up, as ``WindowSummary.add`` adds it (``counter_sum``)."""
    entries = counter_entries(frame, section)
    if entries is None:
        payloads = frame["payload"].tolist() if payloads is None else payloads
        return counter_sum([payload.get("labels") or {} for payload in payloads] if section == "labels"
                           else list(map(itemgetter(section), payloads)))
    _, keys, counts = entries
    return _keyed_sum(keys, counts)


def _latency_counts(frame: pd.DataFrame) -> np.ndarray:
    """The frame's latency bins added up, as ``TrackSum.counts`` adds its pending bins."""
    size = len(latency_edges()) + 1
    counts = np.zeros(size, dtype=np.int64)
    _, bins, found = latency_entries(frame)
    if len(bins):
        counts = counts + np.bincount(bins, weights=found.astype(np.float64), minlength=size).astype(np.int64)
    return counts


def sequential_sum(values: np.ndarray) -> float:
    """``total = 0.0; total += value`` over ``values`` in order, bit for bit (``cumsum`` is sequential)."""
    if not len(values):
        return 0.0
    return float(np.cumsum(np.concatenate([[0.0], np.asarray(values, dtype=np.float64)]))[-1])


def loop_extreme(values: np.ndarray, initial: float, *, lowest: bool) -> float:
    """What ``current = min(current, value)`` (``max`` when not ``lowest``) leaves from ``initial`` over ``values`` in
    order: NaN is never chosen and, of equal values (0.0 and -0.0), the first is kept."""
    values = np.asarray(values, dtype=np.float64)
    usable = values[~np.isnan(values)]
    if not len(usable):
        return initial
    extreme = usable.min() if lowest else usable.max()
    if not (extreme < initial if lowest else extreme > initial):
        return initial
    return float(usable[int(np.argmax(usable == extreme))])


def _keyed_entries(dicts: Sequence[Mapping[Hashable, int]]) -> tuple[np.ndarray, list[Hashable], np.ndarray] | None:
    """(row of each entry, its key, its count) of ``{key: count}`` dicts; None when a count is not an integer (or a
    section is not a dict: ``counter_sum`` then adds it as ``Counter.update`` does)."""
    if not all(type(entries) is dict for entries in dicts):
        return None
    keys = list(itertools.chain.from_iterable(dicts))
    counts = np.array(list(itertools.chain.from_iterable(map(dict.values, dicts))))
    if len(keys) and counts.dtype.kind != "i":
        return None
    rows = np.repeat(np.arange(len(dicts), dtype=np.int64), np.fromiter(map(len, dicts), dtype=np.int64,
                                                                      count=len(dicts)))
    return rows, keys, counts.astype(np.int64)


def _first_seen(keys: list[Hashable]) -> tuple[np.ndarray, list[Hashable]]:
    """(each key's number, the distinct keys in the order they first appear), by Python equality as a dict sees it
    (text keys in one ``pandas.factorize``; others, where NaN or None may be among them, through a dict)."""
    if isinstance(keys, KeyCodes):  # codes into a dictionary of texts: its texts made distinct, then the codes
        text_codes, texts = _first_seen(keys.dictionary)
        codes, firsts = pd.factorize(text_codes[keys.codes], sort=False)
        return codes.astype(np.int64, copy=False), [texts[code] for code in firsts.tolist()]
    if keys and set(map(type, keys)) == {str}:
        codes, distinct = pd.factorize(np.array(keys, dtype=object), sort=False)
        return codes.astype(np.int64, copy=False), distinct.tolist()
    numbers: dict[Hashable, int] = {}
    codes = np.fromiter((numbers.setdefault(key, len(numbers)) for key in keys), dtype=np.int64, count=len(keys))
    return codes, list(numbers)


def counter_sum(dicts: Sequence[Mapping[Hashable, int] | None]) -> Counter:
    """``Counter`` of ``dicts`` added in order (``Counter.update`` each): the same keys, order and counts."""
    entries = _keyed_entries(dicts)
    if entries is None:
        total: Counter = Counter()
        for entry in dicts:
            total.update(entry)
        return total
    _, keys, counts = entries
    return _keyed_sum(keys, counts)


def _keyed_sum(keys: list[Hashable], counts: np.ndarray) -> Counter:
    """``Counter`` of (key, count) entries added in order."""
    if not keys:
        return Counter()
    codes, distinct = _first_seen(keys)
    sums = np.zeros(len(distinct), dtype=np.int64)
    np.add.at(sums, codes, counts)
    return Counter(dict(zip(distinct, sums.tolist(), strict=True)))


def grouped_counts(frame: pd.DataFrame, section: str, groups: np.ndarray
                   ) -> tuple[np.ndarray, list[Hashable], np.ndarray] | None:
    """Per (group, key): ``section_sum`` of the rows of each group (``groups[i]``: row i's group number; negative:
    left out), as three aligned arrays (group, key, count) in the order each (group, key) first appears; None when a
    row's section is not a plain {key: integer} object (then add them with ``Counter``)."""
    entries = counter_entries(frame, section)
    if entries is None:
        entries = _keyed_entries(list(map(itemgetter(section), frame["payload"].tolist())))
    if entries is None:
        return None
    rows, keys, counts = entries
    groups = np.asarray(groups, dtype=np.int64)[rows]
    kept = np.flatnonzero(groups >= 0)
    if not len(kept):
        return np.empty(0, dtype=np.int64), [], np.empty(0, dtype=np.int64)
    key_codes, distinct = _first_seen(keys)
    pairs, firsts = pd.factorize(groups[kept] * len(distinct) + key_codes[kept], sort=False)
    counts = counts[kept]
    sums = np.zeros(len(firsts), dtype=np.int64)
    np.add.at(sums, pairs, counts)
    return firsts // len(distinct), [distinct[code] for code in (firsts % len(distinct)).tolist()], sums


def _track(edges: np.ndarray, bins: Sequence[SparseBins], count: int, sums: tuple[np.ndarray, np.ndarray],
           extremes: tuple[np.ndarray, np.ndarray]) -> TrackSum:
    """A ``TrackSum`` of entries given as columns: bins, count, (sums, sums of squares) and (minima, maxima) of the
    entries with values."""
    counts = np.zeros(len(edges) + 1, dtype=np.int64)
    indices = np.concatenate(list(map(_INDICES, bins))) if bins else np.empty(0, dtype=np.int32)
    if len(indices):  # as TrackSum.counts adds its pending bins
        weights = np.concatenate(list(map(_COUNTS, bins))).astype(np.float64)
        counts = counts + np.bincount(indices, weights=weights, minlength=len(counts)).astype(np.int64)
    return TrackSum.summed(edges, counts, count, (sequential_sum(sums[0]), sequential_sum(sums[1])),
                           (loop_extreme(extremes[0], np.inf, lowest=True),
                            loop_extreme(extremes[1], -np.inf, lowest=False)))


def _row_plans(frame: pd.DataFrame, payloads: list[Mapping[str, Any]], plan_for: PlanFor | None
               ) -> tuple[np.ndarray, list[AggregationPlan | None]]:
    """(each row's number in ``plans``, the usable plans): a row's bundle plan when its bins are the plan's, else
    None; ``plan_for`` asked once per distinct (bundle, sha256, task, bins), with the values of its first row."""
    if plan_for is None:
        return np.zeros(len(payloads), dtype=np.int64), [None]
    combined = _first_seen([payload.get("bins_id") for payload in payloads])[0]
    for name in ("task", "bundle_sha256", "bundle_id"):
        codes, uniques = pd.factorize(frame[name], sort=False, use_na_sentinel=False)
        combined = combined * len(uniques) + codes
    numbers, _ = pd.factorize(combined, sort=False)
    firsts = np.unique(numbers, return_index=True)[1].tolist()
    identities = frame[["bundle_id", "bundle_sha256", "task"]].iloc[firsts].to_numpy().tolist()
    plans = []
    for first, (bundle_id, sha256, task) in zip(firsts, identities, strict=True):
        plan = plan_for(bundle_id, sha256, task)
        plans.append(plan if plan is not None and plan.bins_id == payloads[first].get("bins_id") else None)
    return numbers.astype(np.int64, copy=False), plans


def _add_tracks(payloads: list[Mapping[str, Any]], section: str, row_plans: np.ndarray,
                plans: list[AggregationPlan | None], sums: dict[str, TrackSum], undecodable: set[str]) -> None:
    """Every row's tracks of ``section`` added into ``sums`` (``WindowSummary.add``'s rule, module docstring): the
    entries gathered in one pass by (plan, name, scheme), each such group decoded once, then each track's entries
    added in their order."""
    entries: list[Mapping[str, Any]] = []
    keyed: dict[tuple, list[int]] = {}  # (plan number, name, scheme) → its entries' numbers, in order
    for plan_number, payload in zip(row_plans.tolist(), payloads, strict=True):
        for name, entry in payload[section].items():
            keyed.setdefault((plan_number, name, entry["scheme"]), []).append(len(entries))
            entries.append(entry)
    by_name: dict[str, list[tuple[int, np.ndarray | None]]] = {}  # name → (its first entry, edges) per group
    members: dict[tuple, list[int]] = {}
    for (plan_number, name, scheme), numbers in keyed.items():
        edges = _edges(name, scheme, plans[plan_number])
        if edges is None:
            undecodable.add(name)
            continue
        by_name.setdefault(name, []).append((numbers[0], edges))
        members[(name, len(by_name[name]) - 1)] = numbers
    firsts = {name: min(groups, key=itemgetter(0)) for name, groups in by_name.items()}
    for name in sorted(by_name, key=lambda track: firsts[track][0]):  # the order tracks are first decoded in
        reference = firsts[name][1]
        chosen: list[int] = []
        for number, (_, edges) in enumerate(by_name[name]):
            if edges is reference or np.array_equal(reference, edges):
                chosen += members[(name, number)]
            else:
                undecodable.add(name)  # the same name on other bins (another bundle version): not added
        # column by column, never a tuple per entry: a window's entries kept alive as tuples would wake the garbage
        # collector, whose full pass over a dashboard's cached blocks costs more than these sums
        picked = [entries[index] for index in sorted(chosen)]
        sparse = list(map(_sparse, map(itemgetter("bins"), picked)))
        fits = [not len(bins.indices) or int(bins.indices.max()) <= len(reference) for bins in sparse]
        if not all(fits):  # bins beyond the track's edges (a device on other bins than its bins_id says): left out
            undecodable.add(name)
            picked = list(itertools.compress(picked, fits))
            sparse = list(itertools.compress(sparse, fits))
        valued = [entry for entry in picked if entry["count"]]
        sums[name] = _track(reference, sparse,
                            sum(map(itemgetter("count"), picked)),
                            (np.array(list(map(itemgetter("sum"), picked)), dtype=np.float64),
                             np.array([entry.get("sum_squares", 0.0) for entry in picked], dtype=np.float64)),
                            (np.array(list(map(itemgetter("min"), valued)), dtype=np.float64),
                             np.array(list(map(itemgetter("max"), valued)), dtype=np.float64)))
