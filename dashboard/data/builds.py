"""Build results for the Builds page: variant tables, clinical metrics, confusion matrices, training curves.

The bundle manifest carries every variant's size, latency, macro-F1/accuracy/sensitivity with CIs and
its gate verdict. The artefact cache adds the full clinical metrics (``evaluate/<id>/clinical_metrics.json``)
and the training history (``train/<id>/history.json``, or ``import/<id>/`` for user models).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from dashboard.data.bundles import BundleInfo
from dashboard.data.files import DataUnavailableError, read_json_object

MODEL_STAGES = ("train", "import")  # where the lineage's model id may live


def _interval(entry: Any) -> tuple[float | None, float | None, float | None]:
    if not isinstance(entry, dict):
        return None, None, None
    return entry.get("value"), entry.get("low"), entry.get("high")


def format_interval(value: float | None, low: float | None, high: float | None, digits: int = 3) -> str:
    """``0.872 [0.802, 0.934]``, or an em dash when there is no value."""
    if value is None:
        return "—"
    if low is None or high is None:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _how_made(summary: dict) -> str:
    """The measured choices behind a variant: int8 settings, fp32 convolution layout."""
    parts = []
    quantization = summary.get("quantization")
    if isinstance(quantization, dict) and quantization.get("label"):
        parts.append(f"int8 settings: {quantization['label']} (best of {quantization.get('candidates_measured', '?')})")
    layout = summary.get("conv_layout")
    if isinstance(layout, dict) and layout.get("chosen"):
        parts.append(f"layout: {layout['chosen']}")
    return "; ".join(parts)


def variants_frame(bundle: BundleInfo) -> pd.DataFrame:
    """One row per variant: size, latency, macro-F1 and accuracy with CIs, gate verdict, shipped flag."""
    rows = []
    for name, summary in bundle.manifest.variants.items():
        latency = summary.get("latency") or {}
        gate = summary.get("gate") or {}
        macro_f1 = _interval(summary.get("macro_f1"))
        accuracy = _interval(summary.get("accuracy"))
        rows.append({
            "variant": name,
            "shipped": name == bundle.shipped_variant,
            "size_kib": (summary.get("size_bytes") or 0) / 1024,
            "latency_p50_us": latency.get("median_of_windows_us"),  # the headline p50, as in the bench
            "latency_p90_us": latency.get("p90_us"),
            "ratio_to_fp32": latency.get("ratio_to_fp32"),
            "how_made": _how_made(summary),
            "macro_f1": macro_f1[0],
            "macro_f1_low": macro_f1[1],
            "macro_f1_high": macro_f1[2],
            "macro_f1_ci": format_interval(*macro_f1),
            "accuracy_ci": format_interval(*accuracy),
            "gate": "pass" if gate.get("passed") else "FAIL",
            "gate_reason": gate.get("reason", ""),
        })
    return pd.DataFrame(rows)


def sensitivity_frame(bundle: BundleInfo) -> pd.DataFrame:
    """Per variant and class: sensitivity with its CI (from the manifest)."""
    rows = []
    variants = bundle.manifest.variants
    for name, summary in variants.items():
        for label, entry in (summary.get("sensitivity") or {}).items():
            rows.append({"variant": name, "class": label, "sensitivity": format_interval(*_interval(entry))})
    if not rows:
        return pd.DataFrame(columns=["variant"])
    table = pd.DataFrame(rows).pivot(index="variant", columns="class", values="sensitivity")
    labels = [label for label in bundle.labels if label in table.columns] or list(table.columns)
    order = [name for name in variants if name in table.index]
    return table.reindex(index=order, columns=labels).reset_index().rename_axis(columns=None)


def pareto_variants(frame: pd.DataFrame) -> set[str]:
    """Variants no other variant beats on both latency (lower) and macro-F1 (higher)."""
    usable = frame.dropna(subset=["latency_p50_us", "macro_f1"])
    front: set[str] = set()
    for row in usable.itertuples():
        dominated = (
            (usable["latency_p50_us"] <= row.latency_p50_us)
            & (usable["macro_f1"] >= row.macro_f1)
            & ((usable["latency_p50_us"] < row.latency_p50_us) | (usable["macro_f1"] > row.macro_f1))
        ).any()
        if not dominated:
            front.add(row.variant)
    return front


def load_clinical_metrics(artifacts: Path, bundle: BundleInfo) -> dict[str, Any]:
    """``{variant: clinical metrics}`` of the bundle's evaluate artefact, or ``DataUnavailableError``."""
    evaluate_id = bundle.lineage.get("evaluate")
    if not evaluate_id:
        raise DataUnavailableError(f"bundle {bundle.name} names no evaluate artefact in its lineage")
    return read_json_object(
        artifacts / "evaluate" / evaluate_id / "clinical_metrics.json", f"the clinical metrics of {bundle.name}"
    )


def confusion_frame(metrics: dict[str, Any]) -> pd.DataFrame:
    """Long form (true, predicted, count, row share) of one variant's confusion matrix."""
    names = metrics.get("class_names") or []
    matrix = metrics.get("confusion_matrix") or []
    rows = []
    for true_index, counts in enumerate(matrix):
        total = sum(counts) or 1
        for predicted_index, count in enumerate(counts):
            rows.append({
                "true": names[true_index] if true_index < len(names) else str(true_index),
                "predicted": names[predicted_index] if predicted_index < len(names) else str(predicted_index),
                "count": int(count),
                "share": count / total,
            })
    return pd.DataFrame(rows)


def per_class_frame(metrics: dict[str, Any]) -> pd.DataFrame:
    """One row per class: support and every per-class metric with its CI."""
    rows = []
    for entry in metrics.get("per_class") or []:
        row = {"class": entry.get("name"), "support": entry.get("support")}
        for key in ("sensitivity", "specificity", "ppv", "f1", "auroc"):
            row[key] = format_interval(*_interval(entry.get(key)))
        rows.append(row)
    return pd.DataFrame(rows)


def load_history(artifacts: Path, bundle: BundleInfo) -> pd.DataFrame:
    """Training curves in long form (epoch, metric, split, value), or ``DataUnavailableError``."""
    model_id = bundle.lineage.get("model")
    if not model_id:
        raise DataUnavailableError(f"bundle {bundle.name} names no model artefact in its lineage")
    folders = [artifacts / stage / model_id for stage in MODEL_STAGES]
    folder = next((candidate for candidate in folders if candidate.is_dir()), None)
    if folder is None:
        raise DataUnavailableError(
            f"the model artefact {model_id} of {bundle.name} is not in {artifacts}",
            fix="point --artifacts at the cache the bundle was built with",
        )
    if not (folder / "history.json").exists() and folder.parent.name == "import":
        raise DataUnavailableError(f"{bundle.name} was built from an imported model: there is no training history")
    history = read_json_object(folder / "history.json", f"the training history of {bundle.name}")
    rows = []
    for key, values in history.items():
        split = "validation" if key.startswith("val_") else "train"
        metric = key.removeprefix("val_")
        for epoch, value in enumerate(values if isinstance(values, list) else [], start=1):
            rows.append({"epoch": epoch, "metric": metric, "split": split, "value": value})
    return pd.DataFrame(rows)
