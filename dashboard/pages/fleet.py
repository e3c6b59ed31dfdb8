"""Fleet: how many devices are fine, silent, refusing inputs outside the domain, noisy or slow; one sortable row per
device (bundle, last seen, p50/p95, throughput, flagged share, share of inputs outside the domain); p50/p95 latency,
throughput and signal-quality flag rate per bundle over time against the SLO and quality lines; and what each
bundle's devices answered (by its task kind). Read from aggregates (minute aggregates for the last hour, hourly
rollups for longer windows, whole days for a week or a month; older devices' records folded in), so a thousand
devices are one table and a line per bundle. Refreshes itself."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard.components import charts, telemetry, widgets
from dashboard.components.predictions import show_summary
from dashboard.data.files import DataUnavailableError
from dashboard.data.windows import fleet_request
from dashboard.monitoring import aggregate_predictions
from dashboard.monitoring.aggregate_fleet import (
    STATUSES,
    bundle_labels,
    device_overview,
    flag_rates,
    group_series,
    refused_flag_rates,
    status_counts,
)
from runtime.ecg.quality import QualityFlag

OVERVIEW_COLUMNS = {
    "device": widgets.DEVICE_LINK_CONFIG,
    "status": st.column_config.TextColumn("status", help="silent: nothing received for 10 min · clock: its data is "
                                          "stamped after it arrived (clock ahead) · domain: its share of inputs "
                                          "outside the validated input domain (refused) at the input-domain "
                                          "warning rate · noisy: flagged share at the quality warning rate · slow: "
                                          "p95 over the objective"),
    "bundle": st.column_config.TextColumn("bundle"),
    "variant": st.column_config.TextColumn("variant"),
    "provider": st.column_config.TextColumn("EP"),
    "records": st.column_config.NumberColumn("inferences"),
    "last_seen": st.column_config.DatetimeColumn("last seen (UTC)", format="YYYY-MM-DD HH:mm:ss"),
    "minutes_since": st.column_config.NumberColumn("minutes ago", format="%.1f"),
    "clock_ahead_min": st.column_config.NumberColumn("clock ahead (min)", format="%.0f", help="how far the device's "
                                                     "newest data ends after it arrived, when over 5 min"),
    "p50_us": st.column_config.NumberColumn("p50 (µs)", format="%.0f"),
    "p95_us": st.column_config.NumberColumn("p95 (µs)", format="%.0f"),
    "per_minute": st.column_config.NumberColumn("per minute", format="%.1f"),
    "flagged_share": st.column_config.ProgressColumn("flagged", format="percent", min_value=0, max_value=1,
                                                     help="inputs with a signal-quality flag: records, and beats "
                                                     "or windows refused for one (clipped, rate mismatch …) without "
                                                     "a record; a row refused as outside the input domain is counted "
                                                     "under 'outside domain'"),
    "outside_share": st.column_config.ProgressColumn("outside domain", format="percent", min_value=0, max_value=1,
                                                     help="inputs (records, and beats or windows refused without "
                                                     "one) outside the input domain the model was validated on: "
                                                     "refused, no result"),
    "dropped": st.column_config.NumberColumn("dropped"),
    "simulated": st.column_config.CheckboxColumn("simulated", help="its uploads came from a simulator (edgemed "
                                                 "simulate), not a device on a patient"),
    "sends": st.column_config.TextColumn("sends", help="aggregates (schema 3), records (schema 1/2, folded into "
                                         "minute aggregates here) or both (a device that changed in the window)"),
}


st.title("Fleet")
current = widgets.settings()
config = widgets.alert_config(current)
label, span = widgets.time_window_picker("fleet-window")


@st.fragment(run_every=widgets.REFRESH_SECONDS)
def show_flag_shares(rates: pd.DataFrame) -> None:
    """A device × flag table of the shares in ``rates`` (``flag_rates`` / ``refused_flag_rates`` rows)."""
    table = rates.pivot(index="device_id", columns="flag", values="rate").fillna(0.0).reset_index()
    percent = {name: st.column_config.NumberColumn(name, format="percent") for name in table.columns[1:]}
    st.dataframe(widgets.device_url_column(table).drop(columns="device_id"),
                 column_config={"device": widgets.DEVICE_LINK_CONFIG} | percent, hide_index=True)


def fleet_view() -> None:
    moment = widgets.now()
    request, bucket = fleet_request(span)
    try:
        view = telemetry.window(current, request, moment)
    except DataUnavailableError as error:
        st.info(str(error))
        return
    devices = view.devices
    if devices.empty:
        st.info(f"no telemetry yet: the store {current.database} is empty — point devices at the collector")
        return
    catalog = widgets.catalog(current)
    simulated = telemetry.simulated_notice(current, devices["device_id"])
    overview = device_overview(devices, view.frame, catalog, moment, span, config, (view.coverage, view.end))
    overview["simulated"] = overview["device_id"].isin(simulated)
    telemetry.unvalidated_notice(catalog, overview["bundle"])
    counts = status_counts(overview)
    cells = st.columns(1 + len(STATUSES))
    cells[0].metric("devices", f"{len(overview):,}")
    for cell, status in zip(cells[1:], STATUSES, strict=True):
        cell.metric(status, f"{counts[status]:,}")
    st.caption(f"{view.records:,} inferences in the {label} · {view.describe()} · refreshed "
               f"{moment:%H:%M:%S} UTC (every {widgets.REFRESH_SECONDS} s) · SLO objective "
               f"{config.latency_objective_us:,.0f} µs")
    ranked = overview.assign(rank=overview["status"].map(STATUSES.index)).sort_values(
        ["rank", "device_id"], kind="stable").drop(columns="rank")
    st.dataframe(widgets.device_url_column(ranked)[list(OVERVIEW_COLUMNS)], column_config=OVERVIEW_COLUMNS,
                 hide_index=True)
    if view.frame.empty:
        st.info(f"no inferences in the {label}; choose a longer time window")
        return
    series = group_series(view.frame, bucket, bundle_labels(view.frame, catalog), view.start, view.end)
    st.subheader("Latency p50 (dashed) and p95 per bundle against the SLO objective (red)")
    st.altair_chart(charts.latency_chart(series, config.latency_objective_us, "group", "bundle"), width="stretch")
    left, right = st.columns(2)
    with left:
        st.subheader("Throughput")
        st.altair_chart(charts.throughput_chart(series, "group", "bundle"), width="stretch")
    with right:
        st.subheader("Signal-quality flag rate")
        st.altair_chart(charts.flag_rate_chart(series, config.quality_warn_rate, config.quality_alert_rate, "group",
                                               "bundle"), width="stretch")
    rates = flag_rates(view.frame)
    flagged = rates[(rates["flag"] != "any") & (rates["records"] > 0)]
    if len(flagged):
        st.markdown(f"**Share of records per quality flag, {label}** (devices with a flag)")
        show_flag_shares(flagged)
    refused = refused_flag_rates(view.frame, leave_out=frozenset({QualityFlag.WARMING_UP.value}))
    if len(refused):
        st.markdown(f"**Share of inputs refused per flag, {label}** (beats and windows given no class, so sent "
                    "without a record; devices that refused any for a reason other than the stream's warm-up)")
        show_flag_shares(refused)
    st.subheader(f"Predictions per bundle, {label}")
    plans = telemetry.plans(current)
    for name, bundle, frame in aggregate_predictions.by_bundle(view.frame, catalog):
        st.markdown(f"**{name}**")
        show_summary(aggregate_predictions.summarise(frame, bundle, plans))


fleet_view()
