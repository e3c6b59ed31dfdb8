"""Head-to-head: speed targets and the bundle rule from hand-made measurements (head-to-head ratios first,
per-process rows as fallback), its bench.md tables (batch 1 and 256), and how many rounds it times."""

from __future__ import annotations

import pytest

from pipeline.benchmark.errors import TimingSettingsError
from pipeline.benchmark.head_to_head import (
    QUICK_HEAD_TO_HEAD,
    HeadToHeadConfig,
    measure_rounds,
    rotation_rounds,
    runs_per_round,
)
from pipeline.benchmark.report import head_to_head_batch_table, head_to_head_table
from pipeline.benchmark.schema import head_to_head_errors
from pipeline.benchmark.targets import evaluate_targets, would_ship

CPU = "CPUExecutionProvider"
PEER = " (litert int8: the fastest LiteRT that passes the gate)"
LITERT_TARGET = "shipped (int8-static) batch-1 p50 µs ≤ LiteRT peer" + PEER
FP32_TARGET = "ONNX fp32 batch-1 p50 µs ≤ LiteRT fp32"
INT8_TARGET = "shipped int8 (int8-static) batch-1 p50 µs < ONNX fp32"
THROUGHPUT_TARGET = "shipped (int8-static) batch-256 samples/s ≥ LiteRT peer" + PEER
# The peer choice of these hand-made documents: LiteRT int8 passed the gate at both thread counts.
PEERS = [{"threads": threads, "chosen": "litert int8", "reason": "hand-made", "candidates": []} for threads in (1, 2)]


def _row(engine: str, variant: str, threads: int, median_of_windows_us: float) -> dict:
    return {"engine": engine, "variant": variant, "provider": CPU if engine == "onnxruntime" else None,
            "threads": threads, "status": "ok", "latency": {"median_of_windows_us": median_of_windows_us},
            "throughput": {"256": {"samples_per_second": 1e6 / median_of_windows_us}}}


def _model(window_medians: list[float]) -> dict:
    ordered = sorted(window_medians)
    return {"median_of_windows_us": ordered[len(ordered) // 2], "spread": 0.0, "window_medians_us": window_medians}


def _batch_model(window_medians: list[float]) -> dict:
    model = _model(window_medians)
    return {**model, "samples_per_second": 256 / (model["median_of_windows_us"] / 1e6)}


def _document(head_to_head: list[dict]) -> dict:
    rows = [_row(engine, variant, threads, median) for threads in (1, 2) for engine, variant, median in (
        ("onnxruntime", "fp32", 10.0), ("onnxruntime", "int8-static", 12.0), ("litert", "int8", 11.0),
        ("litert", "fp32", 9.0))]
    return {"rows": rows, "head_to_head": head_to_head, "gate_passed": {"fp32": True, "int8-static": True},
            "peers": PEERS}


# Paired ratios differ from ratios of medians: int8-static / litert int8 per round = 10/11, 20/22, 21/19
# → median 0.909 (met), while median / median = 20 / 19 = 1.05; fp32 / litert fp32 = 1.25, 0.75, 1.17
# → 1.17 (not met), while 30 / 30 = 1.
HEAD_TO_HEAD = [{"threads": 1, "rounds": 3, "runs_per_round": 10, "models": {
    "onnxruntime fp32": _model([25.0, 30.0, 35.0]),
    "onnxruntime int8-static": _model([10.0, 20.0, 21.0]),
    "litert int8": _model([11.0, 22.0, 19.0]),
    "litert fp32": _model([20.0, 40.0, 30.0]),
}}]


# Batch 256, per round: int8-static / litert int8 = 1000/1100, 2000/2200, 2100/1900 → median 0.909 (met: the
# peer's samples/s ÷ ONNX's), while the medians give 2000 / 1900 = 1.05 (not met); fp32 / litert int8 = 1.36,
# 1.36, 1.47 → 1.36.
BATCH_256 = {"rounds": 3, "runs_per_round": 4, "models": {
    "onnxruntime fp32": _batch_model([1500.0, 3000.0, 2800.0]),
    "onnxruntime int8-static": _batch_model([1000.0, 2000.0, 2100.0]),
    "litert int8": _batch_model([1100.0, 2200.0, 1900.0]),
}}


def _checks(document: dict) -> dict[tuple[str, int], dict]:
    document["would_ship"] = would_ship(document["rows"], document["gate_passed"], document.get("head_to_head"))
    return {(check["target"], check["threads"]): check for check in evaluate_targets(document)}


def test_latency_targets_use_the_paired_head_to_head_ratio() -> None:
    document = _document(HEAD_TO_HEAD)
    assert would_ship(document["rows"], document["gate_passed"]) == "fp32"  # per-process rows alone
    checks = _checks(document)
    assert document["would_ship"] == "int8-static"  # head-to-head medians: 20 < 30
    # int8 at 0.6× fp32 is not 50 % faster: with that margin the reference ships.
    assert would_ship(document["rows"], document["gate_passed"], HEAD_TO_HEAD, min_speedup=0.5) == "fp32"
    shipped = checks[(LITERT_TARGET, 1)]
    assert shipped["source"] == "head-to-head" and (shipped["onnx"], shipped["peer"]) == (20.0, 19.0)
    assert shipped["ratio"] == pytest.approx(10 / 11) and shipped["met"] is True
    assert checks[(INT8_TARGET, 1)]["ratio"] == pytest.approx(0.6) and checks[(INT8_TARGET, 1)]["met"] is True
    assert checks[(FP32_TARGET, 1)]["ratio"] == pytest.approx(35 / 30) and checks[(FP32_TARGET, 1)]["met"] is False
    throughput = next(check for check in checks.values() if "batch-256" in check["target"] and check["threads"] == 1)
    assert throughput["source"] == "per-process" and throughput["ratio"] == pytest.approx(12.0 / 11.0)


def test_targets_fall_back_to_per_process_rows() -> None:
    checks = _checks(_document(HEAD_TO_HEAD))
    two_threads = checks[(LITERT_TARGET, 2)]  # no head-to-head at 2 threads
    assert two_threads["source"] == "per-process" and two_threads["ratio"] == pytest.approx(12.0 / 11.0)
    without = _checks(_document([]))
    assert all(check["source"] == "per-process" for check in without.values())
    assert without[("shipped (fp32) batch-1 p50 µs ≤ LiteRT peer" + PEER, 1)]["ratio"] == pytest.approx(10.0 / 11.0)
    assert without[(FP32_TARGET, 1)]["onnx"] == 10.0 and without[(FP32_TARGET, 1)]["peer"] == 9.0
    no_peers = [{**HEAD_TO_HEAD[0], "models": {name: model for name, model in HEAD_TO_HEAD[0]["models"].items()
                                               if name.startswith("onnxruntime")}}]
    partial = _checks(_document(no_peers))
    assert partial[(INT8_TARGET, 1)]["source"] == "head-to-head"
    assert not any("shipped int8" in target for target, _ in without)  # fp32 ships: no int8 check
    assert partial[(FP32_TARGET, 1)]["source"] == "per-process"


def test_head_to_head_table_shows_medians_and_paired_ratios() -> None:
    judgements = {"onnxruntime int8-static": {"passed": True}, "litert fp32": {"passed": False}}
    table = head_to_head_table({"would_ship": "int8-static", "head_to_head": HEAD_TO_HEAD, "peers": PEERS,
                                "judgements": judgements})
    lines = {line.split(" | ")[0].strip("| "): line for line in table.splitlines()[2:]}
    assert set(lines) == {"onnxruntime fp32", "onnxruntime int8-static ✓", "litert int8 (peer)", "litert fp32"}
    assert lines["onnxruntime int8-static ✓"].endswith("| 20.0 | 55 % | pass | 0.60 | 0.91 |")
    assert "| 3 × 10 |" in lines["litert fp32"] and "| FAIL |" in lines["litert fp32"]
    without_peer = head_to_head_table({"would_ship": "int8-static", "head_to_head": HEAD_TO_HEAD})
    assert all(line.endswith("| – |") for line in without_peer.splitlines()[2:])  # no peer passed: no ratio


def test_throughput_target_uses_the_paired_batch_256_ratio() -> None:
    checks = _checks(_document([{**HEAD_TO_HEAD[0], "batch_256": BATCH_256}]))
    throughput = checks[(THROUGHPUT_TARGET, 1)]
    assert throughput["source"] == "head-to-head"
    assert throughput["onnx"] == pytest.approx(256 / 2000e-6) and throughput["peer"] == pytest.approx(256 / 1900e-6)
    assert throughput["ratio"] == pytest.approx(1000 / 1100) and throughput["met"] is True  # medians: 1.05
    assert checks[(LITERT_TARGET, 1)]["ratio"] == pytest.approx(10 / 11)  # batch 1 unchanged
    two_threads = checks[(THROUGHPUT_TARGET, 2)]  # no head-to-head at 2 threads: per-process, peer ÷ ONNX
    assert two_threads["source"] == "per-process" and two_threads["ratio"] == pytest.approx(12.0 / 11.0)


def test_throughput_target_falls_back_to_per_process_rows() -> None:
    without = _checks(_document(HEAD_TO_HEAD))[(THROUGHPUT_TARGET, 1)]  # an entry with no batch_256 part
    assert without["source"] == "per-process" and without["ratio"] == pytest.approx(12.0 / 11.0)
    no_peer = {**BATCH_256, "models": {name: model for name, model in BATCH_256["models"].items()
                                       if name != "litert int8"}}
    partial = _checks(_document([{**HEAD_TO_HEAD[0], "batch_256": no_peer}]))[(THROUGHPUT_TARGET, 1)]
    assert partial["source"] == "per-process" and partial["onnx"] == pytest.approx(1e6 / 12.0)


def test_head_to_head_batch_table_shows_samples_per_second_and_paired_ratios() -> None:
    scenario = {"would_ship": "int8-static", "head_to_head": [{**HEAD_TO_HEAD[0], "batch_256": BATCH_256}],
                "peers": PEERS}
    lines = {line.split(" | ")[0].strip("| "): line for line in head_to_head_batch_table(scenario).splitlines()[2:]}
    assert set(lines) == {"onnxruntime fp32", "onnxruntime int8-static ✓", "litert int8 (peer)"}
    assert lines["onnxruntime int8-static ✓"] == ("| onnxruntime int8-static ✓ | 1 | 3 × 4 | 2,000.0 | 128,000 | "
                                                 "55 % | 0.67 | 0.91 |")
    assert len(head_to_head_batch_table({"head_to_head": HEAD_TO_HEAD}).splitlines()) == 2  # header only


def test_schema_checks_the_batch_256_part() -> None:
    entry = {**HEAD_TO_HEAD[0], "batch_256": BATCH_256}
    assert head_to_head_errors(entry, "$") == []
    short = {**BATCH_256, "models": {**BATCH_256["models"], "litert int8": _batch_model([1.0, 2.0])}}
    assert head_to_head_errors({**entry, "batch_256": short}, "$") == [
        "$.batch_256.models.litert int8: 2 window medians for 3 rounds"]
    stranger = {**BATCH_256, "models": {**BATCH_256["models"], "keras call": _batch_model([1.0, 2.0, 3.0])}}
    assert "not timed at batch 1" in head_to_head_errors({**entry, "batch_256": stranger}, "$")[0]
    alone = {**BATCH_256, "models": {"litert int8": BATCH_256["models"]["litert int8"]}}
    assert "expected at least 2" in head_to_head_errors({**entry, "batch_256": alone}, "$")[0]


def test_head_to_head_rounds_are_whole_rotations_within_the_limits() -> None:
    config = HeadToHeadConfig(window_seconds=0.02)
    assert runs_per_round({"a": 1e-5, "b": 3e-5}, config.batch_1()) == 1000  # mean 20 µs per run → 20 ms windows
    assert runs_per_round({"a": 0.5, "b": 0.5}, config.batch_1()) == config.min_runs_per_round
    assert runs_per_round({"a": 0.5, "b": 0.5}, config.batch_256()) == 3  # 500 ms batches: the floor of 3
    assert runs_per_round({"a": 0.004, "b": 0.006}, config.batch_256()) == 10  # 5 ms per batch → 50 ms windows
    assert [rotation_rounds(count) for count in (1, 2, 3, 6)] == [3, 4, 3, 6]
    calls = {"a": 0, "b": 0, "c": 0}
    runners = {name: (lambda name=name: calls.__setitem__(name, calls[name] + 1)) for name in calls}
    result = measure_rounds(runners, 10, HeadToHeadConfig(seconds=3600.0, min_rounds=3, max_rounds=7).batch_1())
    assert all(len(values) == 6 for values in result.window_medians_us.values())  # a 3rd rotation would pass 7
    assert calls == {"a": 60, "b": 60, "c": 60}
    once = measure_rounds(runners, 10, HeadToHeadConfig(seconds=1e-9, min_rounds=3, max_rounds=600).batch_1())
    assert all(len(values) == 3 for values in once.window_medians_us.values())
    with pytest.raises(TimingSettingsError, match="Fix:"):
        HeadToHeadConfig(min_rounds=2)
    with pytest.raises(TimingSettingsError, match="batch_min_runs_per_round"):
        HeadToHeadConfig(batch_min_runs_per_round=2)


def test_batch_256_rounds_rotate_with_windows_of_a_few_runs() -> None:
    order: list[str] = []
    runners = {name: (lambda name=name: order.append(name)) for name in "abc"}
    limits = QUICK_HEAD_TO_HEAD.batch_256()
    rounds = measure_rounds(runners, 3, limits)
    assert "".join(order[:27]) == "aaabbbccc" + "bbbcccaaa" + "cccaaabbb"
    count = len(rounds.window_medians_us["a"])
    assert limits.min_rounds <= count <= limits.max_rounds and count % 3 == 0 and len(order) == 9 * count
