"""Read ``bench.json`` (schema: ``pipeline/benchmark/schema.md``) into frames for the Benchmarks page.

The file may be absent (nobody ran ``make bench`` yet), from an older or newer harness, or broken:
absence and unreadable JSON raise ``DataUnavailableError`` with a message for the page; deviations in
what the page reads are collected as ``problems`` (``benchmark_checks``, without the pipeline) and the
page shows whatever parts are still usable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dashboard.data.benchmark_checks import benchmark_problems
from dashboard.data.files import DataUnavailableError, read_json_object
from runtime.session import short_provider_name

NO_RESULTS_MESSAGE = "no benchmark results yet: run make bench"


@dataclass(frozen=True)
class BenchmarkResults:
    """A results document and the schema problems found in it."""

    path: Path
    document: dict[str, Any]
    problems: tuple[str, ...]  # what the page reads but is missing or mistyped; it warns and shows what it can

    @property
    def scenarios(self) -> list[dict[str, Any]]:
        scenarios = self.document.get("scenarios")
        return [item for item in scenarios if isinstance(item, dict)] if isinstance(scenarios, list) else []

    @property
    def machine(self) -> dict[str, Any]:
        machine = self.document.get("machine")
        return machine if isinstance(machine, dict) else {}


def load_benchmarks(path: Path) -> BenchmarkResults:
    """The results at ``path``; ``DataUnavailableError`` when there are none or they cannot be read."""
    if not path.is_file():
        raise DataUnavailableError(f"{NO_RESULTS_MESSAGE} (looked for {path})")
    document = read_json_object(path, "the benchmark results")
    return BenchmarkResults(path, document, benchmark_problems(document))


def timing_inputs_note(scenario: dict[str, Any]) -> str:
    """What a scenario's rows were timed on (bench.json's ``inputs``), **SYNTHETIC** in bold where they are; a
    file from before the field says that it does not record it."""
    inputs = scenario.get("inputs")
    if not isinstance(inputs, str) or not inputs:
        return "Timing inputs: not recorded in this file (written before bench.json named them)."
    return "Timing inputs: " + ("**SYNTHETIC** — " if scenario.get("inputs_synthetic") is True else "") + inputs


def row_label(row: dict[str, Any]) -> str:
    """``onnxruntime int8-static`` / ``keras predict`` / ``litert int8``."""
    return f"{row.get('engine', '?')} {row.get('variant', '?')}"


def _rows(scenario: dict[str, Any]) -> list[dict[str, Any]]:
    """The scenario's measurement rows that are objects (a results file that breaks the schema loses only the
    entries that do; the page's schema check names them)."""
    rows = scenario.get("rows")
    return [row for row in rows if isinstance(row, dict)] if isinstance(rows, list) else []


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def rows_frame(scenario: dict[str, Any]) -> pd.DataFrame:
    """One row per measurement: engine, variant, provider, threads, latency figures, throughput, size, F1."""
    rows = []
    for row in _rows(scenario):
        latency = _mapping(row.get("latency"))
        entry: dict[str, Any] = {
            "model": row_label(row),
            "shipped": row.get("engine") == "onnxruntime" and row.get("variant") == scenario.get("would_ship"),
            "provider": short_provider_name(str(row.get("provider") or "—")),
            "threads": row.get("threads"),
            "status": row.get("status", "?"),
            "p50_us": latency.get("median_of_windows_us"),
            "p95_us": latency.get("p95_us"),
            "p99_us": latency.get("p99_us"),
            "spread_percent": latency["spread"] * 100 if isinstance(latency.get("spread"), int | float) else None,
            "stable": latency.get("stable"),
            "session_ms": row.get("session_creation_ms"),
            "first_inference_us": row.get("first_inference_us"),
            "size_kib": row["model_size_bytes"] / 1024 if isinstance(row.get("model_size_bytes"), int) else None,
            "peak_rss_mib": row["peak_rss_bytes"] / 2**20 if isinstance(row.get("peak_rss_bytes"), int) else None,
            "macro_f1": row.get("macro_f1"),
            "gate_passed": row.get("gate_passed"),
            "reason": row.get("reason") or "",
        }
        for batch, measured in _mapping(row.get("throughput")).items():
            if isinstance(measured, dict):
                entry[f"batch_{batch}_per_s"] = measured.get("samples_per_second")
        rows.append(entry)
    return pd.DataFrame(rows)


def distribution_frame(scenario: dict[str, Any]) -> pd.DataFrame:
    """Batch-1 latency quantiles in long form (model, provider, threads, quantile, latency_us)."""
    rows = []
    for row in _rows(scenario):
        quantiles = _mapping(row.get("latency")).get("quantiles_us") or []
        if row.get("status") != "ok" or not isinstance(quantiles, list) or len(quantiles) < 2:
            continue
        provider = short_provider_name(str(row.get("provider") or "—"))
        threads = row.get("threads")
        for index, value in enumerate(quantiles):
            rows.append({
                "model": row_label(row),
                "provider": provider,
                "threads": "—" if threads is None else str(threads),
                "series": f"{row_label(row)} · {provider} · {threads if threads is not None else '—'} thr",
                "quantile": index / (len(quantiles) - 1),
                "latency_us": value,
            })
    return pd.DataFrame(rows)


def _paired_ratio(models: dict[str, Any], name: str, reference: str) -> float | None:
    """Median over rounds of the per-round ratio name / reference (None when it cannot be computed)."""
    values = (models.get(name) or {}).get("window_medians_us"), (models.get(reference) or {}).get("window_medians_us")
    if not all(isinstance(series, list) and series for series in values) or len(values[0]) != len(values[1]):
        return None
    try:
        return float(np.median(np.asarray(values[0], dtype=float) / np.asarray(values[1], dtype=float)))
    except (TypeError, ValueError):
        return None


def head_to_head_frame(scenario: dict[str, Any]) -> pd.DataFrame:
    """One row per model and thread count of the interleaved batch-1 comparison (absent in older files)."""
    rows = []
    for entry in scenario.get("head_to_head") or []:
        models = entry.get("models") if isinstance(entry, dict) else None
        if not isinstance(models, dict):
            continue
        for name, model in models.items():
            model = model if isinstance(model, dict) else {}
            spread = model.get("spread")
            rows.append({
                "model": name,
                "threads": entry.get("threads"),
                "rounds": entry.get("rounds"),
                "runs_per_round": entry.get("runs_per_round"),
                "median_of_windows_us": model.get("median_of_windows_us"),
                "spread_percent": spread * 100 if isinstance(spread, int | float) else None,
                "vs_onnx_fp32": _paired_ratio(models, name, "onnxruntime fp32"),
                "vs_litert_int8": _paired_ratio(models, name, "litert int8"),
            })
    return pd.DataFrame(rows)


def targets_frame(scenario: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame([item for item in scenario.get("targets") or [] if isinstance(item, dict)])


def machine_frame(results: BenchmarkResults) -> pd.DataFrame:
    """The machine fingerprint as (property, value) rows."""
    machine = results.machine
    onnxruntime = machine.get("onnxruntime") if isinstance(machine.get("onnxruntime"), dict) else {}
    settings = results.document.get("settings") if isinstance(results.document.get("settings"), dict) else {}
    entries = {
        "CPU": machine.get("cpu_model"),
        "architecture": machine.get("architecture"),
        "ISA flags": ", ".join(machine.get("isa_flags") or []) or "—",
        "usable cores": machine.get("usable_cores"),
        "logical CPUs (host)": machine.get("logical_cpus_host"),
        "affinity CPUs": machine.get("affinity_cpus"),
        "cgroup CPU limit": machine.get("cgroup_cpu_limit"),
        "OS": machine.get("os"),
        "onnxruntime": f"{onnxruntime.get('version', '?')} ({onnxruntime.get('device', '?')})",
        "available providers": ", ".join(onnxruntime.get("available_providers") or []),
        "LiteRT runtime": settings.get("litert_runtime"),
        "quick run": settings.get("quick"),
        "started": results.document.get("started_at"),
        "finished": results.document.get("finished_at"),
    }
    packages = machine.get("packages") if isinstance(machine.get("packages"), dict) else {}
    entries.update({f"package {name}": version for name, version in sorted(packages.items())})
    return pd.DataFrame({"property": list(entries), "value": ["—" if v is None else str(v) for v in entries.values()]})
