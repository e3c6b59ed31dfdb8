"""The latency objective, drift tests and alert rules on minute aggregates: the same verdicts as on raw records.

Each function mirrors one of ``dashboard.monitoring.alerts`` / ``checks`` / ``fleet`` and reuses its thresholds,
messages and decision code; only the window's numbers come from aggregates (``aggregate_window``):

* latency: slow inferences are counted on the ``log10/64`` bins: exactly for an objective that is a bin edge
  (every power of ten, e.g. the default 10 000 µs), else the straddling bin is split log-uniformly
  (``slow_count``); percentiles within 1.8 % (``runtime.telemetry.histogram.quantile``);
* drift: the window's histograms stand in for its values (``WindowSummary.stand_ins``), then
  ``drift.profile_drift`` runs unchanged: PSI and JS on the reference deciles are exact, KS and Wasserstein within
  one sub-bin per value; the device-baseline split is at a minute boundary (the raw one is at a record);
* quality, signal loss and input domain: sums of exact counts per minute. All three also count the beats and
  windows the device refused without a record (``no_result``), which records never show: the quality rule those
  refused for the signal's quality (a clipped stretch's beats), the signal-loss rule every detected beat (a refused
  beat is not a lost signal), the input-domain rule those outside the domain. Without refused inputs each gives the
  record rule's verdict and message.

Windows are whole minutes (``aggregate_window.minute_window``); with ``now`` on a minute they are the raw windows.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from dashboard.monitoring.aggregate_sums import grouped_counts, summary_of
from dashboard.monitoring.aggregate_window import (
    NOT_SIGNAL_QUALITY,
    PlanFor,
    WindowSummary,
    frame_numbers,
    latency_entries,
    latest_bundle_minutes,
    minute_window,
    window_end,
)
from dashboard.monitoring.alerts import (
    CRITICAL,
    DEFAULT_ALERT_CONFIG,
    WARNING,
    Alert,
    AlertConfig,
    domain_alert,
    drift_alert,
    window_label,
)
from dashboard.monitoring.checks import DriftReport, unjudged_caveat
from dashboard.monitoring.drift import DEFAULT_DRIFT_CONFIG, DriftConfig, empirical_profile, profile_drift
from dashboard.monitoring.fleet import short_id
from dashboard.monitoring.predictions import CLASSIFIERS, reference_outputs
from dashboard.monitoring.stand_in import StandIn
from runtime.results import OUT_OF_DOMAIN
from runtime.telemetry.histogram import count_above, latency_edges, quantile


def slow_count(summary: WindowSummary, objective_us: float) -> float:
    """Inferences slower than ``objective_us``: exact when it is a bin edge, else the straddling bin split
    log-uniformly (the surely/possibly bounds are ``histogram.count_above``)."""
    edges, counts = latency_edges(), summary.latency.counts
    surely, possibly = count_above(edges, counts, objective_us)
    if surely == possibly:
        return float(surely)
    index = int(np.searchsorted(edges, objective_us, side="left"))
    low = edges[index - 1] if index else max(summary.latency.low, 1e-9)
    high = edges[index] if index < len(edges) else max(summary.latency.high, objective_us)
    share = (math.log(high) - math.log(objective_us)) / (math.log(high) - math.log(low)) if high > low > 0 else 0.5
    return surely + min(max(share, 0.0), 1.0) * (possibly - surely)


def burn_rate(frame: pd.DataFrame, end: datetime, window: timedelta, config: AlertConfig) -> float | None:
    """``alerts.burn_rate`` on aggregates: (slow share) / budget over the window; None under the minimum."""
    summary = summary_of(minute_window(frame, end, window), tracks=False)
    if summary.records < config.minimum_events:
        return None
    return slow_count(summary, config.latency_objective_us) / summary.records / config.error_budget


def _slow_rows(frame: pd.DataFrame, objective_us: float) -> tuple[np.ndarray, np.ndarray]:
    """Per row: (inferences surely slower than the objective, inferences in the bin that holds it)."""
    edges = latency_edges()
    index = int(np.searchsorted(edges, objective_us, side="left"))
    rows, bins, counts = latency_entries(frame)
    above, holding = bins > index, bins == index
    size = len(frame)
    surely = np.bincount(rows[above], weights=counts[above], minlength=size).astype(np.int64)
    straddle = np.bincount(rows[holding], weights=counts[holding], minlength=size).astype(np.int64)
    if index < len(edges) and edges[index] == objective_us:
        straddle[:] = 0  # an edge: every inference in its bin is at most the objective
    return surely, straddle


def burn_table(frame: pd.DataFrame, now: datetime, config: AlertConfig = DEFAULT_ALERT_CONFIG) -> pd.DataFrame:
    """Per device (sorted) and rule window: the burn rate (NaN under the minimum), vectorised over the whole frame:
    the same numbers as ``burn_rate`` per device and window (slow inferences per row add up)."""
    devices = sorted(frame["device_id"].unique()) if len(frame) else []
    columns = [f"burn_{window_label(window)}" for window in config.windows]
    if not devices:
        return pd.DataFrame(columns=["device_id", *columns])
    edges = latency_edges()
    index = int(np.searchsorted(edges, config.latency_objective_us, side="left"))
    if index == 0 or index == len(edges):  # an objective outside the bins: the per-window path (observed min/max)
        return pd.DataFrame([{"device_id": device, **{column: burn_rate(group, now, window, config)
                                                      for column, window in zip(columns, config.windows, strict=True)}}
                             for device, group in frame.groupby("device_id")])
    surely, straddle = _slow_rows(frame, config.latency_objective_us)
    share = (math.log(edges[index]) - math.log(config.latency_objective_us)) / (
        math.log(edges[index]) - math.log(edges[index - 1]))
    share = min(max(share, 0.0), 1.0)
    codes = pd.Index(devices).get_indexer(frame["device_id"])
    stop = window_end(now)
    starts = frame["minute"]
    records = frame["records"].to_numpy(dtype=np.int64)
    table = {"device_id": devices}
    for column, window in zip(columns, config.windows, strict=True):
        inside = ((starts >= stop - pd.Timedelta(window)) & (starts < stop)).to_numpy()
        total = np.bincount(codes[inside], weights=records[inside], minlength=len(devices))
        slow = np.bincount(codes[inside], weights=surely[inside], minlength=len(devices)).astype(np.int64)
        straddling = np.bincount(codes[inside], weights=straddle[inside], minlength=len(devices)).astype(np.int64)
        rates = [float(sure) + share * float(part) if part else float(sure) for sure, part in zip(slow, straddling,
                                                                                                strict=True)]
        table[column] = [rate / count / config.error_budget if count >= config.minimum_events else np.nan
                         for rate, count in zip(rates, total, strict=True)]
    return pd.DataFrame(table)


def burn_rates(frame: pd.DataFrame, now: datetime, config: AlertConfig = DEFAULT_ALERT_CONFIG) -> pd.DataFrame:
    """``alerts.burn_rates`` on aggregates: per device, the burn rate over every rule window (NaN under the
    minimum)."""
    return burn_table(frame, now, config)


def latency_alerts(frame: pd.DataFrame, now: datetime, config: AlertConfig = DEFAULT_ALERT_CONFIG,
                   table: pd.DataFrame | None = None) -> list[Alert]:
    """``alerts.latency_alerts`` on aggregates (the fast rule only, when both fire); ``table``: the frame's
    ``burn_table`` when the caller has it already."""
    alerts = []
    table = burn_table(frame, now, config) if table is None else table
    for row in table.itertuples(index=False):
        rates = dict(zip(table.columns[1:], row[1:], strict=True))
        for rule in config.rules:
            long_rate = rates[f"burn_{window_label(rule.long_window)}"]
            short_rate = rates[f"burn_{window_label(rule.short_window)}"]
            if np.isnan(long_rate) or np.isnan(short_rate):
                continue
            if long_rate >= rule.burn_rate and short_rate >= rule.burn_rate:
                alerts.append(Alert(
                    "latency SLO", rule.severity, str(row.device_id),
                    f"{rule.name} burn ({rule.action}): error budget burning {long_rate:.1f}× over "
                    f"{window_label(rule.long_window)} and {short_rate:.1f}× over {window_label(rule.short_window)} "
                    f"(threshold {rule.burn_rate}×; SLO {config.slo_target:.0%} under "
                    f"{config.latency_objective_us:,.0f} µs)",
                    float(long_rate),
                ))
                break
    return alerts


def quality_alerts(frame: pd.DataFrame, now: datetime, config: AlertConfig = DEFAULT_ALERT_CONFIG) -> list[Alert]:
    """``alerts.quality_alerts`` on aggregates, over every input: the records with any quality flag but
    ``out_of_domain`` (the input-domain rule's), and the beats and windows the device refused for the signal's
    quality (``aggregate_window.quality_refused``), as a share of records plus refused inputs over the last hour.

    A beat whose window is clipped, or whose samples disagree with the declared rate, gets no class and so no
    record: records alone show such a device as quiet (and its falling record rate as a lost signal), while its
    aggregates count every refused beat with its flags. Without refused inputs this is the record rule exactly."""
    alerts = []
    window = minute_window(frame, now, config.quality_window)
    if window.empty:
        return alerts
    numbers = frame_numbers(window)
    sums = pd.DataFrame({"records": window["records"].to_numpy(dtype=np.int64), "flagged": numbers["flagged"],
                         "inputs": window["records"].to_numpy(dtype=np.int64) + numbers["no_result"],
                         "refused": numbers["no_result_quality"]}, index=window.index).groupby(
        window["device_id"]).sum()
    flag_counts = _flags_by_device(window)
    for device_id, total in sums.iterrows():
        inputs, refused = int(total["inputs"]), int(total["refused"])
        flags = int(total["flagged"]) + refused
        if inputs < config.quality_minimum_events or flags / inputs < config.quality_warn_rate:
            continue  # (flags with out_of_domain: under the rate, so is the share without it)
        counts = flag_counts(device_id)  # only for a device that may alert: per device, it is the costly part
        flags -= counts.get(OUT_OF_DOMAIN, 0)  # a refused row's only flag (runtime.rows)
        if flags / inputs < config.quality_warn_rate:
            continue
        rate = flags / inputs
        if refused:
            counts = counts + _refused_flags(window[window["device_id"] == device_id])
        named = [(flag, count) for flag, count in counts.most_common() if flag not in NOT_SIGNAL_QUALITY][:3]
        top = ", ".join(f"{flag} {count / inputs:.0%}" for flag, count in named)
        severity = CRITICAL if rate >= config.quality_alert_rate else WARNING
        what = ("beats and rows carry quality flags or were refused for them" if refused else "records carry quality "
                "flags")
        alerts.append(Alert("signal quality", severity, str(device_id),
                            f"{rate:.0%} of the last {window_label(config.quality_window)}'s {what} ({top})", rate))
    return alerts


def _refused_flags(rows: pd.DataFrame) -> Counter:
    """The quality flags of the inputs ``rows`` refused without a record (their ``no_result`` sections)."""
    counts: Counter = Counter()
    for payload in rows["payload"]:
        flags = (payload.get("no_result") or {}).get("quality_flags") or {}
        counts.update(flags if isinstance(flags, dict) else Counter(flags))
    return counts


def _flags_by_device(window: pd.DataFrame) -> Callable[[object], Counter]:
    """device id → ``summary_of(its rows).quality_flags`` (the same counts, in the same order), every device's added
    up in one pass over the window instead of a filter of the window per device."""
    codes, devices = pd.factorize(window["device_id"], sort=False, use_na_sentinel=False)
    counted = grouped_counts(window, "quality_flags", codes)
    if counted is None:  # a section that is not a plain {flag: count}: each device's rows, as before
        return lambda device_id: summary_of(window[window["device_id"] == device_id], tracks=False).quality_flags
    owners, flags, counts = counted
    per_device: dict[int, Counter] = {}
    for owner, flag, count in zip(owners.tolist(), flags, counts.tolist(), strict=True):
        per_device.setdefault(owner, Counter())[flag] = count
    numbers = {device: number for number, device in enumerate(devices.tolist())}
    return lambda device_id: per_device.get(numbers[device_id], Counter())


def domain_alerts(frame: pd.DataFrame, now: datetime, config: AlertConfig = DEFAULT_ALERT_CONFIG) -> list[Alert]:
    """``alerts.domain_alerts`` on aggregates, over every input: the records flagged ``out_of_domain`` and the beats
    and windows refused without a record (``no_result``), as a share of records plus refused events."""
    alerts = []
    window = minute_window(frame, now, config.quality_window)
    if window.empty:
        return alerts
    codes, devices = pd.factorize(window["device_id"], sort=True)
    numbers = frame_numbers(window)  # (columns of the cached blocks: no payload is read)
    inputs = np.bincount(codes, weights=(window["records"].to_numpy(dtype=np.int64) + numbers["no_result"]).astype(
        np.float64), minlength=len(devices))
    outside = np.bincount(codes, weights=(numbers["out_of_domain"] + numbers["no_result_out_of_domain"]).astype(
        np.float64), minlength=len(devices))
    for number, device_id in enumerate(devices):
        alert = domain_alert(str(device_id), int(outside[number]), int(inputs[number]), config)
        if alert is not None:
            alerts.append(alert)
    return alerts


def records_per_minute(frame: pd.DataFrame) -> pd.Series:
    """Records per minute from the first to the last minute with records, empty minutes as 0."""
    counts = frame.groupby("minute")["records"].sum()
    counts = counts[counts > 0]
    if counts.empty:
        return counts
    minutes = pd.date_range(counts.index.min(), counts.index.max(), freq="1min")
    return counts.reindex(minutes, fill_value=0)


def _minute_counts(minutes: np.ndarray, records: np.ndarray) -> np.ndarray:
    """``records_per_minute`` of one device's rows as an array (minutes as datetime64, rows of whole minutes)."""
    keys = minutes.astype("datetime64[m]").astype(np.int64)
    unique, inverse = np.unique(keys, return_inverse=True)
    sums = np.bincount(inverse, weights=records).astype(np.int64)
    unique, sums = unique[sums > 0], sums[sums > 0]
    if not len(unique):
        return sums
    filled = np.zeros(int(unique[-1] - unique[0]) + 1, dtype=np.int64)
    filled[unique - unique[0]] = sums
    return filled


def signal_loss_alerts(frame: pd.DataFrame, now: datetime, config: AlertConfig = DEFAULT_ALERT_CONFIG) -> list[Alert]:
    """``alerts.signal_loss_alerts`` on aggregates: minutes whose count of detected beats (records plus inputs refused
    without one) fell under a share of the median."""
    alerts = []
    window = minute_window(frame, now, config.signal_loss_window)
    if window.empty:
        return alerts
    codes, devices = pd.factorize(window["device_id"], sort=True)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(devices) + 1))
    minutes = window["minute"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")[order]
    # beats detected, classified or refused: a clipped stretch's beats are refused (quality_alerts names them), not
    # lost; only no beat at all is a lost signal
    records = (window["records"].to_numpy(dtype=np.int64) + frame_numbers(window)["no_result"])[order]
    for number, device_id in enumerate(devices):
        part = slice(bounds[number], bounds[number + 1])
        if int(records[part].sum()) < config.quality_minimum_events:
            continue
        per_minute = _minute_counts(minutes[part], records[part])[1:-1]  # edges are partial minutes
        median = float(np.median(per_minute)) if len(per_minute) else 0.0
        if len(per_minute) < 5 or median <= 0:
            continue
        low = int((per_minute < config.signal_loss_share * median).sum())
        if low < config.signal_loss_minutes:
            continue
        alerts.append(Alert(
            "signal loss", WARNING, str(device_id),
            f"beat rate below {config.signal_loss_share:.0%} of its median ({median:.0f}/min) in "
            f"{low} minute(s) of the last {window_label(config.signal_loss_window)} — lead off or no signal",
            float(low),
        ))
    return alerts


def bundle_drift(scope: str, frame: pd.DataFrame, bundle, plan_for: PlanFor,
                 config: DriftConfig = DEFAULT_DRIFT_CONFIG) -> DriftReport:
    """``checks.bundle_drift`` on aggregates of one bundle: the window against the bundle's reference profile."""
    records = int(frame["records"].sum()) if len(frame) else 0
    if frame.empty or records == 0:
        return DriftReport(scope, bundle, 0, message="no telemetry in the drift window")
    if bundle is None:
        return DriftReport(scope, None, records, message=(
            f"bundle {frame.iloc[-1]['bundle_id']} is not among the published bundles, so there is no reference "
            "profile to compare with"))
    if bundle.profile is None:
        return DriftReport(scope, bundle, records, message=(
            f"bundle {bundle.name} has no reference profile ({bundle.profile_problem}): drift cannot be measured"))
    task = bundle.manifest.output.task.value
    summary = summary_of(frame, plan_for)
    compared = summary.stand_ins()
    profile = {**bundle.profile, "features": {**(bundle.profile.get("features") or {}),
                                              **reference_outputs(bundle.profile, task)}}
    results = profile_drift(profile, compared, _categories(summary, task), _confidences(summary, task), config)
    caveats = unjudged_caveat(records, records - summary.unjudged)
    if summary.undecodable:
        names = sorted(summary.undecodable)
        caveats += (f"{len(names)} feature(s) arrived on bins the published reference profile does not describe "
                    f"({', '.join(names[:5])}{' …' if len(names) > 5 else ''}): those devices run another version of "
                    "the bundle or its profile, and their values are not compared — publish the bundle the devices "
                    "run, or update the devices",)
    return DriftReport(scope, bundle, records, tuple(results), window=frame, compared=compared, profile=profile,
                       summary=summary, caveats=caveats)


def device_drift(frame: pd.DataFrame, catalog, now: datetime, plan_for: PlanFor,
                 config: DriftConfig = DEFAULT_DRIFT_CONFIG) -> DriftReport:
    """``checks.device_drift`` on one device's aggregates over ``config.window`` before ``now``."""
    device_id = str(frame["device_id"].iloc[0]) if len(frame) else "—"
    window = latest_bundle_minutes(frame, now, config.window)
    last = window.iloc[-1] if len(window) else None
    bundle = catalog.match(last["bundle_id"], last["bundle_sha256"]) if last is not None else None
    return bundle_drift(device_id, window, bundle, plan_for, config)


def device_baseline_drift(frame: pd.DataFrame, now: datetime, plan_for: PlanFor | None = None,
                          config: DriftConfig = DEFAULT_DRIFT_CONFIG) -> DriftReport:
    """``checks.device_baseline_drift`` on aggregates: the first ``baseline_fraction`` of the window's records
    (rounded down to whole minutes) against the rest, Bonferroni-corrected as there."""
    device_id = str(frame["device_id"].iloc[0]) if len(frame) else "—"
    window = latest_bundle_minutes(frame, now, config.window).sort_values("minute", kind="stable")
    total = int(window["records"].sum()) if len(window) else 0
    per_minute = window.groupby("minute")["records"].sum()
    baseline_minutes = per_minute.index[per_minute.cumsum() <= int(total * config.baseline_fraction)]
    is_baseline = window["minute"].isin(baseline_minutes)
    baseline, current = window[is_baseline], window[~is_baseline]
    cut = int(baseline["records"].sum())
    if cut < config.minimum_count or total - cut < config.minimum_count:
        return DriftReport(device_id, None, total, message=(
            f"{total} records: a baseline and a current window of {config.minimum_count} each are needed"))
    task = str(window.iloc[-1]["task"])
    before, after = summary_of(baseline, plan_for), summary_of(current, plan_for)
    profile = empirical_profile(before.stand_ins(), _categories(before, task), _confidences(before, task))
    tests = len(profile["features"]) + 2
    corrected = replace(config, p_value=config.p_value / tests, psi_warn=config.psi_alert)
    compared = after.stand_ins()
    results = profile_drift(profile, compared, _categories(after, task), _confidences(after, task), corrected)
    return DriftReport(device_id, None, total - cut, tuple(results), compared=compared, profile=profile)


def _categories(summary: WindowSummary, task: str) -> Counter | None:
    """The judged records' classes, counted (what ``drift.class_drift`` takes instead of a label per record)."""
    if task not in CLASSIFIERS and task != "anomaly":
        return None
    return summary.classes


def _confidences(summary: WindowSummary, task: str) -> StandIn | np.ndarray:
    found = summary.confidence_stand_in() if task in CLASSIFIERS else None
    return found if found is not None else np.empty(0)


def drift_alerts(frame: pd.DataFrame, now: datetime, plan_for: PlanFor | None = None,
                 drift_config: DriftConfig = DEFAULT_DRIFT_CONFIG) -> list[Alert]:
    """Per device: ``drift_alert`` on its drift against its own baseline (``device_baseline_drift``)."""
    alerts = []
    for device_id, group in frame.groupby("device_id"):
        alert = drift_alert(str(device_id), device_baseline_drift(group, now, plan_for, drift_config).results)
        if alert is not None:
            alerts.append(alert)
    return alerts


def fleet_alerts(
    frame: pd.DataFrame,
    now: datetime,
    plan_for: PlanFor | None = None,
    alert_config: AlertConfig = DEFAULT_ALERT_CONFIG,
    drift_config: DriftConfig = DEFAULT_DRIFT_CONFIG,
    drift_frame: pd.DataFrame | None = None,
) -> list[Alert]:
    """``checks.fleet_alerts`` on aggregates: latency burn rates, drift per device, signal quality and loss, input
    domain.

    ``drift_frame``: the aggregates drift is measured on when they are not ``frame`` (a page reads the last hours at
    minute resolution for the latency and quality rules, and the drift window from hourly rollups)."""
    alerts = latency_alerts(frame, now, alert_config)
    alerts += drift_alerts(frame if drift_frame is None else drift_frame, now, plan_for, drift_config)
    alerts += quality_alerts(frame, now, alert_config)
    alerts += signal_loss_alerts(frame, now, alert_config)
    alerts += domain_alerts(frame, now, alert_config)
    return alerts


def latency_series(frame: pd.DataFrame, bucket: timedelta, start: datetime | None = None,
                   end: datetime | None = None) -> pd.DataFrame:
    """``fleet.latency_series`` on aggregates: per device and bucket, p50/p95 (within 1.8 %), count, per minute."""
    columns = ["device_id", "device", "bucket", "p50_us", "p95_us", "inferences", "per_minute"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    width = pd.Timedelta(bucket)
    rows = []
    for (device_id, moment), group in frame.assign(bucket=frame["minute"].dt.floor(width)).groupby(
            ["device_id", "bucket"]):
        latency = summary_of(group, tracks=False).latency
        if not latency.count:
            continue
        covered_from = max(moment, pd.Timestamp(start)) if start is not None else moment
        covered_to = min(moment + width, pd.Timestamp(end)) if end is not None else moment + width
        minutes = max((covered_to - covered_from).total_seconds() / 60, 1 / 60)
        rows.append({"device_id": device_id, "device": short_id(str(device_id)), "bucket": moment,
                     "p50_us": quantile(latency.edges, latency.counts, 0.5, latency.low, latency.high),
                     "p95_us": quantile(latency.edges, latency.counts, 0.95, latency.low, latency.high),
                     "inferences": latency.count, "per_minute": latency.count / minutes})
    return pd.DataFrame(rows, columns=columns)
