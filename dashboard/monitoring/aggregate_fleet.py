"""Fleet numbers on aggregate frames (``aggregate_window``): what the Fleet and Device pages show, for any number of
devices — one row per device, and series per group (a bundle, or one device) and time bucket, never per inference.

Counts (records, flagged records, records per flag) are exact sums of the aggregates; latency percentiles are read
from the summed ``log10/64`` histograms (within 1.8 % of the exact percentile, protocol.md). Everything is summed in
columns: the frame's number and entry columns (``aggregate_window``, ``aggregate_entries``, made once per cached
block), every histogram sum one ``numpy.bincount`` over all rows, every group's percentiles one set of array
operations (``quantile_rows``, ``histogram.quantile``'s arithmetic), so 60 000 minute aggregates (an hour of 1 000
devices) cost milliseconds, not a loop per row or device. The per-row functions they replace are kept as the
reference in tests/dashboard/test_aggregate_sums.py: the same tables, bit for bit.

A device's status on the Fleet page is a quick read of its window, not an alert rule (the Alerts page runs those):
``silent`` when nothing arrived for ``SILENT_AFTER`` (by the collector's clock where the store has the receipt),
``clock`` when its newest data ends more than ``windows.CLOCK_TOLERANCE`` after it arrived (its clock is ahead: its
data sits at the wrong times, outside the windows that should show it), ``domain`` when the share of its inputs
refused as outside the bundle's input domain reaches the input-domain warning rate (over at least
``quality_minimum_events`` inputs, as the alert), ``noisy`` when its flagged share (signal-quality flags: a refused
row's ``out_of_domain`` is not one, as in the quality alert) reaches the quality warning rate, ``slow`` when its p95
is over the latency objective, else ``ok``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from operator import itemgetter

import numpy as np
import pandas as pd

from dashboard.data.bundles import BundleCatalog
from dashboard.monitoring.aggregate_sums import grouped_counts
from dashboard.monitoring.aggregate_window import frame_numbers, latency_entries
from dashboard.monitoring.alerts import DEFAULT_ALERT_CONFIG, AlertConfig
from dashboard.monitoring.fleet import short_id
from runtime.session import short_provider_name
from runtime.telemetry.aggregate_schema import MIXED
from runtime.telemetry.histogram import latency_edges

SILENT_AFTER = timedelta(minutes=10)  # a device with no aggregate or record for this long is "silent"
STATUSES = ("silent", "clock", "domain", "noisy", "slow", "ok")  # worst first
_LATENCY_BINS = len(latency_edges()) + 1


def latency_matrix(frame: pd.DataFrame, groups: Sequence[int], size: int) -> np.ndarray:
    """Summed latency histograms: one row per group (``groups[i]`` is row i's group number, < ``size``), in one
    ``bincount`` over every row's bins."""
    rows, bins, counts = latency_entries(frame)
    if not len(rows):
        return np.zeros((size, _LATENCY_BINS), dtype=np.int64)
    groups = np.asarray(groups, dtype=np.int64)
    if bins.min() < 0 or bins.max() >= _LATENCY_BINS or groups.min() < 0 or groups.max() >= size:
        raise IndexError(f"latency bins in 0…{_LATENCY_BINS - 1} and groups in 0…{size - 1} expected")
    flat = np.bincount(groups[rows] * _LATENCY_BINS + bins, weights=counts.astype(np.float64),
                       minlength=size * _LATENCY_BINS)
    return flat.astype(np.int64).reshape(size, _LATENCY_BINS)


def quantile_rows(matrix: np.ndarray, lows: np.ndarray, highs: np.ndarray, q: float) -> np.ndarray:
    """``histogram.quantile`` of every row of ``matrix`` (latency histograms) with its observed ``lows``/``highs``,
    in one set of array operations: the same arithmetic on the same numbers, element by element (NaN for an empty
    row), where a loop of ``quantile`` calls costs a millisecond per thousand rows."""
    edges = latency_edges()
    counts = np.asarray(matrix, dtype=np.int64)
    rows = len(counts)
    lows = np.asarray(lows, dtype=np.float64).reshape(rows, 1)
    highs = np.asarray(highs, dtype=np.float64).reshape(rows, 1)
    inner = np.broadcast_to(edges, (rows, len(edges)))
    lower = np.concatenate([np.where(edges[0] < lows, edges[0], lows), inner], axis=1)  # histogram.bin_bounds
    upper = np.concatenate([inner, np.where(edges[-1] > highs, edges[-1], highs)], axis=1)
    lower, upper = np.maximum(lower, lows), np.minimum(upper, highs)
    middle = np.where(lower > 0, 2 * lower * upper / np.maximum(lower + upper, 1e-300), (lower + upper) / 2)
    middle = np.clip(middle, lows, highs)
    totals = counts.sum(axis=1)
    position = q * (totals - 1)
    below = np.floor(position)
    fraction = position - below
    cumulative = np.cumsum(counts, axis=1)

    def order_statistic(rank: np.ndarray) -> np.ndarray:  # searchsorted(cumulative, rank + 1, side="left") per row
        return middle[np.arange(rows), (cumulative < (rank + 1)[:, None]).sum(axis=1).clip(max=middle.shape[1] - 1)]

    first = order_statistic(below.astype(np.int64))
    second = order_statistic(np.minimum(below.astype(np.int64) + 1, totals - 1))
    found = np.where(fraction == 0, first, first + fraction * (second - first))
    return np.where(totals > 0, found, np.nan)


def _grouped(frame: pd.DataFrame, keys: Sequence[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """(one row per group with ``keys``, in the order groups first appear; the group number of every row of
    ``frame``): each key factorised on its own, the codes combined and factorised once more."""
    combined = np.zeros(len(frame), dtype=np.int64)
    for key in keys:
        codes, uniques = pd.factorize(frame[key], sort=False, use_na_sentinel=False)
        combined = combined * len(uniques) + codes
    codes, _ = pd.factorize(combined, sort=False)
    first = np.unique(codes, return_index=True)[1]
    return frame[list(keys)].iloc[first].reset_index(drop=True), codes.astype(np.int64, copy=False)


def _payload_numbers(frame: pd.DataFrame) -> pd.DataFrame:
    """Per row: flagged (by signal quality, as the quality alert counts: records with any quality flag but
    ``out_of_domain``, a refused row's only flag, plus the beats and windows refused for the signal's quality),
    unjudged, latency min/max (inf/-inf for an empty histogram), and inputs (records plus beats and windows refused
    without a record: the flagged share's denominator) and those outside the domain, as the domain alert takes them.
    The frame's number columns."""
    numbers = frame_numbers(frame)
    records = frame["records"].to_numpy(dtype=np.int64)
    return pd.DataFrame({"flagged": numbers["flagged"] - numbers["out_of_domain"] + numbers["no_result_quality"],
                         "unjudged": numbers["unjudged"],
                         "low": numbers["latency_low"], "high": numbers["latency_high"],
                         "inputs": records + numbers["no_result"],
                         "outside": numbers["out_of_domain"] + numbers["no_result_out_of_domain"]}, index=frame.index)


def group_series(frame: pd.DataFrame, bucket: timedelta, group: pd.Series, start: datetime | None = None,
                 end: datetime | None = None) -> pd.DataFrame:
    """Per group (``group``: a label per row, e.g. the bundle's name) and bucket: p50/p95 latency, inferences,
    inferences per minute, flagged share (by signal quality) and how many devices reported.

    Throughput divides by the part of each bucket inside [start, end], so the first and the current (still
    filling) bucket are not shown as a drop."""
    columns = ["group", "bucket", "p50_us", "p95_us", "inferences", "per_minute", "flagged_share", "devices"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    width = pd.Timedelta(bucket)
    keyed = pd.concat([frame[["device_id", "records"]], _payload_numbers(frame)], axis=1).assign(
        group=group.to_numpy(), bucket=frame["minute"].dt.floor(width))
    table, codes = _grouped(keyed, ["group", "bucket"])
    matrix = latency_matrix(frame, codes, len(table))
    sums = keyed.groupby(codes).agg(records=("records", "sum"), flagged=("flagged", "sum"), low=("low", "min"),
                                     high=("high", "max"), inputs=("inputs", "sum"), devices=("device_id", "nunique"))
    lows, highs = sums["low"].to_numpy(dtype=np.float64), sums["high"].to_numpy(dtype=np.float64)
    p50s, p95s = (quantile_rows(matrix, lows, highs, q).tolist() for q in (0.5, 0.95))
    rows = []
    for number, (label, moment) in enumerate(table.itertuples(index=False)):
        total = int(matrix[number].sum())
        if not total:
            continue
        p50, p95 = p50s[number], p95s[number]
        covered_from = max(moment, pd.Timestamp(start)) if start is not None else moment
        covered_to = min(moment + width, pd.Timestamp(end)) if end is not None else moment + width
        minutes = max((covered_to - covered_from).total_seconds() / 60, 1 / 60)
        inputs = int(sums.at[number, "inputs"])
        rows.append({"group": label, "bucket": moment, "p50_us": p50, "p95_us": p95, "inferences": total,
                     "per_minute": total / minutes, "flagged_share": int(sums.at[number, "flagged"]) / inputs
                     if inputs else 0.0, "devices": int(sums.at[number, "devices"])})
    return pd.DataFrame(rows, columns=columns).sort_values(["group", "bucket"], kind="stable").reset_index(drop=True)


def flag_rates(frame: pd.DataFrame) -> pd.DataFrame:
    """Per device and quality flag: the share of records carrying it (plus ``any`` flag), as
    ``fleet.flag_rates`` on records."""
    columns = ["device_id", "device", "flag", "records", "rate"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    known = frame["device_id"].notna().to_numpy()
    inside = frame if known.all() else frame[known]  # rows without a device are left out, as groupby leaves them
    devices, names = pd.factorize(inside["device_id"], sort=True)
    totals = np.bincount(devices, weights=inside["records"].to_numpy(dtype=np.float64), minlength=len(names))
    flagged = frame_numbers(inside)["flagged"]
    picked = np.flatnonzero(flagged != 0)  # a minute without a flagged record has no flag counts either
    counted = grouped_counts(inside, "quality_flags", np.where(flagged != 0, devices, -1))
    if counted is None:  # a section that is not a plain {flag: count}: counted as Counter does, device by device
        sections = inside["payload"].iloc[picked].map(itemgetter("quality_flags")).tolist()
        counted = _flag_counts_by_device(sections, devices[picked])
    owners, flags, counts = counted
    # most_common: by count, the first seen first among equal counts
    order = np.lexsort((np.arange(len(owners)), -counts, owners))
    by_device = np.bincount(devices[picked], weights=flagged[picked].astype(np.float64), minlength=len(names))
    starts = np.searchsorted(owners[order], np.arange(len(names) + 1))
    rows = []
    for number, device_id in enumerate(names.tolist()):
        total = int(totals[number])
        if not total:
            continue
        any_flag = int(by_device[number])
        rows.append({"device_id": device_id, "flag": "any", "records": any_flag, "rate": any_flag / total})
        rows += [{"device_id": device_id, "flag": flags[index], "records": int(counts[index]),
                  "rate": int(counts[index]) / total} for index in order[starts[number]:starts[number + 1]].tolist()]
    table = pd.DataFrame(rows, columns=[name for name in columns if name != "device"])
    return table.assign(device=table["device_id"].map(short_id))[columns]


def _flag_counts_by_device(sections: list, devices: np.ndarray) -> tuple[np.ndarray, list, np.ndarray]:
    """``grouped_counts``' arrays, added with ``Counter.update`` per device (sections that are not plain dicts)."""
    per_device: dict[int, Counter] = {}
    for device, section in zip(devices.tolist(), sections, strict=True):
        per_device.setdefault(device, Counter()).update(section)
    entries = [(device, flag, count) for device, counter in per_device.items() for flag, count in counter.items()]
    return (np.array([entry[0] for entry in entries], dtype=np.int64), [entry[1] for entry in entries],
            np.array([entry[2] for entry in entries], dtype=np.int64))


def _identity_text(value: object) -> str:
    return MIXED if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def device_overview(devices: pd.DataFrame, frame: pd.DataFrame, catalog: BundleCatalog, now: datetime,
                    span: timedelta, config: AlertConfig = DEFAULT_ALERT_CONFIG,
                    rate_window: tuple[pd.Timestamp, pd.Timestamp] | None = None) -> pd.DataFrame:
    """One row per device of ``devices`` (``dashboard.data.windows.device_table``): its latest bundle, variant and
    provider in the window, last seen, inferences, p50/p95, throughput and flagged share over ``frame`` (the
    window's aggregates), and its status. ``rate_window`` (the window's ``coverage`` and end): throughput counts the
    rows of that stretch only, where every device's rows are complete (rollups begin at a whole hour; a device that
    sent records has them folded from the window's start), so devices sending aggregates and records compare alike;
    None: the records over ``span``."""
    columns = ["device_id", "status", "bundle", "variant", "provider", "records", "last_seen", "minutes_since",
               "clock_ahead_min", "p50_us", "p95_us", "per_minute", "flagged_share", "inputs", "outside_share",
               "dropped", "sends"]
    if devices.empty:
        return pd.DataFrame(columns=columns)
    table = devices.drop_duplicates("device_id").reset_index(drop=True)
    known = pd.Index(table["device_id"])
    shown = frame["device_id"].isin(known).to_numpy() if len(frame) else np.ones(0, dtype=bool)
    inside = frame if shown.all() else frame[shown]  # (all of them, usually: no copy of the window)
    groups = known.get_indexer(inside["device_id"]) if len(inside) else np.empty(0, dtype=np.int64)
    matrix = latency_matrix(inside, groups, len(table))
    empty = {"records": {}, "flagged": {}, "low": {}, "high": {}, "inputs": {}, "outside": {}}
    sums = (pd.concat([inside[["records"]], _payload_numbers(inside)], axis=1).groupby(groups).agg(
        records=("records", "sum"), flagged=("flagged", "sum"), low=("low", "min"), high=("high", "max"),
        inputs=("inputs", "sum"), outside=("outside", "sum")).to_dict() if len(inside) else empty)
    latest = {}
    if len(inside):  # the identity columns only are sorted (not the payloads' entry columns)
        identity = inside[["device_id", "minute", "session", "bundle_id", "bundle_sha256", "variant", "provider"]]
        last_rows = identity.sort_values(["minute", "session"], kind="stable").drop_duplicates("device_id",
                                                                                                keep="last")
        latest = {row["device_id"]: row for row in last_rows[["device_id", "bundle_id", "bundle_sha256", "variant",
                                                              "provider"]].to_dict("records")}
    minutes_in_span = span.total_seconds() / 60
    rate_records = sums["records"]
    if rate_window is not None and rate_window[0] is not None and rate_window[1] > rate_window[0]:
        minutes_in_span = (rate_window[1] - rate_window[0]).total_seconds() / 60
        late = (inside["minute"] >= rate_window[0]).to_numpy() if len(inside) else np.ones(0, dtype=bool)
        rate_records = inside.loc[late, "records"].groupby(groups[late]).sum().to_dict() if late.any() else {}
    moment = pd.Timestamp(now)
    measured = [number for number in range(len(table)) if sums["records"].get(number, 0) and matrix[number].sum()]
    chosen = np.array(measured, dtype=np.int64)
    lows = np.array([float(sums["low"][number]) for number in measured], dtype=np.float64)
    highs = np.array([float(sums["high"][number]) for number in measured], dtype=np.float64)
    percentiles = dict(zip(measured, zip(*(quantile_rows(matrix[chosen], lows, highs, q).tolist()
                                           for q in (0.5, 0.95)), strict=True), strict=True)) if measured else {}
    rows = []
    for number, device in enumerate(table[["device_id", "last_seen", "clock_ahead_min", "dropped",
                                           "sends"]].to_dict("records")):
        device_id = device["device_id"]
        last = latest.get(device_id)
        bundle = catalog.match(last["bundle_id"], last["bundle_sha256"]) if last is not None else None
        records, inputs = int(sums["records"].get(number, 0)), int(sums["inputs"].get(number, 0))
        p50, p95 = percentiles.get(number, (None, None))
        last_seen = device["last_seen"] if pd.notna(device["last_seen"]) else None
        rows.append({
            "device_id": device_id,
            "bundle": bundle.name if bundle else (f"unknown ({last['bundle_id']})" if last is not None else "—"),
            "variant": _identity_text(last["variant"]) if last is not None else "—",
            "provider": short_provider_name(_identity_text(last["provider"])) if last is not None else "—",
            "records": records,
            "last_seen": last_seen,
            "minutes_since": (moment - last_seen).total_seconds() / 60 if last_seen is not None else None,
            "clock_ahead_min": device.get("clock_ahead_min"),
            "p50_us": p50, "p95_us": p95,
            "per_minute": int(rate_records.get(number, 0)) / minutes_in_span,
            "flagged_share": int(sums["flagged"].get(number, 0)) / inputs if inputs else None,
            "inputs": inputs,
            "outside_share": int(sums["outside"].get(number, 0)) / inputs if inputs else None,
            "dropped": int(device["dropped"]),
            "sends": device["sends"],
        })
    overview = pd.DataFrame(rows)
    overview["status"] = [device_status(row, now, config) for row in overview.itertuples()]
    return overview[columns]


def device_status(row: object, now: datetime, config: AlertConfig = DEFAULT_ALERT_CONFIG) -> str:
    """One of ``STATUSES`` for one ``device_overview`` row (module docstring)."""
    last_seen = getattr(row, "last_seen", None)
    if last_seen is None or pd.isna(last_seen) or pd.Timestamp(now) - last_seen > SILENT_AFTER:
        return "silent"
    ahead = getattr(row, "clock_ahead_min", None)
    if ahead is not None and not pd.isna(ahead):
        return "clock"
    outside, inputs = getattr(row, "outside_share", None), getattr(row, "inputs", 0)
    if (outside is not None and not pd.isna(outside) and inputs >= config.quality_minimum_events
            and outside >= config.domain_warn_rate):
        return "domain"
    flagged = getattr(row, "flagged_share", None)
    if flagged is not None and not pd.isna(flagged) and flagged >= config.quality_warn_rate:
        return "noisy"
    p95 = getattr(row, "p95_us", None)
    if p95 is not None and not pd.isna(p95) and p95 > config.latency_objective_us:
        return "slow"
    return "ok"


def status_counts(overview: pd.DataFrame) -> dict[str, int]:
    """How many devices have each status (``STATUSES`` order, zeros included)."""
    counts = overview["status"].value_counts() if len(overview) else pd.Series(dtype="int64")
    return {status: int(counts.get(status, 0)) for status in STATUSES}


def bundle_labels(frame: pd.DataFrame, catalog: BundleCatalog) -> pd.Series:
    """Per row: the published bundle's name, or ``<bundle_id> (not published here)``."""
    if frame.empty:
        return pd.Series([], index=frame.index, dtype="object")
    table, codes = _grouped(frame, ["bundle_id", "bundle_sha256"])  # each distinct pair named once
    names = []
    for bundle_id, sha256 in table.itertuples(index=False):
        bundle = catalog.match(str(bundle_id), None if sha256 is None else str(sha256))
        names.append(bundle.name if bundle else f"{bundle_id} (not published here)")
    return pd.Series(np.array(names, dtype=object)[codes], index=frame.index, dtype="object")


def refused_flag_rates(frame: pd.DataFrame, leave_out: frozenset[str] = frozenset()) -> pd.DataFrame:
    """Per device and flag: the beats and windows the device refused (no class, so no record) that carried the flag,
    as a share of its inputs (records + refused) — what ``flag_rates`` cannot see. Every flag is listed as the device
    sent it, the stream's own warm-up and out-of-domain included (the alert rules leave those two out), except the
    flags in ``leave_out``."""
    columns = ["device_id", "device", "flag", "refused", "rate"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    known = frame["device_id"].notna().to_numpy()
    inside = frame if known.all() else frame[known]
    refused = frame_numbers(inside)["no_result"]
    devices, names = pd.factorize(inside["device_id"], sort=True)
    inputs = np.bincount(devices, weights=inside["records"].to_numpy(dtype=np.float64) + refused,
                         minlength=len(names))
    counted: dict[int, Counter] = {}
    payloads = inside["payload"].tolist()
    for row in np.flatnonzero(refused > 0).tolist():  # most minutes refuse nothing: only those that did are read
        flags = (payloads[row].get("no_result") or {}).get("quality_flags") or {}
        counted.setdefault(int(devices[row]), Counter()).update(flags if isinstance(flags, dict) else Counter(flags))
    rows = [{"device_id": names[number], "flag": flag, "refused": count, "rate": count / inputs[number]}
            for number, counts in sorted(counted.items()) for flag, count in counts.most_common()
            if count and inputs[number] and flag not in leave_out]
    table = pd.DataFrame(rows, columns=[name for name in columns if name != "device"])
    return table.assign(device=table["device_id"].map(short_id))[columns]
