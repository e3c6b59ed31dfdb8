"""Markdown rendering of a benchmark results document (``bench.md``)."""

from __future__ import annotations

from pipeline.benchmark.head_to_head import (
    ONNX_FP32,
    THROUGHPUT_BATCH,
    THROUGHPUT_KEY,
    candidate_name,
    interleaved_result,
)
from pipeline.clinical.recording_gate import LABELS as RECORDING_LABELS
from runtime.session import short_provider_name

_MEBIBYTE = 1024 * 1024


def _number(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _throughput(row: dict, batch_size: int) -> str:
    entry = row.get("throughput", {}).get(str(batch_size))
    return _number(entry["samples_per_second"], 0) if entry else "–"


GATE_WORDS = {True: "pass", False: "FAIL", None: "–"}


def _accuracy(row_or_judgement: dict, value_key: str, metric_key: str) -> str:
    value, metric = row_or_judgement.get(value_key), row_or_judgement.get(metric_key)
    return "–" if value is None else f"{value:.3f}" + ("" if metric in (None, "macro-F1") else f" ({metric})")


def one_line(text: object) -> str:
    return " ".join(str(text).split())


def cell(text: object) -> str:
    """Text safe in one markdown table cell: one line, no column bar."""
    return one_line(text).replace("|", "/")


def _row_line(row: dict, shipped: str | None, batch_sizes: list[int]) -> str:
    provider = short_provider_name(row["provider"] or "") or "–"
    name = f"{row['engine']} {row['variant']}" + (" ✓" if row["engine"] == "onnxruntime" and row["variant"] == shipped
                                                 else "")
    if row["status"] != "ok":
        return f"| {name} | {provider} | – | {cell(row['reason'])} |" + " |" * (9 + len(batch_sizes))
    latency = row["latency"]
    stability = f"{latency['spread'] * 100:.0f} %" + ("" if latency["stable"] else " ⚠")
    cells = [
        name, provider, str(row["threads"]), _number(latency["median_of_windows_us"]), _number(latency["p90_us"]),
        _number(latency["p99_us"]), stability, _number(row["session_creation_ms"]), _number(row["first_inference_us"]),
        *[_throughput(row, size) for size in batch_sizes], _number(row["peak_rss_bytes"] / _MEBIBYTE),
        _number(row["model_size_bytes"] / 1024), _accuracy(row, "accuracy", "accuracy_metric"),
        GATE_WORDS[row.get("gate_passed")],
    ]
    return "| " + " | ".join(cells) + " |"


def scenario_table(scenario: dict, batch_sizes: list[int]) -> str:
    header = (["model", "EP", "threads", "p50 µs", "p90 µs", "p99 µs", "spread", "session ms", "first µs"]
              + [f"b{size} /s" for size in batch_sizes] + ["peak RSS MiB", "file KiB", "accuracy", "gate"])
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if index < 2 else "---:" for index in
                                                              range(len(header))) + "|"]
    lines += [_row_line(row, scenario.get("would_ship"), batch_sizes) for row in scenario["rows"]]
    return "\n".join(lines)


JUDGEMENT_NOTE = (
    "Every model is judged by the build's own gate: the ONNX variants' verdicts are the build's (evaluate and, "
    "where the scenario has held-out recordings, validate); each peer gets the same gate here — its own threshold "
    "chosen on the same decision data by the same rule, compared with ONNX fp32 by the same limits, and for LiteRT "
    "the same recordings through the same device stream. Accuracy: the task's headline metric on the test split "
    "(macro-F1 unless named)."
)


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


def peer_at(scenario: dict, threads: int) -> str | None:
    """The LiteRT peer chosen at ``threads`` (``peer_choice``), None when none passes the gate."""
    return next((choice["chosen"] for choice in scenario.get("peers") or [] if choice["threads"] == threads), None)


def _gate_of(scenario: dict, name: str) -> str:
    judged = (scenario.get("judgements") or {}).get(name) or {}
    return GATE_WORDS[judged.get("passed")]


def head_to_head_table(scenario: dict) -> str:
    lines = ["| model | threads | rounds × runs | median µs | spread | gate | ÷ ONNX fp32 | ÷ LiteRT peer |",
             "|---|---:|---:|---:|---:|---|---:|---:|"]
    shipped = candidate_name("onnxruntime", scenario["would_ship"]) if scenario.get("would_ship") else None
    for entry in scenario.get("head_to_head") or []:
        result, peer = interleaved_result(entry), peer_at(scenario, entry["threads"])
        for name in entry["models"]:
            marks = (" ✓" if name == shipped else "") + (" (peer)" if name == peer else "")
            cells = [name + marks, str(entry["threads"]),
                     f"{entry['rounds']} × {entry['runs_per_round']}", _number(result.median_of_windows_us(name)),
                     f"{result.spread(name) * 100:.0f} %", _gate_of(scenario, name), _ratio(result, name, ONNX_FP32),
                     _ratio(result, name, peer) if peer else "–"]
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
    lines = ["| model | threads | rounds × runs | batch median µs | samples/s | spread | ÷ ONNX fp32 | ÷ LiteRT peer |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    shipped = candidate_name("onnxruntime", scenario["would_ship"]) if scenario.get("would_ship") else None
    for entry in scenario.get("head_to_head") or []:
        part = entry.get(THROUGHPUT_KEY)
        if not part:
            continue
        result, peer = interleaved_result(part), peer_at(scenario, entry["threads"])
        for name, model in part["models"].items():
            marks = (" ✓" if name == shipped else "") + (" (peer)" if name == peer else "")
            cells = [name + marks, str(entry["threads"]),
                     f"{part['rounds']} × {part['runs_per_round']}", _number(result.median_of_windows_us(name)),
                     _number(model["samples_per_second"], 0), f"{result.spread(name) * 100:.0f} %",
                     _ratio(result, name, ONNX_FP32), _ratio(result, name, peer) if peer else "–"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets_table(scenario: dict) -> str:
    lines = ["| target | threads | ONNX | peer | ratio (≤ 1 = met) | met | source |",
             "|---|---:|---:|---:|---:|---|---|"]
    for check in scenario["targets"]:
        met = {True: "yes", False: "**no**", None: "–"}[check["met"]]
        source = "no peer: see above" if check.get("note") else check.get("source", "per-process")
        lines.append(f"| {check['target']} | {check['threads']} | {_number(check['onnx'])} | "
                     f"{_number(check['peer'])} | {_number(check['ratio'], 2)} | {met} | {source} |")
    return "\n".join(lines)


def _recording_figures(judged: dict) -> str:
    recordings = judged.get("recordings")
    if not recordings:
        return "–"
    figures = recordings.get("figures") or {}
    shown = ", ".join(f"{RECORDING_LABELS.get(name, name)} {value * 100:.1f} %" for name, value in figures.items()
                      if value is not None)
    return f"{GATE_WORDS[recordings.get('passed')]}" + (f": {shown}" if shown else f" ({cell(recordings['reason'])})")


def judgements_table(scenario: dict) -> str:
    """One line per model: its accuracy, the sample gate, the recording gate with its figures, the verdict."""
    lines = ["| model | accuracy | gate on samples | gate on recordings | verdict |", "|---|---:|---|---|---|"]
    for name, judged in (scenario.get("judgements") or {}).items():
        samples = judged.get("samples") or {}
        lines.append(f"| {name} | {_accuracy(judged, 'value', 'metric')} | {GATE_WORDS[samples.get('passed')]} | "
                     f"{_recording_figures(judged)} | {GATE_WORDS[judged['passed']]} |")
    return "\n".join(lines)


def measured_on_lines(scenario: dict) -> list[str]:
    """Each distinct 'measured on' of the scenario's judgements, with the models it applies to."""
    places: dict[str, list[str]] = {}
    for name, judged in (scenario.get("judgements") or {}).items():
        places.setdefault(judged.get("measured_on") or "no data", []).append(name)
    return [f"- {', '.join(names)}: {where}" for where, names in places.items()]


def peer_lines(scenario: dict) -> list[str]:
    """The head-to-head peer per thread count, and why (or why there is none)."""
    return [f"- {choice['threads']} thread(s): **{choice['chosen'] or 'no peer'}** — {one_line(choice['reason'])}"
            for choice in scenario.get("peers") or []]


def inputs_line(scenario: dict) -> str:
    """What every timing of the scenario ran on (batch 1 cycles these inputs; batches and head-to-heads tile them)."""
    inputs = scenario.get("inputs") or "not recorded (a bench.json older than the inputs field)"
    return f"Timing inputs (every latency, throughput and head-to-head figure below): {one_line(inputs)}."


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
        lines += ["", f"## {scenario['name']}", "", inputs_line(scenario), "",
                  scenario_table(scenario, settings["batch_sizes"])]
        if scenario.get("judgements"):
            lines += ["", "### Accuracy and gate of every model", "", JUDGEMENT_NOTE, "", judgements_table(scenario),
                      "", "Measured on:", "", *measured_on_lines(scenario)]
        if scenario.get("peers"):
            lines += ["", "### LiteRT peer (the fastest LiteRT variant that passes the same gate)", "",
                      *peer_lines(scenario)]
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
                  "medians. Timed on each scenario's timing inputs (named in its section).", "",
                  ablation_table(document["ablation"])]
    return "\n".join(lines) + "\n"
