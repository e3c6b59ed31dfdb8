"""Alerts: latency-SLO burn rate (fast and slow multi-window rules), drift and signal quality, each linking
to its device. Refreshes itself."""

from __future__ import annotations

import streamlit as st

from dashboard.components import widgets
from dashboard.data.files import DataUnavailableError
from dashboard.monitoring.alerts import CRITICAL, alerts_frame, burn_rates, window_label
from dashboard.monitoring.checks import fleet_alerts
from dashboard.monitoring.drift import DEFAULT_DRIFT_CONFIG

st.title("Alerts")
current = widgets.settings()
config = widgets.alert_config(current)
lookback = max(config.slow.long_window, config.quality_window, DEFAULT_DRIFT_CONFIG.window)


@st.fragment(run_every=widgets.REFRESH_SECONDS)
def alerts_view() -> None:
    moment = widgets.now()
    reader = widgets.telemetry(current)
    try:
        devices = reader.devices()
        records = reader.records(since=moment - lookback, with_features=True)
    except DataUnavailableError as error:
        st.info(str(error))
        return
    if devices.empty:
        st.info(f"no telemetry yet: the store {current.database} is empty, so no alert can fire")
        return
    alerts = fleet_alerts(records, widgets.catalog(current), moment, config, DEFAULT_DRIFT_CONFIG)
    critical = sum(alert.severity == CRITICAL for alert in alerts)
    first, second, third = st.columns(3)
    first.metric("critical", critical)
    second.metric("warnings", len(alerts) - critical)
    third.metric("devices affected", len({alert.device_id for alert in alerts}))
    st.caption(f"evaluated {moment:%H:%M:%S} UTC over {len(records):,} records of the last "
               f"{window_label(lookback)} · refreshes every {widgets.REFRESH_SECONDS} s")
    if not alerts:
        st.success("no alerts: every device is within its latency SLO, shows no drift and sends clean signals")
    for row in alerts_frame(alerts).itertuples():
        with st.container(border=True):
            severity, message, link = st.columns([1.2, 5.5, 2.1])
            severity.markdown(f"**{widgets.status_markdown(row.severity)}**  \n{row.kind}")
            message.markdown(row.message)
            with link:
                widgets.device_link(row.device_id)

    st.subheader("Latency-SLO burn rates")
    st.caption(
        f"SLO: {config.slo_target:.0%} of inferences under {config.latency_objective_us:,.0f} µs (budget "
        f"{config.error_budget:.0%}). Fast rule ({config.fast.action}): ≥ {config.fast.burn_rate}× over both "
        f"{window_label(config.fast.long_window)} and {window_label(config.fast.short_window)}; slow rule "
        f"({config.slow.action}): ≥ {config.slow.burn_rate}× over both {window_label(config.slow.long_window)} and "
        f"{window_label(config.slow.short_window)}. Empty: fewer than {config.minimum_events} inferences."
    )
    rates = burn_rates(records, moment, config)
    if rates.empty:
        st.info("no inferences in the burn-rate windows")
        return
    column_config = {"device": widgets.DEVICE_LINK_CONFIG} | widgets.burn_rate_columns(rates)
    table = widgets.device_url_column(rates).drop(columns="device_id")
    st.dataframe(table, column_config=column_config, hide_index=True)


alerts_view()
