"""Builds: every bundle's variants (size, latency, clinical metrics with CIs, gate verdicts), a synthetic-data or
synthetic-training-data badge (``data_badge``), why the shipped variant won, how the device decides (the task
kind's rule) and what the reference profile's answers look like, the recording-level validation per held-out
record (ECG bundles validated through the device stream), the accuracy-vs-latency Pareto plot, confusion matrices
(classifiers) or the metrics table, and training curves."""

from __future__ import annotations

import streamlit as st

from dashboard.components import charts, widgets
from dashboard.data.builds import (
    confusion_frame,
    data_badge,
    decision_rule_frame,
    has_confusion_matrices,
    healthy_frame,
    leads_note,
    load_clinical_metrics,
    load_history,
    loro_frame,
    pareto_variants,
    per_class_frame,
    real_data_note,
    recording_records_frame,
    recording_validation,
    recording_variants_frame,
    resampling_note,
    scalar_metrics_frame,
    sensitivity_frame,
    variants_frame,
)
from dashboard.data.bundles import BundleInfo
from dashboard.data.files import DataUnavailableError
from dashboard.data.settings import DashboardSettings
from dashboard.monitoring.predictions import CLASSIFIERS, reference_class_shares, reference_statistics
from runtime.real_data import RealDataStatus

VARIANT_COLUMNS = {
    "variant": st.column_config.TextColumn("variant"),
    "shipped": st.column_config.CheckboxColumn("shipped"),
    "size_kib": st.column_config.NumberColumn("size (KiB)", format="%.1f"),
    "latency_p50_us": st.column_config.NumberColumn("p50 (µs)", format="%.1f", help="median of the window medians"),
    "latency_p90_us": st.column_config.NumberColumn("p90 (µs)", format="%.1f"),
    "ratio_to_fp32": st.column_config.NumberColumn("× fp32", format="%.2f",
                                                   help="median of per-round ratios to fp32 (timed together)"),
    "macro_f1_ci": st.column_config.TextColumn("macro-F1 [95 % CI]"),
    "accuracy_ci": st.column_config.TextColumn("accuracy [95 % CI]"),
    "gate": st.column_config.TextColumn("gate"),
    "gate_reason": st.column_config.TextColumn("gate verdict", width="large"),
    "how_made": st.column_config.TextColumn("chosen by measurement", width="large"),
}


def show_bundle(bundle: BundleInfo, current: DashboardSettings) -> None:
    manifest = bundle.manifest
    st.header(bundle.name)
    badge = data_badge(bundle)
    st.caption(f"{manifest.description} · {manifest.output.task} · labels {', '.join(bundle.labels)} · built "
               f"{manifest.created_at}" + (f" · **{badge}**" if badge else ""))
    status, real_data = real_data_note(bundle)
    if status is RealDataStatus.NOT_VALIDATED:
        st.error(real_data)
    elif status is RealDataStatus.NOT_STATED:
        st.warning(real_data)
    else:
        st.caption(real_data)
    shipped = f"shipped **{bundle.shipped_variant}** — {manifest.selection.reason}"
    if status is RealDataStatus.VALIDATED:
        st.success(shipped)
    else:  # chosen among its variants, but not a bundle for patients: no green
        st.info(shipped)
    st.caption(f"selection rule: {manifest.selection.rule}")
    note = resampling_note(bundle)
    if note:
        st.caption(note)
    leads = leads_note(bundle)
    if leads:
        st.caption(leads)

    variants = variants_frame(bundle)
    if variants.empty:
        st.warning(f"bundle {bundle.name} lists no variants in its manifest")
        return
    st.subheader("Variants")
    st.dataframe(variants[list(VARIANT_COLUMNS)], column_config=VARIANT_COLUMNS, hide_index=True)
    task = manifest.output.task.value
    if task in CLASSIFIERS:
        st.markdown("**Sensitivity per class [95 % CI]**")
        st.dataframe(sensitivity_frame(bundle), hide_index=True)
    show_decisions(bundle, task)
    show_recordings(bundle, current)

    st.subheader("Accuracy vs latency")
    if variants["macro_f1"].notna().any():
        st.altair_chart(charts.pareto_chart(variants, pareto_variants(variants)), width="stretch")
        st.caption("Dashed: the Pareto front (no other variant is both faster and more accurate). Bars: 95 % CIs.")
    else:
        st.info(f"the variants of this {task} bundle record no macro-F1 to plot against latency")
    st.subheader("Training curves")
    try:
        history = load_history(current.artifacts, bundle)
    except DataUnavailableError as error:
        st.info(str(error))
    else:
        metrics = list(dict.fromkeys(history["metric"]))
        for column, metric in zip(st.columns(max(len(metrics), 1)), metrics, strict=False):
            with column:
                st.altair_chart(charts.history_chart(history, metric), width="stretch")

    st.subheader("Confusion matrices and per-class metrics")
    try:
        metrics = load_clinical_metrics(current.artifacts, bundle)
    except DataUnavailableError as error:
        st.info(f"{error} — the manifest's summary above is all there is for this bundle.")
        return
    names = [name for name in metrics if isinstance(metrics[name], dict)]
    if not has_confusion_matrices(metrics):
        st.markdown(f"**Metrics of every variant ({task})**")
        st.dataframe(scalar_metrics_frame(metrics), hide_index=True)
        return
    for row_start in range(0, len(names), 4):
        columns = st.columns(4)
        for column, name in zip(columns, names[row_start:row_start + 4], strict=False):
            with column:
                title = f"{name} (shipped)" if name == bundle.shipped_variant else name
                st.altair_chart(charts.confusion_chart(confusion_frame(metrics[name]), title))
    chosen = st.selectbox("per-class metrics of variant", names, key=f"per-class-{bundle.name}",
                          index=names.index(bundle.shipped_variant) if bundle.shipped_variant in names else 0)
    st.dataframe(per_class_frame(metrics[chosen]), hide_index=True)


def show_decisions(bundle: BundleInfo, task: str) -> None:
    """The contract's decision rule, and the reference profile's answers for this task kind."""
    st.subheader("How the device decides")
    st.dataframe(decision_rule_frame(bundle), hide_index=True)
    if bundle.profile is None:
        st.caption(f"no reference profile: {bundle.profile_problem}")
        return
    shares = reference_class_shares(bundle.profile)
    statistics = reference_statistics(bundle.profile, task)
    if not shares.empty and (task in CLASSIFIERS or task == "anomaly"):
        st.markdown("**Reference answers (the validation split's, from the reference profile)**")
        st.altair_chart(charts.share_chart(shares, "class", "share of answers"), width="stretch")
    if not statistics.empty:
        st.markdown("**Reference outputs (the validation split's, from the reference profile)**")
        st.dataframe(statistics, hide_index=True)


LORO_FILE = "ecg_pvc_loro.json"  # beside bench.json, written by `make validate-ecg`


def show_recordings(bundle: BundleInfo, current: DashboardSettings) -> None:
    """The recording-level validation: the shipped variant per held-out record, every variant, healthy recordings,
    and the leave-one-record-out table when `make validate-ecg` wrote one."""
    section = recording_validation(bundle)
    if section is None:
        return
    st.subheader("Recording-level validation (held-out records, full device stream)")
    st.caption(section.get("what", ""))
    records = ", ".join(f"{item.get('record')} ({item.get('description', '')})" for item in section.get("records", []))
    st.markdown(f"**Held-out records:** {records}")
    st.markdown(f"**Shipped variant {bundle.shipped_variant}, per record**")
    st.dataframe(recording_records_frame(bundle), hide_index=True)
    st.markdown("**Every variant (gross over the held-out records)**")
    st.dataframe(recording_variants_frame(bundle), hide_index=True)
    st.caption(f"Recording gate: {section.get('gate', {}).get('rule', '')}")
    healthy, why_not = healthy_frame(bundle)
    st.markdown("**False PVC rate on healthy recordings**")
    if why_not:
        st.info(why_not)
    else:
        st.dataframe(healthy, hide_index=True)
    try:
        loro, design = loro_frame(current.benchmarks.parent / LORO_FILE)
    except DataUnavailableError as error:
        st.caption(f"Leave-one-record-out table: {error} — run `make validate-ecg`.")
    else:
        st.markdown("**Leave-one-record-out over the 10 records (`make validate-ecg`)**")
        st.caption(design)
        st.dataframe(loro, hide_index=True)


st.title("Builds")
current = widgets.settings()
catalog = widgets.catalog(current)
widgets.show_problems(catalog.problems)
if not catalog.bundles:
    st.info(f"no bundles in {current.bundles}: run `make build` (or `edgemed build`) and pass --bundles")
else:
    st.caption(f"bundles from {current.bundles} · artefacts from {current.artifacts}")
    for tab, bundle in zip(st.tabs([bundle.name for bundle in catalog.bundles]), catalog.bundles, strict=True):
        with tab:
            show_bundle(bundle, current)
