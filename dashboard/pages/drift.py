"""Drift: per input feature and per output of the bundle's task kind (a classifier's confidence and classes, an
anomaly score and labels, regression values, multilabel scores), of one device or of every device on a bundle,
against the bundle's reference profile. Refreshes itself."""

from __future__ import annotations

import dataclasses

import pandas as pd
import streamlit as st

from dashboard.components import charts, widgets
from dashboard.components.predictions import show_predictions
from dashboard.data.files import DataUnavailableError
from dashboard.monitoring.checks import DriftReport, bundle_drift
from dashboard.monitoring.drift import (
    CLASS_ROW,
    CONFIDENCE_ROW,
    DEFAULT_DRIFT_CONFIG,
    bin_comparison,
    class_comparison,
    reference_class_counts,
    results_frame,
)
from dashboard.monitoring.fleet import latest_bundle_window
from dashboard.monitoring.predictions import CLASSIFIERS, categories, task_of

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
reader = widgets.telemetry(current)
devices = widgets.devices_or_stop(reader, current, "there is nothing to compare")

scopes = [f"device {device_id}" for device_id in devices["device_id"]]
scopes += [f"all devices on bundle {bundle.name}" for bundle in catalog.bundles]
requested = st.query_params.get("device")
default = scopes.index(f"device {requested}") if f"device {requested}" in scopes else 0
scope = st.selectbox("compare", scopes, index=default)
label, span = widgets.time_window_picker("drift-window", default="last 24 hours")
config = dataclasses.replace(DEFAULT_DRIFT_CONFIG, window=span)


def compute(scope: str) -> DriftReport:
    moment = widgets.now()
    if scope.startswith("device "):
        device_id = scope.removeprefix("device ")
        window = latest_bundle_window(reader.records(device_id, since=moment - span, with_features=True), moment, span)
        bundle = catalog.match(window.iloc[-1]["bundle_id"], window.iloc[-1]["bundle_sha256"]) if len(window) else None
        return bundle_drift(device_id, window, bundle, config)
    bundle = catalog.by_name(scope.removeprefix("all devices on bundle "))
    records = reader.records(since=moment - span, with_features=True)
    matches = [catalog.match(bundle_id, sha) is bundle for bundle_id, sha in
               zip(records["bundle_id"], records["bundle_sha256"], strict=True)]
    return bundle_drift(scope, records[matches], bundle, config)


@st.fragment(run_every=widgets.REFRESH_SECONDS)
def drift_view() -> None:
    try:
        report = compute(scope)
    except DataUnavailableError as error:
        st.info(str(error))
        return
    if report.message:
        st.warning(report.message)
        return
    method = "JS + Wasserstein" if report.records > config.large_window else "KS + chi-square"
    first, second, third = st.columns(3)
    first.metric("rows drifting (warn or alert)", sum(result.status.value in ("warn", "alert")
                                                       for result in report.results))
    second.metric(f"records in the {label}", f"{report.records:,}")
    third.metric("window uses", method)
    st.markdown(f"overall: **{widgets.status_markdown(report.status.value)}**")
    st.caption(f"against bundle {report.bundle.name}'s reference profile · refreshed {widgets.now():%H:%M:%S} UTC · "
               f"insufficient data below {config.minimum_count} records")
    table = results_frame(report.results)
    st.dataframe(table[list(RESULT_COLUMNS)], column_config=RESULT_COLUMNS, hide_index=True,
                 height=min(36 * (len(table) + 1) + 3, 900))  # every feature visible without scrolling
    profile = report.profile or report.bundle.profile or {}
    window = report.window if report.window is not None else pd.DataFrame()
    compared = report.compared if report.compared is not None else pd.DataFrame()
    task = task_of(window, report.bundle)
    left, right = st.columns(2)
    with left:
        if task in CLASSIFIERS:
            st.subheader("Predicted classes")
            shares = class_comparison(reference_class_counts(profile.get("predictions") or {}),
                                      categories(window, task))
            st.altair_chart(charts.share_comparison_chart(shares, "class"), width="stretch")
        else:
            st.subheader("Answers in the window")
            show_predictions(window, report.bundle)
    with right:
        st.subheader("One row on the reference-quantile bins")
        names = [result.name for result in report.results if result.name != CLASS_ROW and result.count]
        name = st.selectbox("feature or output", names, key="drift-feature") if names else None
        reference, values = None, pd.Series(dtype="float64")
        if name == CONFIDENCE_ROW:
            reference, values = (profile.get("predictions") or {}).get("confidence"), window["confidence"]
        elif name is not None and name in compared:
            reference, values = (profile.get("features") or {}).get(name), compared[name]
        if reference:
            st.altair_chart(charts.share_comparison_chart(bin_comparison(reference, values), "bin"), width="stretch")


drift_view()
