"""The JSON schema of ``bench.json`` (a JSON Schema subset) and a small validator for it.

Only ``type``, ``required``, ``properties``, ``items``, ``enum`` and
``additionalProperties`` (as a schema for dict values) are used, so the validator
below needs no third-party package. ``schema.md`` explains every field.
"""

from __future__ import annotations

from pipeline.benchmark.errors import BenchmarkError

_NUMBER = {"type": "number"}
_INTEGER = {"type": "integer"}
_NULLABLE_NUMBER = {"type": ["number", "null"]}
_NULLABLE_STRING = {"type": ["string", "null"]}
LATENCY_SCHEMA = {
    "type": "object",
    "required": ["mean_us", "p50_us", "p90_us", "p95_us", "p99_us", "minimum_us", "max_us", "std_us", "iterations",
                 "warmup_iterations", "window_medians_us", "median_of_windows_us", "spread", "stable", "quantiles_us"],
    "properties": {
        **{key: _NUMBER for key in ("mean_us", "p50_us", "p90_us", "p95_us", "p99_us", "minimum_us", "max_us", "std_us",
                                    "median_of_windows_us", "spread")},
        "iterations": _INTEGER,
        "warmup_iterations": _INTEGER,
        "window_medians_us": {"type": "array", "items": _NUMBER},
        "quantiles_us": {"type": "array", "items": _NUMBER},
        "stable": {"type": "boolean"},
    },
}
ROW_SCHEMA = {
    "type": "object",
    "required": ["engine", "variant", "provider", "threads", "status", "reason"],
    "properties": {
        "engine": {"enum": ["onnxruntime", "keras", "litert"]},
        "variant": {"type": "string"},
        "provider": {"type": ["string", "null"]},
        "threads": {"type": ["integer", "null"]},
        "status": {"enum": ["ok", "not available"]},
        "reason": {"type": ["string", "null"]},
        "model_file": {"type": "string"},
        "model_size_bytes": _INTEGER,
        "session_creation_ms": _NUMBER,
        "first_inference_us": _NUMBER,
        "latency": LATENCY_SCHEMA,
        "throughput": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["samples_per_second", "batch_latency"],
                "properties": {"samples_per_second": _NUMBER, "batch_latency": LATENCY_SCHEMA},
            },
        },
        "peak_rss_bytes": _INTEGER,
        "macro_f1": _NULLABLE_NUMBER,
        "accuracy_metric": _NULLABLE_STRING,
        "accuracy": _NULLABLE_NUMBER,
        "accuracy_measured_on": _NULLABLE_STRING,
        "gate_passed": {"type": ["boolean", "null"]},
        "gate_reason": _NULLABLE_STRING,
        "runtime": {"type": "object"},
    },
}
# Rows with status "ok" must carry the measurement fields too.
OK_ROW_REQUIRED = ("model_file", "model_size_bytes", "session_creation_ms", "first_inference_us", "latency",
                   "throughput", "peak_rss_bytes", "macro_f1", "accuracy_metric", "accuracy", "accuracy_measured_on",
                   "gate_passed", "gate_reason", "runtime")
JUDGEMENT_SCHEMA = {  # one model's accuracy and verdict by the build's gate (same_gate.Judgement)
    "type": "object",
    "required": ["passed", "reason", "metric", "value", "measured_on", "samples", "recordings"],
    "properties": {
        "passed": {"type": ["boolean", "null"]},
        "reason": {"type": "string"},
        "metric": _NULLABLE_STRING,
        "value": _NULLABLE_NUMBER,
        "measured_on": {"type": "string"},
        "samples": {"type": ["object", "null"], "required": ["passed", "reason"]},
        "recordings": {"type": ["object", "null"], "required": ["passed", "reason", "figures", "measured_on"],
                       "properties": {"passed": {"type": ["boolean", "null"]}, "reason": {"type": "string"},
                                      "figures": {"type": ["object", "null"]}, "measured_on": {"type": "string"}}},
    },
}
PEER_SCHEMA = {  # the LiteRT peer at one thread count (peer_choice.PeerChoice)
    "type": "object",
    "required": ["threads", "chosen", "reason", "candidates"],
    "properties": {
        "threads": _INTEGER,
        "chosen": _NULLABLE_STRING,
        "reason": {"type": "string"},
        "candidates": {"type": "array", "items": {
            "type": "object",
            "required": ["name", "passed", "latency_us", "reason", "source"],
            "properties": {"name": {"type": "string"}, "passed": {"type": ["boolean", "null"]},
                           "latency_us": _NULLABLE_NUMBER, "reason": {"type": "string"},
                           "source": {"enum": ["head-to-head", "per-process", None]}},
        }},
    },
}
TARGET_SCHEMA = {
    "type": "object",
    "required": ["target", "threads", "onnx", "peer", "ratio", "met"],  # "source" since the head-to-head phase
    "properties": {"target": {"type": "string"}, "threads": _INTEGER, "onnx": _NULLABLE_NUMBER,
                   "peer": _NULLABLE_NUMBER, "ratio": _NULLABLE_NUMBER, "met": {"type": ["boolean", "null"]},
                   "source": {"enum": ["head-to-head", "per-process"]},
                   "note": {"type": "string"}},  # why a check has no values (no LiteRT peer passes the gate)
}
_INTERLEAVED_MODEL = {
    "type": "object",
    "required": ["median_of_windows_us", "spread", "window_medians_us"],
    "properties": {"median_of_windows_us": _NUMBER, "spread": _NUMBER,
                   "window_medians_us": {"type": "array", "items": _NUMBER}},
}
HEAD_TO_HEAD_BATCH_SCHEMA = {  # the batch-256 part of a head-to-head entry (absent in older files)
    "type": "object",
    "required": ["rounds", "runs_per_round", "models"],
    "properties": {
        "rounds": _INTEGER,
        "runs_per_round": _INTEGER,
        "models": {
            "type": "object",
            "additionalProperties": {**_INTERLEAVED_MODEL,
                                     "required": [*_INTERLEAVED_MODEL["required"], "samples_per_second"],
                                     "properties": {**_INTERLEAVED_MODEL["properties"],
                                                    "samples_per_second": _NUMBER}},
        },
    },
}
HEAD_TO_HEAD_SCHEMA = {
    "type": "object",
    "required": ["threads", "rounds", "runs_per_round", "models"],
    "properties": {
        "threads": _INTEGER,
        "rounds": _INTEGER,
        "runs_per_round": _INTEGER,
        "models": {"type": "object", "additionalProperties": _INTERLEAVED_MODEL},
        "runtime": {"type": "object"},
        "batch_256": HEAD_TO_HEAD_BATCH_SCHEMA,
        "left_out": {"type": "object", "additionalProperties": {"type": "string"}},  # peers that could not run
    },
}
BENCH_SCHEMA = {
    "type": "object",
    "required": ["schema_version", "started_at", "finished_at", "settings", "machine", "scenarios"],
    "properties": {
        "schema_version": {"enum": [3]},
        "started_at": {"type": "string"},
        "finished_at": {"type": "string"},
        "settings": {
            "type": "object",
            "required": ["quick", "stability", "batch_sizes", "threads", "providers", "session", "peers"],
            "properties": {"batch_sizes": {"type": "array", "items": _INTEGER},
                           "threads": {"type": "array", "items": _INTEGER},
                           "providers": {"type": "array", "items": {"type": "string"}}},
        },
        "machine": {
            "type": "object",
            "required": ["cpu_model", "isa_flags", "usable_cores", "onnxruntime", "packages"],
        },
        "scenarios": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "inputs", "inputs_synthetic", "rows", "targets", "would_ship", "gate_passed",
                             "lineage", "judgements", "peers"],
                "properties": {
                    "name": {"type": "string"},
                    "inputs": {"type": "string"},  # what every timing of the scenario ran on, in words
                    "inputs_synthetic": {"type": ["boolean", "null"]},  # null: not known
                    "rows": {"type": "array", "items": ROW_SCHEMA},
                    "targets": {"type": "array", "items": TARGET_SCHEMA},
                    "head_to_head": {"type": "array", "items": HEAD_TO_HEAD_SCHEMA},  # absent in older files
                    "would_ship": {"type": ["string", "null"]},
                    "judgements": {"type": "object", "additionalProperties": JUDGEMENT_SCHEMA},
                    "peers": {"type": "array", "items": PEER_SCHEMA},
                },
            },
        },
        "ablation": {"type": "object"},
    },
}
_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _type_matches(value: object, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, _TYPES[name])


def schema_errors(value: object, schema: dict, where: str = "$") -> list[str]:
    """Every place ``value`` breaks ``schema`` (empty when it conforms)."""
    errors: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {value!r} is not one of {schema['enum']}"]
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_type_matches(value, name) for name in names):
            return [f"{where}: expected {' or '.join(names)}, got {type(value).__name__}"]
    if isinstance(value, dict):
        errors += [f"{where}: missing {key!r}" for key in schema.get("required", []) if key not in value]
        for key, child in schema.get("properties", {}).items():
            if key in value:
                errors += schema_errors(value[key], child, f"{where}.{key}")
        if isinstance(schema.get("additionalProperties"), dict):
            for key, item in value.items():
                if key not in schema.get("properties", {}):
                    errors += schema_errors(item, schema["additionalProperties"], f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            errors += schema_errors(item, schema["items"], f"{where}[{index}]")
    return errors


def head_to_head_errors(entry: object, where: str) -> list[str]:
    """What the schema language cannot say about one head-to-head entry and its batch-256 part: one window
    median per round, every median positive, at least two models (at batch 256: models of the entry)."""
    errors = _rounds_errors(entry, where)
    part = entry.get("batch_256") if isinstance(entry, dict) else None
    if isinstance(part, dict):
        errors += _rounds_errors(part, f"{where}.batch_256")
        if isinstance(part.get("models"), dict) and isinstance(entry.get("models"), dict):
            errors += [f"{where}.batch_256.models.{name}: not timed at batch 1 (not in {where}.models)"
                       for name in part["models"] if name not in entry["models"]]
    return errors


def _rounds_errors(entry: object, where: str) -> list[str]:
    if not isinstance(entry, dict) or not isinstance(entry.get("models"), dict):
        return []
    count = len(entry["models"])
    errors = [f"{where}.models: {count} model(s), expected at least 2"] if count < 2 else []
    for name, model in entry["models"].items():
        medians = model.get("window_medians_us") if isinstance(model, dict) else None
        if not isinstance(medians, list):
            continue
        if len(medians) != entry.get("rounds"):
            errors.append(f"{where}.models.{name}: {len(medians)} window medians for {entry.get('rounds')} rounds")
        if any(not _type_matches(value, "number") or value <= 0 for value in medians):
            errors.append(f"{where}.models.{name}: window medians must be positive numbers")
    return errors


def validate_results(document: dict) -> None:
    """``BenchmarkError`` listing every schema violation of a results document."""
    errors = schema_errors(document, BENCH_SCHEMA)
    for scenario_index, scenario in enumerate(document.get("scenarios", [])):
        for row_index, row in enumerate(scenario.get("rows", [])):
            if row.get("status") == "ok":
                where = f"$.scenarios[{scenario_index}].rows[{row_index}]"
                errors += [f"{where}: missing {key!r}" for key in OK_ROW_REQUIRED if key not in row]
        for entry_index, entry in enumerate(scenario.get("head_to_head") or []):
            errors += head_to_head_errors(entry, f"$.scenarios[{scenario_index}].head_to_head[{entry_index}]")
    if errors:
        raise BenchmarkError(
            f"the benchmark results break their schema in {len(errors)} place(s): " + "; ".join(errors[:10]),
            expected="a document matching pipeline/benchmark/schema.py (schema.md)",
            fix="report this as a harness bug; no results file was written",
        )
