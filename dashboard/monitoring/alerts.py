"""Alert rules: latency-SLO burn rate (multi-window, multi-burn-rate), drift, signal quality and input domain.

Latency SLO: ``slo_target`` (99 %) of inferences finish within ``latency_objective_us``; the error
budget is the remaining 1 %. The burn rate over a window is (share of slow inferences) / budget: 1
spends the budget exactly over the SLO period. Following the Google SRE workbook ("Alerting on
SLOs", multiwindow, multi-burn-rate alerts), a rule fires only when both its long and its short
window burn at least its rate, so an alert starts quickly and stops soon after the problem does:

* fast: 14.4× over 1 h and 5 min (2 % of a 30-day budget in an hour) → page;
* slow: 6× over 6 h and 30 min (5 % of a 30-day budget in six hours) → ticket.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd

from dashboard.monitoring.drift import DriftResult, DriftStatus
from dashboard.monitoring.fleet import signal_flagged
from runtime.results import OUT_OF_DOMAIN

CRITICAL = "critical"
WARNING = "warning"


@dataclass(frozen=True)
class BurnRateRule:
    """One multi-window burn-rate rule."""

    name: str  # "fast" or "slow"
    long_window: timedelta  # the window that proves the burn is significant
    short_window: timedelta  # the window that proves it is still happening
    burn_rate: float  # both windows must burn at least this fast
    action: str  # "page" (wake someone) or "ticket" (next working day)
    severity: str  # critical for pages, warning for tickets


@dataclass(frozen=True)
class AlertConfig:
    """Thresholds of every alert rule."""

    latency_objective_us: float = 10_000.0  # an inference slower than this spends error budget
    slo_target: float = 0.99  # 99 % of inferences within the objective; the budget is the other 1 %
    fast: BurnRateRule = BurnRateRule(  # 14.4× for 1 h spends 2 % of a 30-day budget: page
        "fast", timedelta(hours=1), timedelta(minutes=5), 14.4, "page", CRITICAL)
    slow: BurnRateRule = BurnRateRule(  # 6× for 6 h spends 5 % of a 30-day budget: ticket
        "slow", timedelta(hours=6), timedelta(minutes=30), 6.0, "ticket", WARNING)
    minimum_events: int = 20  # a window with fewer inferences gives no burn rate (one slow call is not an outage)
    quality_window: timedelta = timedelta(hours=1)  # signal-quality flag rates are measured over the last hour
    quality_warn_rate: float = 0.05  # 5 % of records flagged: warning (electrode or placement problems)
    quality_alert_rate: float = 0.20  # 20 % flagged: critical, the device's output is mostly unreliable
    quality_minimum_events: int = 20  # fewer records in the window give no quality verdict
    # Lead-off and signal loss send no records at all (telemetry is per beat): a device whose beat rate falls
    # below this share of its own median, per minute, for at least signal_loss_minutes, is flagged.
    signal_loss_share: float = 0.5
    signal_loss_minutes: int = 1
    signal_loss_window: timedelta = timedelta(hours=1)  # looked for over the last hour of each device's records
    # Inputs outside the bundle's validated input domain (flag out_of_domain: refused, never classified), as a share
    # of every input over quality_window. None of the real held-out rows, beats or windows of the scenarios fall
    # outside, so a steady 1 % means the sensor, its units or the patients differ from what the model was
    # validated on; at 10 % the device is refusing a large part of what it sees.
    domain_warn_rate: float = 0.01
    domain_alert_rate: float = 0.10

    @property
    def error_budget(self) -> float:
        return 1.0 - self.slo_target

    @property
    def rules(self) -> tuple[BurnRateRule, BurnRateRule]:
        return self.fast, self.slow

    @property
    def windows(self) -> tuple[timedelta, ...]:
        """Every window a rule uses, shortest first."""
        return tuple(sorted({w for rule in self.rules for w in (rule.long_window, rule.short_window)}))


DEFAULT_ALERT_CONFIG = AlertConfig()


@dataclass(frozen=True)
class Alert:
    """One firing alert; ``device_id`` links it to the Device page."""

    kind: str  # "latency SLO", "drift", "signal quality", "signal loss" or "input domain"
    severity: str  # critical or warning
    device_id: str
    message: str
    value: float | None = None  # the burn rate, PSI or flag rate that fired

    def to_row(self) -> dict[str, object]:
        return {"severity": self.severity, "kind": self.kind, "device_id": self.device_id, "message": self.message,
                "value": self.value}


def window_label(window: timedelta) -> str:
    minutes = int(window.total_seconds() // 60)
    return f"{minutes // 60} h" if minutes % 60 == 0 else f"{minutes} min"


def burn_rate(records: pd.DataFrame, end: datetime, window: timedelta, config: AlertConfig) -> float | None:
    """Budget burn rate of ``records`` (time, latency_us) in (end − window, end]; None under the minimum."""
    inside = records[(records["time"] > end - window) & (records["time"] <= end)]
    if len(inside) < config.minimum_events:
        return None
    slow_share = float((inside["latency_us"] > config.latency_objective_us).mean())
    return slow_share / config.error_budget


def burn_rates(records: pd.DataFrame, now: datetime, config: AlertConfig) -> pd.DataFrame:
    """Per device: the burn rate over every rule window (None where too few inferences)."""
    rows = []
    for device_id, group in records.groupby("device_id"):
        row: dict[str, object] = {"device_id": device_id}
        for window in config.windows:
            row[f"burn_{window_label(window)}"] = burn_rate(group, now, window, config)
        rows.append(row)
    return pd.DataFrame(rows)


def latency_alerts(records: pd.DataFrame, now: datetime, config: AlertConfig) -> list[Alert]:
    """Burn-rate alerts per device (the fast rule only, when both fire)."""
    alerts = []
    for device_id, group in records.groupby("device_id"):
        for rule in config.rules:
            long_rate = burn_rate(group, now, rule.long_window, config)
            short_rate = burn_rate(group, now, rule.short_window, config)
            if long_rate is None or short_rate is None:
                continue
            if long_rate >= rule.burn_rate and short_rate >= rule.burn_rate:
                alerts.append(Alert(
                    "latency SLO", rule.severity, str(device_id),
                    f"{rule.name} burn ({rule.action}): error budget burning {long_rate:.1f}× over "
                    f"{window_label(rule.long_window)} and {short_rate:.1f}× over {window_label(rule.short_window)} "
                    f"(threshold {rule.burn_rate}×; SLO {config.slo_target:.0%} under "
                    f"{config.latency_objective_us:,.0f} µs)",
                    long_rate,
                ))
                break  # the fast rule's page covers the slow rule's ticket
    return alerts


def drift_alert(device_id: str, results: Iterable[DriftResult], minimum_warnings: int = 2) -> Alert | None:
    """One alert naming the drifting features of a device, or None when nothing drifts.

    Any row at alert level raises it; warnings only from ``minimum_warnings`` rows on: with dozens of
    features, one borderline row in a window is what chance alone produces.
    """
    results = list(results)
    alerting = [result for result in results if result.status is DriftStatus.ALERT]
    warning = [result for result in results if result.status is DriftStatus.WARN]
    if not alerting and len(warning) < minimum_warnings:
        return None
    worst = alerting or warning
    names = ", ".join(f"{result.name} (PSI {result.psi:.2f})" if result.psi is not None else result.name
                      for result in worst[:5])
    more = f" and {len(worst) - 5} more" if len(worst) > 5 else ""
    severity = CRITICAL if alerting else WARNING
    psi = max((result.psi or 0.0) for result in worst)
    return Alert("drift", severity, device_id, f"input/prediction drift: {names}{more}", psi)


def signal_loss_alerts(records: pd.DataFrame, now: datetime, config: AlertConfig) -> list[Alert]:
    """Per device: minutes whose beat count fell below ``signal_loss_share`` of the device's median minute.

    Only minutes between the device's first and last record in the window count, so a device that
    simply stopped reporting (or has not started) is not flagged here.
    """
    alerts = []
    recent = records[(records["time"] > now - config.signal_loss_window) & (records["time"] <= now)]
    for device_id, group in recent.groupby("device_id"):
        if len(group) < config.quality_minimum_events:
            continue
        per_minute = group.set_index("time").resample("1min").size().iloc[1:-1]  # edges are partial minutes
        if len(per_minute) < 5 or per_minute.median() <= 0:
            continue
        low = per_minute[per_minute < config.signal_loss_share * per_minute.median()]
        if len(low) < config.signal_loss_minutes:
            continue
        alerts.append(Alert(
            "signal loss", WARNING, str(device_id),
            f"beat rate below {config.signal_loss_share:.0%} of its median ({per_minute.median():.0f}/min) in "
            f"{len(low)} minute(s) of the last {window_label(config.signal_loss_window)} — lead off or no signal",
            float(len(low)),
        ))
    return alerts


def quality_alerts(records: pd.DataFrame, now: datetime, config: AlertConfig) -> list[Alert]:
    """Per device: the share of records with any quality flag over the last ``quality_window``; ``out_of_domain``
    is the input-domain rule's (``domain_alerts``), not a signal problem, and is left out here."""
    alerts = []
    recent = records[(records["time"] > now - config.quality_window) & (records["time"] <= now)]
    for device_id, group in recent.groupby("device_id"):
        if len(group) < config.quality_minimum_events:
            continue
        flagged = group["quality_flags"].map(signal_flagged)
        rate = float(flagged.mean())
        if rate < config.quality_warn_rate:
            continue
        counts = pd.Series([flag for flags in group["quality_flags"] for flag in set(flags)
                            if flag != OUT_OF_DOMAIN]).value_counts()
        top = ", ".join(f"{flag} {count / len(group):.0%}" for flag, count in counts.head(3).items())
        severity = CRITICAL if rate >= config.quality_alert_rate else WARNING
        alerts.append(Alert(
            "signal quality", severity, str(device_id),
            f"{rate:.0%} of the last {window_label(config.quality_window)}'s records carry quality flags ({top})",
            rate,
        ))
    return alerts


def domain_alert(device_id: str, outside: int, inputs: int, config: AlertConfig) -> Alert | None:
    """The input-domain alert of a device that refused ``outside`` of its ``inputs`` in the last ``quality_window``
    as outside the bundle's input domain; None under ``quality_minimum_events`` inputs or ``domain_warn_rate``."""
    if inputs < config.quality_minimum_events or not outside or outside / inputs < config.domain_warn_rate:
        return None
    rate = outside / inputs
    severity = CRITICAL if rate >= config.domain_alert_rate else WARNING
    return Alert(
        "input domain", severity, device_id,
        f"{rate:.1%} of the last {window_label(config.quality_window)}'s inputs ({outside:,} of {inputs:,}) were "
        "outside the input domain the model was validated on and got no result — check the sensor, its units and "
        "placement, or whether this patient population was validated",
        rate,
    )


def domain_alerts(records: pd.DataFrame, now: datetime, config: AlertConfig) -> list[Alert]:
    """Per device: the share of records flagged ``out_of_domain`` over the last ``quality_window``.

    Records show only what the device sends as a record: a refused row is one, but a beat or window the device
    could not classify is not (only minute aggregates count those, in ``no_result``), so on records this rule sees
    tabular devices only; ``aggregate_checks.domain_alerts`` sees every kind."""
    alerts = []
    recent = records[(records["time"] > now - config.quality_window) & (records["time"] <= now)]
    for device_id, group in recent.groupby("device_id"):
        outside = int(group["quality_flags"].map(lambda flags: OUT_OF_DOMAIN in flags).sum())
        alert = domain_alert(str(device_id), outside, len(group), config)
        if alert is not None:
            alerts.append(alert)
    return alerts


SEVERITY_ORDER = {CRITICAL: 0, WARNING: 1}  # most severe first


def alerts_frame(alerts: Iterable[Alert]) -> pd.DataFrame:
    frame = pd.DataFrame([alert.to_row() for alert in alerts],
                         columns=["severity", "kind", "device_id", "message", "value"])
    if frame.empty:
        return frame
    ranked = frame.assign(rank=frame["severity"].map(SEVERITY_ORDER))
    return ranked.sort_values(["rank", "kind", "device_id"]).drop(columns="rank").reset_index(drop=True)


def card_order(table: pd.DataFrame) -> pd.DataFrame:
    """``alerts_frame``'s rows in the order the page shows them as cards: round by round, one alert of every
    (severity, kind) — critical kinds before warnings in each round, a kind's alerts in device order — so that the
    first cards name every kind of problem even when one kind fires on hundreds of devices (a 2-core machine
    simulating 1 000 devices puts most of them over the latency objective, and the few clipping amplifiers or lost
    leads would otherwise sit behind them)."""
    if table.empty:
        return table
    rounds = table.groupby(["severity", "kind"], sort=False).cumcount()
    ranked = table.assign(round=rounds, rank=table["severity"].map(SEVERITY_ORDER))
    return (ranked.sort_values(["round", "rank", "kind", "device_id"], kind="stable")
            .drop(columns=["round", "rank"]).reset_index(drop=True))


def kind_summary(table: pd.DataFrame) -> str:
    """``latency: 283 (12 critical) · signal quality: 2 (2 critical)``: alerts per kind, most first."""
    if table.empty:
        return ""
    counts = table.groupby("kind")["severity"].agg(total="size", critical=lambda values: int((values == CRITICAL)
                                                                                              .sum()))
    counts = counts.sort_values("total", ascending=False, kind="stable")
    return " · ".join(f"{kind}: {row.total:,}" + (f" ({row.critical:,} critical)" if row.critical else "")
                      for kind, row in counts.iterrows())
