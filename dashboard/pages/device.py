"""Device: one device's timeline (latency against the SLO, predictions, confidence or the task kind's outputs,
quality flags), what it answered, its alerts, burn rates and drift. Pick the device here or arrive with
``?device=<id>``. Refreshes itself."""

from __future__ import annotations

import streamlit as st

from dashboard.components import charts, widgets
from dashboard.components.predictions import show_summary
from dashboard.data.files import DataUnavailableError
from dashboard.monitoring.alerts import CRITICAL, alerts_frame, burn_rates
from dashboard.monitoring.checks import device_drift, fleet_alerts
from dashboard.monitoring.drift import DEFAULT_DRIFT_CONFIG
from dashboard.monitoring.predictions import CLASSIFIERS, answer_texts, output_points, summarise, task_of

RECENT_ROWS = 100  # the newest records listed under the charts

st.title("Device")
current = widgets.settings()
config = widgets.alert_config(current)
reader = widgets.telemetry(current)
devices = widgets.devices_or_stop(reader, current, "there is no device to show")

known = list(devices["device_id"])
requested = st.query_params.get("device")
if requested and requested not in known:
    st.error(f"unknown device {requested!r}: {current.database} holds no telemetry from it. "
             f"Pick one of the {len(known)} known devices below.")
selected = st.selectbox("device", known, index=known.index(requested) if requested in known else 0)
if selected != requested:
    st.query_params["device"] = selected
label, span = widgets.time_window_picker("device-window")


@st.fragment(run_every=widgets.REFRESH_SECONDS)
def device_view() -> None:
    moment = widgets.now()
    lookback = max(span, config.slow.long_window, DEFAULT_DRIFT_CONFIG.window)
    try:
        history = reader.records(selected, since=moment - lookback, with_features=True)
    except DataUnavailableError as error:
        st.info(str(error))
        return
    catalog = widgets.catalog(current)
    summary = devices[devices["device_id"] == selected].iloc[0]
    window = history[history["time"] > moment - span]
    latest = history.iloc[-1] if len(history) else None
    bundle = catalog.match(latest["bundle_id"], latest["bundle_sha256"]) if latest is not None else None
    bundle_name = bundle.name if bundle else (f"{latest['bundle_id']} (not published here)" if latest is not None
                                              else "—")
    st.markdown(f"bundle **{bundle_name}** · variant **{latest['variant'] if latest is not None else '—'}** on "
                f"{str(latest['provider']) if latest is not None else '—'}")
    cells = st.columns(4)
    cells[0].metric("records stored", f"{int(summary['records']):,}")
    cells[1].metric(f"inferences, {label}", f"{len(window):,}")
    cells[2].metric(f"p95, {label}", f"{window['latency_us'].quantile(0.95):,.0f} µs" if len(window) else "—")
    minutes = (moment - summary["last_time"]).total_seconds() / 60 if summary["records"] else None
    cells[3].metric("last seen", f"{minutes:,.1f} min ago" if minutes is not None else "never")
    st.caption(f"device id {selected} · last record {summary['last_time']} · dropped by its outbox: "
               f"{int(summary['dropped'])} · refreshed {moment:%H:%M:%S} UTC")

    alerts = [alert for alert in fleet_alerts(history, catalog, moment, config) if alert.device_id == selected]
    for alert in alerts_frame(alerts).itertuples():
        show = st.error if alert.severity == CRITICAL else st.warning
        show(f"**{alert.kind}** — {alert.message}")
    if not alerts:
        st.success("no alerts for this device")
    if window.empty:
        st.info(f"no inferences from this device in the {label}; choose a longer time window")
        return
    st.subheader("Timeline")
    task = task_of(window, bundle)
    summary = summarise(window, bundle)
    classes = sorted(window["predicted_class"].dropna().astype(str).unique())
    if bundle is not None and (task in CLASSIFIERS or task == "anomaly"):
        classes = bundle.labels
    latency_chart, confidence_chart = charts.timeline_charts(window, config.latency_objective_us, classes)
    st.altair_chart(latency_chart, width="stretch")
    st.caption("Each inference's latency; red: the SLO objective.")
    if task in CLASSIFIERS:
        st.altair_chart(confidence_chart, width="stretch")
        st.caption("Each inference's confidence, shaped by its quality flags.")
    else:
        points = output_points(window, task)
        if points.empty:
            st.info(f"no numeric outputs of a {task} bundle to draw in the {label}")
        else:
            st.altair_chart(charts.output_timeline_chart(points, summary.threshold), width="stretch")
            st.caption(f"Each answered inference's {task} outputs" + ("; red: the alarm threshold."
                                                                      if summary.threshold is not None else "."))
    st.subheader("Answers")
    show_summary(summary)

    left, right = st.columns(2)
    with left:
        st.subheader("Burn rates")
        rates = burn_rates(history, moment, config)
        if rates.empty:
            st.info("no inferences in the burn-rate windows")
        else:
            st.dataframe(rates.drop(columns="device_id"), column_config=widgets.burn_rate_columns(rates),
                         hide_index=True)
    with right:
        st.subheader("Drift")
        report = device_drift(history, catalog, moment, DEFAULT_DRIFT_CONFIG)
        if report.message:
            st.warning(report.message)
        else:
            drifting = [result.name for result in report.results if result.status.value in ("warn", "alert")]
            st.markdown(f"**{widgets.status_markdown(report.status.value)}** over {report.records:,} records"
                        + (f": {', '.join(drifting[:6])}" + (" …" if len(drifting) > 6 else "") if drifting else ""))
        st.page_link("pages/drift.py", label="drift details", icon=":material/query_stats:",
                     query_params={"device": selected})

    st.subheader(f"Latest {RECENT_ROWS} records")
    recent = window.tail(RECENT_ROWS).iloc[::-1]
    answers = answer_texts(recent, task)
    recent = recent.drop(columns=["features", "device_id", "bundle_sha256", "result"]).assign(answer=answers)
    recent["quality_flags"] = recent["quality_flags"].map(", ".join)
    st.dataframe(recent, hide_index=True)


device_view()
