"""Interleaved latency comparison: the only fair way to rank models on a shared machine.

Timing model A for ten seconds and then model B for ten seconds compares whatever the
machine was doing in those two periods as much as the models: on the shared 2-core
builder this project runs on, the whole CPU switches between a fast and a ~1.7× slower
state every few seconds (an empty ONNX Runtime session goes from 4 µs to 7 µs). So every
comparison here runs the candidates in *rounds*: each round times a short window of every
candidate back to back, in an order that rotates from round to round. A candidate's figure
is the median of its window medians, and the comparison between two candidates is the
median of their per-round ratios — a ratio both numbers of which were measured within
milliseconds of each other.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from exporters.errors import TimingError
from exporters.inputs import ModelInputs


@dataclass(frozen=True)
class InterleavedTiming:
    """How long to measure: ``rounds`` × (every candidate × ``runs_per_round`` timed runs)."""

    rounds: int = 9
    runs_per_round: int = 200
    warmup_runs: int = 100  # per candidate, before the first round

    def __post_init__(self) -> None:
        # Windows of a few runs are fine for slow runs (a batch of 256 takes milliseconds); the median
        # over many rounds carries the statistics.
        if self.rounds < 3 or self.runs_per_round < 3 or self.warmup_runs < 0:
            raise TimingError(
                f"interleaved timing with {self.rounds} rounds of {self.runs_per_round} runs",
                expected="at least 3 rounds of at least 3 runs (and warm-up runs ≥ 0)",
                fix="raise rounds / runs_per_round",
            )


@dataclass(frozen=True)
class InterleavedResult:
    """Per-candidate window medians (µs), one per round, in round order, and every timed run."""

    window_medians_us: dict[str, list[float]]
    durations_us: dict[str, np.ndarray]  # every timed run, all rounds

    def percentile_us(self, name: str, percentile: float) -> float:
        return float(np.percentile(self.durations_us[name], percentile))

    def median_of_windows_us(self, name: str) -> float:
        return float(np.median(self.window_medians_us[name]))

    def spread(self, name: str) -> float:
        """(max − min) / median of the window medians."""
        values = np.asarray(self.window_medians_us[name])
        return float((values.max() - values.min()) / np.median(values))

    def ratio(self, name: str, reference: str) -> float:
        """Median over rounds of ``name``'s window median / ``reference``'s (< 1: ``name`` is faster)."""
        return float(np.median(self.ratios(name, reference)))

    def ratios(self, name: str, reference: str) -> np.ndarray:
        return np.asarray(self.window_medians_us[name]) / np.asarray(self.window_medians_us[reference])

    def fastest(self, names: list[str] | None = None) -> str:
        candidates = names if names is not None else list(self.window_medians_us)
        return min(candidates, key=self.median_of_windows_us)

    def to_dict(self) -> dict:
        return {
            name: {"median_of_windows_us": self.median_of_windows_us(name), "spread": self.spread(name),
                   "window_medians_us": values}
            for name, values in self.window_medians_us.items()
        }


def measure_interleaved(
    runners: Mapping[str, Callable[[], object]],
    timing: InterleavedTiming = InterleavedTiming(),
    progress: Callable[[int, int], None] | None = None,
) -> InterleavedResult:
    """Time every runner (a no-argument callable doing one inference) in rotating rounds."""
    if not runners:
        raise TimingError("no models to time", expected="at least one runner", fix="pass the models to compare")
    names = list(runners)
    for name in names:
        for _ in range(timing.warmup_runs):
            runners[name]()
    medians: dict[str, list[float]] = {name: [] for name in names}
    durations = {name: np.empty((timing.rounds, timing.runs_per_round)) for name in names}
    for round_index in range(timing.rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            run, window = runners[name], durations[name][round_index]
            for index in range(timing.runs_per_round):
                start = time.perf_counter_ns()
                run()
                window[index] = time.perf_counter_ns() - start
            medians[name].append(float(np.median(window)) / 1000.0)
        if progress is not None:
            progress(round_index + 1, timing.rounds)
    return InterleavedResult(medians, {name: values.reshape(-1) / 1000.0 for name, values in durations.items()})


def onnx_runner(model_path, sample: ModelInputs, threads: int = 1) -> Callable[[], object]:
    """One batch-1 CPU inference of ``model_path`` on ``sample`` (one array, or a mapping input name →
    array for a model with several inputs) with every input and output pre-bound; its ``outputs()`` are the last
    run's outputs."""
    from exporters._onnxruntime import session_feeds
    from runtime.session import SessionSettings, create_session

    session = create_session(model_path, SessionSettings(provider="cpu", intra_op_threads=threads))
    binding = session.io_binding()
    for name, value in session_feeds(session, sample, TimingError).items():
        binding.bind_cpu_input(name, np.ascontiguousarray(value))
    for output in session.get_outputs():
        binding.bind_output(output.name)
    def run() -> None:
        session.run_with_iobinding(binding)

    run.outputs = binding.copy_outputs_to_cpu  # what the last run gave (checked by the tests, never timed)
    return run
