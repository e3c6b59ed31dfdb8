"""Head-to-head: every CPU candidate of a scenario timed in ONE process, in rotating rounds.

The per-process rows time each model in its own worker, minutes apart; on a shared machine
whose CPU switches between a fast and a ~1.7× slower state every few seconds, two such
figures compare the machine's states as much as the models. So, per scenario and thread
count, one more worker loads every ONNX variant on the CPU (sessions and I/O binding exactly
as ``onnx_runner``) and the LiteRT fp32 and int8 interpreters (as ``peers``), binds one real
timing input at batch 1 each, and times them with ``exporters.timing.measure_interleaved``:
rounds of one short window per model, in an order that rotates from round to round. The
batch-1 latency targets use the median over rounds of the per-round ratios (``targets``).
Keras is left out: one Keras call takes milliseconds, a window would last seconds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline.benchmark.errors import BenchmarkError, TimingSettingsError

HEAD_TO_HEAD_ENGINE = "head-to-head"  # the worker spec's "engine" for this kind of measurement
CPU = "CPUExecutionProvider"
ONNX_FP32 = "onnxruntime fp32"  # the reference models of the ratio columns
LITERT_INT8 = "litert int8"


@dataclass(frozen=True)
class HeadToHeadConfig:
    """How long the head-to-head of one scenario at one thread count lasts.

    A pre-measure of every candidate sets ``runs_per_round`` so that one window lasts about
    ``window_seconds`` on average; then whole rotations of rounds (every model first once) are
    timed until ``seconds`` have passed and at least ``min_rounds`` are done, never starting a
    rotation that would go past ``max_rounds`` (the first one always runs).
    """

    seconds: float = 15.0  # timed rounds, all candidates together (worker start-up comes on top)
    window_seconds: float = 0.03  # one candidate's window in one round: short next to a speed state
    min_rounds: int = 15
    max_rounds: int = 600
    min_runs_per_round: int = 10
    warmup_runs: int = 200  # per candidate, before the pre-measure
    probe_runs: int = 50  # per candidate, the pre-measure

    def __post_init__(self) -> None:
        if (self.seconds <= 0 or self.window_seconds <= 0 or self.min_rounds < 3 or self.max_rounds < self.min_rounds
                or self.min_runs_per_round < 10 or self.warmup_runs < 0 or self.probe_runs < 1):
            raise TimingSettingsError(
                f"head-to-head settings {asdict(self)} cannot measure anything",
                expected="positive durations, 3 ≤ min_rounds ≤ max_rounds, min_runs_per_round ≥ 10, probe_runs ≥ 1",
                fix="use HeadToHeadConfig() or QUICK_HEAD_TO_HEAD",
            )


# Seconds-long settings for tests and smoke runs (same statistics, a handful of short rounds).
QUICK_HEAD_TO_HEAD = HeadToHeadConfig(seconds=0.2, window_seconds=0.002, min_rounds=3, max_rounds=6,
                                      warmup_runs=5, probe_runs=5)


def candidate_name(engine: str, variant: str) -> str:
    """``onnxruntime int8-static`` / ``litert int8``: the key in ``head_to_head[].models``."""
    return f"{engine} {variant}"


def plan_head_to_head(onnx_variants: Mapping[str, Path], litert: Mapping[str, Path], threads: tuple[int, ...],
                      common: dict, session: dict, config: HeadToHeadConfig) -> list[dict]:
    """One worker spec per thread count; none when fewer than two models can be compared."""
    candidates = {candidate_name("onnxruntime", variant): {"engine": "onnxruntime", "model": str(path)}
                  for variant, path in onnx_variants.items()}
    candidates |= {candidate_name("litert", str(variant)): {"engine": "litert", "model": str(path)}
                   for variant, path in litert.items()}
    if len(candidates) < 2:
        return []
    return [{**common, "engine": HEAD_TO_HEAD_ENGINE, "variant": "all", "model": None, "provider": CPU,
             "threads": count, "candidates": candidates, "session": session, "head_to_head": asdict(config)}
            for count in threads]


def _onnx_runner(model: Path, sample: np.ndarray, threads: int, session_settings: dict) -> Callable[[], None]:
    from pipeline.benchmark.onnx_runner import BoundRunner, SessionTuning, open_session

    tuning = SessionTuning.from_dict(session_settings)
    return BoundRunner(open_session(model, CPU, threads, tuning), sample, CPU, tuning.binding)


def _runners(spec: dict, sample: np.ndarray) -> tuple[dict[str, Callable[[], object]], dict]:
    threads = int(spec["threads"])
    runners: dict[str, Callable[[], object]] = {}
    runtime: dict = {}
    for name, candidate in spec["candidates"].items():
        if candidate["engine"] == "onnxruntime":
            import onnxruntime

            runners[name] = _onnx_runner(Path(candidate["model"]), sample, threads, spec.get("session", {}))
            runtime["onnxruntime"] = onnxruntime.__version__
        elif candidate["engine"] == "litert":
            from pipeline.benchmark.peers import litert_interpreter_class, litert_runner

            interpreter_class, description = litert_interpreter_class()
            runners[name] = litert_runner(interpreter_class, Path(candidate["model"]), sample, threads)
            runtime["litert"] = description
        else:
            raise BenchmarkError(
                f"head-to-head candidate {name} has engine {candidate['engine']!r}",
                expected="onnxruntime or litert",
                fix="report this as a harness bug",
            )
    return runners, runtime


def _seconds_per_run(run: Callable[[], object], runs: int) -> float:
    started = time.perf_counter()
    for _ in range(runs):
        run()
    return (time.perf_counter() - started) / runs


def runs_per_round(seconds_per_run: Mapping[str, float], config: HeadToHeadConfig) -> int:
    """Runs per window so that a window lasts ~``window_seconds`` for a model of average speed."""
    mean = max(float(np.mean(list(seconds_per_run.values()))), 1e-9)
    return max(config.min_runs_per_round, math.ceil(config.window_seconds / mean))


def rotation_rounds(candidates: int) -> int:
    """Rounds per call of ``measure_interleaved``: whole rotations (every model first once), at least 3."""
    return math.ceil(3 / candidates) * candidates


def measure_rounds(runners: Mapping[str, Callable[[], object]], runs: int, config: HeadToHeadConfig):
    """Whole rotations of rounds until ``config.seconds`` have passed (see ``HeadToHeadConfig``)."""
    from exporters.timing import InterleavedResult, InterleavedTiming, measure_interleaved

    timing = InterleavedTiming(rounds=rotation_rounds(len(runners)), runs_per_round=runs, warmup_runs=0)
    windows: dict[str, list[float]] = {name: [] for name in runners}
    durations: dict[str, list[np.ndarray]] = {name: [] for name in runners}
    started, rounds = time.perf_counter(), 0
    while True:
        part = measure_interleaved(runners, timing)
        for name in runners:
            windows[name] += part.window_medians_us[name]
            durations[name].append(part.durations_us[name])
        rounds += timing.rounds
        elapsed = time.perf_counter() - started
        if rounds + timing.rounds > config.max_rounds or (rounds >= config.min_rounds and elapsed >= config.seconds):
            break
    return InterleavedResult(window_medians_us=windows,
                             durations_us={name: np.concatenate(parts) for name, parts in durations.items()})


def run_head_to_head(spec: dict, samples: np.ndarray) -> dict:
    """Time every candidate of ``spec`` in rotating rounds (inside a worker process)."""
    config = HeadToHeadConfig(**spec["head_to_head"])
    runners, runtime = _runners(spec, np.ascontiguousarray(samples[:1], dtype=np.float32))
    for run in runners.values():
        for _ in range(config.warmup_runs):
            run()
    runs = runs_per_round({name: _seconds_per_run(run, config.probe_runs) for name, run in runners.items()}, config)
    result = measure_rounds(runners, runs, config)
    return {"threads": int(spec["threads"]), "rounds": len(next(iter(result.window_medians_us.values()))),
            "runs_per_round": runs, "models": result.to_dict(), "runtime": runtime}


def head_to_head_entry(result: dict) -> dict:
    """The ``head_to_head[]`` entry of a worker's result (its peak RSS covers several models: dropped)."""
    return {key: value for key, value in result.items() if key != "peak_rss_bytes"}


def interleaved_result(entry: dict):
    """The ``exporters.timing.InterleavedResult`` of a ``head_to_head[]`` entry, for its medians and paired
    ratios (the entry keeps the window medians only, not every timed run: no percentiles)."""
    from exporters.timing import InterleavedResult

    windows = {name: list(model["window_medians_us"]) for name, model in entry["models"].items()}
    return InterleavedResult(window_medians_us=windows, durations_us={})


def entry_for(head_to_head: list[dict] | None, threads: int | None) -> dict | None:
    """The head-to-head entry measured at ``threads``, if any."""
    return next((entry for entry in head_to_head or [] if entry.get("threads") == threads), None)
