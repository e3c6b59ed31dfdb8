"""The issue's speed targets, checked against one scenario's measured rows (never in tests).

* the variant that would ship (bundle rule: fastest batch-1 p50 at 1 thread among those that
  passed the clinical gate) has batch-1 p50 ≤ LiteRT full-int8's, and batch-256 throughput
  ≥ LiteRT full-int8's;
* an int8 variant that ships is faster than ONNX fp32;
* ONNX fp32 batch-1 p50 ≤ LiteRT fp32's.

Latency is the median of window medians; ratios are ONNX / peer for latency and
peer / ONNX for throughput, so a ratio ≤ 1 always means the target is met.
"""

from __future__ import annotations

CPU = "CPUExecutionProvider"


def _latency(row: dict) -> float:
    return float(row["latency"]["median_of_windows_us"])


def _throughput(row: dict, batch_size: int) -> float | None:
    entry = row.get("throughput", {}).get(str(batch_size))
    return float(entry["samples_per_second"]) if entry else None


def _find(rows: list[dict], engine: str, variant: str, threads: int) -> dict | None:
    for row in rows:
        key = (row["engine"], row["variant"], row["threads"])
        matches = row["status"] == "ok" and key == (engine, variant, threads)
        if matches and (engine != "onnxruntime" or row["provider"] == CPU):
            return row
    return None


def would_ship(rows: list[dict], gate_passed: dict[str, bool], threads: int = 1) -> str | None:
    """The variant the bundle rule picks from these measurements (1 thread, CPU, batch 1)."""
    candidates = [row for row in rows if row["status"] == "ok" and row["engine"] == "onnxruntime"
                  and row["provider"] == CPU and row["threads"] == threads and gate_passed.get(row["variant"], False)]
    return min(candidates, key=_latency)["variant"] if candidates else None


def _check(name: str, onnx_value: float | None, peer_value: float | None, lower_is_better: bool, threads: int) -> dict:
    if onnx_value is None or peer_value is None:
        return {"target": name, "threads": threads, "onnx": onnx_value, "peer": peer_value, "ratio": None,
                "met": None}
    ratio = onnx_value / peer_value if lower_is_better else peer_value / onnx_value
    return {"target": name, "threads": threads, "onnx": onnx_value, "peer": peer_value, "ratio": ratio,
            "met": ratio <= 1.0}


def evaluate_targets(document: dict) -> list[dict]:
    rows, shipped = document["rows"], document.get("would_ship")
    thread_counts = sorted({row["threads"] for row in rows if row["status"] == "ok"})
    checks = []
    for threads in thread_counts:
        shipped_row = _find(rows, "onnxruntime", shipped, threads) if shipped else None
        fp32 = _find(rows, "onnxruntime", "fp32", threads)
        litert_int8 = _find(rows, "litert", "int8", threads)
        litert_fp32 = _find(rows, "litert", "fp32", threads)
        checks.append(_check(f"shipped ({shipped}) batch-1 p50 µs ≤ LiteRT int8", _value(shipped_row, _latency),
                             _value(litert_int8, _latency), True, threads))
        checks.append(_check(f"shipped ({shipped}) batch-256 samples/s ≥ LiteRT int8",
                             _value(shipped_row, lambda row: _throughput(row, 256)),
                             _value(litert_int8, lambda row: _throughput(row, 256)), False, threads))
        for variant in ("int8-dynamic", "int8-static"):
            int8_row = _find(rows, "onnxruntime", variant, threads)
            if int8_row is not None and document.get("gate_passed", {}).get(variant):
                checks.append(_check(f"{variant} (passes gate) batch-1 p50 µs < ONNX fp32", _value(int8_row, _latency),
                                     _value(fp32, _latency), True, threads))
        checks.append(_check("ONNX fp32 batch-1 p50 µs ≤ LiteRT fp32", _value(fp32, _latency),
                             _value(litert_fp32, _latency), True, threads))
    return checks


def _value(row: dict | None, getter) -> float | None:
    return getter(row) if row is not None else None
