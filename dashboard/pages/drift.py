"""Drift: per input feature and per output of the bundle's task kind (a classifier's confidence and classes, an
anomaly score and labels, regression values, multilabel scores), of one device or of every device on a bundle,
against the bundle's reference profile. Read from aggregates (``dashboard.monitoring.aggregate_checks``: each
window's histograms stand in for its values; PSI and JS exact, KS and Wasserstein within one bin): one device's
minute aggregates for up to a day, hourly rollups beyond and for a whole bundle. Refreshes itself."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pandas as pd
import streamlit as st

from dashboard.components import charts, telemetry, widgets
from dashboard.components.predictions import show_summary
from dashboard.data.files import DataUnavailableError
from dashboard.data.windows import WindowRequest
from dashboard.monitoring import aggregate_checks, aggregate_predictions
from dashboard.monitoring.checks import DriftReport
from dashboard.monitoring.drift import (
    CLASS_ROW,
    CONFIDENCE_ROW,
    DEFAULT_DRIFT_CONFIG,
    bin_comparison,
    class_comparison,
    reference_class_counts,
    results_frame,
)
from dashboard.monitoring.predictions import CLASSIFIERS

DEVICE_MINUTES = timedelta(hours=24)  # one device's window is read minute by minute up to this long

RESULT_COLUMNS = {
    "name": st.column_config.TextColumn("feature"),
    "status": st.column_config.TextColumn("status"),
    "records": st.column_config.NumberColumn("records"),
    "method": st.column_config.TextColumn("method"),
    "psi": st.column_config.NumberColumn("PSI", format="%.3f", help="warn ≥ 0.1, alert ≥ 0.25"),
    "js_distance": st.column_config.NumberColumn("JS distance", format="%.3f", help="drift ≥ 0.1 (over 1 000 records)"),
    "wasserstein_per_std": st.column_config.NumberColumn("Wasserstein / std", format="%.3f", help="drift ≥ 0.1"),
    "statistic": st.column_config.NumberColumn("KS D / χ²", format="%.3f"),
    "p_value": st.column_config.NumberColumn("p", format="%.3g", help="drift below 0.05 (up to 1 000 records)"),
    "note": st.column_config.TextColumn("note"),
}

st.title("Drift")
current = widgets.settings()
catalog = widgets.catalog(current)
devices = telemetry.devices_or_stop(current, "there is nothing to compare")

scopes = [f"device {device_id}" for device_id in devices["device_id"]]
scopes += [f"all devices on bundle {bundle.name}" for bundle in catalog.bundles]
requested = st.query_params.get("device")
default = scopes.index(f"device {requested}") if f"device {requested}" in scopes else 0
scope = st.selectbox("compare", scopes, index=default)
label, span = widgets.time_window_picker("drift-window", default="last 24 hours")
config = dataclasses.replace(DEFAULT_DRIFT_CONFIG, window=span)


def compute(scope: str) -> tuple[DriftReport, list[str]]:
    """The scope's drift report and the devices it compares (for a bundle: those whose rows in the window ran it)."""
    moment = widgets.now()
    plans = telemetry.plans(current)
    if scope.startswith("device "):
        device_id = scope.removeprefix("device ")
        view = telemetry.window(current, WindowRequest(span, minutes_for=min(span, DEVICE_MINUTES),
                                                       device_id=device_id), moment)
        return aggregate_checks.device_drift(view.frame, catalog, moment, plans, config), [device_id]
    bundle = catalog.by_name(scope.removeprefix("all devices on bundle "))
    view = telemetry.window(current, WindowRequest(span, minutes_for=widgets.ROLLUPS_ONLY,
                                                   daily=span > timedelta(days=3)), moment)
    frame = view.frame
    matches = [catalog.match(bundle_id, sha) is bundle for bundle_id, sha in
               zip(frame["bundle_id"], frame["bundle_sha256"], strict=True)]
    compared = frame[matches] if len(frame) else frame
    shown = sorted(set(compared["device_id"])) if len(compared) else []
    return aggregate_checks.bundle_drift(scope, compared, bundle, plans, config), shown


@st.fragment(run_every=widgets.REFRESH_SECONDS)
def drift_view() -> None:
    try:
        report, shown = compute(scope)
    except DataUnavailableError as error:
        st.info(str(error))
        return
    telemetry.simulated_notice(current, shown)  # counts the devices compared, not every device of the store
    if report.message:
        st.warning(report.message)
        return
    for caveat in report.caveats:
        st.warning(caveat)
    method = "JS + Wasserstein" if report.records > config.large_window else "KS + chi-square"
    first, second, third = st.columns(3)
    first.metric("rows drifting (warn or alert)", sum(result.status.value in ("warn", "alert")
                                                       for result in report.results))
    second.metric(f"records in the {label}", f"{report.records:,}")
    third.metric("window uses", method)
    st.markdown(f"overall: **{widgets.status_markdown(report.status.value)}**")
    st.caption(f"against bundle {report.bundle.name}'s reference profile · refreshed {widgets.now():%H:%M:%S} UTC · "
               f"insufficient data below {config.minimum_count} records · each window's histograms stand in for its "
               "values (PSI and JS exact, KS and Wasserstein within one bin)")
    table = results_frame(report.results)
    st.dataframe(table[list(RESULT_COLUMNS)], column_config=RESULT_COLUMNS, hide_index=True,
                 height=min(36 * (len(table) + 1) + 3, 900))  # every feature visible without scrolling
    profile = report.profile or report.bundle.profile or {}
    window = report.window if report.window is not None else pd.DataFrame()
    compared = report.compared if report.compared is not None else {}
    task = aggregate_predictions.task_of(window, report.bundle)
    left, right = st.columns(2)
    with left:
        if task in CLASSIFIERS:
            st.subheader("Predicted classes")
            shares = class_comparison(reference_class_counts(profile.get("predictions") or {}),
                                      report.summary.classes)
            st.altair_chart(charts.share_comparison_chart(shares, "class"), width="stretch")
        else:
            st.subheader("Answers in the window")
            show_summary(aggregate_predictions.summarise(window, report.bundle, telemetry.plans(current)))
    with right:
        st.subheader("One row on the reference-quantile bins")
        names = [result.name for result in report.results if result.name != CLASS_ROW and result.count]
        name = st.selectbox("feature or output", names, key="drift-feature") if names else None
        reference, values = None, pd.Series(dtype="float64")
        if name == CONFIDENCE_ROW:
            reference = (profile.get("predictions") or {}).get("confidence")
            values = report.summary.confidence_stand_in() or pd.Series(dtype="float64")
        elif name is not None and name in compared:
            reference, values = (profile.get("features") or {}).get(name), compared[name]
        if reference:
            st.altair_chart(charts.share_comparison_chart(bin_comparison(reference, values), "bin"), width="stretch")


drift_view()
