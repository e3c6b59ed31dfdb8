"""Batch-1 latency of an ONNX model on this machine (the bundle stage's tie-breaker).

The full benchmark harness lives elsewhere; this is the small, honest
measurement the bundle stage needs: warm-up runs discarded, then at least 200
timed runs of one real input each, median reported with the spread.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import StageError
from runtime.session import SessionSettings, create_session

MINIMUM_TIMED_RUNS = 200


@dataclass(frozen=True)
class LatencyResult:
    median_us: float
    p90_us: float
    mean_us: float
    minimum_us: float
    timed_runs: int
    warmup_runs: int
    threads: int
    provider: str

    def to_dict(self) -> dict:
        return {key: getattr(self, key) for key in self.__dataclass_fields__}


def measure_latency(
    model_path: Path, samples: np.ndarray, warmup_runs: int, timed_runs: int, threads: int
) -> LatencyResult:
    """Time ``timed_runs`` batch-1 inferences cycling through ``samples`` (real inputs)."""
    if timed_runs < MINIMUM_TIMED_RUNS:
        raise StageError(
            f"{timed_runs} timed runs requested",
            expected=f"at least {MINIMUM_TIMED_RUNS} for a stable median",
            fix="raise bundle.timed_runs",
        )
    session = create_session(model_path, SessionSettings(provider="cpu", intra_op_threads=threads))
    input_name = session.get_inputs()[0].name
    batch = [samples[index : index + 1].astype(np.float32) for index in range(len(samples))]
    for index in range(warmup_runs):
        session.run(None, {input_name: batch[index % len(batch)]})
    durations = np.empty(timed_runs)
    for index in range(timed_runs):
        feed = {input_name: batch[index % len(batch)]}
        start = time.perf_counter_ns()
        session.run(None, feed)
        durations[index] = (time.perf_counter_ns() - start) / 1000.0
    return LatencyResult(
        median_us=float(np.median(durations)),
        p90_us=float(np.percentile(durations, 90)),
        mean_us=float(durations.mean()),
        minimum_us=float(durations.min()),
        timed_runs=timed_runs,
        warmup_runs=warmup_runs,
        threads=threads,
        provider=session.get_providers()[0],
    )
