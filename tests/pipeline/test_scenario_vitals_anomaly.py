"""The registered real-data anomaly scenario ``vitals-anomaly`` (UCR InternalBleeding16): the data as aeon ships it,
time-block splits that never share a window, the window labels, event counting, both Keras autoencoders, and a tiny
end-to-end build (the alarm threshold in the manifest is the one at the target false-alarm rate on the normal block)."""

from __future__ import annotations

import json
from dataclasses import replace
from itertools import pairwise

import numpy as np
import pytest

from pipeline.clinical.operating_points import threshold_at_false_alarm_rate
from pipeline.config import Profile
from pipeline.errors import DataError
from pipeline.scenarios import default_scenario_names, get_scenario
from pipeline.scenarios.vitals_anomaly.data import (
    NOMINAL_RATE_HZ,
    LabelRule,
    UcrSeries,
    VitalsDataConfig,
    block_windows,
    check_blocks,
    input_spec,
    load_series,
)
from pipeline.scenarios.vitals_anomaly.events import alarm_events, poisson_rate_interval, summarise_events
from pipeline.scenarios.vitals_anomaly.model import Architecture, VitalsModelConfig, build_vitals_model
from pipeline.scenarios.vitals_anomaly.scenario import make_splits, series_windows
from runtime.bundle import load_bundle
from runtime.contract import BundleManifest, InputSpec, TaskKind, WindowNormalization
from runtime.trust import TrustPolicy

SPLITS = ("train", "validation", "calibration", "test", "normal")


def test_the_series_is_aeons_copy_with_one_labelled_anomaly_and_train_as_its_prefix():
    series = load_series()  # checks the sha256 of both files and that TRAIN is TEST's first 1200 samples
    assert series.values.shape == (7501,) and series.anomaly_range == (4187, 4199)
    assert series.anomalous.sum() == 12 and not series.anomalous[:1200].any()
    assert 55.0 < series.values.min() < series.values.max() < 105.0  # mmHg-like pressure


def test_splits_have_the_documented_window_counts_and_only_test_holds_the_anomaly():
    splits = make_splits(VitalsDataConfig())
    counts = {name: len(splits.split(name)) for name in SPLITS[:4]} | {"normal": len(splits.normal)}
    assert counts == {"train": 135, "validation": 106, "calibration": 56, "test": 266, "normal": 231}
    assert splits.class_balance()["test"] == {"normal": 250, "anomalous": 16}
    assert all(not splits.split(name).labels.any() for name in SPLITS[:3]) and splits.normal.labels is None
    windows = splits.provenance["windows_per_split"]
    assert windows["test"]["ambiguous_left_out"] == 3 and all(item["quality_flagged_left_out"] == 0
                                                             for item in windows.values())
    assert splits.provenance["synthetic"] is False and splits.provenance["sample_rate_hz"] == NOMINAL_RATE_HZ
    # the one labelled anomaly's sixteen windows are one bootstrap group (one event); the rest, 500-sample blocks
    test = splits.test
    assert set(test.groups[test.labels == 1].tolist()) == {"the labelled anomaly"}
    assert len(set(test.groups[test.labels == 0].tolist())) >= 4
    assert splits.group_unit.startswith("500-sample block")


def test_no_window_spans_two_splits_and_blocks_are_a_window_apart():
    config = VitalsDataConfig()
    _, windows = series_windows(config)
    spans = {name: (int(block.starts.min()), int(block.starts.max()) + config.window_samples)
             for name, block in windows.items()}
    ordered = sorted(spans.values())
    for (_, end), (start, _) in pairwise(ordered):
        assert start - end >= config.window_samples
    assert spans["train"][1] <= 1200  # training never reads past the archive's anomaly-free prefix


def test_windows_are_the_raw_series_as_the_device_cuts_them():
    config = VitalsDataConfig()
    series, windows = series_windows(config)
    test = windows["test"]
    for index in (0, len(test.starts) // 2, len(test.starts) - 1):
        start = test.starts[index]
        expected = series.values[start:start + config.window_samples].astype(np.float32)
        np.testing.assert_array_equal(test.inputs[index, :, 0], expected)  # normalisation NONE: the graph scales
    assert np.all(np.diff(test.starts[test.starts < 4000]) == config.hop_samples)  # every hop, before the anomaly


def test_blocks_that_overlap_or_touch_are_refused():
    with pytest.raises(DataError, match="gap of at least one window"):
        check_blocks({"train": (0, 1200), "test": (1250, 3000)}, 128, 7501)
    with pytest.raises(DataError, match="inside the series"):
        check_blocks({"test": (7000, 8000)}, 128, 7501)
    with pytest.raises(DataError, match="holds the labelled anomaly"):
        blocks = replace(VitalsDataConfig().blocks, normal=(3128, 5400), test=(5528, 7501))
        make_splits(replace(VitalsDataConfig(), blocks=blocks))


def test_window_labels_count_anomalous_samples_and_leave_the_boundary_out():
    anomalous = np.zeros(400, dtype=bool)
    anomalous[200:212] = True  # 12 samples, like the real label
    series = UcrSeries(np.random.default_rng(0).normal(70.0, 10.0, 400), anomalous, {})
    derived = input_spec(VitalsDataConfig()).derived
    spec = InputSpec("input", (None, 32, 1), "waveform", sample_rate_hz=250.0,
                     derived=replace(derived, window=replace(derived.window, hop_s=4 / 250)))  # 32 samples, hop 4
    block = block_windows(series, (0, 400), spec, LabelRule(min_anomaly_samples=6, boundary_margin_samples=8))
    every_start = np.arange(0, 400 - 32 + 1, 4)
    inside = np.array([anomalous[start:start + 32].sum() for start in every_start])
    near = (every_start < 212 + 8) & (every_start + 32 > 200 - 8)
    positive, ambiguous = inside >= 6, near & (inside < 6)
    assert np.array_equal(block.starts, every_start[~ambiguous])  # by hand: kept = all but the ambiguous
    assert np.array_equal(block.labels, positive[~ambiguous].astype(np.int64))
    assert block.ambiguous == int(ambiguous.sum()) > 0 and block.labels.sum() == int(positive.sum()) > 0


def test_alarm_events_merge_touching_windows_and_count_false_alarms_per_hour():
    starts = np.arange(0, 2000, 8)
    alarms = np.zeros(starts.size, dtype=bool)
    alarms[[10, 11, 12, 100, 200]] = True  # one run of three, two singles
    assert alarm_events(starts, alarms, 128) == [(80, 224), (800, 928), (1600, 1728)]
    summary = summarise_events(starts, alarms, 128, 250.0, anomaly=(1600, 1612), margin=8)
    assert summary.anomaly_detected and summary.false_alarm_events == 2
    assert summary.detection_delay_s == pytest.approx((1600 + 128 - 1600) / 250.0)
    low, high = poisson_rate_interval(0, 1.0)
    assert low == 0.0 and high == pytest.approx(3.689, abs=1e-3)  # the rule of three-ish upper bound for 0 events


@pytest.mark.parametrize("architecture", list(Architecture))
def test_both_autoencoders_reconstruct_the_input_shape_in_its_units(architecture):
    windows = np.random.default_rng(0).normal(70.0, 13.0, (16, 128, 1)).astype(np.float32)
    model = build_vitals_model(VitalsModelConfig(architecture=architecture), windows)
    assert model.output_shape == (None, 128, 1) and model.input_shape == (None, 128, 1)
    assert abs(float(np.mean(model.predict(windows, verbose=0))) - 70.0) < 13.0  # scaled back to the input's units


def test_the_contract_is_a_signal_window_fed_in_pressure_units_and_the_scenario_is_not_shipped():
    scenario = get_scenario("vitals-anomaly")
    contract = scenario.device_contract(scenario.data_config(Profile.FULL))
    spec = contract.input
    assert spec.is_signal_window and spec.hop_samples == 8 and spec.sample_rate_hz == NOMINAL_RATE_HZ
    assert spec.derived.window.normalization is WindowNormalization.NONE
    assert InputSpec.from_dict(spec.to_dict()) == spec
    assert contract.output.task is TaskKind.ANOMALY and contract.output.labels == ("normal", "anomalous")
    assert get_scenario("vitals-anomaly-attention").model_config(Profile.FULL).architecture is Architecture.ATTENTION
    assert "vitals-anomaly" not in default_scenario_names()


@pytest.fixture(scope="module")
def vitals_build(tmp_path_factory):
    from pipeline.build.builder import build_scenario
    from pipeline.build.context import StageContext

    root = tmp_path_factory.mktemp("vitals")
    scenario = get_scenario("vitals-anomaly")
    config = scenario.build_config(Profile.TINY, seed=0)
    return config, build_scenario(scenario, config, StageContext(root / "artifacts"), root / "bundles")


def test_tiny_build_scores_in_the_graph_and_sets_the_threshold_at_the_target_rate_on_normal_windows(vitals_build):
    from pipeline.build.stages.data import load_data

    config, outcome = vitals_build
    manifest = BundleManifest.from_dict(json.loads((outcome.bundle_directory / "manifest.json").read_text()))
    assert manifest.output.task is TaskKind.ANOMALY and manifest.output.names == ("anomaly_score",)
    assert manifest.inputs[0].is_signal_window
    assert set(manifest.to_dict()["variants"]) == {"fp32", "fp16", "int8-dynamic", "int8-static"}
    bundle = load_bundle(outcome.bundle_directory, trust=TrustPolicy.development())
    splits = load_data(outcome.artifacts["data"])
    normal = bundle.session.run(None, {"input": splits.normal.inputs})[0]
    assert normal.shape == (len(splits.normal), 1)  # one score per window, computed in the graph
    expected = threshold_at_false_alarm_rate(normal[:, 0].astype(np.float64), config.evaluate.decision.false_alarm_rate)
    assert manifest.output.decision.threshold == pytest.approx(expected.threshold, rel=1e-5)
    assert manifest.output.decision.target_false_alarm_rate == 0.01
    assert np.mean(normal[:, 0] >= manifest.output.decision.threshold) <= 0.01


def test_the_comparison_favours_detection_then_fewer_false_alarms_then_speed():
    from pipeline.scenarios.vitals_anomaly.comparison_report import favoured

    def run(design: str, detected: bool, false_events: int) -> dict:
        events = {"test": {"anomaly_detected": detected, "false_alarm_events": false_events, "normal_signal_s": 9.0}}
        return {"design": design, "events": events, "separation": {"lowest_anomalous_score_over_threshold": 2.0},
                "window_metrics": {"false_alarm_rate": {"value": 0.0}, "sensitivity": {"value": 1.0}}}

    latency = {"autoencoder": {"median_of_round_medians_us": 15.0}, "attention": {"median_of_round_medians_us": 70.0}}
    record = {"latency_interleaved": latency, "seeds": [run("autoencoder", True, 3), run("attention", True, 1)]}
    assert favoured(record)[0] == "attention"  # fewer false alarms beat a faster model
    record["seeds"] = [run("autoencoder", False, 0), run("attention", True, 5)]
    assert favoured(record)[0] == "attention"  # a missed anomaly loses first
    record["seeds"] = [run("autoencoder", True, 1), run("attention", True, 1)]
    assert favoured(record)[0] == "autoencoder"  # a tie goes to the faster


def test_the_shipped_models_timed_together_are_labelled_synthetic_inputs(tmp_path):
    """The shared latency run feeds one seeded N(70, 13) window, not the series: the record and report say so."""
    from pipeline.scenarios.vitals_anomaly.bundle_figures import TIMING_INPUTS, interleaved_latency
    from pipeline.scenarios.vitals_anomaly.comparison_report import latency_lines
    from tests.pipeline.test_benchmark_harness import tiny_classifier

    models = {name: tiny_classifier(tmp_path / f"{name}.onnx") for name in ("autoencoder", "attention")}
    latency = interleaved_latency(models, rounds=2, runs_per_round=3, warmup_runs=1)
    assert TIMING_INPUTS.startswith("synthetic: one seeded normal N(70, 13) window")
    assert "not real data" in TIMING_INPUTS
    assert all(entry["inputs"] == TIMING_INPUTS and entry["inputs_synthetic"] is True for entry in latency.values())
    lines = latency_lines(latency)
    assert lines[0] == f"Timed on {TIMING_INPUTS}." and "| autoencoder |" in lines[4] and "| attention |" in lines[5]
