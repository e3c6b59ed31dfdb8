"""The issue's speed targets, checked against one scenario's measurements (never in tests).

* the variant that would ship (bundle rule: fastest batch-1 p50 at 1 thread among those that
  passed the clinical gate) has batch-1 p50 ≤ the LiteRT peer's, and batch-256 throughput ≥ the
  peer's — the peer being the fastest LiteRT variant that passes the same gate at that thread
  count (``peer_choice``; a faster LiteRT model that fails the gate is no peer). With no LiteRT
  variant passing, these checks have no values and their note says why;
* an int8 variant that ships is faster than ONNX fp32 (checked only when one ships);
* ONNX fp32 batch-1 p50 ≤ LiteRT fp32's (the plain same-precision comparison, whatever its verdict).

Comparisons come from the scenario's head-to-head at that thread count when it measured both
models (``"source": "head-to-head"``) — its batch-1 part for latency, its ``batch_256`` part
for throughput: the values shown are the two medians of window medians (as samples/s for
throughput) and the ratio is the median over rounds of the per-round ratios ONNX time / peer
time, both numbers of each measured within milliseconds of each other (for throughput that is
peer samples/s ÷ ONNX samples/s, round by round). Otherwise they come from the per-process rows
(``"source": "per-process"``): the median of window medians, ratio = ONNX / peer for latency
and peer / ONNX for throughput. A ratio ≤ 1 always means the target is met.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pipeline.benchmark.head_to_head import (
    THROUGHPUT_BATCH,
    THROUGHPUT_KEY,
    candidate_name,
    entry_for,
    interleaved_result,
)
from pipeline.config import BundleConfig
from runtime.session import CPU_PROVIDER

MIN_SPEEDUP_OVER_FP32 = BundleConfig().min_speedup_over_fp32  # the bundle stage's margin
HEAD_TO_HEAD = "head-to-head"
PER_PROCESS = "per-process"


def _latency(row: dict) -> float:
    return float(row["latency"]["median_of_windows_us"])


def _throughput(row: dict, batch_size: int) -> float | None:
    entry = row.get("throughput", {}).get(str(batch_size))
    return float(entry["samples_per_second"]) if entry else None


def _find(rows: list[dict], engine: str, variant: str, threads: int) -> dict | None:
    for row in rows:
        key = (row["engine"], row["variant"], row["threads"])
        matches = row["status"] == "ok" and key == (engine, variant, threads)
        if matches and (engine != "onnxruntime" or row["provider"] == CPU_PROVIDER):
            return row
    return None


def would_ship(rows: list[dict], gate_passed: dict[str, bool], head_to_head: list[dict] | None = None,
               threads: int = 1, min_speedup: float = MIN_SPEEDUP_OVER_FP32) -> str | None:
    """The variant the bundle rule picks from these measurements (1 thread, CPU, batch 1).

    Ranked like the bundle stage ranks them — by the median of per-round ratios to ONNX fp32,
    a reduced-precision variant needing to beat fp32 by ``min_speedup`` — when the head-to-head
    at ``threads`` timed every candidate and fp32, by its medians when it timed every candidate
    but not fp32, else by the per-process p50s.
    """
    candidates = [row["variant"] for row in rows if row["status"] == "ok" and row["engine"] == "onnxruntime"
                  and row["provider"] == CPU_PROVIDER and row["threads"] == threads
                  and gate_passed.get(row["variant"], False)]
    if not candidates:
        return None
    entry = entry_for(head_to_head, threads)
    names = {variant: candidate_name("onnxruntime", variant) for variant in candidates}
    if entry is not None and all(name in entry["models"] for name in names.values()):
        models = entry["models"]
        reference = models.get(candidate_name("onnxruntime", "fp32"))
        if reference is not None:
            def paired(variant: str) -> float:
                ratios = np.asarray(models[names[variant]]["window_medians_us"]) / np.asarray(
                    reference["window_medians_us"])
                return float(np.median(ratios))

            fastest = min(candidates, key=paired)
            if fastest != "fp32" and "fp32" in candidates and paired(fastest) > 1.0 - min_speedup:
                return "fp32"
            return fastest
        return min(candidates, key=lambda variant: models[names[variant]]["median_of_windows_us"])
    return min(candidates, key=lambda variant: _latency(_find(rows, "onnxruntime", variant, threads)))


def _check(name: str, onnx_value: float | None, peer_value: float | None, lower_is_better: bool, threads: int,
           source: str = PER_PROCESS) -> dict:
    if onnx_value is None or peer_value is None:
        return {"target": name, "threads": threads, "onnx": onnx_value, "peer": peer_value, "ratio": None,
                "met": None, "source": source}
    ratio = onnx_value / peer_value if lower_is_better else peer_value / onnx_value
    return {"target": name, "threads": threads, "onnx": onnx_value, "peer": peer_value, "ratio": ratio,
            "met": ratio <= 1.0, "source": source}


def _paired_check(name: str, part: dict | None, model: tuple[str, str] | None, peer: tuple[str, str], threads: int,
                  value: Callable[[float], float] = float) -> dict | None:
    """``model`` against ``peer`` from a head-to-head part that timed both (else None): ``value`` of each
    model's median µs, ratio = median over rounds of model time / peer time."""
    if model is None or part is None:
        return None
    model_name, peer_name = candidate_name(*model), candidate_name(*peer)
    if model_name not in part["models"] or peer_name not in part["models"]:
        return None
    result = interleaved_result(part)
    ratio = result.ratio(model_name, peer_name)
    return {"target": name, "threads": threads, "onnx": value(result.median_of_windows_us(model_name)),
            "peer": value(result.median_of_windows_us(peer_name)), "ratio": ratio, "met": ratio <= 1.0,
            "source": HEAD_TO_HEAD}


def _samples_per_second(batch_median_us: float) -> float:
    return THROUGHPUT_BATCH / (batch_median_us / 1e6)


def _latency_check(name: str, document: dict, model: tuple[str, str] | None, peer: tuple[str, str],
                   threads: int) -> dict:
    """Batch-1 p50 of ``model`` against ``peer`` (engine, variant): head-to-head when both were in it."""
    paired = _paired_check(name, entry_for(document.get("head_to_head"), threads), model, peer, threads)
    if paired is not None:
        return paired
    rows = document["rows"]
    model_row = _find(rows, *model, threads) if model is not None else None
    return _check(name, _value(model_row, _latency), _value(_find(rows, *peer, threads), _latency), True, threads)


def _throughput_check(name: str, document: dict, model: tuple[str, str] | None, peer: tuple[str, str],
                      threads: int) -> dict:
    """Batch-256 samples/s of ``model`` against ``peer``: the head-to-head's batch-256 part when both were in
    it (ratio = median of per-round ONNX time / peer time = peer samples/s ÷ ONNX samples/s), else rows."""
    entry = entry_for(document.get("head_to_head"), threads)
    part = entry.get(THROUGHPUT_KEY) if entry is not None else None
    paired = _paired_check(name, part, model, peer, threads, _samples_per_second)
    if paired is not None:
        return paired
    rows = document["rows"]
    model_row = _find(rows, *model, threads) if model is not None else None

    def throughput(row: dict) -> float | None:
        return _throughput(row, THROUGHPUT_BATCH)

    return _check(name, _value(model_row, throughput), _value(_find(rows, *peer, threads), throughput), False,
                  threads)


def _peer(document: dict, threads: int) -> tuple[tuple[str, str] | None, str]:
    """(engine, variant) of the LiteRT peer at ``threads`` and the choice's reason (``peer_choice``)."""
    choice = next((item for item in document.get("peers") or [] if item["threads"] == threads), None)
    if choice is None:
        return None, "no LiteRT peer was measured at this thread count"
    chosen = choice["chosen"]
    return (("litert", chosen.removeprefix("litert ")) if chosen else None), choice["reason"]


def _without_peer(name: str, threads: int, note: str) -> dict:
    return {"target": name, "threads": threads, "onnx": None, "peer": None, "ratio": None, "met": None,
            "source": PER_PROCESS, "note": note}


def evaluate_targets(document: dict) -> list[dict]:
    rows, shipped = document["rows"], document.get("would_ship")
    thread_counts = sorted({row["threads"] for row in rows if row["status"] == "ok"})
    shipped_model = ("onnxruntime", shipped) if shipped else None
    checks = []
    for threads in thread_counts:
        peer, why = _peer(document, threads)
        latency = f"shipped ({shipped}) batch-1 p50 µs ≤ LiteRT peer"
        throughput = f"shipped ({shipped}) batch-{THROUGHPUT_BATCH} samples/s ≥ LiteRT peer"
        if peer is None:
            checks += [_without_peer(latency, threads, why), _without_peer(throughput, threads, why)]
        else:
            named = f" ({candidate_name(*peer)}: the fastest LiteRT that passes the gate)"
            checks.append(_latency_check(latency + named, document, shipped_model, peer, threads))
            checks.append(_throughput_check(throughput + named, document, shipped_model, peer, threads))
        if shipped is not None and shipped.startswith("int8"):  # "wherever an int8 variant ships"
            checks.append(_latency_check(f"shipped int8 ({shipped}) batch-1 p50 µs < ONNX fp32", document,
                                         shipped_model, ("onnxruntime", "fp32"), threads))
        checks.append(_latency_check("ONNX fp32 batch-1 p50 µs ≤ LiteRT fp32", document, ("onnxruntime", "fp32"),
                                     ("litert", "fp32"), threads))
    return checks


def _value(row: dict | None, getter) -> float | None:
    return getter(row) if row is not None else None
