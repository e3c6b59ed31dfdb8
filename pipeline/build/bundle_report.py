"""The human ``report.md`` of a bundle and the build's closing summary table."""

from __future__ import annotations

from pipeline.clinical.metrics import ClinicalMetrics


def _estimate(value: dict | None) -> str:
    if not value or value.get("value") is None:
        return "n/a"
    low, high = value.get("low"), value.get("high")
    interval = f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else ""
    return f"{value['value']:.3f}{interval}"


def summary_table(manifest: dict) -> str:
    """Markdown table: variant × size × latency × macro-F1 × gate verdict."""
    lines = [
        "| variant | size (KiB) | batch-1 × fp32 | batch-1 p50 (µs) | macro-F1 [95 % CI] | gate | shipped |",
        "|---|---:|---:|---:|---|---|---|",
    ]
    for name, variant in manifest["variants"].items():
        verdict = "pass" if variant["gate"]["passed"] else "FAIL"
        ratio = variant["latency"].get("ratio_to_fp32")
        lines.append(
            f"| {name} | {variant['size_bytes'] / 1024:.1f} | {'–' if ratio is None else f'{ratio:.2f}'} | "
            f"{variant['latency']['median_of_windows_us']:.1f} | "
            f"{_estimate(variant['macro_f1'])} | {verdict} | {'✓' if name == manifest['variant'] else ''} |"
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


def render_report(manifest: dict, shipped_metrics: ClinicalMetrics) -> str:
    """A self-contained markdown report for the people who sign the device off."""
    provenance = manifest["data"]["provenance"]
    synthetic = provenance.get("synthetic", False)
    lines = [
        f"# edgemed bundle: {manifest['scenario']}",
        "",
        manifest["description"],
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
        f"**{manifest['variant']}** — {manifest['selection']['reason']}",
        "",
        *_machine_lines(manifest["selection"].get("measured_on")),
        summary_table(manifest),
        "",
        f"Gate rule: {manifest['variants'][manifest['variant']]['gate']['rule']}",
        "",
        *_quantization_lines(manifest["variants"].get("int8-static", {}).get("quantization")),
        *_layout_lines(manifest["variants"].get("fp32", {}).get("conv_layout")),
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
        *[f"- **{name}**: {variant['gate']['reason']}" for name, variant in manifest["variants"].items()],
        "",
        "## Export",
        "",
        f"Parity with Keras: max |Δ| {manifest['export']['parity']['max_abs_diff']:.2e} over "
        f"{manifest['export']['parity']['samples']} test inputs at batch sizes "
        f"{manifest['export']['parity']['batch_sizes']}; argmax agreement "
        f"{manifest['export']['parity']['argmax_agreement']:.3f}. Opset {manifest['export']['opset']}.",
        "",
        *[f"- warning: {warning}" for warning in manifest["export"]["warnings"]],
        "",
        "## Data",
        "",
        f"Source: {provenance.get('source', provenance.get('generator', 'see manifest'))}. "
        f"Synthetic: {'yes' if synthetic else 'no'}. Licence: {provenance.get('licence', 'unknown')}.",
        "",
        "| split | " + " | ".join(manifest["labels"]) + " | total |",
        "|---" * (len(manifest["labels"]) + 2) + "|",
    ]
    for split, balance in manifest["data"]["class_balance"].items():
        counts = [balance[label] for label in manifest["labels"]]
        lines.append(f"| {split} | " + " | ".join(str(count) for count in counts) + f" | {sum(counts)} |")
    lines += [
        "",
        "## Device contract",
        "",
        f"- input `{manifest['input']['name']}` shape {manifest['input']['shape']} {manifest['input']['dtype']}",
        f"- in the graph: {manifest['preprocessing']['in_graph']}",
        f"- the runtime must: {manifest['preprocessing']['runtime']}",
        f"- output: {manifest['output']['semantics']}",
        "",
    ]
    return "\n".join(lines)
