"""Fleet statistics from telemetry frames (``dashboard.data.telemetry.TelemetryReader.records``).

Latency percentiles and throughput per device and time bucket, signal-quality flag rates, and a
one-row-per-device overview. Every function takes a frame and returns a frame; none reads files. A record counts as
flagged by signal quality when it carries a flag other than ``out_of_domain`` (a refused row's only flag, the
input-domain rule's), as the quality alert counts it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd

from dashboard.data.bundles import BundleCatalog
from runtime.results import OUT_OF_DOMAIN
from runtime.session import short_provider_name

BUCKETS = (  # (longest span, bucket): about 12–100 points per line
    (timedelta(hours=2), timedelta(minutes=5)),
    (timedelta(hours=12), timedelta(minutes=15)),
    (timedelta(days=3), timedelta(hours=1)),
)
LONGEST_BUCKET = timedelta(hours=6)  # for spans over three days


def bucket_for(span: timedelta) -> timedelta:
    """A time-bucket width that gives readable charts for a window of length ``span``."""
    return next((bucket for longest, bucket in BUCKETS if span <= longest), LONGEST_BUCKET)


def short_id(device_id: str) -> str:
    """The first 12 hex characters: enough to tell devices apart on a chart."""
    return device_id[:12]


def latency_series(
    records: pd.DataFrame, bucket: timedelta, start: datetime | None = None, end: datetime | None = None
) -> pd.DataFrame:
    """Per device and bucket: p50/p95 latency (µs), inference count and throughput (per minute).

    Throughput divides by the part of each bucket inside [start, end], so the first and the current
    (still filling) bucket are not shown as a drop.
    """
    columns = ["device_id", "device", "bucket", "p50_us", "p95_us", "inferences", "per_minute"]
    if records.empty:
        return pd.DataFrame(columns=columns)
    frame = records.assign(bucket=records["time"].dt.floor(pd.Timedelta(bucket)))
    grouped = frame.groupby(["device_id", "bucket"])["latency_us"]
    series = pd.DataFrame({
        "p50_us": grouped.quantile(0.5),
        "p95_us": grouped.quantile(0.95),
        "inferences": grouped.size(),
    }).reset_index()
    width = pd.Timedelta(bucket)
    bucket_end = series["bucket"] + width
    covered_from = series["bucket"].clip(lower=pd.Timestamp(start)) if start is not None else series["bucket"]
    covered_to = bucket_end.clip(upper=pd.Timestamp(end)) if end is not None else bucket_end
    minutes = ((covered_to - covered_from).dt.total_seconds() / 60).clip(lower=1 / 60)
    series["per_minute"] = series["inferences"] / minutes
    series["device"] = series["device_id"].map(short_id)
    return series[columns]


def signal_flagged(flags: object) -> bool:
    """Whether a record's ``quality_flags`` hold a signal-quality flag (any but ``out_of_domain``)."""
    return any(flag != OUT_OF_DOMAIN for flag in flags)


def flag_series(records: pd.DataFrame, bucket: timedelta) -> pd.DataFrame:
    """Per device and bucket: the share of records carrying a signal-quality flag."""
    columns = ["device_id", "device", "bucket", "flagged_share", "records"]
    if records.empty:
        return pd.DataFrame(columns=columns)
    frame = records.assign(
        bucket=records["time"].dt.floor(pd.Timedelta(bucket)), flagged=records["quality_flags"].map(signal_flagged)
    )
    series = frame.groupby(["device_id", "bucket"])["flagged"].agg(flagged_share="mean", records="size").reset_index()
    series["device"] = series["device_id"].map(short_id)
    return series[columns]


def flag_rates(records: pd.DataFrame) -> pd.DataFrame:
    """Per device and quality flag: the share of records carrying it (plus ``any`` flag)."""
    columns = ["device_id", "device", "flag", "records", "rate"]
    if records.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for device_id, group in records.groupby("device_id"):
        flag_sets = group["quality_flags"].map(set)  # a flag repeated within one record counts once
        counts = pd.Series([flag for flags in flag_sets for flag in flags], dtype="object").value_counts()
        flagged = int((flag_sets.map(len) > 0).sum())
        rows.append({"device_id": device_id, "flag": "any", "records": flagged, "rate": flagged / len(group)})
        for flag, count in counts.items():
            rows.append({"device_id": device_id, "flag": flag, "records": int(count), "rate": count / len(group)})
    frame = pd.DataFrame(rows)
    frame["device"] = frame["device_id"].map(short_id)
    return frame[columns]


def device_overview(
    devices: pd.DataFrame, recent: pd.DataFrame, catalog: BundleCatalog, now: datetime, span: timedelta
) -> pd.DataFrame:
    """One row per device: bundle, variant, last seen, p50/p95 and throughput over ``recent``, flag rate."""
    rows = []
    for device in devices.itertuples():
        window = recent[recent["device_id"] == device.device_id]
        latest = window.iloc[-1] if len(window) else None
        bundle = catalog.match(latest["bundle_id"], latest["bundle_sha256"]) if latest is not None else None
        last_time = device.last_time if pd.notna(device.last_time) else None
        rows.append({
            "device_id": device.device_id,
            "bundle": bundle.name if bundle else (f"unknown ({latest['bundle_id']})" if latest is not None else "—"),
            "variant": latest["variant"] if latest is not None else "—",
            "provider": short_provider_name(str(latest["provider"])) if latest is not None else "—",
            "records": int(device.records),
            "last_seen": last_time,
            "minutes_since": (now - last_time).total_seconds() / 60 if last_time is not None else None,
            "p50_us": float(window["latency_us"].quantile(0.5)) if len(window) else None,
            "p95_us": float(window["latency_us"].quantile(0.95)) if len(window) else None,
            "per_minute": len(window) / (span.total_seconds() / 60),
            "flagged_share": float(window["quality_flags"].map(signal_flagged).mean()) if len(window) else None,
            "dropped": int(device.dropped),
        })
    return pd.DataFrame(rows)


def latest_bundle_window(records: pd.DataFrame, end: datetime, span: timedelta) -> pd.DataFrame:
    """Records in (end − span, end] that ran the bundle of the latest of them (a device may have updated)."""
    inside = records[(records["time"] > end - span) & (records["time"] <= end)]
    if inside.empty:
        return inside
    last = inside.iloc[-1]
    return inside[(inside["bundle_sha256"] == last["bundle_sha256"]) & (inside["bundle_id"] == last["bundle_id"])]
