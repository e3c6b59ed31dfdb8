"""``benchmarks/results/eeg_recurrent_cells.{json,md}``: what ``cells.run_comparison`` measured, as JSON and a page."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.scenarios.eeg_artifact.cells import RESULTS_NAME, VARIANTS


def _interval(metric: dict) -> str:
    return f"{metric['value']:.3f} [{metric['low']:.3f}, {metric['high']:.3f}]"


def _ops(ops: dict) -> str:
    top = ", ".join(f"{name} {count}" for name, count in ops["graph"].items() if name in (
        "LSTM", "Loop", "MatMul", "MatMulInteger", "Conv", "ConvInteger", "QLinearConv", "QuantizeLinear",
        "DequantizeLinear", "DynamicQuantizeLinear", "com.microsoft.DynamicQuantizeLSTM", "Cast"))
    return top or "—"


def render(document: dict) -> str:
    cells, latency = document["cells"], document["joint_latency"]
    decision = document["decision"]
    machine = next(iter(cells.values()))["measured_on"]
    lines = [
        "# GRU or LSTM for the EEG artefact model (eeg-artifact)", "",
        f"**Ships: {decision['winner'].upper()}** — {decision['reason']}.", "",
        f"Rule: {decision['rule']}", "",
        f"Both cells built by the real build (`{document['scenario']}`, profile {document['profile']}, seed "
        f"{document['seed']}): the same data splits, training settings, variants and gate; only the cell differs. "
        "Test split: real PLUX EEG windows (clean: eeg_sample_o, 1cm_h, 0cm_v; movement: seg2, an unseen recording; "
        "electromagnetic: the last time block of seg3, the same recording as its training windows). Macro-F1 "
        "intervals resample whole 10-s blocks of a recording, not windows (overlapping windows are not independent). "
        "Both bundles are development builds, NOT VALIDATED: the evidence rule finds too few real test windows and "
        "recordings for movement and electromagnetic (each bundle's manifest and report give the counts).", "",
        f"Measured on {machine.get('cpu_model', 'this machine')} ({machine.get('usable_cores', '?')} usable cores), "
        f"onnxruntime {machine.get('onnxruntime', '?')}, batch 1, 1 thread, every variant of both cells timed "
        f"together in interleaved rounds on {latency['sample']}; ratios are medians of per-round ratios to "
        f"{latency['reference']}.", "",
        "## The models", "",
        "| cell | parameters | MACs / window | recurrent steps | fp32 weights (bytes) | exported as | export parity "
        "(max abs diff, argmax agreement) | training (s) | epochs (best) |",
        "|---|---:|---:|---:|---:|---|---|---:|---|"]
    for name, entry in cells.items():
        size, parity, training = entry["footprint"], entry["export"]["parity"], entry["training"]
        census = entry["export"]["op_census"]
        exported = "Loop" if "Loop" in census else ("LSTM op" if "LSTM" in census else "?")
        lines.append(f"| {name} | {size['parameters']} | {size['macs_per_window']:,} | {size['recurrent_steps']} | "
                     f"{size['fp32_weight_bytes']:,} | {exported} ({sum(census.values())} nodes with subgraphs) | "
                     f"{'pass' if parity['passed'] else 'FAIL'} ({parity['max_abs_diff']:.2e}, "
                     f"{parity['argmax_agreement']:.4f}; batch {', '.join(map(str, parity['batch_sizes']))}) | "
                     f"{training['seconds']:.1f} | {training['epochs_run']} ({training['best_epoch']}) |")
    lines += ["", "## Every variant", "",
              "| cell | variant | bytes | max abs diff vs fp32 | argmax agreement vs fp32 | recurrent core | "
              "int8 ops (top graph) | gate | macro-F1 [95 % CI] | movement Se | p50 µs (joint) | × LSTM fp32 |",
              "|---|---|---:|---:|---:|---|---|---|---|---:|---:|---:|"]
    for name, entry in cells.items():
        for variant in VARIANTS:
            item, timing = entry["variants"][variant], latency["variants"][f"{name}/{variant}"]
            lines.append(
                f"| {name} | {variant} | {item['size_bytes']:,} | {item['max_abs_diff_vs_fp32']:.2e} | "
                f"{item['argmax_agreement_vs_fp32']:.4f} | {item['recurrent_core']} | {_ops(item['ops'])} | "
                f"{'pass' if item['gate']['passed'] else 'FAIL'} | {_interval(item['macro_f1'])} | "
                f"{item['sensitivity']['movement']['value']:.3f} | {timing['median_of_windows_us']:.1f} | "
                f"{timing['ratio_to_reference']:.2f} |")
    lines += ["", "## Gate verdicts (each variant against its own cell's fp32)", ""]
    for name, entry in cells.items():
        lines += [f"- **{name} {variant}**: {entry['variants'][variant]['gate']['reason']}" for variant in VARIANTS]
    lines += ["", "## Decisions on each test recording (windows per class: clean / movement / electromagnetic)", "",
              "| cell | variant | " + " | ".join(next(iter(cells.values()))["test_recordings"]["fp32"]) + " |",
              "|---|---|" + "---|" * len(next(iter(cells.values()))["test_recordings"]["fp32"])]
    for name, entry in cells.items():
        for variant in VARIANTS:
            rows = entry["test_recordings"][variant]
            lines.append(f"| {name} | {variant} | " + " | ".join(" / ".join(str(count) for count in counts.values())
                                                                 for counts in rows.values()) + " |")
    lines += ["", "## Build cost", ""]
    lines += [f"- **{name}**: training {entry['training']['seconds']:.0f} s, "
              f"export {entry['export']['seconds']:.0f} s, variants {entry['variants_seconds']:.0f} s "
              "(int8-static tuning chose "
              f"{entry['variants']['int8-static']['int8_tuning']})"
              + (f"; export warnings: {'; '.join(entry['export']['warnings'])}" if entry["export"]["warnings"] else "")
              for name, entry in cells.items()]
    lines += ["", "int8-static tuning searched QDQ settings only, for both cells (the scenario's build config): ONNX "
              "Runtime's QOperator quantizer refuses the GRU's Loop (\"Invalid model with unknown "
              "initializers/tensors\": the body reads an outer-scope tensor), and one failing candidate ends the "
              "whole search (exporters/quantization/tuning.py).", ""]
    lines += ["## What each build shipped (its own selection, timed within that build)", ""]
    lines += [f"- **{name}**: {entry['shipped']} — {entry['selection']}" for name, entry in cells.items()]
    return "\n".join([*lines, ""])


def write_results(document: dict, folder: Path) -> tuple[Path, Path]:
    """Write the JSON document and its Markdown page into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    json_path, markdown_path = folder / f"{RESULTS_NAME}.json", folder / f"{RESULTS_NAME}.md"
    json_path.write_text(json.dumps(document, indent=1) + "\n")
    markdown_path.write_text(render(document))
    return json_path, markdown_path
