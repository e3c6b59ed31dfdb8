"""Head-to-head: every CPU candidate of a scenario timed in ONE process, in rotating rounds.

The per-process rows time each model in its own worker, minutes apart; on a shared machine
whose CPU switches between a fast and a ~1.7× slower state every few seconds, two such
figures compare the machine's states as much as the models. So, per scenario and thread
count, one more worker loads every ONNX variant on the CPU (sessions and I/O binding exactly
as ``onnx_runner``) and every LiteRT interpreter (as ``peers``), binds one real
timing input at batch 1 each, and times them with ``exporters.timing.measure_interleaved``:
rounds of one short window per model, in an order that rotates from round to round. The
batch-1 latency targets use the median over rounds of the per-round ratios (``targets``).
Then the same process times, the same way, every candidate that can take batch 256 on the
timing inputs tiled to 256 rows (``batch_256`` of the entry; a window is a few runs, since one
run takes milliseconds); the batch-256 throughput target uses those per-round ratios.
Keras is left out: one Keras call takes milliseconds, a window would last seconds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from exporters.inputs import ModelInputs, select
from pipeline.benchmark.errors import BenchmarkError, TimingSettingsError
from pipeline.benchmark.sample_files import contiguous, tiled
from runtime.errors import EdgemedError
from runtime.session import CPU_PROVIDER

HEAD_TO_HEAD_ENGINE = "head-to-head"  # the worker spec's "engine" for this kind of measurement
ONNX_FP32 = "onnxruntime fp32"  # the reference models of the ratio columns
THROUGHPUT_BATCH = 256  # the batch of the throughput target
THROUGHPUT_KEY = f"batch_{THROUGHPUT_BATCH}"  # its part of a head_to_head[] entry


@dataclass(frozen=True)
class RoundLimits:
    """One part of a head-to-head (batch 1 or batch 256): see ``HeadToHeadConfig``."""

    seconds: float
    window_seconds: float
    min_rounds: int
    max_rounds: int
    min_runs_per_round: int
    warmup_runs: int
    probe_runs: int


@dataclass(frozen=True)
class HeadToHeadConfig:
    """How long the head-to-head of one scenario at one thread count lasts.

    A pre-measure of every candidate sets ``runs_per_round`` so that one window lasts about
    ``window_seconds`` on average; then whole rotations of rounds (every model first once) are
    timed until ``seconds`` have passed and at least ``min_rounds`` are done, never starting a
    rotation that would go past ``max_rounds`` (the first one always runs).

    The ``batch_*`` fields set the batch-256 part, timed the same way after the batch-1 part:
    one run takes milliseconds there, so a window is a few runs (at least
    ``batch_min_runs_per_round``) and its rounds get their own, shorter, time budget.
    """

    seconds: float = 15.0  # timed rounds, all candidates together (worker start-up comes on top)
    window_seconds: float = 0.03  # one candidate's window in one round: short next to a speed state
    min_rounds: int = 15
    max_rounds: int = 600
    min_runs_per_round: int = 10
    warmup_runs: int = 200  # per candidate, before the pre-measure
    probe_runs: int = 50  # per candidate, the pre-measure
    batch_seconds: float = 7.0  # batch-256 rounds, all candidates together
    batch_window_seconds: float = 0.05  # ~5–15 runs of a batch-256 inference of the ECG model
    batch_min_rounds: int = 9
    batch_max_rounds: int = 300
    batch_min_runs_per_round: int = 3
    batch_warmup_runs: int = 5  # per candidate, before the batch-256 pre-measure
    batch_probe_runs: int = 3

    def __post_init__(self) -> None:
        if (self.seconds <= 0 or self.window_seconds <= 0 or self.min_rounds < 3 or self.max_rounds < self.min_rounds
                or self.min_runs_per_round < 10 or self.warmup_runs < 0 or self.probe_runs < 1
                or self.batch_seconds <= 0 or self.batch_window_seconds <= 0 or self.batch_min_rounds < 3
                or self.batch_max_rounds < self.batch_min_rounds or self.batch_min_runs_per_round < 3
                or self.batch_warmup_runs < 0 or self.batch_probe_runs < 1):
            raise TimingSettingsError(
                f"head-to-head settings {asdict(self)} cannot measure anything",
                expected="positive durations, 3 ≤ min_rounds ≤ max_rounds, min_runs_per_round ≥ 10, probe_runs ≥ 1; "
                "3 ≤ batch_min_rounds ≤ batch_max_rounds, batch_min_runs_per_round ≥ 3, batch_probe_runs ≥ 1",
                fix="use HeadToHeadConfig() or QUICK_HEAD_TO_HEAD",
            )

    def batch_1(self) -> RoundLimits:
        return RoundLimits(self.seconds, self.window_seconds, self.min_rounds, self.max_rounds,
                           self.min_runs_per_round, self.warmup_runs, self.probe_runs)

    def batch_256(self) -> RoundLimits:
        return RoundLimits(self.batch_seconds, self.batch_window_seconds, self.batch_min_rounds, self.batch_max_rounds,
                           self.batch_min_runs_per_round, self.batch_warmup_runs, self.batch_probe_runs)


# Seconds-long settings for tests and smoke runs (same statistics, a handful of short rounds).
QUICK_HEAD_TO_HEAD = HeadToHeadConfig(seconds=0.2, window_seconds=0.002, min_rounds=3, max_rounds=6,
                                      warmup_runs=5, probe_runs=5, batch_seconds=0.05, batch_window_seconds=0.002,
                                      batch_min_rounds=3, batch_max_rounds=6, batch_warmup_runs=1, batch_probe_runs=1)


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
    return [{**common, "engine": HEAD_TO_HEAD_ENGINE, "variant": "all", "model": None, "provider": CPU_PROVIDER,
             "threads": count, "candidates": candidates, "session": session, "head_to_head": asdict(config)}
            for count in threads]


@dataclass(frozen=True)
class _Candidate:
    runner: Callable[[ModelInputs], Callable[[], object]]  # a runner bound to this batch
    fixed_batch: int | None  # the model's fixed batch size, None when its batch axis is dynamic


def _onnx_candidate(model: Path, threads: int, session_settings: dict) -> _Candidate:
    from pipeline.benchmark.onnx_runner import BoundRunner, SessionTuning, fixed_batch_size, open_session

    tuning = SessionTuning.from_dict(session_settings)
    session = open_session(model, CPU_PROVIDER, threads, tuning)  # one session for both parts, as in onnx_runner
    return _Candidate(lambda batch: BoundRunner(session, batch, CPU_PROVIDER, tuning.binding), fixed_batch_size(model))


def _litert_candidate(interpreter_class: type, model: Path, threads: int) -> _Candidate:
    from pipeline.benchmark.litert_models import LiteRtModel, litert_runner

    fixed = LiteRtModel(model, threads, interpreter_class).fixed_batch
    return _Candidate(lambda samples: litert_runner(interpreter_class, model, samples, threads), fixed)


def _candidates(spec: dict, probe: ModelInputs) -> tuple[dict[str, _Candidate], dict, dict[str, str]]:
    """The candidates that load and run once on ``probe``, the runtimes, and the LiteRT models left out (why):
    a peer that cannot run is said, never the end of the head-to-head."""
    threads = int(spec["threads"])
    candidates: dict[str, _Candidate] = {}
    runtime: dict = {}
    left_out: dict[str, str] = {}
    for name, candidate in spec["candidates"].items():
        if candidate["engine"] == "onnxruntime":
            import onnxruntime

            candidates[name] = _onnx_candidate(Path(candidate["model"]), threads, spec.get("session", {}))
            runtime["onnxruntime"] = onnxruntime.__version__
        elif candidate["engine"] == "litert":
            from pipeline.benchmark.litert_models import litert_interpreter_class

            interpreter_class, description = litert_interpreter_class()
            try:
                made = _litert_candidate(interpreter_class, Path(candidate["model"]), threads)
                made.runner(probe)()
            except (ValueError, RuntimeError, EdgemedError) as error:
                left_out[name] = f"{type(error).__name__}: {error}"
                continue
            candidates[name] = made
            runtime["litert"] = description
        else:
            raise BenchmarkError(
                f"head-to-head candidate {name} has engine {candidate['engine']!r}",
                expected="onnxruntime or litert",
                fix="report this as a harness bug",
            )
    return candidates, runtime, left_out


def _seconds_per_run(run: Callable[[], object], runs: int) -> float:
    started = time.perf_counter()
    for _ in range(runs):
        run()
    return (time.perf_counter() - started) / runs


def runs_per_round(seconds_per_run: Mapping[str, float], limits: RoundLimits) -> int:
    """Runs per window so that a window lasts ~``window_seconds`` for a model of average speed."""
    mean = max(float(np.mean(list(seconds_per_run.values()))), 1e-9)
    return max(limits.min_runs_per_round, math.ceil(limits.window_seconds / mean))


def rotation_rounds(candidates: int) -> int:
    """Rounds per call of ``measure_interleaved``: whole rotations (every model first once), at least 3."""
    return math.ceil(3 / candidates) * candidates


def _measure_interleaved(runners: Mapping[str, Callable[[], object]], rounds: int, runs: int):
    from exporters.timing import InterleavedTiming, measure_interleaved

    return measure_interleaved(runners, InterleavedTiming(rounds=rounds, runs_per_round=runs, warmup_runs=0))


def measure_rounds(runners: Mapping[str, Callable[[], object]], runs: int, limits: RoundLimits,
                   interleave: Callable = _measure_interleaved):
    """Whole rotations of rounds until ``limits.seconds`` have passed (see ``HeadToHeadConfig``)."""
    from exporters.timing import InterleavedResult

    per_call = rotation_rounds(len(runners))
    windows: dict[str, list[float]] = {name: [] for name in runners}
    durations: dict[str, list[np.ndarray]] = {name: [] for name in runners}
    started, rounds = time.perf_counter(), 0
    while True:
        part = interleave(runners, per_call, runs)
        for name in runners:
            windows[name] += part.window_medians_us[name]
            durations[name].append(part.durations_us[name])
        rounds += per_call
        elapsed = time.perf_counter() - started
        if rounds + per_call > limits.max_rounds or (rounds >= limits.min_rounds and elapsed >= limits.seconds):
            break
    return InterleavedResult(window_medians_us=windows,
                             durations_us={name: np.concatenate(parts) for name, parts in durations.items()})


def _time_part(runners: Mapping[str, Callable[[], object]], limits: RoundLimits,
               interleave: Callable = _measure_interleaved) -> dict:
    """Warm-up, pre-measure, rounds: ``{rounds, runs_per_round, models}``."""
    for run in runners.values():
        for _ in range(limits.warmup_runs):
            run()
    runs = runs_per_round({name: _seconds_per_run(run, limits.probe_runs) for name, run in runners.items()}, limits)
    result = measure_rounds(runners, runs, limits, interleave)
    return {"rounds": len(next(iter(result.window_medians_us.values()))), "runs_per_round": runs,
            "models": result.to_dict()}


def run_head_to_head(spec: dict, samples: ModelInputs) -> dict:
    """Time every candidate of ``spec`` in rotating rounds at batch 1, then at batch 256 (inside a worker)."""
    config = HeadToHeadConfig(**spec["head_to_head"])
    sample = contiguous(select(samples, slice(0, 1)))
    candidates, runtime, left_out = _candidates(spec, sample)
    if len(candidates) < 2:  # nothing to compare once the peers that cannot run are left out
        return {"threads": int(spec["threads"]), "rounds": 0, "runs_per_round": 0, "models": {}, "runtime": runtime,
                "left_out": left_out}
    entry = {"threads": int(spec["threads"]),
             **_time_part({name: candidate.runner(sample) for name, candidate in candidates.items()}, config.batch_1()),
             "runtime": runtime}
    batch = contiguous(tiled(samples, THROUGHPUT_BATCH))
    runners = {name: candidate.runner(batch) for name, candidate in candidates.items()
               if candidate.fixed_batch in (None, THROUGHPUT_BATCH)}  # others cannot run at batch 256: left out
    if len(runners) >= 2:
        part = _time_part(runners, config.batch_256(), _measure_interleaved)
        for model in part["models"].values():
            model["samples_per_second"] = THROUGHPUT_BATCH / (model["median_of_windows_us"] / 1e6)
        entry[THROUGHPUT_KEY] = part
    return {**entry, "left_out": left_out} if left_out else entry


def head_to_head_entry(result: dict) -> dict:
    """The ``head_to_head[]`` entry of a worker's result (its peak RSS covers several models: dropped)."""
    return {key: value for key, value in result.items() if key != "peak_rss_bytes"}


def interleaved_result(entry: dict):
    """The ``exporters.timing.InterleavedResult`` of a ``head_to_head[]`` entry (or of its ``batch_256``
    part), for its medians and paired ratios (the entry keeps the window medians only, not every timed
    run: no percentiles)."""
    from exporters.timing import InterleavedResult

    windows = {name: list(model["window_medians_us"]) for name, model in entry["models"].items()}
    return InterleavedResult(window_medians_us=windows, durations_us={})


def entry_for(head_to_head: list[dict] | None, threads: int | None) -> dict | None:
    """The head-to-head entry measured at ``threads``, if any."""
    return next((entry for entry in head_to_head or [] if entry.get("threads") == threads), None)
