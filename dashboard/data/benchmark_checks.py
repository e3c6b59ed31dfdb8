"""The reader's check of ``bench.json``: the keys the Benchmarks page reads, and their JSON types.

The harness validates the whole results schema when it writes the file (``pipeline/benchmark/schema.md``).
The dashboard may not import the pipeline (``tests/test_layering.py``) and does not need to: it checks only
what its frames read, lists every deviation, and the page warns and shows whatever is still usable.
Problems read like ``$.scenarios[0].rows[3] (onnxruntime fp32): missing 'latency'``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

KNOWN_SCHEMA_VERSIONS = (2, 3)  # the bench.json versions these readers understand (3: gates of every model, peers)
ROW_STATUSES = ("ok", "not available")  # the page draws distributions for "ok" rows only


@dataclass(frozen=True)
class Field:
    """One key of a JSON object as the dashboard reads it."""

    kinds: tuple[str, ...]  # JSON types it may take: object, array, string, number, integer, boolean, null
    required: bool = True  # False: older (or newer) harnesses may leave it out
    items: tuple[str, ...] = ()  # for an array: the JSON types of its elements; () = not checked


Shape = dict[str, Field]

# The JSON types, as JSON Schema names them.
STRING = "string"
NUMBER = "number"  # an integer is a number too
INTEGER = "integer"
BOOLEAN = "boolean"
NULL = "null"
OBJECT = "object"
ARRAY = "array"

DOCUMENT: Shape = {
    "schema_version": Field((INTEGER,)),
    "started_at": Field((STRING,)),
    "finished_at": Field((STRING,)),
    "settings": Field((OBJECT,)),
    "machine": Field((OBJECT,)),
    "scenarios": Field((ARRAY,), items=(OBJECT,)),
}
SETTINGS: Shape = {"quick": Field((BOOLEAN,)), "litert_runtime": Field((STRING, NULL), required=False)}
MACHINE: Shape = {
    "cpu_model": Field((STRING, NULL)),
    "isa_flags": Field((ARRAY,), items=(STRING,)),
    "usable_cores": Field((INTEGER,)),
    "onnxruntime": Field((OBJECT,)),
    "packages": Field((OBJECT,)),
}
ONNXRUNTIME: Shape = {
    "version": Field((STRING,)),
    "device": Field((STRING,), required=False),
    "available_providers": Field((ARRAY,), required=False, items=(STRING,)),
}
SCENARIO: Shape = {
    "name": Field((STRING,)),
    "rows": Field((ARRAY,), items=(OBJECT,)),
    "targets": Field((ARRAY,), items=(OBJECT,)),
    "would_ship": Field((STRING, NULL)),
    "head_to_head": Field((ARRAY,), required=False, items=(OBJECT,)),  # absent in files from before that phase
    "judgements": Field((OBJECT,), required=False),  # schema 3: every model's accuracy and gate verdict
    "peers": Field((ARRAY,), required=False, items=(OBJECT,)),  # schema 3: the LiteRT peer per thread count
}
ROW: Shape = {
    "engine": Field((STRING,)),
    "variant": Field((STRING,)),
    "provider": Field((STRING, NULL)),
    "threads": Field((INTEGER, NULL)),
    "status": Field((STRING,)),
    "reason": Field((STRING, NULL)),
}
OK_ROW: Shape = {  # what an "ok" row adds: the measurements
    "model_size_bytes": Field((INTEGER,)),
    "session_creation_ms": Field((NUMBER,)),
    "first_inference_us": Field((NUMBER,)),
    "latency": Field((OBJECT,)),
    "throughput": Field((OBJECT,)),
    "peak_rss_bytes": Field((INTEGER,)),
    "macro_f1": Field((NUMBER, NULL)),
    "gate_passed": Field((BOOLEAN, NULL), required=False),
    "accuracy_measured_on": Field((STRING, NULL), required=False),  # schema 3
}
PEER: Shape = {  # schema 3: one thread count's LiteRT peer (the page shows who and why)
    "threads": Field((INTEGER,)),
    "chosen": Field((STRING, NULL)),
    "reason": Field((STRING,)),
}
LATENCY: Shape = {
    "median_of_windows_us": Field((NUMBER,)),
    "p95_us": Field((NUMBER,)),
    "p99_us": Field((NUMBER,)),
    "spread": Field((NUMBER,)),
    "stable": Field((BOOLEAN,)),
    "quantiles_us": Field((ARRAY,), items=(NUMBER,)),
}
THROUGHPUT: Shape = {"samples_per_second": Field((NUMBER,))}
HEAD_TO_HEAD: Shape = {
    "threads": Field((INTEGER,)),
    "rounds": Field((INTEGER,)),
    "runs_per_round": Field((INTEGER,)),
    "models": Field((OBJECT,)),
}
HEAD_TO_HEAD_MODEL: Shape = {
    "median_of_windows_us": Field((NUMBER,)),
    "spread": Field((NUMBER,)),
    "window_medians_us": Field((ARRAY,), items=(NUMBER,)),
}


def _kind(value: object) -> str:
    if value is None:
        return NULL
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, int):
        return INTEGER
    if isinstance(value, float):
        return NUMBER
    if isinstance(value, str):
        return STRING
    if isinstance(value, list):
        return ARRAY
    return OBJECT if isinstance(value, dict) else type(value).__name__


def _fits(value: object, kinds: tuple[str, ...]) -> bool:
    kind = _kind(value)
    return kind in kinds or (kind == INTEGER and NUMBER in kinds)


def _shape_problems(value: dict[str, Any], shape: Shape, where: str) -> list[str]:
    problems = []
    for key, field in shape.items():
        if key not in value:
            problems += [f"{where}: missing {key!r}"] if field.required else []
        elif not _fits(value[key], field.kinds):
            problems.append(f"{where}.{key}: expected {' or '.join(field.kinds)}, got {_kind(value[key])}")
        elif field.items and isinstance(value[key], list):
            problems += [f"{where}.{key}[{index}]: expected {' or '.join(field.items)}, got {_kind(item)}"
                         for index, item in enumerate(value[key]) if not _fits(item, field.items)]
    return problems


def _objects(value: object, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, object) for each object in a list or in a dict's values (other values: reported by the shape)."""
    pairs = enumerate(value) if isinstance(value, list) else value.items() if isinstance(value, dict) else ()
    for key, item in pairs:
        if isinstance(item, dict):
            yield (f"{where}[{key}]" if isinstance(value, list) else f"{where}.{key}"), item


def _row_problems(row: dict[str, Any], where: str) -> list[str]:
    where = f"{where} ({row.get('engine', '?')} {row.get('variant', '?')})"
    problems = _shape_problems(row, ROW, where)
    if isinstance(row.get("status"), str) and row["status"] not in ROW_STATUSES:
        problems.append(f"{where}.status: {row['status']!r} is not one of {list(ROW_STATUSES)}")
    if row.get("status") != "ok":
        return problems
    problems += _shape_problems(row, OK_ROW, where)
    if isinstance(row.get("latency"), dict):
        problems += _shape_problems(row["latency"], LATENCY, f"{where}.latency")
    for path, measured in _objects(row.get("throughput"), f"{where}.throughput"):
        problems += _shape_problems(measured, THROUGHPUT, path)
    return problems


def _scenario_problems(scenario: dict[str, Any], where: str) -> list[str]:
    problems = _shape_problems(scenario, SCENARIO, where)
    for path, row in _objects(scenario.get("rows"), f"{where}.rows"):
        problems += _row_problems(row, path)
    for path, peer in _objects(scenario.get("peers"), f"{where}.peers"):
        problems += _shape_problems(peer, PEER, path)
    for path, entry in _objects(scenario.get("head_to_head"), f"{where}.head_to_head"):
        problems += _shape_problems(entry, HEAD_TO_HEAD, path)
        for model_path, model in _objects(entry.get("models"), f"{path}.models"):
            problems += _shape_problems(model, HEAD_TO_HEAD_MODEL, model_path)
    return problems


def benchmark_problems(document: dict[str, Any]) -> tuple[str, ...]:
    """Every place ``document`` lacks or mistypes something the Benchmarks page reads (empty when it is fine)."""
    problems = _shape_problems(document, DOCUMENT, "$")
    version = document.get("schema_version")
    if _kind(version) == INTEGER and version not in KNOWN_SCHEMA_VERSIONS:
        problems.append(f"$.schema_version: {version!r} is not one of {list(KNOWN_SCHEMA_VERSIONS)}")
    if isinstance(document.get("settings"), dict):
        problems += _shape_problems(document["settings"], SETTINGS, "$.settings")
    machine = document.get("machine")
    if isinstance(machine, dict):
        problems += _shape_problems(machine, MACHINE, "$.machine")
        if isinstance(machine.get("onnxruntime"), dict):
            problems += _shape_problems(machine["onnxruntime"], ONNXRUNTIME, "$.machine.onnxruntime")
    for path, scenario in _objects(document.get("scenarios"), "$.scenarios"):
        problems += _scenario_problems(scenario, path)
    return tuple(problems)
