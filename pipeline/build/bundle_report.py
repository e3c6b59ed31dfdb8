"""The human ``report.md`` of a bundle and the build's closing summary table."""

from __future__ import annotations

from collections.abc import Mapping

from pipeline.build.input_domain import domain_line
from pipeline.clinical.anomaly_metrics import AlarmAgreement, AnomalyMetrics
from pipeline.clinical.evidence import EvidenceRule
from pipeline.clinical.markdown import markdown_cell
from pipeline.clinical.metrics import ClinicalMetrics
from pipeline.clinical.regression_metrics import RegressionMetrics
from pipeline.clinical.task_evaluation import TaskMetrics
from pipeline.clinical.thresholded_metrics import BinaryMetrics, MultilabelMetrics
from runtime.contract import BundleManifest, InputSpec, OutputSpec, TaskKind
from runtime.cpu import FULL_PRECISION_VARIANTS


def _estimate(value: dict | None) -> str:
    if not value or value.get("value") is None:
        return "n/a"
    low, high = value.get("low"), value.get("high")
    interval = f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else ""
    return f"{value['value']:.3f}{interval}"


def summary_table(variants: Mapping[str, dict], shipped: str) -> str:
    """Markdown table: variant × size × latency × the kind's headline metric (macro-F1, MAE, AUROC, …) × gate."""
    first = next(iter(variants.values()), {})
    metric = first.get("headline", {}).get("name", "macro-F1")
    lines = [
        f"| variant | size (KiB) | batch-1 × fp32 | batch-1 p50 (µs) | {metric} [95 % CI] | gate | shipped |",
        "|---|---:|---:|---:|---|---|---|",
    ]
    for name, variant in variants.items():
        verdict = "pass" if variant["gate"]["passed"] else "FAIL"
        ratio = variant["latency"].get("ratio_to_fp32")
        lines.append(
            f"| {name} | {variant['size_bytes'] / 1024:.1f} | {'–' if ratio is None else f'{ratio:.2f}'} | "
            f"{variant['latency']['median_of_windows_us']:.1f} | "
            f"{_estimate(variant.get('headline') or variant.get('macro_f1'))} | {verdict} | "
            f"{'✓' if name == shipped else ''} |"
        )
    return "\n".join(lines)


def _machine_lines(machine: dict | None, variant: str) -> list[str]:
    if not machine:
        return []
    portability = (
        "`make cpu-check` compares this bundle's answers on emulated SSE4.2-only and AVX2 x86 and Arm "
        "Cortex-A53/A72/A76 CPUs with this machine's (the shipped scenarios' fp32 bundles: the same decisions on all "
        "of them)." if variant in FULL_PRECISION_VARIANTS else
        f"The shipped {variant} variant's answers depend on the CPU's kernels (`make cpu-check` measured changed "
        "decisions on other CPUs for ecg-pvc's fp16 and int8 variants): its figures hold for this CPU class; a device "
        "whose CPU differs in those features warns at every load.")
    return [f"Latencies, the int8 settings and the convolution layout were measured on: {machine['cpu_model']} "
            f"({machine['architecture']}; {', '.join(machine['isa_flags']) or 'no extended ISA flags'}; "
            f"{machine['usable_cores']} usable cores; onnxruntime {machine['onnxruntime']}). A device with a "
            f"different CPU may rank the variants differently: re-run the build on the device class. {portability}",
            ""]


def _training_machine_lines(training: dict) -> list[str]:
    machine = training.get("machine") if isinstance(training, dict) else None
    if not isinstance(machine, dict):
        return []
    return [f"The model was trained on: {machine.get('cpu_model')} ({machine.get('architecture')}; "
            f"{', '.join(machine.get('isa_flags') or []) or 'no extended ISA flags'}; TensorFlow "
            f"{machine.get('tensorflow')}). Training repeats on one machine, not across CPUs: a build elsewhere "
            "trains another model, with figures of its own.", ""]


def _layout_lines(layout: dict | None) -> list[str]:
    if not layout:
        return []
    return [f"fp32 convolution layout: {layout['chosen']} — {layout['reason']} ({layout['rule']}).", ""]


def _quantization_lines(quantization: dict | None) -> list[str]:
    if not quantization:
        return []
    return [f"int8-static settings: {quantization['label']} — {quantization['rule']}, among "
            f"{quantization['candidates_measured']} measured candidates, checked on the {quantization['checked_on']}.",
            ""]


THIN_EVIDENCE = EvidenceRule().min_examples  # test examples under which a class's figures are called indicative


def evidence_lines(evidence: dict | None) -> list[str]:
    """The evidence rule's verdict (pipeline/clinical/evidence.py): a box when it failed (the bundle exists only
    because the rule was not enforced), and the per-class table either way."""
    if not evidence:
        return []
    lines = []
    if not evidence["passed"]:
        lines += [f"> **NOT VALIDATED ON REAL DATA — not for clinical use.** {evidence['summary']}. The evidence rule "
                  f"({evidence['rule']}) was not enforced for this build (a tiny smoke build, or "
                  "`--allow-unvalidated`): no device should give these classes to a patient.", ""]
    unverified = (" Sources not recorded for this data: independence unverified." if not evidence["sources_recorded"]
                  else " Training sources not recorded for this data: independence of training unverified."
                  if evidence.get("training_sources_recorded") is False else "")
    lines += ["## Real test evidence per class", "", f"Rule: {evidence['rule']}.{unverified}", ""]
    if evidence.get("concentration"):
        lines += [f"> **Evidence concentrated in one source.** {evidence['concentration']}: the class passes on its "
                  "source count, but its test figures describe mostly that one recording or subject, not the "
                  "population. Read its sensitivity as that source's.", ""]
    lines += ["| class | real test examples | sources | independent of training | largest source | "
              "effective sources | verdict |", "|---|---:|---:|---:|---:|---:|---|"]
    for label, item in evidence["classes"].items():
        verdict = "passes" if item["passed"] else "; ".join(item["shortfalls"])
        share, effective = item.get("largest_source_share"), item.get("effective_sources")
        lines.append(f"| {markdown_cell(label)} | {item['examples']} | {_count(item['sources'])} | "
                     f"{_count(item['independent_sources'])} | {'—' if share is None else f'{share:.0%}'} | "
                     f"{'—' if effective is None else f'{effective:.1f}'} | {markdown_cell(verdict)} |")
    return [*lines, ""]


def _count(value: int | None) -> str:
    return "—" if value is None else str(value)


def thin_evidence_lines(metrics) -> list[str]:
    """A warning box naming every class (or label) with fewer than ``THIN_EVIDENCE`` test examples: its figures
    rest on a handful of samples, whatever the point estimates say."""
    inner = getattr(metrics, "metrics", None)  # a binary result keeps its classes on its thresholded metrics
    items = (getattr(metrics, "per_class", None) or getattr(metrics, "per_label", None)
             or getattr(inner, "per_class", None) or ())
    thin = [item for item in items if item.support < THIN_EVIDENCE]
    if not thin:
        return []
    described = "; ".join(f"{item.name}: {item.support} test example{'s' * (item.support != 1)}, sensitivity "
                          f"{_estimate(item.sensitivity.to_dict())}" for item in thin)
    return [f"> **Thin evidence.** {described}. Under {THIN_EVIDENCE} test examples a class's figures are "
            "indicative only (see the intervals): validate it on more real recordings before relying on it.", ""]


def _class_table(metrics: ClinicalMetrics) -> list[str]:
    lines = [
        "| class | support | sensitivity | specificity | PPV | F1 | AUROC |",
        "|---|---:|---|---|---|---|---|",
    ]
    for item in metrics.per_class:
        cells = [
            _estimate(getattr(item, key).to_dict()) for key in ("sensitivity", "specificity", "ppv", "f1", "auroc")
        ]
        lines.append(f"| {item.name} | {item.support} | " + " | ".join(cells) + " |")
    return lines


def _confusion(metrics: ClinicalMetrics) -> list[str]:
    names = metrics.class_names
    lines = ["| true \\ predicted | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for name, row in zip(names, metrics.confusion_matrix):
        lines.append(f"| {name} | " + " | ".join(str(value) for value in row) + " |")
    return lines


def _classification_lines(metrics: ClinicalMetrics) -> list[str]:
    return [
        f"Samples: {metrics.samples}; accuracy {_estimate(metrics.accuracy.to_dict())}; "
        f"macro-F1 {_estimate(metrics.macro_f1.to_dict())}.",
        "",
        *_class_table(metrics),
        "",
        "Confusion matrix:",
        "",
        *_confusion(metrics),
    ]


def _multilabel_lines(metrics: MultilabelMetrics) -> list[str]:
    lines = [f"Samples: {metrics.samples}; macro-F1 {_estimate(metrics.macro_f1.to_dict())}.", "",
             "| label | threshold | support | sensitivity | specificity | PPV | F1 | AUROC |",
             "|---|---:|---:|---|---|---|---|---|"]
    for item, point in zip(metrics.per_label, metrics.operating_points, strict=True):
        cells = [_estimate(getattr(item, key).to_dict()) for key in ("sensitivity", "specificity", "ppv", "f1",
                                                                     "auroc")]
        lines.append(f"| {item.name} | {point.threshold:.4g} | {item.support} | " + " | ".join(cells) + " |")
    return lines


def _regression_lines(metrics: RegressionMetrics) -> list[str]:
    lines = [f"Samples: {metrics.samples}.", "",
             "| output | unit | MAE | RMSE | bias | lower limit of agreement | upper limit of agreement |",
             "|---|---|---|---|---|---|---|"]
    for output in metrics.outputs:
        cells = [_estimate(getattr(output, key).to_dict()) for key in ("mae", "rmse", "bias", "lower_limit",
                                                                       "upper_limit")]
        lines.append(f"| {output.name} | {output.unit} | " + " | ".join(cells) + " |")
    return lines


def _anomaly_lines(metrics: AnomalyMetrics | AlarmAgreement) -> list[str]:
    if isinstance(metrics, AnomalyMetrics):
        threshold = metrics.alarm_threshold
        return [f"Samples: {metrics.samples} ({metrics.anomalies} anomalies); alarm threshold "
                f"{threshold.threshold:.6g} ({threshold.rule}).", "",
                f"AUROC {_estimate(metrics.auroc.to_dict())}; sensitivity {_estimate(metrics.sensitivity.to_dict())}; "
                f"false-alarm rate {_estimate(metrics.false_alarm_rate.to_dict())}."]
    return [f"No labelled anomalies: the test inputs are taken as normal held-out data ({metrics.samples} samples); "
            f"alarm threshold {metrics.candidate_threshold.threshold:.6g}.", "",
            f"Alarm agreement with fp32 {_estimate(metrics.agreement.to_dict())}; false-alarm rate "
            f"{_estimate(metrics.candidate_false_alarm_rate.to_dict())} (fp32 "
            f"{_estimate(metrics.reference_false_alarm_rate.to_dict())})."]


def metrics_lines(metrics: TaskMetrics) -> list[str]:
    """The shipped variant's clinical metrics, by task kind."""
    if isinstance(metrics, BinaryMetrics):
        point = metrics.operating_point
        return [f"Operating threshold {point.threshold:.4g}: {point.rule} (sensitivity {point.sensitivity:.3f}, "
                f"specificity {point.specificity:.3f} where it was chosen).", "",
                *_classification_lines(metrics.metrics)]
    if isinstance(metrics, MultilabelMetrics):
        return _multilabel_lines(metrics)
    if isinstance(metrics, RegressionMetrics):
        return _regression_lines(metrics)
    if isinstance(metrics, AnomalyMetrics | AlarmAgreement):
        return _anomaly_lines(metrics)
    return _classification_lines(metrics)


def _parity_line(manifest: BundleManifest) -> str:
    parity = manifest.export.parity
    agreement = parity.get("argmax_agreement")
    label = "argmax agreement" if manifest.output.task is TaskKind.MULTICLASS else "decision (> 0.5) agreement"
    decided = f"{label} {agreement:.3f}" if agreement is not None else "no decision to compare (values only)"
    return (f"Parity with Keras: max |Δ| {parity['max_abs_diff']:.2e} over {parity['samples']} test inputs at batch "
            f"sizes {parity['batch_sizes']}; {decided}. Opset {manifest.export.opset}.")


def _data_lines(manifest: BundleManifest) -> list[str]:
    balance = manifest.data.class_balance
    if not balance:
        return ["| split | samples |", "|---|---:|",
                *[f"| {split} | {count} |" for split, count in manifest.data.sizes.items()]]
    labels = list(manifest.output.labels)
    lines = ["| split | " + " | ".join(labels) + " | total |", "|---" * (len(labels) + 2) + "|"]
    for split, counts_by_label in balance.items():
        counts = [counts_by_label.get(label, 0) for label in labels]
        total = manifest.data.sizes.get(split, sum(counts)) if manifest.output.task is TaskKind.MULTILABEL \
            else sum(counts)
        lines.append(f"| {split} | " + " | ".join(str(count) for count in counts) + f" | {total} |")
    return lines


def _input_line(spec: InputSpec) -> str:
    line = f"- input `{spec.name}` shape {list(spec.shape)} {spec.dtype} ({spec.feature_kind.value}"
    if spec.sample_rate_hz is not None:
        line += f", {spec.sample_rate_hz:g} Hz"
    if spec.is_beat_window:
        line += f", {spec.window_before_s:g} s before and {spec.window_after_s:g} s after the R-peak"
    line += ")"
    if spec.leads:
        line += (f"; validated on lead {' and '.join(spec.leads)} (the held-out recordings' lead): the device refuses "
                 "a recording that names another lead")
    return line


def _decision_line(output: OutputSpec) -> str:
    """The decision rule the device applies, in words."""
    rule = output.decision
    if output.task is TaskKind.MULTICLASS:
        low = rule.low_confidence_below
        return "argmax over the labels" + (f"; flagged low-confidence under {low:g}" if low is not None else "")
    if output.task is TaskKind.BINARY:
        return f"{output.labels[1]} when P ≥ {rule.threshold:g} ({rule.chosen_by})"
    if output.task is TaskKind.MULTILABEL:
        pairs = ", ".join(f"{label} ≥ {value:g}" for label, value in zip(output.labels, rule.thresholds, strict=True))
        return f"each label present at its threshold: {pairs} ({rule.chosen_by})"
    if output.task is TaskKind.REGRESSION:
        return "values in " + ", ".join(f"{label} [{unit}]" for label, unit in zip(output.labels, rule.units,
                                                                                     strict=True))
    return (f"{output.labels[1]} when the score ≥ {rule.threshold:g} (target false-alarm rate "
            f"{rule.target_false_alarm_rate:g}; {rule.chosen_by})")


def _resampling_lines(resampling: dict | None) -> list[str]:
    """How the intervals below were resampled: whole groups of correlated samples, or samples taken as
    independent (a manifest from before this was recorded says nothing)."""
    if not resampling:
        return []
    if resampling.get("unit") == "sample":
        return [f"Intervals: percentile bootstrap over the {resampling['samples']} test samples, each drawn alone "
                "(taken as independent).", ""]
    return [f"Intervals: percentile bootstrap over {resampling['groups']} whole groups of the {resampling['samples']} "
            f"test samples (one group: {resampling['unit']}); samples of one group are correlated, so they are "
            "drawn together and the intervals are wider than a per-sample bootstrap would give. A figure shown "
            "without an interval has all its samples in one group: this test split cannot say how uncertain it is.",
            ""]


def _test_split_note(manifest: BundleManifest) -> list[str]:
    if not manifest.recording_validation:
        return []
    return ["Beat level: the test split is every beat the runtime's detector found in the held-out records, cut and "
            "derived in batch exactly as the stream does (no warm-up, quality flags ignored); the figures that gate "
            "the device are the recording-level ones above.", ""]


def _synthetic(flag: bool | None) -> str:
    return "unknown (the user's own data)" if flag is None else ("yes" if flag else "no")


GROSS_LABELS = {"qrs_sensitivity": "QRS Se", "qrs_positive_predictivity": "QRS +P", "v_sensitivity": "V Se",
                "v_positive_predictivity": "V +P", "v_false_positive_rate": "V FPR"}


def _percent(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}"


def _rate_text(value: float | None) -> str:
    return "– (no beat classified)" if value is None else f"{_percent(value, 2)} %"


def _interval_text(value: float | None, interval: list | None) -> str:
    if value is None:
        return "–"
    if not interval:
        return f"{_percent(value)} %"
    return f"{_percent(value)} % [{_percent(interval[0])}, {_percent(interval[1])}]"


def _record_row(row: dict) -> str:
    beats = row["qrs_true_positives"] + row["qrs_false_negatives"]
    v_beats = row["v_true_positives"] + row["v_false_negatives"]
    skipped = row.get("unclassified")
    unclassified = "" if skipped is None else str(skipped["beats"] if isinstance(skipped, dict) else skipped)
    return (f"| {row['record']} | {beats} | {v_beats} | {_percent(row['qrs_sensitivity'], 2)} | "
            f"{_percent(row['qrs_positive_predictivity'], 2)} | {_percent(row['v_sensitivity'])} | "
            f"{_percent(row['v_positive_predictivity'])} | {_percent(row['v_false_positive_rate'], 2)} | "
            f"{row['v_true_positives']} / {row['v_false_negatives']} / {row['v_false_positives']} | {unclassified} |")


def per_record_table(result: dict) -> list[str]:
    """One row per held-out record and the gross row (beats, V, QRS Se/+P, V Se/+P/FPR in %, V TP/FN/FP)."""
    lines = ["| record | beats | V | QRS Se | QRS +P | V Se | V +P | V FPR | V TP / FN / FP | unclassified |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [_record_row(row) for row in result["per_record"]]
    gross = dict(result["gross"], record="**gross**", unclassified=result.get("unclassified"))
    return [*lines, _record_row(gross)]


def _healthy_lines(healthy: dict | None) -> list[str]:
    if healthy is None:
        return ["Healthy recordings: not run in this build."]
    if not healthy.get("available"):
        return [f"Healthy recordings: {healthy.get('note')}."]
    lines = [f"False PVC rate on healthy recordings ({healthy['source']}): **{_percent(healthy['false_pvc_rate'], 2)} "
             f"%** ({healthy['called_v']} of {healthy['classified']} classified beats called V).", "",
             "| file | rate (Hz) | beats | classified | called V | false PVC rate |", "|---|---:|---:|---:|---:|---:|"]
    for name, entry in healthy["files"].items():
        if "skipped" in entry:
            lines.append(f"| {name} | – | – | – | – | skipped: {entry['skipped']} |")
        else:
            lines.append(f"| {name} | {entry['sample_rate_hz']:g} | {entry['beats']} | {entry['classified']} | "
                         f"{entry['called_v']} | {_rate_text(entry['false_pvc_rate'])} |")
    return lines


def _variants_line(name: str, entry: dict) -> str:
    figures, intervals = entry["figures"], entry["intervals"]
    threshold = entry.get("threshold")
    return (f"| {name} | {'–' if threshold is None else f'{threshold:.3f}'} | "
            + " | ".join(_interval_text(figures[key], intervals.get(key)) for key in
                         ("qrs_sensitivity", "qrs_positive_predictivity", "v_sensitivity", "v_positive_predictivity"))
            + f" | {_percent(figures['healthy_false_pvc_rate'], 2)} | "
            + ("pass" if entry["verdict"]["passed"] else "FAIL") + " |")


def recording_lines(section: dict | None) -> list[str]:
    """The recording-level validation: the held-out records, the shipped variant per record, every variant."""
    if not section:
        return []
    shipped = section.get("shipped_variant") or next(iter(section["variants"]))
    result = section["variants"][shipped]
    gross, intervals = result["gross"], result["intervals"]
    lines = ["## Recording-level validation (held-out records, full device stream)", "", section["what"] + ".", "",
             "| record | duration (s) | reference beats | reference V | why it is held out |",
             "|---|---:|---:|---:|---|"]
    lines += [f"| {item['record']} | {item['duration_s']:g} | {item['reference_beats']} | {item['reference_v']} | "
              f"{item['description']} |" for item in section["records"]]
    threshold = result.get("threshold")
    shown = "" if threshold is None else f" (threshold {threshold:.3f})"
    lines += ["", f"Shipped variant **{shipped}**{shown}, per record (%):", "",
              *per_record_table(result), "",
              f"Gross ({section['intervals']}): " + ", ".join(
                  f"{label} {_interval_text(gross[key], intervals.get(key))}" for key, label in GROSS_LABELS.items())
              + ". With this few records the intervals are wide.", "",
              *_healthy_lines(result.get("healthy")), "",
              "Every variant (gross over the held-out records, %, [95 % CI]):", "",
              "| variant | threshold | QRS Se | QRS +P | V Se | V +P | healthy false PVC (%) | recording gate |",
              "|---|---:|---|---|---|---|---:|---|",
              *[_variants_line(name, entry) for name, entry in section["variants"].items()], "",
              f"Recording gate: {section['gate']['rule']}.", ""]
    targets = (section.get("source") or {}).get("targets")
    if targets:
        listed = ", ".join(f"{name.replace('_', ' ')} {'≤' if 'rate' in name else '≥'} {_percent(value)} %"
                           for name, value in targets.items())
        lines += [f"Targets of the issue (leave-one-record-out, pooled): {listed}. This build does not measure "
                  "them, and the figures above are not that estimate: `make validate-ecg` measures them "
                  "(`benchmarks/results/ecg_pvc_loro.md`; the README gives its last run).", ""]
    return lines


def _provenance_lines(provenance: dict) -> list[str]:
    lines = []
    if provenance.get("trained_on"):
        lines.append(f"Trained on: {provenance['trained_on']}.")
    if provenance.get("record_splits"):
        lines.append("Record splits (" + provenance.get("split_rule", "by record") + "): " + "; ".join(
            f"{split} {', '.join(records)}" for split, records in provenance["record_splits"].items()) + ".")
    if provenance.get("labels"):
        lines.append(f"Labels: {provenance['labels']}.")
    if provenance.get("synthetic_training_data"):
        lines.append(f"**Synthetic training data** (every figure below is measured on real recordings only): "
                     f"{provenance['synthetic_training_data']}.")
    if isinstance(provenance.get("excluded_windows"), dict):
        lines.append("Windows left out of every split: " + ", ".join(
            f"{count} {reason.replace('_', ' ')}" for reason, count in provenance["excluded_windows"].items()) + ".")
    if provenance.get("citation"):
        lines.append(f"Distributed by {provenance.get('distributor', 'its authors')}; cite: "
                     + " ".join(provenance["citation"]))
    return [*lines, ""] if lines else []


def render_report(manifest: BundleManifest, shipped_metrics: TaskMetrics) -> str:
    """A self-contained markdown report for the people who sign the device off."""
    provenance = manifest.data.provenance
    synthetic = bool(manifest.data.synthetic)
    shipped = manifest.variants[manifest.variant]
    lines = [
        f"# edgemed bundle: {manifest.scenario}",
        "",
        manifest.description,
        "",
    ]
    if synthetic:
        lines += [
            "> **Synthetic data.** The model was trained and evaluated on simulated data only. "
            "The figures below describe performance on that simulation, not clinical accuracy; "
            "a clinical validation on real, labelled recordings is required before any clinical use.",
            "",
        ]
    lines += [
        *evidence_lines(provenance.get("evidence")),
        *thin_evidence_lines(shipped_metrics),
        "## Shipped variant",
        "",
        f"**{manifest.variant}** — {manifest.selection.reason}",
        "",
        "Who signed this bundle is in its manifest (`release`), not in this report: a bundle signed with a "
        "DEVELOPMENT key (as `make build` signs) is not for clinical use, and the device says so on every load.",
        "",
        *_training_machine_lines(manifest.training),
        *_machine_lines(manifest.selection.measured_on, manifest.variant),
        summary_table(manifest.variants, manifest.variant),
        "",
        f"Gate rule: {shipped['gate']['rule']}",
        "",
        *_quantization_lines(manifest.variants.get("int8-static", {}).get("quantization")),
        *_layout_lines(manifest.variants.get("fp32", {}).get("conv_layout")),
        *recording_lines(manifest.recording_validation),
        "## Clinical metrics of the shipped variant (test split, bootstrap 95 % CI)",
        "",
        *_resampling_lines(provenance.get("test_resampling")),
        *_test_split_note(manifest),
        *metrics_lines(shipped_metrics),
        "",
        "## Gate verdicts",
        "",
        *[f"- **{name}**: {variant['gate']['reason']}" for name, variant in manifest.variants.items()],
        "",
        "## Export",
        "",
        _parity_line(manifest),
        "",
        *[f"- warning: {warning}" for warning in manifest.export.warnings],
        "",
        "## Data",
        "",
        f"Source: {provenance.get('source', provenance.get('generator', 'see manifest'))}. "
        f"Synthetic: {_synthetic(manifest.data.synthetic)}. Licence: {provenance.get('licence', 'unknown')}.",
        "",
        *_provenance_lines(provenance),
        *_data_lines(manifest),
        "",
        f"## Device contract (manifest schema {manifest.schema_version})",
        "",
        *[_input_line(spec) for spec in manifest.inputs],
        *[domain_line(spec) for spec in manifest.inputs],
        f"- in the graph: {manifest.preprocessing.in_graph}",
        f"- the runtime must: {manifest.preprocessing.runtime}",
        f"- output `{'`, `'.join(manifest.output.names)}` ({manifest.output.task}): {manifest.output.semantics}"
        + ("; the graph outputs logits, the runtime applies the activation" if manifest.output.graph_outputs_logits
           else ""),
        f"- decision: {_decision_line(manifest.output)}",
        "",
    ]
    return "\n".join(lines)
