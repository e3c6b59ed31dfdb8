"""Fleet: every device with its bundle, last-seen time, p50/p95 latency over time against the SLO line,
throughput, signal-quality flag rates, and what each bundle's devices answered (by its task kind). Refreshes
itself."""

from __future__ import annotations

import streamlit as st

from dashboard.components import charts, widgets
from dashboard.components.predictions import show_predictions
from dashboard.data.files import DataUnavailableError
from dashboard.monitoring.fleet import bucket_for, device_overview, flag_rates, flag_series, latency_series
from dashboard.monitoring.predictions import by_bundle

OVERVIEW_COLUMNS = {
    "device": widgets.DEVICE_LINK_CONFIG,
    "bundle": st.column_config.TextColumn("bundle"),
    "variant": st.column_config.TextColumn("variant"),
    "provider": st.column_config.TextColumn("EP"),
    "records": st.column_config.NumberColumn("records"),
    "last_seen": st.column_config.DatetimeColumn("last seen (UTC)", format="YYYY-MM-DD HH:mm:ss"),
    "minutes_since": st.column_config.NumberColumn("minutes ago", format="%.1f"),
    "p50_us": st.column_config.NumberColumn("p50 (µs)", format="%.0f"),
    "p95_us": st.column_config.NumberColumn("p95 (µs)", format="%.0f"),
    "per_minute": st.column_config.NumberColumn("per minute", format="%.1f"),
    "flagged_share": st.column_config.ProgressColumn("flagged", format="percent", min_value=0, max_value=1),
    "dropped": st.column_config.NumberColumn("dropped"),
}

st.title("Fleet")
current = widgets.settings()
config = widgets.alert_config(current)
label, span = widgets.time_window_picker("fleet-window")


@st.fragment(run_every=widgets.REFRESH_SECONDS)
def fleet_view() -> None:
    reader = widgets.telemetry(current)
    moment = widgets.now()
    try:
        devices = reader.devices()
        recent = reader.records(since=moment - span)
    except DataUnavailableError as error:
        st.info(str(error))
        return
    if devices.empty:
        st.info(f"no telemetry yet: the store {current.database} is empty — point devices at the collector")
        return
    st.caption(f"{len(devices)} devices · {len(recent):,} inferences in the {label} · refreshed "
               f"{moment:%H:%M:%S} UTC (every {widgets.REFRESH_SECONDS} s) · SLO objective "
               f"{config.latency_objective_us:,.0f} µs")
    catalog = widgets.catalog(current)
    overview = device_overview(devices, recent, catalog, moment, span)
    st.dataframe(widgets.device_url_column(overview)[list(OVERVIEW_COLUMNS)], column_config=OVERVIEW_COLUMNS,
                 hide_index=True)
    if recent.empty:
        st.info(f"no inferences in the {label}; choose a longer time window")
        return
    series = latency_series(recent, bucket_for(span), moment - span, moment)
    st.subheader("Latency p50 (dashed) and p95 against the SLO objective (red)")
    st.altair_chart(charts.latency_chart(series, config.latency_objective_us), width="stretch")
    left, right = st.columns(2)
    with left:
        st.subheader("Throughput")
        st.altair_chart(charts.throughput_chart(series), width="stretch")
    with right:
        st.subheader("Signal-quality flag rate")
        flags = flag_series(recent, bucket_for(span))
        st.altair_chart(charts.flag_rate_chart(flags, config.quality_warn_rate, config.quality_alert_rate),
                        width="stretch")
    rates = flag_rates(recent)
    if (rates["flag"] != "any").any():
        st.markdown(f"**Share of records per quality flag, {label}**")
        table = rates.pivot(index="device_id", columns="flag", values="rate").fillna(0.0).reset_index()
        percent = {name: st.column_config.NumberColumn(name, format="percent") for name in table.columns[1:]}
        st.dataframe(widgets.device_url_column(table).drop(columns="device_id"),
                     column_config={"device": widgets.DEVICE_LINK_CONFIG} | percent, hide_index=True)
    st.subheader(f"Predictions per bundle, {label}")
    for name, bundle, records in by_bundle(recent, catalog):
        st.markdown(f"**{name}**")
        show_predictions(records, bundle)


fleet_view()
