"""Benchmarks: batch-1 latency distributions per variant, execution provider and thread count, beside the
Keras and LiteRT rows, with the machine fingerprint (from ``bench.json``)."""

from __future__ import annotations

import streamlit as st

from dashboard.components import charts, widgets
from dashboard.data.benchmarks import (
    distribution_frame,
    head_to_head_frame,
    load_benchmarks,
    machine_frame,
    rows_frame,
    targets_frame,
    timing_inputs_note,
)
from dashboard.data.files import DataUnavailableError

ROW_COLUMNS = {
    "model": st.column_config.TextColumn("model"),
    "shipped": st.column_config.CheckboxColumn("would ship"),
    "provider": st.column_config.TextColumn("EP"),
    "threads": st.column_config.NumberColumn("threads"),
    "status": st.column_config.TextColumn("status"),
    "p50_us": st.column_config.NumberColumn("p50 (µs)", format="%.1f", help="median of the window medians"),
    "p95_us": st.column_config.NumberColumn("p95 (µs)", format="%.1f"),
    "p99_us": st.column_config.NumberColumn("p99 (µs)", format="%.1f"),
    "spread_percent": st.column_config.NumberColumn("spread (%)", format="%.0f"),
    "stable": st.column_config.CheckboxColumn("stable"),
    "size_kib": st.column_config.NumberColumn("file (KiB)", format="%.1f"),
    "peak_rss_mib": st.column_config.NumberColumn("peak RSS (MiB)", format="%.0f"),
    "macro_f1": st.column_config.NumberColumn("macro-F1", format="%.3f"),
    "gate_passed": st.column_config.CheckboxColumn("gate", help="passed the build's own gate (peers too)"),
    "reason": st.column_config.TextColumn("reason"),
}
HEAD_TO_HEAD_COLUMNS = {
    "model": st.column_config.TextColumn("model"),
    "threads": st.column_config.NumberColumn("threads"),
    "rounds": st.column_config.NumberColumn("rounds"),
    "runs_per_round": st.column_config.NumberColumn("runs / round"),
    "median_of_windows_us": st.column_config.NumberColumn("median (µs)", format="%.1f",
                                                          help="median of the window medians"),
    "spread_percent": st.column_config.NumberColumn("spread (%)", format="%.0f"),
    "vs_onnx_fp32": st.column_config.NumberColumn("÷ ONNX fp32", format="%.2f", help="median of per-round ratios"),
    "vs_litert_int8": st.column_config.NumberColumn("÷ LiteRT int8", format="%.2f",
                                                    help="median of per-round ratios; LiteRT int8 whatever its gate "
                                                    "verdict (the peer that passes is named above)"),
}

st.title("Benchmarks")
current = widgets.settings()
try:
    results = load_benchmarks(current.benchmarks)
except DataUnavailableError as error:
    st.info(str(error))
    st.stop()

st.caption(f"results from {results.path}")
if results.problems:
    with st.expander(f"⚠️ the file breaks its schema in {len(results.problems)} place(s); showing what can be read"):
        st.write(list(results.problems[:20]))
if not results.scenarios:
    st.warning("the benchmark results hold no scenarios")
for scenario in results.scenarios:
    st.header(str(scenario.get("name", "unnamed scenario")))
    rows = rows_frame(scenario)
    if rows.empty:
        st.info("no rows measured for this scenario")
        continue
    st.caption(timing_inputs_note(scenario))
    throughput = [column for column in rows.columns if column.startswith("batch_")]
    columns = [column for column in ROW_COLUMNS if column in rows.columns] + throughput
    st.dataframe(rows[columns], column_config=ROW_COLUMNS, hide_index=True,
                 height=min(36 * (len(rows) + 1) + 3, 900))  # every row visible without scrolling
    distribution = distribution_frame(scenario)
    if distribution.empty:
        st.info("no latency distributions recorded (no row has quantiles)")
    else:
        st.subheader("Batch-1 latency distribution")
        st.altair_chart(charts.ecdf_chart(distribution))
        st.caption("Empirical CDF of every timed run (101 quantiles); further left is faster.")
    peers = [peer for peer in scenario.get("peers") or [] if isinstance(peer, dict)]
    if peers:
        st.subheader("LiteRT peer: the fastest LiteRT variant that passes the same gate")
        for peer in peers:
            st.caption(f"{peer.get('threads')} thread(s): **{peer.get('chosen') or 'no peer'}** — {peer.get('reason')}")
    judgements = scenario.get("judgements") if isinstance(scenario.get("judgements"), dict) else {}
    places = sorted({str(item.get("measured_on")) for item in judgements.values()
                     if isinstance(item, dict) and item.get("measured_on")})
    if places:
        st.caption("Accuracy and gates measured on: " + " · ".join(places))
    head_to_head = head_to_head_frame(scenario)
    if not head_to_head.empty:
        st.subheader("Head-to-head (interleaved, batch 1)")
        st.caption("Timed together in one process, in rounds of one short window per model in a rotating order, "
                   "because the machine changes speed state within seconds; ratios are medians of per-round ratios "
                   "and the batch-1 latency targets use them.")
        st.dataframe(head_to_head, column_config=HEAD_TO_HEAD_COLUMNS, hide_index=True)
    targets = targets_frame(scenario)
    if not targets.empty:
        st.subheader("Targets (ratio ≤ 1 means met)")
        st.dataframe(targets, hide_index=True)

st.header("Machine")
st.dataframe(machine_frame(results), hide_index=True)
