"""Alerts: latency-SLO burn rate (fast and slow multi-window rules), drift, signal quality and loss, and inputs
outside the bundle's validated domain, each linking to its device. Read from aggregates
(``dashboard.monitoring.aggregate_checks``: the raw-record rules' verdicts): minute aggregates for the last hour's
rules, hourly rollups for the 6-hour burn window and the drift window, older devices' records folded in. Refreshes
itself; drift is re-evaluated every ``DRIFT_EVERY``."""

from __future__ import annotations

import streamlit as st

from dashboard.components import telemetry, widgets
from dashboard.data.files import DataUnavailableError
from dashboard.data.windows import alert_requests
from dashboard.monitoring import aggregate_checks
from dashboard.monitoring.alerts import CRITICAL, alerts_frame, card_order, kind_summary, window_label
from dashboard.monitoring.drift import DEFAULT_DRIFT_CONFIG

ALERT_CARDS = 50  # the most severe alerts as cards; every alert is in the table below them

ALERT_COLUMNS = {
    "device": widgets.DEVICE_LINK_CONFIG,
    "severity": st.column_config.TextColumn("severity"),
    "kind": st.column_config.TextColumn("kind"),
    "message": st.column_config.TextColumn("message", width="large"),
    "value": st.column_config.NumberColumn("value", format="%.2f",
                                           help="burn rate, PSI, flag rate, minutes or share refused as out of domain"),
}

st.title("Alerts")
current = widgets.settings()
config = widgets.alert_config(current)
recent_request, drift_request = alert_requests(config, DEFAULT_DRIFT_CONFIG)


@st.fragment(run_every=widgets.REFRESH_SECONDS)
def alerts_view() -> None:
    moment = widgets.now()
    try:
        recent = telemetry.window(current, recent_request, moment)
        drift, evaluated = telemetry.drift_alerts(current, drift_request, moment, len(recent.devices))
    except DataUnavailableError as error:
        st.info(str(error))
        return
    if recent.devices.empty:
        st.info(f"no telemetry yet: the store {current.database} is empty, so no alert can fire")
        return
    telemetry.simulated_notice(current, recent.devices["device_id"])
    rates = aggregate_checks.burn_table(recent.frame, moment, config)  # the burn-rate rules and table below
    alerts = aggregate_checks.latency_alerts(recent.frame, moment, config, rates) + drift
    alerts += aggregate_checks.quality_alerts(recent.frame, moment, config)
    alerts += aggregate_checks.signal_loss_alerts(recent.frame, moment, config)
    alerts += aggregate_checks.domain_alerts(recent.frame, moment, config)
    critical = sum(alert.severity == CRITICAL for alert in alerts)
    first, second, third, fourth = st.columns(4)
    first.metric("critical", critical)
    second.metric("warnings", len(alerts) - critical)
    third.metric("devices affected", len({alert.device_id for alert in alerts}))
    fourth.metric("devices", f"{len(recent.devices):,}")
    st.caption(f"evaluated {moment:%H:%M:%S} UTC over {recent.records:,} inferences of the last "
               f"{window_label(recent_request.span)} ({recent.describe()}) · drift over "
               f"{window_label(DEFAULT_DRIFT_CONFIG.window)} "
               + (f"evaluated {evaluated:%H:%M} UTC" if evaluated is not None else
                  "being evaluated for the first time (its alerts appear at a later refresh)")
               + f" (every {widgets.DRIFT_EVERY_MINUTES} min) · refreshes every {widgets.REFRESH_SECONDS} s")
    burn = rates.drop(columns="device_id")
    evaluated_devices = int(burn.notna().any(axis=1).sum()) if len(burn.columns) else 0
    if not alerts and evaluated_devices == 0:  # not one device with enough inferences for a latency rule
        st.info(f"no alert fired, but no device has the {config.minimum_events} inferences a latency rule needs in "
                "any of its windows yet: the rules could not be evaluated — wait for more telemetry")
    elif not alerts:
        st.success("no alerts: every device is within its latency SLO, shows no drift, sends clean signals "
                   "and sees inputs inside its model's validated domain"
                   + (f" (latency judged on {evaluated_devices:,} of {len(recent.devices):,} devices; the others "
                      f"sent under {config.minimum_events} inferences)" if evaluated_devices < len(recent.devices)
                      else ""))
    table = alerts_frame(alerts)
    if len(table):
        st.caption(f"By kind: {kind_summary(table)}. The cards show every kind first (one per kind and severity, "
                   "round by round); the table below lists all alerts by severity.")
    for row in card_order(table).head(ALERT_CARDS).itertuples():
        with st.container(border=True):
            severity, message, link = st.columns([1.2, 5.5, 2.1])
            severity.markdown(f"**{widgets.status_markdown(row.severity)}**  \n{row.kind}")
            message.markdown(row.message)
            with link:
                widgets.device_link(row.device_id)
    if len(table) > ALERT_CARDS:
        st.markdown(f"**All {len(table):,} alerts**")
        st.dataframe(widgets.device_url_column(table).drop(columns="device_id")[list(ALERT_COLUMNS)],
                     column_config=ALERT_COLUMNS, hide_index=True)

    st.subheader("Latency-SLO burn rates")
    st.caption(
        f"SLO: {config.slo_target:.0%} of inferences under {config.latency_objective_us:,.0f} µs (budget "
        f"{config.error_budget:.0%}). Fast rule ({config.fast.action}): ≥ {config.fast.burn_rate}× over both "
        f"{window_label(config.fast.long_window)} and {window_label(config.fast.short_window)}; slow rule "
        f"({config.slow.action}): ≥ {config.slow.burn_rate}× over both {window_label(config.slow.long_window)} and "
        f"{window_label(config.slow.short_window)}. Empty: fewer than {config.minimum_events} inferences. Windows over "
        "an hour start on a whole hour (hourly rollups)."
    )
    if rates.empty:
        st.info("no inferences in the burn-rate windows")
        return
    burns = [name for name in rates.columns if name.startswith("burn_")]
    rates = rates.astype({name: "float64" for name in burns})  # an empty window (None) shows as a blank cell
    worst = rates[burns].max(axis=1, skipna=True)
    rates = rates.assign(worst=worst).sort_values(["worst", "device_id"], ascending=[False, True],
                                                  na_position="last").drop(columns="worst")
    column_config = {"device": widgets.DEVICE_LINK_CONFIG} | widgets.burn_rate_columns(rates)
    st.dataframe(widgets.device_url_column(rates).drop(columns="device_id"), column_config=column_config,
                 hide_index=True)


alerts_view()
