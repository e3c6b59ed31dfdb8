"""What a bundle's devices answered, drawn by its task kind (``dashboard.monitoring.predictions``):
class shares, label positive rates, value distributions, anomaly scores with the alarm rate. An unknown
kind gets a message; a window without answers says so."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard.components import charts
from dashboard.data.bundles import BundleInfo
from dashboard.monitoring.predictions import CLASSIFIERS, PredictionSummary, summarise
from runtime.contract import TaskKind

STATISTIC_COLUMNS = {
    "output": st.column_config.TextColumn("output"),
    "unit": st.column_config.TextColumn("unit"),
    "count": st.column_config.NumberColumn("records"),
    **{name: st.column_config.NumberColumn(name, format="%.4g") for name in ("mean", "p5", "p50", "p95")},
}


def caption(summary: PredictionSummary) -> str:
    unjudged = (f" · {summary.unjudged:,} not judged (non-finite input or output: no answer)"
                if summary.unjudged else "")
    return f"{summary.task} · {summary.records:,} records{unjudged}"


def show_summary(summary: PredictionSummary) -> None:
    """The charts and tables of one summary."""
    st.caption(caption(summary))
    if summary.message:
        st.info(summary.message)
        return
    if summary.task in CLASSIFIERS:
        st.altair_chart(charts.share_chart(summary.shares, "class", "share of answers"), width="stretch")
    elif summary.task == TaskKind.MULTILABEL.value:
        st.altair_chart(charts.share_chart(summary.shares, "label", "positive rate"), width="stretch")
        st.caption("Share of answered records with each label at or above its own threshold.")
    elif summary.task == TaskKind.REGRESSION.value:
        st.altair_chart(charts.value_distribution_chart(summary.values))
        st.dataframe(summary.statistics, column_config=STATISTIC_COLUMNS, hide_index=True)
    else:
        rate = f"{summary.alarm_rate:.1%}" if summary.alarm_rate is not None else "—"
        threshold = f"{summary.threshold:.4g}" if summary.threshold is not None else "—"
        first, second = st.columns(2)
        first.metric("alarm rate", rate)
        second.metric("alarm threshold (score ≥)", threshold)
        st.altair_chart(charts.value_distribution_chart(summary.values, summary.threshold), width="stretch")
        st.caption("Anomaly scores of answered records; red: the threshold at and above which the device alarms.")


def show_predictions(records: pd.DataFrame, bundle: BundleInfo | None) -> PredictionSummary:
    """Summarise ``records`` (all on ``bundle``, which may be unpublished) and draw it."""
    summary = summarise(records, bundle)
    show_summary(summary)
    return summary
