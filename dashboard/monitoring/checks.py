"""Drift and alerts for devices: telemetry frames + the bundle catalog → results a page can show.

Drift is measured per device over its drift window, against the reference profile of the bundle it
ran last; a device whose bundle is not published here, or has no reference profile, gets a message
instead of results. What is compared follows the bundle's task kind (``monitoring.predictions``):
input features always; a classifier's confidence and classes; an anomaly's score and labels; a
regression's values; a multilabel output's scores. Records the model could not judge count only
through their finite input features.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import pandas as pd

from dashboard.data.bundles import BundleCatalog, BundleInfo
from dashboard.data.telemetry import feature_table
from dashboard.monitoring.alerts import (
    DEFAULT_ALERT_CONFIG,
    Alert,
    AlertConfig,
    domain_alerts,
    drift_alert,
    latency_alerts,
    quality_alerts,
    signal_loss_alerts,
)
from dashboard.monitoring.drift import (
    DEFAULT_DRIFT_CONFIG,
    DriftConfig,
    DriftResult,
    DriftStatus,
    empirical_profile,
    profile_drift,
    worst_status,
)
from dashboard.monitoring.fleet import latest_bundle_window
from dashboard.monitoring.predictions import (
    categories,
    confidences,
    judged_mask,
    output_numbers,
    reference_outputs,
    task_of,
)


@dataclass(frozen=True)
class DriftReport:
    """Drift of one device (or of every device on one bundle) over a window."""

    scope: str  # a device id or "bundle <name>"
    bundle: BundleInfo | None
    records: int  # records in the window that ran the bundle
    results: tuple[DriftResult, ...] = ()
    message: str | None = None  # why there are no results
    window: pd.DataFrame | None = field(default=None, compare=False, repr=False)  # the records compared
    # features + numeric outputs: a frame of values (records), or a ``StandIn`` per row (aggregates)
    compared: pd.DataFrame | Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
    profile: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)  # what they were compared with
    summary: Any = field(default=None, compare=False, repr=False)  # aggregates: the window's ``WindowSummary``
    caveats: tuple[str, ...] = ()  # what could not be compared although there are results (shown beside them)

    @property
    def status(self) -> DriftStatus:
        """The worst row's status; never "ok" when part of the window could not be compared (``caveats``)."""
        worst = worst_status(self.results)
        return DriftStatus.INSUFFICIENT if self.caveats and worst is DriftStatus.OK else worst


def unjudged_caveat(records: int, judged: int) -> tuple[str, ...]:
    """The caveat of a window whose records the model could not judge at all (output drift not measurable)."""
    if records and not judged:
        return (f"none of the {records:,} records was judged (every input was flagged as unfit for the model): the "
                "outputs' drift cannot be measured — look at the devices' quality flags",)
    return ()


def bundle_drift(scope: str, window: pd.DataFrame, bundle: BundleInfo | None, config: DriftConfig) -> DriftReport:
    """Drift of ``window`` (records with features, all on ``bundle``) against the bundle's profile."""
    if window.empty:
        return DriftReport(scope, bundle, 0, message="no telemetry in the drift window")
    if bundle is None:
        last = window.iloc[-1]
        return DriftReport(scope, None, len(window), message=(
            f"bundle {last['bundle_id']} is not among the published bundles, so there is no reference profile "
            "to compare with"))
    if bundle.profile is None:
        return DriftReport(scope, bundle, len(window), message=(
            f"bundle {bundle.name} has no reference profile ({bundle.profile_problem}): drift cannot be measured"))
    task = task_of(window, bundle)
    compared = compared_numbers(window, task)
    profile = {**bundle.profile, "features": {**(bundle.profile.get("features") or {}),
                                              **reference_outputs(bundle.profile, task)}}
    results = profile_drift(profile, compared, categories(window, task), confidences(window, task), config)
    caveats = unjudged_caveat(len(window), int(judged_mask(window).sum()))
    return DriftReport(scope, bundle, len(window), tuple(results), window=window, compared=compared, profile=profile,
                       caveats=caveats)


def compared_numbers(records: pd.DataFrame, task: str) -> pd.DataFrame:
    """Input features and the task kind's numeric outputs, one row per record (NaN where a record has none)."""
    features = feature_table(records)
    outputs = output_numbers(records, task)
    return features.join(outputs.drop(columns=[name for name in outputs.columns if name in features.columns]))


def device_drift(
    records: pd.DataFrame, catalog: BundleCatalog, now: datetime, config: DriftConfig = DEFAULT_DRIFT_CONFIG
) -> DriftReport:
    """Drift of one device's records (with features) over ``config.window`` before ``now``."""
    device_id = str(records["device_id"].iloc[0]) if len(records) else "—"
    window = latest_bundle_window(records, now, config.window)
    bundle = catalog.match(window.iloc[-1]["bundle_id"], window.iloc[-1]["bundle_sha256"]) if len(window) else None
    return bundle_drift(device_id, window, bundle, config)


def device_baseline_drift(
    records: pd.DataFrame, now: datetime, config: DriftConfig = DEFAULT_DRIFT_CONFIG
) -> DriftReport:
    """Drift of one device against its own baseline: the first ``baseline_fraction`` of its drift window.

    Alerts use this: every patient and electrode differs from the validation population (the bundle
    profile is a mixture of classes and noise levels), so a per-device comparison with the bundle
    profile flags healthy devices; a change *within* a device is what a monitoring team acts on.
    """
    device_id = str(records["device_id"].iloc[0]) if len(records) else "—"
    window = latest_bundle_window(records, now, config.window)
    cut = int(len(window) * config.baseline_fraction)
    if cut < config.minimum_count or len(window) - cut < config.minimum_count:
        return DriftReport(device_id, None, len(window), message=(
            f"{len(window)} records: a baseline and a current window of {config.minimum_count} each are needed"))
    baseline, current = window.iloc[:cut], window.iloc[cut:]
    task = task_of(window)
    profile = empirical_profile(compared_numbers(baseline, task), categories(baseline, task),
                                confidences(baseline, task))
    # One test per feature plus confidence and class: Bonferroni keeps the family-wise false-alarm rate at p;
    # a baseline of a few hundred records makes PSI alone noisy (≈ 0.05–0.1), so it only counts from psi_alert.
    tests = len(profile["features"]) + 2
    corrected = replace(config, p_value=config.p_value / tests, psi_warn=config.psi_alert)
    compared = compared_numbers(current, task)
    results = profile_drift(profile, compared, categories(current, task), confidences(current, task), corrected)
    return DriftReport(device_id, None, len(current), tuple(results), window=current, compared=compared,
                       profile=profile)


def fleet_alerts(
    records: pd.DataFrame,
    catalog: BundleCatalog,
    now: datetime,
    alert_config: AlertConfig = DEFAULT_ALERT_CONFIG,
    drift_config: DriftConfig = DEFAULT_DRIFT_CONFIG,
) -> list[Alert]:
    """Every firing alert: latency burn rates, drift per device, signal quality and loss, input domain."""
    alerts = latency_alerts(records, now, alert_config)
    if "features" in records:
        for device_id, group in records.groupby("device_id"):
            report = device_baseline_drift(group, now, drift_config)
            alert = drift_alert(str(device_id), report.results)
            if alert is not None:
                alerts.append(alert)
    alerts += quality_alerts(records, now, alert_config)
    alerts += signal_loss_alerts(records, now, alert_config)
    alerts += domain_alerts(records, now, alert_config)
    return alerts
