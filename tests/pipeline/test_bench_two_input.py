"""``edgemed bench`` on a real two-input model: the tiny ecg-pvc build (a beat residual and a row of RR features).

Its LiteRT peers are converted from the same Keras model with both inputs, judged by the build's own gates —
on the test split's beats and through the device stream on the held-out recordings — and one quick run
times everything. Nothing here asserts a speed or a CPU-dependent verdict: only what was measured on what,
and that the chosen peer is the fastest of the variants that passed.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.benchmark.harness import BenchmarkConfig, run_benchmark
from pipeline.benchmark.litert_conversion import LiteRtConversion, LiteRtVariant, convert_to_litert
from pipeline.benchmark.litert_models import LiteRtModel
from pipeline.benchmark.peer_judging import KERAS, judge_peers
from pipeline.benchmark.results_io import write_results
from pipeline.benchmark.scenario_inputs import ScenarioInputs, from_build
from pipeline.benchmark.statistics import QUICK_STABILITY
from pipeline.config import Profile
from pipeline.scenarios import get_scenario

INPUTS = {"residual", "rr"}
LITERT = {f"litert {variant.value}" for variant in LiteRtVariant}


@pytest.fixture(scope="module")
def scenario(ecg_pvc_build) -> ScenarioInputs:
    root, outcome = ecg_pvc_build
    definition = get_scenario("ecg-pvc")
    config = definition.build_config(Profile.TINY, seed=0)
    return from_build("ecg-pvc", outcome.artifacts, root / "artifacts", definition, config)


@pytest.fixture(scope="module")
def conversion(scenario: ScenarioInputs) -> LiteRtConversion:
    return convert_to_litert(scenario.keras_model, scenario.calibration_inputs, scenario.peer_folder)


def test_a_two_input_scenario_is_gathered_with_its_builds_gates(scenario: ScenarioInputs) -> None:
    assert set(scenario.timing_inputs) == INPUTS and set(scenario.calibration_inputs) == INPUTS
    setting = scenario.gate
    assert setting is not None and setting.recordings is not None
    assert "held-out records" in setting.measured_on and "validation split" in setting.measured_on
    assert "through the device stream" in setting.recordings.measured_on
    assert set(scenario.judgements) == set(scenario.variants)
    for variant, judged in scenario.judgements.items():  # the build's own verdicts: evaluate and validate
        assert judged.samples is not None and judged.recordings is not None and judged.recordings.figures
        assert scenario.gate_passed[variant] is judged.passed
        assert judged.passed == (judged.samples["passed"] and judged.recordings.passed)


def test_litert_peers_take_both_inputs_and_face_the_same_gates(scenario, conversion) -> None:
    assert conversion.failures == {} and set(conversion.models) == set(LiteRtVariant)
    fp32 = LiteRtModel(conversion.models[LiteRtVariant.FP32], threads=1)
    assert set(fp32.inputs) == INPUTS
    np.testing.assert_allclose(fp32.predict_in_batches(scenario.gate.test_inputs), scenario.gate.reference_test,
                               atol=1e-4)  # the same Keras model as the ONNX fp32 reference
    judged = judge_peers(scenario, conversion)
    assert set(judged) == LITERT | {KERAS}
    reference_figures = set(scenario.judgements["fp32"].recordings.figures)
    for name in LITERT:
        verdict = judged[name]
        assert isinstance(verdict.passed, bool) and verdict.metric == "macro-F1" and 0.0 <= verdict.value <= 1.0
        assert verdict.recordings.passed is not None and set(verdict.recordings.figures) == reference_figures
        assert "held-out records" in verdict.measured_on and "device stream" in verdict.measured_on
    assert judged["litert fp32"].samples["passed"] is True  # fp32 against fp32: nothing drops
    assert judged[KERAS].recordings.passed is None and "not run" in judged[KERAS].recordings.reason


def test_a_quick_bench_of_the_two_input_model_picks_the_fastest_passing_litert(scenario, conversion,
                                                                               tmp_path: Path) -> None:
    quick = dataclasses.replace(scenario, variants={"fp32": scenario.variants["fp32"]})
    config = BenchmarkConfig(stability=QUICK_STABILITY, batch_sizes=(1, 4), threads=(1,), quick=True)
    document = run_benchmark([quick], config)
    written = write_results(document, tmp_path, plots=False)
    (result,) = json.loads((tmp_path / "bench.json").read_text())["scenarios"]
    litert_rows = [row for row in result["rows"] if row["engine"] == "litert"]
    assert {row["variant"] for row in litert_rows} == {variant.value for variant in LiteRtVariant}
    for row in litert_rows:
        assert row["status"] == "ok" and row["latency"]["median_of_windows_us"] > 0
        assert isinstance(row["gate_passed"], bool) and "held-out records" in row["accuracy_measured_on"]
    (peer,) = result["peers"]
    timed = [candidate for candidate in peer["candidates"] if candidate["latency_us"] is not None]
    assert {candidate["source"] for candidate in timed} == {"head-to-head"}
    if peer["chosen"] is None:
        assert not any(candidate["passed"] for candidate in timed)
    else:
        chosen = next(candidate for candidate in timed if candidate["name"] == peer["chosen"])
        assert chosen["passed"] is True
        assert all(not candidate["passed"] for candidate in timed if candidate["latency_us"] < chosen["latency_us"])
    markdown = (tmp_path / "bench.md").read_text()
    assert "### LiteRT peer (the fastest LiteRT variant that passes the same gate)" in markdown
    assert "| litert int8 |" in markdown and "Measured on:" in markdown
    assert {path.name for path in written} == {"bench.json", "bench.md"}
