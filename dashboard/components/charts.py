"""Altair chart builders for the dashboard pages (plain functions of frames; no Streamlit calls)."""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import pandas as pd

SLO_COLOUR = "#d62728"  # the objective line, red on every chart
REFERENCE_COLOUR = "#7f7f7f"


def pareto_chart(variants: pd.DataFrame, front: set[str]) -> alt.Chart:
    """Macro-F1 (with its CI) against batch-1 p50 latency; the Pareto front dashed, the shipped variant ringed."""
    data = variants.assign(
        pareto=variants["variant"].isin(front),
        role=variants["shipped"].map({True: "shipped", False: "not shipped"}),
    )
    base = alt.Chart(data).encode(
        x=alt.X("latency_p50_us:Q", title="batch-1 p50 latency (µs)", scale=alt.Scale(zero=False)),
        y=alt.Y("macro_f1:Q", title="macro-F1", scale=alt.Scale(zero=False)),
    )
    intervals = base.mark_rule(opacity=0.5).encode(y="macro_f1_low:Q", y2="macro_f1_high:Q")
    points = base.mark_point(size=140, filled=True).encode(
        color=alt.Color("gate:N", title="gate", scale=alt.Scale(domain=["pass", "FAIL"], range=["#2ca02c", "#d62728"])),
        shape=alt.Shape("role:N", title=""),
        tooltip=["variant", "latency_p50_us", "macro_f1_ci", "size_kib", "gate", "gate_reason"],
    )
    labels = base.mark_text(dy=-14).encode(text="variant:N")
    front_line = (
        alt.Chart(data[data["pareto"]].sort_values("latency_p50_us"))
        .mark_line(strokeDash=[6, 4], color="#555")
        .encode(x="latency_p50_us:Q", y="macro_f1:Q")
    )
    return (intervals + front_line + points + labels).properties(height=320)


def confusion_chart(confusion: pd.DataFrame, title: str) -> alt.Chart:
    """Heat map of a confusion matrix (colour: share of the true class; text: count)."""
    base = alt.Chart(confusion).encode(
        x=alt.X("predicted:N", title="predicted", sort=None, axis=alt.Axis(labelAngle=-35)),
        y=alt.Y("true:N", title="true", sort=None),
    )
    cells = base.mark_rect().encode(
        color=alt.Color("share:Q", legend=None, scale=alt.Scale(domain=[0, 1], scheme="blues")),
        tooltip=["true", "predicted", "count", alt.Tooltip("share:Q", format=".1%")],
    )
    text = base.mark_text(fontSize=14).encode(
        text="count:Q", color=alt.condition("datum.share > 0.5", alt.value("white"), alt.value("black"))
    )
    return (cells + text).properties(title=title, width=alt.Step(48), height=alt.Step(48))


def history_chart(history: pd.DataFrame, metric: str) -> alt.Chart:
    """One training curve: ``metric`` per epoch, train and validation lines."""
    return (
        alt.Chart(history[history["metric"] == metric])
        .mark_line(point=True)
        .encode(
            x=alt.X("epoch:Q", title="epoch", axis=alt.Axis(tickMinStep=1)),
            y=alt.Y("value:Q", title=metric, scale=alt.Scale(zero=False)),
            color=alt.Color("split:N", title="", scale=alt.Scale(domain=["train", "validation"])),
            tooltip=["metric", "split", "epoch", "value"],
        )
        .properties(height=220)
    )


def latency_chart(series: pd.DataFrame, objective_us: float, colour: str = "device", title: str = "device"
                  ) -> alt.LayerChart:
    """p50 (dashed) and p95 (solid) latency per ``colour`` (a device, or a group such as a bundle) over time, with
    the SLO objective as a red rule."""
    long = series.melt(
        id_vars=[colour, "bucket"], value_vars=["p50_us", "p95_us"], var_name="percentile", value_name="latency_us"
    )
    long["percentile"] = long["percentile"].str.removesuffix("_us")
    lines = (
        alt.Chart(long)
        .mark_line(point=alt.OverlayMarkDef(size=20))
        .encode(
            x=alt.X("bucket:T", title="time (UTC)"),
            y=alt.Y("latency_us:Q", title="latency (µs)"),
            color=alt.Color(f"{colour}:N", title=title),
            strokeDash=alt.StrokeDash("percentile:N", title="", sort=["p95", "p50"]),
            tooltip=[colour, "bucket:T", "percentile", alt.Tooltip("latency_us:Q", format=",.0f")],
        )
    )
    rule = alt.Chart(pd.DataFrame({"objective": [objective_us]})).mark_rule(color=SLO_COLOUR, strokeWidth=2).encode(
        y="objective:Q", tooltip=[alt.Tooltip("objective:Q", title="SLO objective (µs)", format=",.0f")]
    )
    return (lines + rule).properties(height=300)


def throughput_chart(series: pd.DataFrame, colour: str = "device", title: str = "device") -> alt.Chart:
    return (
        alt.Chart(series)
        .mark_line(point=alt.OverlayMarkDef(size=20))
        .encode(
            x=alt.X("bucket:T", title="time (UTC)"),
            y=alt.Y("per_minute:Q", title="inferences per minute"),
            color=alt.Color(f"{colour}:N", title=title),
            tooltip=[colour, "bucket:T", alt.Tooltip("per_minute:Q", format=",.1f"), "inferences"],
        )
        .properties(height=240)
    )


def flag_rate_chart(series: pd.DataFrame, warn_rate: float, alert_rate: float, colour: str = "device",
                    title: str = "device") -> alt.LayerChart:
    """Share of flagged records per ``colour`` over time, with the warning (orange) and critical (red) rates."""
    count = "inferences" if "inferences" in series.columns else "records"
    lines = (
        alt.Chart(series)
        .mark_line(point=alt.OverlayMarkDef(size=20))
        .encode(
            x=alt.X("bucket:T", title="time (UTC)"),
            y=alt.Y("flagged_share:Q", title="records with a quality flag", axis=alt.Axis(format="%")),
            color=alt.Color(f"{colour}:N", title=title),
            tooltip=[colour, "bucket:T", alt.Tooltip("flagged_share:Q", format=".1%"), count],
        )
    )
    warn = alt.Chart(pd.DataFrame({"rate": [warn_rate]})).mark_rule(strokeDash=[4, 4], color="#ff7f0e")
    alert = alt.Chart(pd.DataFrame({"rate": [alert_rate]})).mark_rule(strokeDash=[4, 4], color=SLO_COLOUR)
    return (lines + warn.encode(y="rate:Q") + alert.encode(y="rate:Q")).properties(height=240)


def ecdf_chart(distribution: pd.DataFrame) -> alt.Chart:
    """Empirical CDF of batch-1 latency per model, one panel per thread count."""
    return (
        alt.Chart(distribution)
        .mark_line()
        .encode(
            x=alt.X("latency_us:Q", title="batch-1 latency (µs, log)", scale=alt.Scale(type="log")),
            y=alt.Y("quantile:Q", title="share of runs", axis=alt.Axis(format="%")),
            color=alt.Color("model:N", title="model", legend=alt.Legend(orient="bottom", columns=3)),
            strokeDash=alt.StrokeDash("provider:N", title="provider", legend=alt.Legend(orient="bottom")),
            tooltip=["series", alt.Tooltip("quantile:Q", format=".0%"), alt.Tooltip("latency_us:Q", format=",.1f")],
        )
        .properties(width=340, height=260)
        .facet(column=alt.Column("threads:N", title="threads"))
    )


def share_comparison_chart(shares: pd.DataFrame, category: str) -> alt.Chart:
    """Grouped bars of reference vs window shares per ``category`` value (columns: category, source, share)."""
    return (
        alt.Chart(shares)
        .mark_bar()
        .encode(
            x=alt.X(f"{category}:N", title=category, sort=None),
            xOffset="source:N",
            y=alt.Y("share:Q", title="share", axis=alt.Axis(format="%")),
            color=alt.Color("source:N", title="", scale=alt.Scale(range=[REFERENCE_COLOUR, "#1f77b4"])),
            tooltip=[category, "source", alt.Tooltip("share:Q", format=".1%")],
        )
        .properties(height=260)
    )


def timeline_charts(records: pd.DataFrame, objective_us: float, classes: Sequence[str]) -> tuple[alt.Chart, alt.Chart]:
    """One device: every inference's latency over the SLO line, and its confidence (shaped by quality flag)."""
    data = records.drop(columns=[name for name in ("features", "result") if name in records.columns]).assign(
        flagged=records["quality_flags"].map(lambda flags: ", ".join(flags) or "none")
    )
    scale = alt.Scale(domain=list(classes), scheme="tableau10") if classes else alt.Scale(scheme="tableau10")
    colour = alt.Color("predicted_class:N", title="predicted", scale=scale)
    latency = (
        alt.Chart(data)
        .mark_circle(size=18, opacity=0.7)
        .encode(
            x=alt.X("time:T", title="time (UTC)"),
            y=alt.Y("latency_us:Q", title="latency (µs)"),
            color=colour,
            tooltip=["time:T", "latency_us", "predicted_class", "confidence", "flagged", "variant"],
        )
    )
    rule = alt.Chart(pd.DataFrame({"objective": [objective_us]})).mark_rule(color=SLO_COLOUR).encode(y="objective:Q")
    confidence = (
        alt.Chart(data)
        .mark_point(size=22, opacity=0.7, filled=True)
        .encode(
            x=alt.X("time:T", title="time (UTC)"),
            y=alt.Y("confidence:Q", title="confidence", scale=alt.Scale(domain=[0, 1])),
            color=colour,
            shape=alt.Shape("flagged:N", title="quality flags"),
            tooltip=["time:T", "predicted_class", "confidence", "flagged"],
        )
    )
    return (latency + rule).properties(height=260), confidence.properties(height=200)


def share_chart(shares: pd.DataFrame, category: str, title: str = "share") -> alt.Chart:
    """Bars of ``share`` per ``category`` value (classes, or each label's positive rate), counts in the tooltip."""
    return (
        alt.Chart(shares)
        .mark_bar()
        .encode(
            x=alt.X(f"{category}:N", title=category, sort=None),
            y=alt.Y("share:Q", title=title, axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])),
            tooltip=[category, "count", alt.Tooltip("share:Q", format=".1%")],
        )
        .properties(height=240)
    )


def value_distribution_chart(values: pd.DataFrame, threshold: float | None = None) -> alt.Chart:
    """Histogram of each output's values (columns: output, unit, value); one panel per output, or one panel with
    the threshold as a red rule (anomaly scores)."""
    data = values.assign(label=values["output"] + values["unit"].map(lambda unit: f" ({unit})" if unit else ""))
    if "count" not in data.columns:  # one row per record; aggregates give one row per histogram bin with its count
        data = data.assign(count=1)
    bars = alt.Chart(data).mark_bar().encode(
        x=alt.X("value:Q", bin=alt.Bin(maxbins=40), title="value"),
        y=alt.Y("sum(count):Q", title="records"),
        tooltip=["label", alt.Tooltip("sum(count):Q", title="records")],
    )
    if threshold is not None:
        rule = alt.Chart(pd.DataFrame({"threshold": [threshold]})).mark_rule(color=SLO_COLOUR, strokeWidth=2).encode(
            x="threshold:Q", tooltip=[alt.Tooltip("threshold:Q", title="alarm threshold")])
        return (bars + rule).properties(height=220)
    return (
        bars.properties(height=160, width=320)
        .facet(column=alt.Column("label:N", title=None))
        .resolve_scale(x="independent", y="independent")
    )


def output_timeline_chart(points: pd.DataFrame, threshold: float | None = None) -> alt.Chart:
    """Each inference's numeric outputs over time (columns: time, output, value), the threshold as a red rule."""
    chart = (
        alt.Chart(points)
        .mark_point(size=22, opacity=0.7, filled=True)
        .encode(
            x=alt.X("time:T", title="time (UTC)"),
            y=alt.Y("value:Q", title="output", scale=alt.Scale(zero=False)),
            color=alt.Color("output:N", title="output"),
            tooltip=["time:T", "output", alt.Tooltip("value:Q", format=".4g")],
        )
    )
    if threshold is not None:
        chart = chart + alt.Chart(pd.DataFrame({"threshold": [threshold]})).mark_rule(color=SLO_COLOUR).encode(
            y="threshold:Q")
    return chart.properties(height=200)


def bucket_latency_chart(series: pd.DataFrame, objective_us: float) -> alt.LayerChart:
    """One device's latency per bucket: the p50–p95 band and the p50 line, the SLO objective as a red rule."""
    band = alt.Chart(series).mark_area(opacity=0.3).encode(
        x=alt.X("bucket:T", title="time (UTC)"), y=alt.Y("p50_us:Q", title="latency (µs)"), y2="p95_us:Q",
        tooltip=["bucket:T", alt.Tooltip("p50_us:Q", format=",.0f"), alt.Tooltip("p95_us:Q", format=",.0f"),
                 "inferences"])
    line = alt.Chart(series).mark_line(point=alt.OverlayMarkDef(size=16)).encode(x="bucket:T", y="p50_us:Q")
    rule = alt.Chart(pd.DataFrame({"objective": [objective_us]})).mark_rule(color=SLO_COLOUR).encode(y="objective:Q")
    return (band + line + rule).properties(height=240)


def class_bucket_chart(classes: pd.DataFrame, title: str = "answers per bucket") -> alt.Chart:
    """Stacked bars of answers (classes, or labels present) per time bucket."""
    return (
        alt.Chart(classes)
        .mark_bar()
        .encode(
            x=alt.X("bucket:T", title="time (UTC)"),
            y=alt.Y("count:Q", title=title),
            color=alt.Color("class:N", title="answer"),
            tooltip=["bucket:T", "class", "count"],
        )
        .properties(height=200)
    )


def output_band_chart(outputs: pd.DataFrame, threshold: float | None = None) -> alt.Chart:
    """Per output and bucket: the p5–p95 band and the median (confidence, scores, values), a threshold as a red
    rule."""
    base = alt.Chart(outputs).encode(x=alt.X("bucket:T", title="time (UTC)"),
                                     color=alt.Color("output:N", title="output"))
    band = base.mark_area(opacity=0.25).encode(y=alt.Y("p5:Q", title="output (p5–p95, median)",
                                                       scale=alt.Scale(zero=False)), y2="p95:Q")
    line = base.mark_line(point=alt.OverlayMarkDef(size=16)).encode(
        y="p50:Q", tooltip=["bucket:T", "output", alt.Tooltip("p5:Q", format=".4g"),
                            alt.Tooltip("p50:Q", format=".4g"), alt.Tooltip("p95:Q", format=".4g")])
    chart = band + line
    if threshold is not None:
        chart = chart + alt.Chart(pd.DataFrame({"threshold": [threshold]})).mark_rule(color=SLO_COLOUR).encode(
            y="threshold:Q")
    return chart.properties(height=200)
