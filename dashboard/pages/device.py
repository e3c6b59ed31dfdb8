"""Device: one device's timeline per time bucket (latency p50–p95 against the SLO, answers, confidence or the task
kind's outputs, quality-flag rate), what it answered, its alerts, burn rates and drift, and the events it sent on
their own. Read from its aggregates (minute aggregates for the last day, hourly rollups before; an older device's
records folded into minutes). Pick the device here or arrive with ``?device=<id>``. Refreshes itself."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import streamlit as st

from dashboard.components import charts, telemetry, widgets
from dashboard.components.predictions import show_summary
from dashboard.data.files import DataUnavailableError
from dashboard.data.windows import HOUR, WindowRequest, latest_devices
from dashboard.monitoring import aggregate_checks, aggregate_predictions
from dashboard.monitoring.aggregate_fleet import flag_rates, refused_flag_rates
from dashboard.monitoring.aggregate_sums import summary_of
from dashboard.monitoring.aggregate_window import minute_window
from dashboard.monitoring.alerts import CRITICAL, alerts_frame
from dashboard.monitoring.drift import DEFAULT_DRIFT_CONFIG
from dashboard.monitoring.fleet import bucket_for
from dashboard.monitoring.predictions import CLASSIFIERS, answer_texts
from runtime.contract import TaskKind
from runtime.telemetry.histogram import latency_edges, quantile

RECENT_ROWS = 100  # the newest records listed under the charts
DEVICE_MINUTES = timedelta(hours=24)  # minute aggregates this far back; hourly rollups before

st.title("Device")
current = widgets.settings()
config = widgets.alert_config(current)
devices = telemetry.devices_or_stop(current, "there is no device to show")

known = list(devices["device_id"])
requested = st.query_params.get("device")
if requested and requested not in known:
    st.error(f"unknown device {requested!r}: {current.database} holds no telemetry from it. "
             f"Pick one of the {len(known)} known devices below.")
selected = st.selectbox("device", known, index=known.index(requested) if requested in known else 0)
if selected != requested:
    st.query_params["device"] = selected
telemetry.simulated_notice(current, [selected])
label, span = widgets.time_window_picker("device-window")


def show_timeline(window: pd.DataFrame, task: str, threshold: float | None, start, end) -> None:
    bucket = max(bucket_for(span), HOUR) if span > DEVICE_MINUTES else bucket_for(span)
    latency, answers, outputs = aggregate_predictions.timeline(window, bucket, task, telemetry.plans(current),
                                                               start, end)
    st.altair_chart(charts.bucket_latency_chart(latency, config.latency_objective_us), width="stretch")
    st.caption(f"Latency per {widgets.duration_text(bucket)}: p50 line, p50–p95 band; red: the SLO objective.")
    if len(answers):
        st.altair_chart(charts.class_bucket_chart(answers, "labels present" if task == TaskKind.MULTILABEL.value
                                                  else "answers"), width="stretch")
    if len(outputs):
        st.altair_chart(charts.output_band_chart(outputs, threshold if task == TaskKind.ANOMALY.value else None),
                        width="stretch")
        what = "confidence" if task in CLASSIFIERS else f"{task} outputs"
        st.caption(f"The {what} per bucket: median line, p5–p95 band"
                   + ("; red: the alarm threshold." if task == TaskKind.ANOMALY.value and threshold is not None
                      else "."))
    elif task not in CLASSIFIERS:
        st.info(f"no numeric outputs of a {task} bundle to draw in the {label}")
    st.altair_chart(charts.flag_rate_chart(latency, config.quality_warn_rate, config.quality_alert_rate, "group",
                                           "device"), width="stretch")
    rates = flag_rates(window)
    named = rates[(rates["flag"] != "any") & (rates["records"] > 0)]
    if len(named):
        st.caption("Records per quality flag: " + ", ".join(f"{row.flag} {row.rate:.1%}"
                                                          for row in named.itertuples()))
    refused = refused_flag_rates(window)
    if len(refused):
        st.caption("Beats and windows refused per flag (no class, so no record; share of all inputs): "
                   + ", ".join(f"{row.flag} {row.rate:.1%}" for row in refused.itertuples()))


def show_recent(window_start, window_end, task: str, sends: str) -> None:
    st.subheader(f"Latest {RECENT_ROWS} records")
    records = telemetry.device_records(current, selected, window_start, window_end)
    if sends == "aggregates":
        st.caption("This device sends per-minute aggregates; the records below are the events it also sent on their "
                   "own (positive classes, low confidence, alarms, unjudged rows, quality changes).")
    if records.empty:
        st.info(f"no per-event records from this device in the {label}")
        return
    recent = records.tail(RECENT_ROWS).iloc[::-1]
    answers = answer_texts(recent, task)
    recent = recent.drop(columns=["features", "device_id", "bundle_sha256", "result"]).assign(answer=answers)
    recent["quality_flags"] = recent["quality_flags"].map(", ".join)
    st.dataframe(recent, hide_index=True)


@st.fragment(run_every=widgets.REFRESH_SECONDS)
def device_view() -> None:
    moment = widgets.now()
    lookback = max(span, config.slow.long_window, DEFAULT_DRIFT_CONFIG.window)
    request = WindowRequest(lookback, minutes_for=min(lookback, DEVICE_MINUTES), device_id=selected)
    try:
        view = telemetry.window(current, request, moment)
    except DataUnavailableError as error:
        st.info(str(error))
        return
    catalog = widgets.catalog(current)
    plans = telemetry.plans(current)
    history = view.frame
    summary = latest_devices(view.devices, devices[devices["device_id"] == selected]).iloc[0]
    window = minute_window(history, moment, span)
    latest = history.sort_values(["minute", "session"], kind="stable").iloc[-1] if len(history) else None
    bundle = catalog.match(latest["bundle_id"], latest["bundle_sha256"]) if latest is not None else None
    bundle_name = bundle.name if bundle else (f"{latest['bundle_id']} (not published here)" if latest is not None
                                              else "—")
    st.markdown(f"bundle **{bundle_name}** · variant **{latest['variant'] if latest is not None else '—'}** on "
                f"{str(latest['provider']) if latest is not None else '—'} · sends **{summary['sends']}**")
    latency = summary_of(window, tracks=False).latency if len(window) else None
    p95 = quantile(latency_edges(), latency.counts, 0.95, latency.low, latency.high) if latency and latency.count \
        else None
    cells = st.columns(4)
    cells[0].metric("records stored", f"{int(summary['records_stored']):,}")
    cells[1].metric(f"inferences, {label}", f"{int(window['records'].sum()) if len(window) else 0:,}")
    cells[2].metric(f"p95, {label}", f"{p95:,.0f} µs" if p95 is not None else "—")
    last_seen = summary["last_seen"]
    minutes = (moment - last_seen).total_seconds() / 60 if pd.notna(last_seen) else None
    cells[3].metric("last seen", f"{minutes:,.1f} min ago" if minutes is not None else "never")
    st.caption(f"device id {selected} · last seen {last_seen} · dropped by its outbox: {int(summary['dropped'])} · "
               f"{view.describe()} · refreshed {moment:%H:%M:%S} UTC")
    ahead = summary["clock_ahead_min"]
    if pd.notna(ahead):
        st.warning(f"**clock** — this device's newest data ends {ahead:,.0f} min after it arrived: its clock is "
                   "ahead, so its data sits at the wrong times (windows ending now leave it out). Set its clock "
                   "(NTP) before reading its trends.")

    alerts = aggregate_checks.fleet_alerts(history, moment, plans, config)
    for alert in alerts_frame(alerts).itertuples():
        show = st.error if alert.severity == CRITICAL else st.warning
        show(f"**{alert.kind}** — {alert.message}")
    if not alerts:
        st.success("no alerts for this device")
    task = aggregate_predictions.task_of(window if len(window) else history, bundle)
    if window.empty:
        st.info(f"no inferences from this device in the {label}; choose a longer time window")
    else:
        st.subheader("Timeline")
        threshold = bundle.manifest.output.decision.threshold if bundle is not None and \
            task == TaskKind.ANOMALY.value else None
        show_timeline(window, task, threshold, view.end - pd.Timedelta(span), view.end)
        st.subheader("Answers")
        show_summary(aggregate_predictions.summarise(window, bundle, plans))

    left, right = st.columns(2)
    with left:
        st.subheader("Burn rates")
        rates = aggregate_checks.burn_rates(history, moment, config)
        if rates.empty:
            st.info("no inferences in the burn-rate windows")
        else:
            st.dataframe(rates.drop(columns="device_id"), column_config=widgets.burn_rate_columns(rates),
                         hide_index=True)
    with right:
        st.subheader("Drift")
        report = aggregate_checks.device_drift(history, catalog, moment, plans, DEFAULT_DRIFT_CONFIG)
        if report.message:
            st.warning(report.message)
        else:
            for caveat in report.caveats:
                st.warning(caveat)
            drifting = [result.name for result in report.results if result.status.value in ("warn", "alert")]
            st.markdown(f"**{widgets.status_markdown(report.status.value)}** over {report.records:,} records"
                        + (f": {', '.join(drifting[:6])}" + (" …" if len(drifting) > 6 else "") if drifting else ""))
        st.page_link("pages/drift.py", label="drift details", icon=":material/query_stats:",
                     query_params={"device": selected})
    show_recent(view.end - pd.Timedelta(span), view.end, task, str(summary["sends"]))


device_view()
