"""The human ``report.md`` of a bundle and the build's closing summary table."""

from __future__ import annotations

from collections.abc import Mapping

from pipeline.clinical.metrics import ClinicalMetrics
from runtime.contract import BundleManifest, InputSpec, OutputSpec, TaskKind


def _estimate(value: dict | None) -> str:
    if not value or value.get("value") is None:
        return "n/a"
    low, high = value.get("low"), value.get("high")
    interval = f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else ""
    return f"{value['value']:.3f}{interval}"


def summary_table(variants: Mapping[str, dict], shipped: str) -> str:
    """Markdown table: variant × size × latency × macro-F1 × gate verdict."""
    lines = [
        "| variant | size (KiB) | batch-1 × fp32 | batch-1 p50 (µs) | macro-F1 [95 % CI] | gate | shipped |",
        "|---|---:|---:|---:|---|---|---|",
    ]
    for name, variant in variants.items():
        verdict = "pass" if variant["gate"]["passed"] else "FAIL"
        ratio = variant["latency"].get("ratio_to_fp32")
        lines.append(
            f"| {name} | {variant['size_bytes'] / 1024:.1f} | {'–' if ratio is None else f'{ratio:.2f}'} | "
            f"{variant['latency']['median_of_windows_us']:.1f} | "
            f"{_estimate(variant['macro_f1'])} | {verdict} | {'✓' if name == shipped else ''} |"
        )
    return "\n".join(lines)


def _machine_lines(machine: dict | None) -> list[str]:
    if not machine:
        return []
    return [f"Latencies, the int8 settings and the convolution layout were measured on: {machine['cpu_model']} "
            f"({machine['architecture']}; {', '.join(machine['isa_flags']) or 'no extended ISA flags'}; "
            f"{machine['usable_cores']} usable cores; onnxruntime {machine['onnxruntime']}). A device with a "
            "different CPU may rank the variants differently: re-run the build on the device class.", ""]


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


def _input_line(spec: InputSpec) -> str:
    line = f"- input `{spec.name}` shape {list(spec.shape)} {spec.dtype} ({spec.feature_kind.value}"
    if spec.sample_rate_hz is not None:
        line += f", {spec.sample_rate_hz:g} Hz"
    if spec.is_beat_window:
        line += f", {spec.window_before_s:g} s before and {spec.window_after_s:g} s after the R-peak"
    return line + ")"


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


def render_report(manifest: BundleManifest, shipped_metrics: ClinicalMetrics) -> str:
    """A self-contained markdown report for the people who sign the device off."""
    provenance = manifest.data.provenance
    synthetic = bool(manifest.data.synthetic)
    labels = list(manifest.output.labels)
    shipped = manifest.variants[manifest.variant]
    parity = manifest.export.parity
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
        "## Shipped variant",
        "",
        f"**{manifest.variant}** — {manifest.selection.reason}",
        "",
        *_machine_lines(manifest.selection.measured_on),
        summary_table(manifest.variants, manifest.variant),
        "",
        f"Gate rule: {shipped['gate']['rule']}",
        "",
        *_quantization_lines(manifest.variants.get("int8-static", {}).get("quantization")),
        *_layout_lines(manifest.variants.get("fp32", {}).get("conv_layout")),
        "## Clinical metrics of the shipped variant (test split, bootstrap 95 % CI)",
        "",
        f"Samples: {shipped_metrics.samples}; accuracy {_estimate(shipped_metrics.accuracy.to_dict())}; "
        f"macro-F1 {_estimate(shipped_metrics.macro_f1.to_dict())}.",
        "",
        *_class_table(shipped_metrics),
        "",
        "Confusion matrix:",
        "",
        *_confusion(shipped_metrics),
        "",
        "## Gate verdicts",
        "",
        *[f"- **{name}**: {variant['gate']['reason']}" for name, variant in manifest.variants.items()],
        "",
        "## Export",
        "",
        f"Parity with Keras: max |Δ| {parity['max_abs_diff']:.2e} over {parity['samples']} test inputs at batch "
        f"sizes {parity['batch_sizes']}; argmax agreement {parity['argmax_agreement']:.3f}. "
        f"Opset {manifest.export.opset}.",
        "",
        *[f"- warning: {warning}" for warning in manifest.export.warnings],
        "",
        "## Data",
        "",
        f"Source: {provenance.get('source', provenance.get('generator', 'see manifest'))}. "
        f"Synthetic: {'yes' if synthetic else 'no'}. Licence: {provenance.get('licence', 'unknown')}.",
        "",
        "| split | " + " | ".join(labels) + " | total |",
        "|---" * (len(labels) + 2) + "|",
    ]
    for split, balance in manifest.data.class_balance.items():
        counts = [balance[label] for label in labels]
        lines.append(f"| {split} | " + " | ".join(str(count) for count in counts) + f" | {sum(counts)} |")
    lines += [
        "",
        f"## Device contract (manifest schema {manifest.schema_version})",
        "",
        *[_input_line(spec) for spec in manifest.inputs],
        f"- in the graph: {manifest.preprocessing.in_graph}",
        f"- the runtime must: {manifest.preprocessing.runtime}",
        f"- output `{'`, `'.join(manifest.output.names)}` ({manifest.output.task}): {manifest.output.semantics}"
        + ("; the graph outputs logits, the runtime applies the activation" if manifest.output.graph_outputs_logits
           else ""),
        f"- decision: {_decision_line(manifest.output)}",
        "",
    ]
    return "\n".join(lines)
