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
from runtime.contract import AnomalyRule, BinaryRule, MulticlassRule, MultilabelRule, RegressionRule
from runtime.leads import validated_leads
from runtime.real_data import RealDataStatus, RealDataValidation

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


def data_badge(bundle: BundleInfo) -> str:
    """What the Builds page badges about the bundle's data (its manifest's data section): ``synthetic data`` when
    the figures describe a simulation (ecg-arrhythmia), ``synthetic training data`` when real data was trained on
    with synthetic additions and every figure is measured on real data (ppg-quality's motion artefacts), else ''."""
    data = bundle.manifest.data
    if data.synthetic:
        return "synthetic data"
    if data.synthetic is False and data.provenance.get("synthetic_training_data"):
        return "synthetic training data"
    return ""


def real_data_note(bundle: BundleInfo) -> tuple[RealDataStatus, str]:
    """What the bundle's signed manifest says about validation on real data (``runtime.real_data``), and a line for
    the Builds page: a bundle NOT validated is one a device refuses, whatever its figures below say."""
    verdict = RealDataValidation.of(bundle.manifest)
    if verdict.status is RealDataStatus.VALIDATED:
        return verdict.status, f"Validated on real data: {verdict.reason}."
    if verdict.status is RealDataStatus.NOT_VALIDATED:
        return verdict.status, (f"NOT validated on real data: {verdict.reason}. A device refuses this bundle (only a "
                                "development run with --allow-unvalidated takes it); the figures below are not "
                                "evidence for patients.")
    return verdict.status, f"Real-data validation not stated: {verdict.reason}. A device runs it and logs so."


def leads_note(bundle: BundleInfo) -> str:
    """The leads the bundle was validated on, from its manifest's inputs (``InputSpec.leads``), and what the device
    does with another; '' when the bundle declares none."""
    leads = validated_leads(bundle.manifest.inputs)
    if not leads:
        return ""
    return (f"Validated on lead {' and '.join(leads)} only (the held-out recordings' lead): the device refuses a "
            "recording that names another lead, and one that names none runs unchecked unless --lead states it.")


def resampling_note(bundle: BundleInfo) -> str:
    """How the test figures' 95 % intervals were resampled (the data's ``test_resampling``), in words: whole groups
    of correlated samples (a record's beats, a recording's block of windows) or single samples; '' when the
    manifest predates it."""
    resampling = bundle.manifest.data.provenance.get("test_resampling")
    if not isinstance(resampling, dict):
        return ""
    if resampling.get("unit") == "sample":
        return f"95 % CIs resample the {resampling.get('samples')} test samples one by one (taken as independent)."
    return (f"95 % CIs resample {resampling.get('groups')} whole groups of the {resampling.get('samples')} test "
            f"samples (one group: {resampling.get('unit')}); a metric whose samples lie in one group has no interval.")


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


def decision_rule_frame(bundle: BundleInfo) -> pd.DataFrame:
    """How the device decides, from the contract's output: one (setting, value) row per part of the rule."""
    output = bundle.manifest.output
    rule = output.decision
    rows = [("task", output.task.value), ("graph outputs", ", ".join(output.names))]
    if output.semantics:
        rows.append(("meaning", output.semantics))
    if isinstance(rule, MulticlassRule):
        rows.append(("decision", f"the most probable of {', '.join(output.labels)}"))
        rows.append(("low confidence below", "never flagged" if rule.low_confidence_below is None
                     else f"{rule.low_confidence_below:g}"))
    elif isinstance(rule, BinaryRule):
        rows.append(("decision", f"{output.labels[1]} when P({output.labels[1]}) ≥ {rule.threshold:g}, else "
                                 f"{output.labels[0]}"))
        rows.append(("threshold chosen by", rule.chosen_by))
    elif isinstance(rule, MultilabelRule):
        rows += [(f"threshold {label}", f"{threshold:g}") for label, threshold in
                 zip(output.labels, rule.thresholds, strict=True)]
        rows.append(("thresholds chosen by", rule.chosen_by))
    elif isinstance(rule, RegressionRule):
        rows += [(f"unit of {target}", unit) for target, unit in zip(output.labels, rule.units, strict=True)]
    elif isinstance(rule, AnomalyRule):
        rows.append(("decision", f"{output.labels[1]} (alarm) when score ≥ {rule.threshold:g}, "
                                 f"else {output.labels[0]}"))
        rows.append(("target false-alarm rate", f"{rule.target_false_alarm_rate:.2%}"))
        rows.append(("threshold chosen by", rule.chosen_by))
    return pd.DataFrame(rows, columns=["setting", "value"])


def has_confusion_matrices(metrics: dict[str, Any]) -> bool:
    """Whether the evaluate artefact's metrics are a classifier's (with confusion matrices)."""
    return any(isinstance(entry, dict) and entry.get("confusion_matrix") for entry in metrics.values())


def scalar_metrics_frame(metrics: dict[str, Any]) -> pd.DataFrame:
    """Per variant: every top-level number or ``{value, low, high}`` estimate of its metrics, formatted."""
    rows = []
    for variant, entry in metrics.items():
        if not isinstance(entry, dict):
            continue
        row: dict[str, Any] = {"variant": variant}
        for key, value in entry.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                row[key] = f"{value:.4g}"
            elif isinstance(value, dict) and isinstance(value.get("value"), int | float):
                row[key] = format_interval(*_interval(value))
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- recording-level validation (ECG bundles)

RECORD_FIGURES = {"qrs_sensitivity": "QRS Se (%)", "qrs_positive_predictivity": "QRS +P (%)",
                  "v_sensitivity": "V Se (%)", "v_positive_predictivity": "V +P (%)",
                  "v_false_positive_rate": "V FPR (%)"}


def _percent(value: Any, digits: int = 1) -> str:
    return "—" if not isinstance(value, int | float) or isinstance(value, bool) else f"{100 * value:.{digits}f}"


def _record_row(row: dict[str, Any], unclassified: Any) -> dict[str, Any]:
    counts = {key: row.get(key) or 0 for key in ("qrs_true_positives", "qrs_false_negatives", "v_true_positives",
                                                 "v_false_negatives", "v_false_positives")}
    skipped = unclassified.get("beats") if isinstance(unclassified, dict) else unclassified
    v_counts = (counts["v_true_positives"], counts["v_false_negatives"], counts["v_false_positives"])
    return {
        "record": str(row.get("record")),
        "beats": counts["qrs_true_positives"] + counts["qrs_false_negatives"],
        "V": counts["v_true_positives"] + counts["v_false_negatives"],
        **{label: _percent(row.get(key), 2 if key.startswith("qrs") else 1) for key, label in RECORD_FIGURES.items()},
        "V TP / FN / FP": " / ".join(str(count) for count in v_counts),
        "unclassified": skipped,
    }


def recording_validation(bundle: BundleInfo) -> dict[str, Any] | None:
    """The manifest's ``recording_validation`` section, or None for a bundle validated on its test split only."""
    section = bundle.manifest.recording_validation
    return section if isinstance(section, dict) and isinstance(section.get("variants"), dict) else None


def recording_records_frame(bundle: BundleInfo, variant: str | None = None) -> pd.DataFrame:
    """Per held-out record (and the gross row) for ``variant`` (default: the shipped one): beats, V, QRS Se/+P,
    V Se/+P/FPR in %, V TP/FN/FP and the beats the stream left unclassified."""
    section = recording_validation(bundle)
    if section is None:
        return pd.DataFrame(columns=["record"])
    result = section["variants"].get(variant or bundle.shipped_variant) or {}
    rows = [_record_row(row, row.get("unclassified")) for row in result.get("per_record") or []]
    if isinstance(result.get("gross"), dict):
        rows.append(_record_row({**result["gross"], "record": "gross"}, result.get("unclassified")))
    return pd.DataFrame(rows)


def recording_variants_frame(bundle: BundleInfo) -> pd.DataFrame:
    """Per variant: its threshold, the gross figures with their bootstrap intervals, the healthy false PVC rate and
    the recording gate's verdict."""
    section = recording_validation(bundle)
    if section is None:
        return pd.DataFrame(columns=["variant"])
    rows = []
    for name, result in section["variants"].items():
        gross, intervals = result.get("gross") or {}, result.get("intervals") or {}
        healthy = result.get("healthy") or {}
        verdict = result.get("verdict") or {}
        row: dict[str, Any] = {"variant": name, "shipped": name == bundle.shipped_variant,
                               "threshold": result.get("threshold")}
        for key, label in RECORD_FIGURES.items():
            interval = intervals.get(key) if isinstance(intervals.get(key), list) else None
            low, high = (interval or [None, None])[:2]
            row[label.replace(" (%)", " [95 % CI]")] = format_interval(gross.get(key), low, high)
        row["healthy false PVC (%)"] = _percent(healthy.get("false_pvc_rate"), 2)
        row["recording gate"] = "pass" if verdict.get("passed") else "FAIL"
        row["verdict"] = verdict.get("reason", "")
        rows.append(row)
    return pd.DataFrame(rows)


def healthy_frame(bundle: BundleInfo, variant: str | None = None) -> tuple[pd.DataFrame, str | None]:
    """Per healthy recording: rate, beats, classified, called V, false PVC rate; or (empty, why there are none)."""
    section = recording_validation(bundle)
    result = (section or {}).get("variants", {}).get(variant or bundle.shipped_variant) or {}
    healthy = result.get("healthy")
    if not isinstance(healthy, dict):
        return pd.DataFrame(), "no healthy recordings were run in this build"
    if not healthy.get("available"):
        return pd.DataFrame(), str(healthy.get("note"))
    rows = []
    for name, entry in (healthy.get("files") or {}).items():
        rows.append({"file": name, "rate (Hz)": entry.get("sample_rate_hz"), "beats": entry.get("beats"),
                     "classified": entry.get("classified"), "called V": entry.get("called_v"),
                     "false PVC rate (%)": _percent(entry.get("false_pvc_rate"), 2),
                     "note": f"skipped: {entry['skipped']}" if "skipped" in entry else ""})
    return pd.DataFrame(rows), None


SHIPPED_DESIGN = "gated-template+rr"  # the design the ecg-pvc scenario ships (pipeline.benchmark.ecg_pvc_loro)


def loro_frame(path: Path, design: str = SHIPPED_DESIGN) -> tuple[pd.DataFrame, str]:
    """The leave-one-record-out table (``make validate-ecg``: benchmarks/results/ecg_pvc_loro.json) of ``design``
    (else the file's first): one row per held-out record and the pooled row, and the design's description;
    ``DataUnavailableError`` when the file is missing or unreadable."""
    document = read_json_object(path, "the leave-one-record-out results (make validate-ecg)")
    variants = document.get("variants")
    if not isinstance(variants, dict) or not variants:
        raise DataUnavailableError(f"{path} lists no design")
    name = design if design in variants else next(iter(variants))
    result = variants[name]
    result = result if isinstance(result, dict) else {}
    folds = result.get("folds")
    parts = [*(folds if isinstance(folds, list) else [None]), result.get("pooled")]
    if not all(isinstance(part, dict) and isinstance(part.get("counts", {}), dict)
               and isinstance(part.get("rates", {}), dict) for part in parts):
        raise DataUnavailableError(f"{path}: design {name!r} does not hold folds and a pooled row of counts and rates "
                                   "as the leave-one-record-out benchmark writes them — run make validate-ecg again")
    rows = [_record_row({**fold.get("counts", {}), **fold.get("rates", {})}, None) for fold in folds]
    pooled = parts[-1]
    rows.append(_record_row({**pooled.get("counts", {}), **pooled.get("rates", {}), "record": "pooled"}, None))
    frame = pd.DataFrame(rows).drop(columns=["unclassified"])
    seeds = result.get("seeds")
    if not isinstance(seeds, list) or len(seeds) < 2:
        return frame, f"{name}: {result.get('description', '')}"
    # counts summed over the seeds' runs of the same beats: each record's beats once, each seed's V Se and +P
    frame["beats"] //= len(seeds)
    frame["V"] //= len(seeds)
    frame = frame.rename(columns={"V TP / FN / FP": f"V TP / FN / FP (sum of {len(seeds)} seeds)"})
    for key, label in (("v_sensitivity", "V Se by seed (%)"), ("v_positive_predictivity", "V +P by seed (%)")):
        frame[label] = [" / ".join(_percent(value) for value in (part.get("by_seed") or {}).get(key, []))
                        for part in parts]
    seed_text = ", ".join(str(seed) for seed in seeds)
    return frame, (f"{name}: {result.get('description', '')} — training seeds {seed_text}: rates of the counts "
                   "summed over the seeds, and each seed's V Se and V +P (one seed's table is one draw)")
