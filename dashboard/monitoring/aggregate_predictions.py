"""What devices answered, per task kind, from aggregate frames: ``predictions.PredictionSummary`` (the shape the
pages draw) and a device's timeline per time bucket.

The counts are exact (classes, multilabel positives, anomaly alarms, records the model could not judge); a numeric
output's statistics come from its histogram (mean exact from the sum; p5/p50/p95 from the histogram's stand-in
values, within one bin), and its distribution is one row per non-empty bin with its ``count`` (the value is the
bin's middle), so a day of a thousand devices is a few hundred rows, not a row per inference.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from dashboard.data.bundles import BundleCatalog, BundleInfo
from dashboard.monitoring.aggregate_fleet import group_series
from dashboard.monitoring.aggregate_sums import summary_of
from dashboard.monitoring.aggregate_window import PlanFor, TrackSum, WindowSummary
from dashboard.monitoring.fleet import short_id
from dashboard.monitoring.predictions import (
    ANOMALY_SCORE_ROW,
    CLASSIFIERS,
    KNOWN_TASKS,
    PredictionSummary,
    share_frame,
)
from runtime.contract import TaskKind
from runtime.telemetry.aggregates import CONFIDENCE_TRACK, SCORE_TRACK, SCORES_PREFIX, VALUES_PREFIX
from runtime.telemetry.histogram import bin_bounds

_QUANTILES = (("p5", 0.05), ("p50", 0.5), ("p95", 0.95))
STATISTIC_COLUMNS = ["output", "unit", "count", "mean", *(name for name, _ in _QUANTILES)]
VALUE_COLUMNS = ["output", "unit", "value", "count"]


def task_of(frame: pd.DataFrame, bundle: BundleInfo | None = None) -> str:
    """The bundle contract's task kind, else the aggregates' latest, else multiclass (schema-1 devices)."""
    if bundle is not None:
        return bundle.manifest.output.task.value
    tasks = frame["task"].dropna() if "task" in frame else pd.Series(dtype="object")
    tasks = tasks[tasks != "mixed"]
    return str(tasks.iloc[-1]) if len(tasks) else TaskKind.MULTICLASS.value


def output_name(track: str) -> str | None:
    """The name a numeric output is shown under (``anomaly score``, a regression target, a multilabel label)."""
    if track == SCORE_TRACK:
        return ANOMALY_SCORE_ROW
    for prefix in (VALUES_PREFIX, SCORES_PREFIX):
        if track.startswith(prefix):
            return track.removeprefix(prefix)
    return "confidence" if track == CONFIDENCE_TRACK else None


def track_statistics(track: TrackSum) -> dict[str, float | int | None]:
    """count, mean (exact) and p5/p50/p95 (the stand-in values', not written out) of one summed histogram."""
    quantiles = (track.stand_in().percentile(np.array([100 * q for _, q in _QUANTILES])) if track.count
                 else [None] * len(_QUANTILES))
    return {"count": track.count, "mean": track.total / track.count if track.count else None,
            **{name: None if value is None else float(value) for (name, _), value in zip(_QUANTILES, quantiles,
                                                                                     strict=True)}}


def track_points(track: TrackSum, output: str, unit: str = "") -> pd.DataFrame:
    """One row per non-empty bin: the bin's middle (inside the observed range) and its count."""
    if not track.count:
        return pd.DataFrame(columns=VALUE_COLUMNS)
    lower, upper = bin_bounds(track.edges, track.low, track.high)
    occupied = np.flatnonzero(track.counts)
    middle = (lower[occupied] + upper[occupied]) / 2
    return pd.DataFrame({"output": output, "unit": unit, "value": middle, "count": track.counts[occupied]},
                        columns=VALUE_COLUMNS)


def _outputs(summary: WindowSummary, prefix: str | None, units: Mapping[str, str]) -> tuple[pd.DataFrame,
                                                                                             pd.DataFrame]:
    """(values, statistics) of the output tracks with ``prefix`` (``None``: the anomaly score)."""
    names = [name for name in summary.outputs if (name == SCORE_TRACK if prefix is None else name.startswith(prefix))]
    values = [track_points(summary.outputs[name], output_name(name) or name, units.get(output_name(name) or "", ""))
              for name in names]
    statistics = [{"output": output_name(name) or name, "unit": units.get(output_name(name) or "", ""),
                   **track_statistics(summary.outputs[name])} for name in names]
    frame = pd.concat(values, ignore_index=True) if values else pd.DataFrame(columns=VALUE_COLUMNS)
    return frame, pd.DataFrame(statistics, columns=STATISTIC_COLUMNS)


def summarise(frame: pd.DataFrame, bundle: BundleInfo | None = None, plan_for: PlanFor | None = None
              ) -> PredictionSummary:
    """``predictions.summarise`` on aggregates of one bundle: the same shares, rates and statistics."""
    task = task_of(frame, bundle)
    summary = summary_of(frame, plan_for, tracks=task not in CLASSIFIERS, features=False)
    total, unjudged = summary.records, summary.unjudged
    judged = total - unjudged
    labels = tuple(bundle.labels) if bundle is not None else ()
    if task not in KNOWN_TASKS:
        return PredictionSummary(task, total, unjudged, message=(
            f"task kind '{task}' is not one this dashboard can chart ({', '.join(KNOWN_TASKS)}); "
            f"{total:,} records are counted but their results are not shown"))
    if judged <= 0:
        return PredictionSummary(task, total, unjudged, message=(
            "no answers to show: " + (f"all {total:,} records were inputs the model could not judge" if total else
                                      "no records in the window")))
    if task in CLASSIFIERS:
        order = list(labels) + sorted(set(summary.classes) - set(labels))
        counts = {label: int(summary.classes.get(label, 0)) for label in order}
        return PredictionSummary(task, total, unjudged, shares=share_frame(counts, sum(counts.values()), "class"))
    if task == TaskKind.MULTILABEL.value:
        seen = [output_name(name) for name in summary.outputs if name.startswith(SCORES_PREFIX)]
        order = list(labels) + sorted(set(seen) - set(labels) - {None})
        counts = {label: int(summary.labels.get(label, 0)) for label in order}
        return PredictionSummary(task, total, unjudged, shares=share_frame(counts, judged, "label"))
    if task == TaskKind.REGRESSION.value:
        units = dict(zip(labels, bundle.manifest.output.decision.units, strict=True)) if bundle is not None else {}
        values, statistics = _outputs(summary, VALUES_PREFIX, units)
        return PredictionSummary(task, total, unjudged, values=values, statistics=statistics)
    threshold = bundle.manifest.output.decision.threshold if bundle is not None else None
    names = labels or ("no alarm", "alarm")
    shares = share_frame({names[0]: judged - summary.alarms, names[1]: summary.alarms}, judged, "class")
    values, statistics = _outputs(summary, None, {})
    return PredictionSummary(task, total, unjudged, shares=shares, values=values, statistics=statistics,
                             alarm_rate=summary.alarms / judged, threshold=threshold)


def by_bundle(frame: pd.DataFrame, catalog: BundleCatalog) -> list[tuple[str, BundleInfo | None, pd.DataFrame]]:
    """(name, published bundle or None, its aggregates) per bundle in ``frame``, most records first."""
    if frame.empty:
        return []
    groups = []
    for (bundle_id, sha256), group in frame.groupby(["bundle_id", "bundle_sha256"], sort=False, dropna=False):
        bundle = catalog.match(str(bundle_id), None if pd.isna(sha256) else str(sha256))
        groups.append((bundle.name if bundle else f"{bundle_id} (not published here)", bundle, group))
    merged: dict[str, tuple[BundleInfo | None, list[pd.DataFrame]]] = {}
    for name, bundle, group in groups:  # a rollup without a sha256 joins its bundle's other rows
        merged.setdefault(name, (bundle, []))[1].append(group)
    result = [(name, bundle, pd.concat(parts)) for name, (bundle, parts) in merged.items()]
    return sorted(result, key=lambda item: -int(item[2]["records"].sum()))


def timeline(frame: pd.DataFrame, bucket, task: str, plan_for: PlanFor | None = None, start=None, end=None
             ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """One device's window per bucket: (latency and throughput ``group_series``, classes per bucket
    ``bucket, class, count``, output quantiles ``bucket, output, p5, p50, p95``)."""
    if frame.empty:
        return (group_series(frame, bucket, pd.Series(dtype="object")), pd.DataFrame(columns=["bucket", "class",
                                                                                             "count"]),
                pd.DataFrame(columns=["bucket", "output", "p5", "p50", "p95"]))
    device = frame["device_id"].map(lambda value: short_id(str(value)))
    latency = group_series(frame, bucket, device, start, end)
    buckets = frame["minute"].dt.floor(pd.Timedelta(bucket))
    classes, outputs = [], []
    for moment, group in frame.groupby(buckets, sort=True):
        summary = summary_of(group, plan_for, tracks=True, features=False)
        classes += [{"bucket": moment, "class": label, "count": int(count)}
                    for label, count in sorted(summary.classes.items())]
        if task == TaskKind.MULTILABEL.value:
            classes += [{"bucket": moment, "class": label, "count": int(count)}
                        for label, count in sorted(summary.labels.items())]
        for name, track in summary.outputs.items():
            if track.count:
                statistics = track_statistics(track)
                outputs.append({"bucket": moment, "output": output_name(name) or name,
                                **{key: statistics[key] for key in ("p5", "p50", "p95")}})
    return (latency, pd.DataFrame(classes, columns=["bucket", "class", "count"]),
            pd.DataFrame(outputs, columns=["bucket", "output", "p5", "p50", "p95"]))
