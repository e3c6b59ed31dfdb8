"""Fleet numbers on aggregate frames (``aggregate_window``): what the Fleet and Device pages show, for any number of
devices — one row per device, and series per group (a bundle, or one device) and time bucket, never per inference.

Counts (records, flagged records, records per flag) are exact sums of the aggregates; latency percentiles are read
from the summed ``log10/64`` histograms (within 1.8 % of the exact percentile, protocol.md). Every histogram sum is
one vectorised ``numpy.add.at`` over all rows of the frame, so 60 000 minute aggregates (an hour of 1 000 devices)
cost milliseconds, not a loop per device.

A device's status on the Fleet page is a quick read of its window, not an alert rule (the Alerts page runs those):
``silent`` when nothing arrived for ``SILENT_AFTER``, ``noisy`` when its flagged share reaches the quality warning
rate, ``slow`` when its p95 is over the latency objective, else ``ok``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from dashboard.data.bundles import BundleCatalog
from dashboard.monitoring.aggregate_window import latency_entries
from dashboard.monitoring.alerts import DEFAULT_ALERT_CONFIG, AlertConfig
from dashboard.monitoring.fleet import short_id
from runtime.session import short_provider_name
from runtime.telemetry.aggregate_schema import MIXED
from runtime.telemetry.histogram import latency_edges, quantile

SILENT_AFTER = timedelta(minutes=10)  # a device with no aggregate or record for this long is "silent"
STATUSES = ("silent", "noisy", "slow", "ok")  # worst first
_LATENCY_BINS = len(latency_edges()) + 1


def latency_matrix(frame: pd.DataFrame, groups: Sequence[int], size: int) -> np.ndarray:
    """Summed latency histograms: one row per group (``groups[i]`` is row i's group number, < ``size``)."""
    matrix = np.zeros((size, _LATENCY_BINS), dtype=np.int64)
    rows, bins, counts = latency_entries(frame)
    if len(rows):
        np.add.at(matrix, (np.asarray(groups, dtype=np.int64)[rows], bins), counts)
    return matrix


def _percentiles(counts: np.ndarray, low: float, high: float) -> tuple[float | None, float | None]:
    edges = latency_edges()
    return (quantile(edges, counts, 0.5, low, high), quantile(edges, counts, 0.95, low, high))


def _grouped(frame: pd.DataFrame, keys: Sequence[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """(one row per group with ``keys``, the group number of every row of ``frame``)."""
    codes, uniques = pd.MultiIndex.from_frame(frame[list(keys)]).factorize()
    return uniques.to_frame(index=False), codes


def _payload_numbers(frame: pd.DataFrame) -> pd.DataFrame:
    """Per row: flagged, unjudged, latency min/max (numbers every aggregate carries), in one pass."""
    rows = [(payload["flagged"], payload["unjudged"],
             *((latency["min"], latency["max"]) if (latency := payload["latency_us"])["count"] else (np.inf, -np.inf)))
            for payload in frame["payload"].tolist()]
    return pd.DataFrame(rows, columns=["flagged", "unjudged", "low", "high"], index=frame.index)


def group_series(frame: pd.DataFrame, bucket: timedelta, group: pd.Series, start: datetime | None = None,
                 end: datetime | None = None) -> pd.DataFrame:
    """Per group (``group``: a label per row, e.g. the bundle's name) and bucket: p50/p95 latency, inferences,
    inferences per minute, flagged share and how many devices reported.

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
                                     high=("high", "max"), devices=("device_id", "nunique"))
    rows = []
    for number, (label, moment) in enumerate(table.itertuples(index=False)):
        total = int(matrix[number].sum())
        if not total:
            continue
        low, high = float(sums.at[number, "low"]), float(sums.at[number, "high"])
        p50, p95 = _percentiles(matrix[number], low, high)
        covered_from = max(moment, pd.Timestamp(start)) if start is not None else moment
        covered_to = min(moment + width, pd.Timestamp(end)) if end is not None else moment + width
        minutes = max((covered_to - covered_from).total_seconds() / 60, 1 / 60)
        records = int(sums.at[number, "records"])
        rows.append({"group": label, "bucket": moment, "p50_us": p50, "p95_us": p95, "inferences": total,
                     "per_minute": total / minutes, "flagged_share": int(sums.at[number, "flagged"]) / records
                     if records else 0.0, "devices": int(sums.at[number, "devices"])})
    return pd.DataFrame(rows, columns=columns).sort_values(["group", "bucket"], kind="stable").reset_index(drop=True)


def flag_rates(frame: pd.DataFrame) -> pd.DataFrame:
    """Per device and quality flag: the share of records carrying it (plus ``any`` flag), as
    ``fleet.flag_rates`` on records."""
    columns = ["device_id", "device", "flag", "records", "rate"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for device_id, group in frame.groupby("device_id", sort=True):
        total = int(group["records"].sum())
        if not total:
            continue
        flags: Counter[str] = Counter()
        flagged = 0
        for payload in group["payload"].tolist():
            if payload["flagged"]:  # a minute without a flagged record has no flag counts either
                flags.update(payload["quality_flags"])
                flagged += payload["flagged"]
        rows.append({"device_id": device_id, "flag": "any", "records": flagged, "rate": flagged / total})
        rows += [{"device_id": device_id, "flag": flag, "records": int(count), "rate": count / total}
                 for flag, count in flags.most_common()]
    table = pd.DataFrame(rows, columns=[name for name in columns if name != "device"])
    return table.assign(device=table["device_id"].map(short_id))[columns]


def _identity_text(value: object) -> str:
    return MIXED if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def device_overview(devices: pd.DataFrame, frame: pd.DataFrame, catalog: BundleCatalog, now: datetime,
                    span: timedelta, config: AlertConfig = DEFAULT_ALERT_CONFIG) -> pd.DataFrame:
    """One row per device of ``devices`` (``dashboard.data.windows.device_table``): its latest bundle, variant and
    provider in the window, last seen, inferences, p50/p95, throughput and flagged share over ``frame`` (the
    window's aggregates), and its status."""
    columns = ["device_id", "status", "bundle", "variant", "provider", "records", "last_seen", "minutes_since",
               "p50_us", "p95_us", "per_minute", "flagged_share", "dropped", "sends"]
    if devices.empty:
        return pd.DataFrame(columns=columns)
    table = devices.drop_duplicates("device_id").reset_index(drop=True)
    known = pd.Index(table["device_id"])
    inside = frame[frame["device_id"].isin(known)] if len(frame) else frame
    groups = known.get_indexer(inside["device_id"]) if len(inside) else np.empty(0, dtype=np.int64)
    matrix = latency_matrix(inside, groups, len(table))
    empty = {"records": {}, "flagged": {}, "low": {}, "high": {}}
    sums = (pd.concat([inside[["records"]], _payload_numbers(inside)], axis=1).groupby(groups).agg(
        records=("records", "sum"), flagged=("flagged", "sum"), low=("low", "min"), high=("high", "max")).to_dict()
        if len(inside) else empty)
    last_rows = (inside.sort_values(["minute", "session"], kind="stable").drop_duplicates("device_id", keep="last")
                 if len(inside) else inside)
    latest = {row["device_id"]: row for row in last_rows[["device_id", "bundle_id", "bundle_sha256", "variant",
                                                          "provider"]].to_dict("records")} if len(inside) else {}
    minutes_in_span = span.total_seconds() / 60
    moment = pd.Timestamp(now)
    rows = []
    for number, device in enumerate(table[["device_id", "last_seen", "dropped", "sends"]].to_dict("records")):
        device_id = device["device_id"]
        last = latest.get(device_id)
        bundle = catalog.match(last["bundle_id"], last["bundle_sha256"]) if last is not None else None
        records = int(sums["records"].get(number, 0))
        p50 = p95 = None
        if records and matrix[number].sum():
            p50, p95 = _percentiles(matrix[number], float(sums["low"][number]), float(sums["high"][number]))
        last_seen = device["last_seen"] if pd.notna(device["last_seen"]) else None
        rows.append({
            "device_id": device_id,
            "bundle": bundle.name if bundle else (f"unknown ({last['bundle_id']})" if last is not None else "—"),
            "variant": _identity_text(last["variant"]) if last is not None else "—",
            "provider": short_provider_name(_identity_text(last["provider"])) if last is not None else "—",
            "records": records,
            "last_seen": last_seen,
            "minutes_since": (moment - last_seen).total_seconds() / 60 if last_seen is not None else None,
            "p50_us": p50, "p95_us": p95,
            "per_minute": records / minutes_in_span,
            "flagged_share": int(sums["flagged"].get(number, 0)) / records if records else None,
            "dropped": int(device["dropped"]),
            "sends": device["sends"],
        })
    overview = pd.DataFrame(rows)
    overview["status"] = [device_status(row, now, config) for row in overview.itertuples()]
    return overview[columns]


def device_status(row: object, now: datetime, config: AlertConfig = DEFAULT_ALERT_CONFIG) -> str:
    """``silent``, ``noisy``, ``slow`` or ``ok`` for one ``device_overview`` row (module docstring)."""
    last_seen = getattr(row, "last_seen", None)
    if last_seen is None or pd.isna(last_seen) or pd.Timestamp(now) - last_seen > SILENT_AFTER:
        return "silent"
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
    names: dict[tuple[Hashable, Hashable], str] = {}
    labels = []
    for bundle_id, sha256 in zip(frame["bundle_id"].tolist(), frame["bundle_sha256"].tolist(), strict=True):
        key = (bundle_id, sha256)
        if key not in names:
            bundle = catalog.match(str(bundle_id), None if sha256 is None else str(sha256))
            names[key] = bundle.name if bundle else f"{bundle_id} (not published here)"
        labels.append(names[key])
    return pd.Series(labels, index=frame.index, dtype="object")
