"""The head-to-head peer is the fastest LiteRT variant that passes the same gate, never a faster failing one.

Selection is a pure function of hand-made candidates (verdicts and latencies are given, nothing is timed);
the targets and bench.md then compare the shipped model with that peer, or say why there is none.
"""

from __future__ import annotations

from pipeline.benchmark.peer_choice import HEAD_TO_HEAD, PER_PROCESS, PeerCandidate, choose_peer, scenario_peers
from pipeline.benchmark.report import peer_lines
from pipeline.benchmark.targets import evaluate_targets

FAILED_INT8 = "samples: passed | recordings: failed: V +P 84.15% is under its floor 90.00%"


def _candidates() -> list[PeerCandidate]:
    return [PeerCandidate("litert fp32", True, 30.0, "passed"),
            PeerCandidate("litert dynamic-range", True, 25.0, "passed"),
            PeerCandidate("litert int8", False, 12.0, FAILED_INT8)]


def test_the_fastest_passing_variant_is_chosen_and_a_faster_failing_one_is_named() -> None:
    choice = choose_peer(_candidates(), threads=1)
    assert choice.chosen == "litert dynamic-range"  # 25 µs; int8 at 12 µs failed the gate
    assert "litert int8 (12.0 µs)" in choice.reason and "V +P 84.15%" in choice.reason
    assert "faster but not a peer" in choice.reason and "litert fp32 (30.0" not in choice.reason
    assert [candidate.name for candidate in choice.candidates] == ["litert fp32", "litert dynamic-range",
                                                                   "litert int8"]


def test_unjudged_or_untimed_variants_are_never_chosen() -> None:
    candidates = [PeerCandidate("litert int8", None, 5.0, "no gate: a bare model file has no labelled data"),
                  PeerCandidate("litert dynamic-range", True, None, "not available: the converter failed"),
                  PeerCandidate("litert fp32", True, 40.0, "passed")]
    assert choose_peer(candidates).chosen == "litert fp32"


def test_without_a_passing_variant_there_is_no_peer_and_the_reason_has_the_figures() -> None:
    candidates = [PeerCandidate("litert fp32", False, 30.0, "samples: failed: macro-F1 dropped 3.10 pt (limit 1.0)"),
                  PeerCandidate("litert int8", False, 12.0, FAILED_INT8)]
    choice = choose_peer(candidates, threads=2)
    assert choice.chosen is None and choice.threads == 2
    assert choice.reason.startswith("no LiteRT variant passes the gate")
    assert "macro-F1 dropped 3.10 pt" in choice.reason and "V +P 84.15%" in choice.reason
    assert choose_peer([]).reason == "no LiteRT variant passes the gate: no LiteRT variant was made"


def _row(engine: str, variant: str, threads: int, median: float) -> dict:
    return {"engine": engine, "variant": variant, "provider": "CPUExecutionProvider" if engine == "onnxruntime"
            else None, "threads": threads, "status": "ok", "latency": {"median_of_windows_us": median},
            "throughput": {"256": {"samples_per_second": 1e6 / median}}}


def _model(windows: list[float]) -> dict:
    return {"median_of_windows_us": sorted(windows)[len(windows) // 2], "spread": 0.0, "window_medians_us": windows}


JUDGEMENTS = {"litert fp32": {"passed": True, "reason": "passed"},
              "litert dynamic-range": {"passed": True, "reason": "passed"},
              "litert int8": {"passed": False, "reason": FAILED_INT8}}


def _document() -> dict:
    # Per process, dynamic-range looks faster than fp32 (20 < 25); in the head-to-head at 1 thread, timed
    # together, fp32 is (18 < 22). The head-to-head decides where it timed both.
    rows = [_row(engine, variant, threads, median) for threads in (1, 2) for engine, variant, median in (
        ("onnxruntime", "fp32", 30.0), ("litert", "fp32", 25.0), ("litert", "dynamic-range", 20.0),
        ("litert", "int8", 10.0))]
    rows.append({"engine": "litert", "variant": "float16", "provider": None, "threads": None,
                 "status": "not available", "reason": "not available: the TFLite converter could not make it"})
    head_to_head = [{"threads": 1, "rounds": 3, "runs_per_round": 10, "models": {
        "onnxruntime fp32": _model([30.0, 31.0, 29.0]), "litert fp32": _model([18.0, 17.0, 19.0]),
        "litert dynamic-range": _model([22.0, 21.0, 23.0]), "litert int8": _model([9.0, 10.0, 11.0])}}]
    return {"rows": rows, "head_to_head": head_to_head, "would_ship": "fp32", "judgements": JUDGEMENTS}


def test_scenario_peers_rank_by_the_head_to_head_where_it_timed_them() -> None:
    document = _document()
    one, two = scenario_peers(document["rows"], document["head_to_head"], document["judgements"])
    assert (one.threads, one.chosen) == (1, "litert fp32")  # head-to-head: 18 µs < 22 µs
    assert {candidate.source for candidate in one.candidates if candidate.latency_us is not None} == {HEAD_TO_HEAD}
    assert (two.threads, two.chosen) == (2, "litert dynamic-range")  # no head-to-head at 2: per-process 20 < 25
    assert {candidate.source for candidate in two.candidates if candidate.latency_us is not None} == {PER_PROCESS}
    unconverted = next(candidate for candidate in one.candidates if candidate.name == "litert float16")
    assert unconverted.latency_us is None and "could not make it" in unconverted.reason


def test_targets_compare_the_shipped_model_with_the_chosen_peer_only() -> None:
    document = _document()
    document["peers"] = [choice.to_dict() for choice in scenario_peers(document["rows"], document["head_to_head"],
                                                                       JUDGEMENTS)]
    checks = {(check["target"], check["threads"]): check for check in evaluate_targets(document)}
    latency = checks[("shipped (fp32) batch-1 p50 µs ≤ LiteRT peer (litert fp32: the fastest LiteRT that passes "
                      "the gate)", 1)]
    assert (latency["onnx"], latency["peer"], latency["source"]) == (30.0, 18.0, "head-to-head")
    assert not any("litert int8" in target for target, _ in checks)  # the fast failing model is no peer
    assert "**litert fp32**" in peer_lines(document)[0]


def test_without_a_peer_the_targets_have_no_values_and_say_why() -> None:
    document = _document()
    failing = {name: {"passed": False, "reason": "samples: failed: macro-F1 dropped 3.10 pt"} for name in JUDGEMENTS}
    document["peers"] = [choice.to_dict() for choice in scenario_peers(document["rows"], document["head_to_head"],
                                                                       failing)]
    peer_checks = [check for check in evaluate_targets(document) if "LiteRT peer" in check["target"]]
    assert len(peer_checks) == 4  # latency and throughput at 1 and 2 threads
    for check in peer_checks:
        assert check["met"] is None and check["ratio"] is None
        assert check["note"].startswith("no LiteRT variant passes the gate") and "3.10 pt" in check["note"]
    assert "**no peer**" in peer_lines(document)[0]


def test_without_litert_rows_there_is_no_choice_to_make() -> None:
    onnx_only = [row for row in _document()["rows"] if row["engine"] == "onnxruntime"]  # --no-peers, a bare model
    assert scenario_peers(onnx_only, [], {}) == []
    checks = evaluate_targets({"rows": onnx_only, "would_ship": "fp32", "peers": []})
    assert all(check["note"] == "no LiteRT peer was measured at this thread count"
               for check in checks if "LiteRT peer" in check["target"])
