"""What devices answered, per task kind: frames for the Fleet, Drift, Device and Builds pages.

Records come from ``TelemetryReader.records`` (``task``, ``result``, ``predicted_class``, ``confidence``).
The task kind is the bundle contract's when the bundle is published here (``BundleInfo.manifest.output``),
else the records' own; schema-1 records (older devices) are classifiers. Per kind:

* multiclass, binary: the class distribution;
* multilabel: each label's positive rate;
* regression: each target's value distribution (with its unit);
* anomaly: the score distribution, the alarm rate and the threshold.

Records the model could not judge (``result`` null) are counted, never charted as answers. A kind this
dashboard does not know (a newer device) gets a message instead of a summary, never an exception.

Drift uses the same numbers: ``output_numbers`` names each record's numeric outputs as drift rows, and
``reference_outputs`` finds their reference distributions in a bundle's ``reference_profile.json`` under
``predictions``: ``scores.<label>`` (multilabel), ``values.<target>`` (regression), ``score`` (anomaly),
each shaped like a feature's (decile edges, moments, sample).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from dashboard.data.bundles import BundleCatalog, BundleInfo
from runtime.contract import TaskKind

CLASSIFIERS = frozenset({TaskKind.MULTICLASS.value, TaskKind.BINARY.value})
KNOWN_TASKS = tuple(kind.value for kind in TaskKind)
ANOMALY_SCORE_ROW = "anomaly score"
_QUANTILES = (("p5", 0.05), ("p50", 0.5), ("p95", 0.95))


def task_of(records: pd.DataFrame, bundle: BundleInfo | None = None) -> str:
    """The task kind of records that ran one bundle: its contract's, else the records' latest, else multiclass."""
    if bundle is not None:
        return bundle.manifest.output.task.value
    tasks = records["task"].dropna() if "task" in records else pd.Series(dtype="object")
    return str(tasks.iloc[-1]) if len(tasks) else TaskKind.MULTICLASS.value  # schema-1 records are classifiers


def judged_mask(records: pd.DataFrame) -> pd.Series:
    """Records that carry an answer: a result, or a schema-1 class (schema-1 records have no ``task``)."""
    if records.empty or "result" not in records:
        return pd.Series(True, index=records.index)
    answered = records["result"].map(lambda result: isinstance(result, Mapping))
    return answered | records["task"].isna() if "task" in records else answered


def _results(records: pd.DataFrame) -> list[dict[str, Any]]:
    return [result if isinstance(result, dict) else {} for result in records.get("result", [])]


def _named_numbers(value: object) -> dict[str, float]:
    """A result's ``{name: number}`` object, numbers only (anything else is skipped)."""
    if not isinstance(value, Mapping):
        return {}
    return {str(name): float(number) for name, number in value.items()
            if isinstance(number, int | float) and not isinstance(number, bool)}


def share_frame(counts: Mapping[str, int], total: int, category: str) -> pd.DataFrame:
    rows = [{category: name, "count": int(count), "share": count / total if total else 0.0}
            for name, count in counts.items()]
    return pd.DataFrame(rows, columns=[category, "count", "share"])


def class_distribution(records: pd.DataFrame, labels: tuple[str, ...] = ()) -> pd.DataFrame:
    """Per class: how many judged records predicted it and their share (the contract's labels first)."""
    classes = records.loc[judged_mask(records), "predicted_class"].dropna().astype(str)
    counts = classes.value_counts()
    order = [label for label in labels] + sorted(set(counts.index) - set(labels))
    return share_frame({label: int(counts.get(label, 0)) for label in order}, len(classes), "class")


def label_positive_rates(records: pd.DataFrame, labels: tuple[str, ...] = ()) -> pd.DataFrame:
    """Multilabel: per label, how many judged records had it at or above its threshold, and the rate."""
    results = [result for result in _results(records[judged_mask(records)]) if "scores" in result]
    seen = [name for result in results for name in _named_numbers(result.get("scores"))]
    order = list(labels) + sorted(set(seen) - set(labels))
    present = [set(result.get("labels") or ()) for result in results]
    return share_frame({label: sum(label in labels_of for labels_of in present) for label in order}, len(results),
                        "label")


def value_frame(records: pd.DataFrame, units: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Regression: one row per (judged record, target): target, unit, value."""
    rows = []
    for result in _results(records[judged_mask(records)]):
        record_units = result.get("units") if isinstance(result.get("units"), Mapping) else {}
        for target, value in _named_numbers(result.get("values")).items():
            rows.append({"output": target, "unit": str((units or {}).get(target) or record_units.get(target, "")),
                         "value": value})
    return pd.DataFrame(rows, columns=["output", "unit", "value"])


def score_frame(records: pd.DataFrame) -> pd.DataFrame:
    """Anomaly: one row per judged record: score, alarm, threshold."""
    rows = [{"output": ANOMALY_SCORE_ROW, "unit": "", "value": float(result["score"]),
             "alarm": bool(result.get("alarm")), "threshold": result.get("threshold")}
            for result in _results(records[judged_mask(records)])
            if isinstance(result.get("score"), int | float) and not isinstance(result.get("score"), bool)]
    return pd.DataFrame(rows, columns=["output", "unit", "value", "alarm", "threshold"])


def value_statistics(values: pd.DataFrame) -> pd.DataFrame:
    """Per output: count, mean, p5, p50, p95 of a ``value_frame`` / ``score_frame``."""
    columns = ["output", "unit", "count", "mean", *(name for name, _ in _QUANTILES)]
    if values.empty:
        return pd.DataFrame(columns=columns)
    grouped = values.groupby(["output", "unit"], sort=False)["value"]
    table = grouped.agg(count="size", mean="mean")
    for name, quantile in _QUANTILES:
        table[name] = grouped.quantile(quantile)
    return table.reset_index()[columns]


@dataclass(frozen=True)
class PredictionSummary:
    """What one bundle's devices answered over a window, shaped by its task kind."""

    task: str
    records: int  # records in the window
    unjudged: int  # records the model could not judge (no result)
    shares: pd.DataFrame = field(default_factory=pd.DataFrame)  # classes, label positive rates, or alarm / no alarm
    values: pd.DataFrame = field(default_factory=pd.DataFrame)  # regression values, anomaly scores (long form)
    statistics: pd.DataFrame = field(default_factory=pd.DataFrame)  # per output: count, mean, quantiles
    alarm_rate: float | None = None  # anomaly: share of judged records with an alarm
    threshold: float | None = None  # anomaly: the contract's threshold (else the records')
    message: str | None = None  # why there is nothing to show

    @property
    def category(self) -> str:
        return "label" if self.task == TaskKind.MULTILABEL.value else "class"


def summarise(records: pd.DataFrame, bundle: BundleInfo | None = None) -> PredictionSummary:
    """The per-kind summary of ``records`` (all on one bundle)."""
    task = task_of(records, bundle)
    total = len(records)
    unjudged = int((~judged_mask(records)).sum()) if total else 0
    labels = tuple(bundle.labels) if bundle is not None else ()
    if task not in KNOWN_TASKS:
        return PredictionSummary(task, total, unjudged, message=(
            f"task kind '{task}' is not one this dashboard can chart ({', '.join(KNOWN_TASKS)}); "
            f"{total:,} records are counted but their results are not shown"))
    if total == unjudged:
        return PredictionSummary(task, total, unjudged, message=(
            "no answers to show: " + (f"all {total:,} records were inputs the model could not judge" if total else
                                      "no records in the window")))
    if task in CLASSIFIERS:
        return PredictionSummary(task, total, unjudged, shares=class_distribution(records, labels))
    if task == TaskKind.MULTILABEL.value:
        return PredictionSummary(task, total, unjudged, shares=label_positive_rates(records, labels))
    if task == TaskKind.REGRESSION.value:
        units = dict(zip(labels, bundle.manifest.output.decision.units, strict=True)) if bundle is not None else None
        values = value_frame(records, units)
        return PredictionSummary(task, total, unjudged, values=values, statistics=value_statistics(values))
    scores = score_frame(records)
    threshold = bundle.manifest.output.decision.threshold if bundle is not None else (
        float(scores["threshold"].dropna().iloc[-1]) if scores["threshold"].notna().any() else None)
    alarms = scores["alarm"].astype(bool)
    names = labels or ("no alarm", "alarm")
    shares = share_frame({names[0]: int((~alarms).sum()), names[1]: int(alarms.sum())}, len(scores), "class")
    return PredictionSummary(task, total, unjudged, shares=shares, values=scores.drop(columns=["alarm", "threshold"]),
                             statistics=value_statistics(scores),
                             alarm_rate=float(alarms.mean()) if len(alarms) else None, threshold=threshold)


def output_numbers(records: pd.DataFrame, task: str) -> pd.DataFrame:
    """Per judged record, its numeric outputs as drift rows (index = the records'): ``score <label>``
    (multilabel), ``value <target>`` (regression), ``anomaly score``; none for classifiers (their confidence
    is a row of its own)."""
    if "result" not in records:
        return pd.DataFrame(index=records.index)
    judged = records[judged_mask(records)]
    rows: list[dict[str, float]] = []
    for result in _results(judged):
        if task == TaskKind.MULTILABEL.value:
            rows.append({f"score {label}": value for label, value in _named_numbers(result.get("scores")).items()})
        elif task == TaskKind.REGRESSION.value:
            rows.append({f"value {target}": value for target, value in _named_numbers(result.get("values")).items()})
        elif task == TaskKind.ANOMALY.value:
            rows.append(_named_numbers({ANOMALY_SCORE_ROW: result.get("score")}))
        else:
            rows.append({})
    return pd.DataFrame.from_records(rows, index=judged.index).apply(pd.to_numeric)


def reference_outputs(profile: Mapping[str, Any] | None, task: str) -> dict[str, Any]:
    """The reference distributions of ``output_numbers``' rows in a bundle profile (empty when it has none)."""
    predictions = (profile or {}).get("predictions") or {}
    if task == TaskKind.ANOMALY.value:
        score = predictions.get("score")
        return {ANOMALY_SCORE_ROW: score} if isinstance(score, dict) else {}
    key, prefix = {TaskKind.MULTILABEL.value: ("scores", "score"), TaskKind.REGRESSION.value: ("values", "value")
                   }.get(task, (None, None))
    section = predictions.get(key) if key else None
    if not isinstance(section, dict):
        return {}
    return {f"{prefix} {name}": reference for name, reference in section.items() if isinstance(reference, dict)}


def categories(records: pd.DataFrame, task: str) -> list[str] | None:
    """The categorical answer drift compares (classes; an anomaly's normal/anomalous label), or None."""
    if task not in CLASSIFIERS and task != TaskKind.ANOMALY.value:
        return None
    return [str(value) for value in records.loc[judged_mask(records), "predicted_class"].dropna()]


def confidences(records: pd.DataFrame, task: str) -> list[float]:
    """Classifiers' confidences of judged records (other kinds have none)."""
    if task not in CLASSIFIERS or "confidence" not in records:
        return []
    return [float(value) for value in pd.to_numeric(records["confidence"], errors="coerce").dropna()]


def describe_result(task: object, result: object, flags: object = ()) -> str:
    """One record's answer in words, for tables: ``V (0.93)``, ``af, rbbb``, ``qt_interval 412 ms``,
    ``anomalous (score 2.3 ≥ 1)``, or ``not judged (input_not_finite)``."""
    if not isinstance(result, Mapping):
        unjudged = [flag for flag in (flags or ()) if str(flag).endswith("not_finite")]
        return f"not judged ({', '.join(unjudged)})" if unjudged else "—"
    if task == TaskKind.MULTILABEL.value:
        return ", ".join(map(str, result.get("labels") or ())) or "no label"
    if task == TaskKind.REGRESSION.value:
        units = result.get("units") if isinstance(result.get("units"), Mapping) else {}
        return ", ".join(f"{name} {value:.4g} {units.get(name, '')}".strip()
                         for name, value in _named_numbers(result.get("values")).items())
    if task == TaskKind.ANOMALY.value and "score" in result:
        sign = "≥" if result.get("alarm") else "<"
        return f"{result.get('class', '')} (score {float(result['score']):.4g} {sign} {result.get('threshold')})"
    if "class" in result:
        confidence = result.get("confidence")
        return f"{result['class']} ({confidence:.2f})" if isinstance(confidence, int | float) else str(result["class"])
    return f"{task} result"



def output_points(records: pd.DataFrame, task: str) -> pd.DataFrame:
    """Long form (time, output, value) of ``output_numbers`` for timelines."""
    numbers = output_numbers(records, task)
    if numbers.empty or not len(numbers.columns):
        return pd.DataFrame(columns=["time", "output", "value"])
    long = numbers.assign(time=records.loc[numbers.index, "time"]).melt(id_vars="time", var_name="output",
                                                                        value_name="value")
    return long.dropna(subset=["value"]).reset_index(drop=True)


def by_bundle(records: pd.DataFrame, catalog: BundleCatalog) -> list[tuple[str, BundleInfo | None, pd.DataFrame]]:
    """(name, published bundle or None, its records) per bundle the records ran, most records first."""
    if records.empty:
        return []
    groups = []
    for (bundle_id, sha256), group in records.groupby(["bundle_id", "bundle_sha256"], sort=False):
        bundle = catalog.match(str(bundle_id), str(sha256))
        groups.append((bundle.name if bundle else f"{bundle_id} (not published here)", bundle, group))
    return sorted(groups, key=lambda item: -len(item[2]))


def answer_texts(records: pd.DataFrame, task: str) -> list[str]:
    """``describe_result`` of every record (schema-1 records: their class and confidence)."""
    texts = []
    for row in records.itertuples():
        if isinstance(row.result, Mapping) or getattr(row, "task", None) is not None:
            texts.append(describe_result(row.task or task, row.result, row.quality_flags))
        else:
            texts.append(describe_result(task, {"class": row.predicted_class, "confidence": row.confidence}))
    return texts


def reference_statistics(profile: Mapping[str, Any] | None, task: str) -> pd.DataFrame:
    """The profile's numeric outputs of ``task`` (``reference_outputs``): mean, std and the 10/50/90th percentiles."""
    rows = []
    for name, reference in reference_outputs(profile, task).items():
        edges = reference.get("decile_edges") if isinstance(reference.get("decile_edges"), list) else []
        rows.append({"output": name, "mean": reference.get("mean"), "std": reference.get("std"),
                     "p10": edges[1] if len(edges) == 11 else None, "p50": edges[5] if len(edges) == 11 else None,
                     "p90": edges[9] if len(edges) == 11 else None})
    return pd.DataFrame(rows, columns=["output", "mean", "std", "p10", "p50", "p90"])


def reference_class_shares(profile: Mapping[str, Any] | None) -> pd.DataFrame:
    """The profile's class fractions (classifiers, anomaly labels) as a share frame."""
    fractions = ((profile or {}).get("predictions") or {}).get("class_fractions")
    if not isinstance(fractions, dict):
        return pd.DataFrame(columns=["class", "count", "share"])
    counts = ((profile or {}).get("predictions") or {}).get("class_counts") or {}
    return pd.DataFrame([{"class": str(name), "count": counts.get(name), "share": float(share)}
                         for name, share in fractions.items() if isinstance(share, int | float)],
                        columns=["class", "count", "share"])
