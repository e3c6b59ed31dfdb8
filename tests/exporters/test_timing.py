"""Interleaved timing: rounds, rotation, ratios — on real ONNX Runtime sessions, no speed asserted."""

from __future__ import annotations

import numpy as np
import pytest

from exporters.errors import TimingError
from exporters.timing import InterleavedResult, InterleavedTiming, measure_interleaved, onnx_runner
from tests.exporters.toy_models import ModelZoo, Splits


def test_every_candidate_is_timed_once_per_round_in_rotating_order() -> None:
    order: list[str] = []
    runners = {name: (lambda name=name: order.append(name)) for name in ("a", "b", "c")}
    result = measure_interleaved(runners, InterleavedTiming(rounds=3, runs_per_round=10, warmup_runs=0))
    firsts = [order[index * 30] for index in range(3)]
    assert firsts == ["a", "b", "c"]  # round r starts with candidate r
    assert all(len(values) == 3 for values in result.window_medians_us.values())
    assert all(result.durations_us[name].shape == (30,) for name in runners)


def test_statistics_of_a_hand_made_result() -> None:
    result = InterleavedResult({"fp32": [10.0, 20.0, 10.0], "int8": [5.0, 10.0, 6.0]},
                               {"fp32": np.array([10.0, 20.0]), "int8": np.array([5.0, 6.0])})
    assert result.median_of_windows_us("fp32") == 10.0
    assert result.spread("fp32") == pytest.approx(1.0)
    assert result.ratio("int8", "fp32") == pytest.approx(0.5)  # per-round ratios 0.5, 0.5, 0.6
    assert result.fastest() == "int8"
    assert result.to_dict()["int8"]["median_of_windows_us"] == 6.0


def test_onnx_runner_runs_a_real_session(zoo: ModelZoo, signals: Splits) -> None:
    """The runner is one real inference with pre-bound inputs: its outputs are the model's on that sample, and
    every timed run is a finite positive duration."""
    import onnxruntime

    path = zoo.onnx_path("conv1d_zscore")
    sample = signals.test_x[:1]
    run = onnx_runner(path, sample)
    run()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = session.run(None, {session.get_inputs()[0].name: sample.astype(np.float32)})[0]
    np.testing.assert_allclose(run.outputs()[0], expected, rtol=1e-5, atol=1e-6)
    result = measure_interleaved({"model": run}, InterleavedTiming(rounds=3, runs_per_round=10, warmup_runs=1))
    durations = result.durations_us["model"]
    assert durations.shape == (30,) and np.isfinite(durations).all() and (durations > 0).all()
    assert len(result.window_medians_us["model"]) == 3 and result.median_of_windows_us("model") > 0


@pytest.mark.parametrize("rounds, runs", [(2, 10), (3, 2)])
def test_too_little_timing_is_refused(rounds: int, runs: int) -> None:
    with pytest.raises(TimingError, match="interleaved timing"):
        InterleavedTiming(rounds=rounds, runs_per_round=runs)
