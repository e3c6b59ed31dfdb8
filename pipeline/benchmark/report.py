"""Markdown rendering of a benchmark results document (``bench.md``)."""

from __future__ import annotations

from pipeline.benchmark.head_to_head import (
    LITERT_INT8,
    ONNX_FP32,
    THROUGHPUT_BATCH,
    THROUGHPUT_KEY,
    candidate_name,
    interleaved_result,
)
from runtime.session import short_provider_name

_MEBIBYTE = 1024 * 1024


def _number(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _throughput(row: dict, batch_size: int) -> str:
    entry = row.get("throughput", {}).get(str(batch_size))
    return _number(entry["samples_per_second"], 0) if entry else "–"


def _row_line(row: dict, shipped: str | None, batch_sizes: list[int]) -> str:
    provider = short_provider_name(row["provider"] or "") or "–"
    name = f"{row['engine']} {row['variant']}" + (" ✓" if row["engine"] == "onnxruntime" and row["variant"] == shipped
                                                 else "")
    if row["status"] != "ok":
        return f"| {name} | {provider} | – | {row['reason']} |" + " |" * (9 + len(batch_sizes))
    latency = row["latency"]
    stability = f"{latency['spread'] * 100:.0f} %" + ("" if latency["stable"] else " ⚠")
    gate = {True: "pass", False: "FAIL", None: "–"}[row.get("gate_passed")]
    cells = [
        name, provider, str(row["threads"]), _number(latency["median_of_windows_us"]), _number(latency["p90_us"]),
        _number(latency["p99_us"]), stability, _number(row["session_creation_ms"]), _number(row["first_inference_us"]),
        *[_throughput(row, size) for size in batch_sizes], _number(row["peak_rss_bytes"] / _MEBIBYTE),
        _number(row["model_size_bytes"] / 1024), _number(row.get("macro_f1"), 3), gate,
    ]
    return "| " + " | ".join(cells) + " |"


def scenario_table(scenario: dict, batch_sizes: list[int]) -> str:
    header = (["model", "EP", "threads", "p50 µs", "p90 µs", "p99 µs", "spread", "session ms", "first µs"]
              + [f"b{size} /s" for size in batch_sizes] + ["peak RSS MiB", "file KiB", "macro-F1", "gate"])
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if index < 2 else "---:" for index in
                                                              range(len(header))) + "|"]
    lines += [_row_line(row, scenario.get("would_ship"), batch_sizes) for row in scenario["rows"]]
    return "\n".join(lines)


HEAD_TO_HEAD_NOTE = (
    "The machine switches between a fast and a slower speed state every few seconds, so these models were "
    "also timed together in one process: each round times a short window of every model back to back, in an "
    "order that rotates from round to round, and each ratio is the median over rounds of the per-round ratio "
    "(both numbers measured milliseconds apart); the batch-1 latency targets use these figures."
)


def _ratio(result, name: str, reference: str) -> str:
    if reference not in result.window_medians_us:
        return "–"
    return _number(result.ratio(name, reference), 2)


def head_to_head_table(scenario: dict) -> str:
    lines = ["| model | threads | rounds × runs | median µs | spread | ÷ ONNX fp32 | ÷ LiteRT int8 |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    shipped = candidate_name("onnxruntime", scenario["would_ship"]) if scenario.get("would_ship") else None
    for entry in scenario.get("head_to_head") or []:
        result = interleaved_result(entry)
        for name in entry["models"]:
            cells = [name + (" ✓" if name == shipped else ""), str(entry["threads"]),
                     f"{entry['rounds']} × {entry['runs_per_round']}", _number(result.median_of_windows_us(name)),
                     f"{result.spread(name) * 100:.0f} %", _ratio(result, name, ONNX_FP32),
                     _ratio(result, name, LITERT_INT8)]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


BATCH_NOTE = (
    f"The same models (those that take batch {THROUGHPUT_BATCH}), timed the same way in the same process right "
    f"after, on the timing inputs tiled to {THROUGHPUT_BATCH} rows: the median µs of one batch, samples/s = "
    f"{THROUGHPUT_BATCH} / that median, and the ratios are medians of per-round batch-time ratios (< 1: more "
    f"samples/s); the batch-{THROUGHPUT_BATCH} throughput target uses these figures."
)


def head_to_head_batch_table(scenario: dict) -> str:
    """The ``batch_256`` parts of the head-to-head entries (no lines for entries without one)."""
    lines = ["| model | threads | rounds × runs | batch median µs | samples/s | spread | ÷ ONNX fp32 | ÷ LiteRT int8 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    shipped = candidate_name("onnxruntime", scenario["would_ship"]) if scenario.get("would_ship") else None
    for entry in scenario.get("head_to_head") or []:
        part = entry.get(THROUGHPUT_KEY)
        if not part:
            continue
        result = interleaved_result(part)
        for name, model in part["models"].items():
            cells = [name + (" ✓" if name == shipped else ""), str(entry["threads"]),
                     f"{part['rounds']} × {part['runs_per_round']}", _number(result.median_of_windows_us(name)),
                     _number(model["samples_per_second"], 0), f"{result.spread(name) * 100:.0f} %",
                     _ratio(result, name, ONNX_FP32), _ratio(result, name, LITERT_INT8)]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets_table(scenario: dict) -> str:
    lines = ["| target | threads | ONNX | peer | ratio (≤ 1 = met) | met | source |",
             "|---|---:|---:|---:|---:|---|---|"]
    for check in scenario["targets"]:
        met = {True: "yes", False: "**no**", None: "–"}[check["met"]]
        lines.append(f"| {check['target']} | {check['threads']} | {_number(check['onnx'])} | "
                     f"{_number(check['peer'])} | {_number(check['ratio'], 2)} | {met} | "
                     f"{check.get('source', 'per-process')} |")
    return "\n".join(lines)


def ablation_table(ablation: dict) -> str:
    scenarios = list(ablation)
    lines = ["| step | " + " | ".join(f"{name} p50 µs | Δ µs | × previous" for name in scenarios) + " |",
             "|---|" + "---:|---:|---:|" * len(scenarios)]
    steps = list(dict.fromkeys(step["step"] for name in scenarios for step in ablation[name]["steps"]))
    for step in steps:
        cells = []
        for name in scenarios:
            entry = next((item for item in ablation[name]["steps"] if item["step"] == step), None)
            cells += ([_number(entry["p50_us"]), _number(entry["delta_us"]), _number(entry.get("ratio_to_previous"), 2)]
                      if entry else ["–", "–", "–"])
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_markdown(document: dict) -> str:
    machine, settings = document["machine"], document["settings"]
    lines = [
        "# edgemed benchmark",
        "",
        f"- machine: {machine['cpu_model']} ({machine['architecture']}), usable cores {machine['usable_cores']} "
        f"(affinity {machine['affinity_cpus']}, cgroup limit {machine['cgroup_cpu_limit']}), "
        f"ISA: {', '.join(machine['isa_flags']) or '–'}",
        f"- onnxruntime {machine['onnxruntime']['version']}, providers: "
        f"{', '.join(machine['onnxruntime']['available_providers'])}; LiteRT: {settings.get('litert_runtime') or '–'}",
        f"- settings: threads {settings['threads']}, batch sizes {settings['batch_sizes']}, "
        f"session {settings['session']}, quick={settings['quick']}",
        f"- stability: {settings['stability']}",
        f"- {document['started_at']} → {document['finished_at']}",
        "",
        "p50 = median of the window medians; spread = (max − min) / median of the window medians, "
        "⚠ = above the stability threshold. ✓ = the variant the bundle rule would ship from these numbers.",
    ]
    for scenario in document["scenarios"]:
        lines += ["", f"## {scenario['name']}", "", scenario_table(scenario, settings["batch_sizes"])]
        if scenario.get("head_to_head"):
            lines += ["", "### Head-to-head (interleaved, batch 1)", "", HEAD_TO_HEAD_NOTE, "",
                      head_to_head_table(scenario)]
        if any(entry.get(THROUGHPUT_KEY) for entry in scenario.get("head_to_head") or []):
            lines += ["", f"### Head-to-head (interleaved, batch {THROUGHPUT_BATCH})", "", BATCH_NOTE, "",
                      head_to_head_batch_table(scenario)]
        lines += ["", "### Targets", "", targets_table(scenario)]
    if document.get("ablation"):
        lines += ["", "## Ablation (batch-1 p50, 1 thread, CPU)", "",
                  "Every step of a scenario timed together in rotating rounds; *× previous* is the median of the "
                  "per-round ratios to the step above (< 1: the step made it faster), steadier than the Δ of two "
                  "medians.", "", ablation_table(document["ablation"])]
    return "\n".join(lines) + "\n"
