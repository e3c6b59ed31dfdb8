"""train → export → variants → gate → bundle on tiny configurations, with real models and sessions."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnx
import pytest

from exporters.parity import PARITY_SAMPLES
from pipeline.build.builder import StageName, build_scenario
from pipeline.build.context import StageContext
from pipeline.build.stages.bundle import choose_variant
from pipeline.build.stages.data import load_data
from pipeline.build.stages.evaluate import evaluate_variants
from pipeline.build.stages.variants import predict, variant_file
from pipeline.build.variant_latency import LatencyResult
from pipeline.clinical.gate import GateVerdict
from pipeline.config import Profile, VariantName
from pipeline.errors import GateError
from pipeline.scenarios import get_scenario
from runtime.contract import BundleManifest, MulticlassRule, TaskKind
from runtime.hashing import sha256_file

ALL_VARIANTS = [variant.value for variant in VariantName]


@pytest.fixture(params=["breast_cancer_build", "ecg_build"])
def build(request):
    return request.getfixturevalue(request.param)


def test_every_stage_ran_and_export_matches_keras(build):
    _, outcome = build
    assert list(outcome.artifacts) == ["data", "train", "export", "variants", "evaluate", "bundle"]
    parity = outcome.artifacts["export"].metrics["parity"]
    assert parity["passed"] is True
    assert parity["max_abs_diff"] <= 1e-4
    assert parity["argmax_agreement"] == 1.0
    splits = load_data(outcome.artifacts["data"])
    held_out = sum(len(splits.split(name)) for name in ("test", "calibration", "validation"))  # never training rows
    assert parity["samples"] == min(PARITY_SAMPLES, held_out) and len(parity["batch_sizes"]) == 2
    assert outcome.artifacts["export"].metrics["opset"] == 17


def test_bundle_manifest_hashes_and_contents(build):
    _, outcome = build
    folder = outcome.bundle_directory
    manifest = json.loads((folder / "manifest.json").read_text())
    assert sorted(path.name for path in folder.iterdir()) == [
        "manifest.json", "model.onnx", "reference_profile.json", "report.md",
    ]
    assert manifest["files"] == {
        name: {"sha256": sha256_file(folder / name), "bytes": (folder / name).stat().st_size}
        for name in manifest["files"]
    }
    assert set(manifest["files"]) == {"model.onnx", "reference_profile.json", "report.md"}
    assert manifest["schema_version"] == 2
    typed = BundleManifest.from_dict(manifest)  # what the device reads
    assert typed.to_dict() == manifest
    assert typed.output.task is TaskKind.MULTICLASS and typed.output.labels == tuple(manifest["output"]["labels"])
    assert typed.data.synthetic is manifest["data"]["provenance"]["synthetic"]
    assert list(manifest["variants"]) == ALL_VARIANTS
    assert manifest["variants"]["fp32"]["gate"]["passed"] is True
    shipped = manifest["variants"][manifest["variant"]]
    assert shipped["gate"]["passed"] is True
    passing = [name for name, item in manifest["variants"].items() if item["gate"]["passed"]]
    fastest = min(passing, key=lambda name: manifest["variants"][name]["latency"]["ratio_to_fp32"])
    margin_met = manifest["variants"][fastest]["latency"]["ratio_to_fp32"] <= 0.95
    assert manifest["variant"] == (fastest if margin_met else "fp32")
    assert manifest["variants"]["fp32"]["latency"]["ratio_to_fp32"] == 1.0
    quantization = manifest["variants"]["int8-static"]["quantization"]
    assert quantization["settings"]["quant_format"] in ("qdq", "qoperator") and quantization["candidates_measured"] >= 2
    assert quantization["settings"]["reduce_range"] is True  # 7-bit weights: the same answers on every x86 CPU
    assert "validation split" in quantization["checked_on"]
    assert "int8-static settings:" in (folder / "report.md").read_text()
    measured_on = manifest["selection"]["measured_on"]
    assert measured_on["cpu_model"] and measured_on["usable_cores"] >= 1 and measured_on["onnxruntime"]
    assert "measured on" in (folder / "report.md").read_text()
    if "conv_layout" in manifest["variants"]["fp32"]:  # models with convolutions
        assert "fp32 convolution layout:" in (folder / "report.md").read_text()
    for item in manifest["variants"].values():
        latency = item["latency"]
        assert latency["method"] == "interleaved rounds" and latency["rounds"] >= 3
        # The benchmark's names, and what they mean there: percentiles over every timed run.
        assert 0 < latency["minimum_us"] <= latency["p50_us"] <= latency["p90_us"] <= latency["p95_us"]
        assert latency["p95_us"] <= latency["p99_us"] and latency["mean_us"] > 0 and latency["median_of_windows_us"] > 0
    lineage = manifest["lineage"]
    assert lineage["export"] == outcome.artifacts["export"].id
    assert lineage["model"] == outcome.artifacts["train"].id
    assert lineage["bundle"] == outcome.artifacts["bundle"].id
    assert manifest["data"]["provenance"]["synthetic"] in (True, False)
    assert manifest["inputs"][0]["shape"][0] is None and len(manifest["inputs"]) == 1
    model = onnx.load(folder / "model.onnx")
    assert model.graph.input[0].name == manifest["inputs"][0]["name"]
    assert [output.name for output in model.graph.output] == manifest["output"]["names"]
    report = (folder / "report.md").read_text()
    assert manifest["variant"] in report and "Gate verdicts" in report
    trained_on = manifest["training"]["machine"]  # training repeats per machine: the report says which
    assert trained_on["cpu_model"] and trained_on["tensorflow"]
    assert f"The model was trained on: {trained_on['cpu_model']}" in report
    assert "a bundle signed with a DEVELOPMENT key (as `make build` signs) is not for clinical use" in report


def test_every_variant_outputs_probabilities(build):
    _, outcome = build
    from pipeline.build.stages.variants import load_predictions

    for name, probabilities in load_predictions(outcome.artifacts["variants"]).items():
        assert np.all(probabilities >= 0), name
        assert np.allclose(probabilities.sum(axis=1), 1.0, atol=2e-3), name


def test_synthetic_flag_is_honest_per_scenario(breast_cancer_build, ecg_build):
    breast = json.loads((breast_cancer_build[1].bundle_directory / "manifest.json").read_text())
    ecg = json.loads((ecg_build[1].bundle_directory / "manifest.json").read_text())
    assert breast["data"]["provenance"]["synthetic"] is False and breast["data"]["synthetic"] is False
    assert ecg["data"]["provenance"]["synthetic"] is True and ecg["data"]["synthetic"] is True
    assert "Synthetic data" in (ecg_build[1].bundle_directory / "report.md").read_text()
    assert "Synthetic data" not in (breast_cancer_build[1].bundle_directory / "report.md").read_text()
    # how the test intervals were resampled: independent patients vs one synthetic patient's beats together
    assert breast["data"]["provenance"]["test_resampling"]["unit"] == "sample"
    resampling = ecg["data"]["provenance"]["test_resampling"]
    assert resampling["unit"].startswith("synthetic record") and 2 <= resampling["groups"] < resampling["samples"]
    assert "Intervals: percentile bootstrap over the " in (breast_cancer_build[1].bundle_directory / "report.md"
                                                           ).read_text()


def test_each_scenario_writes_its_device_contract(breast_cancer_build, ecg_build):
    breast = json.loads((breast_cancer_build[1].bundle_directory / "manifest.json").read_text())
    ecg = BundleManifest.from_dict(json.loads((ecg_build[1].bundle_directory / "manifest.json").read_text()))
    (beat,) = ecg.inputs
    assert beat.feature_kind.value == "waveform" and beat.sample_rate_hz == 360.0
    assert beat.r_peak_index == 90 and beat.window_samples == 252 and beat.shape == (None, 252, 1)
    assert ecg.output.labels == ("N", "S", "V", "F") and ecg.output.decision == MulticlassRule(0.5)
    assert not ecg.output.graph_outputs_logits
    assert breast["inputs"][0]["feature_kind"] == "tabular" and len(breast["inputs"][0]["feature_names"]) == 30
    assert breast["output"]["labels"] == ["malignant", "benign"]
    assert breast["output"]["decision"] == {"low_confidence_below": None}
    assert "thresholds" not in breast and "labels" not in breast  # schema 1's untyped keys are gone
    report = (ecg_build[1].bundle_directory / "report.md").read_text()
    assert "manifest schema 2" in report and "flagged low-confidence under 0.5" in report


def test_reference_profile_covers_features_and_predictions(ecg_build):
    _, outcome = ecg_build
    profile = json.loads((outcome.bundle_directory / "reference_profile.json").read_text())
    test_size = outcome.artifacts["data"].metrics["sizes"]["test"]
    assert profile["samples"] == test_size
    assert set(profile["features"]) == {"peak_to_peak", "difference_rms", "skewness", "kurtosis", "peak_position"}
    assert all(len(item["decile_edges"]) == 11 for item in profile["features"].values())
    assert sum(profile["predictions"]["class_counts"].values()) == test_size
    assert set(profile["predictions"]["class_fractions"]) == {"N", "S", "V", "F"}


def test_rerun_reuses_everything_and_one_setting_reruns_only_its_dependents(breast_cancer_build):
    root, first = breast_cancer_build
    scenario = get_scenario("breast-cancer")
    config = scenario.build_config(Profile.TINY, seed=0)
    again = build_scenario(scenario, config, StageContext(root / "artifacts"), root / "bundles")
    assert all(again.reused.values())
    assert {stage: item.id for stage, item in again.artifacts.items()} == {
        stage: item.id for stage, item in first.artifacts.items()
    }
    evaluation = dataclasses.replace(config.evaluate.evaluation, bootstrap_samples=150)
    changed = dataclasses.replace(config, evaluate=dataclasses.replace(config.evaluate, evaluation=evaluation))
    partial = build_scenario(scenario, changed, StageContext(root / "artifacts"), root / "bundles", StageName.EVALUATE)
    assert partial.reused == {"data": True, "train": True, "export": True, "variants": True, "evaluate": False}


def test_gate_rejects_a_deliberately_damaged_variant(breast_cancer_build, tmp_path):
    _, outcome = breast_cancer_build
    variants = outcome.artifacts["variants"]
    model = onnx.load(variants.path(variant_file("fp32")))
    rng = np.random.default_rng(0)
    for initializer in model.graph.initializer:
        weights = onnx.numpy_helper.to_array(initializer)
        if weights.dtype == np.float32 and weights.ndim == 2:
            noisy = weights + rng.normal(scale=3 * weights.std(), size=weights.shape).astype(np.float32)
            initializer.CopyFrom(onnx.numpy_helper.from_array(noisy, initializer.name))
    damaged_path = tmp_path / "damaged.onnx"
    onnx.save(model, damaged_path)
    splits = load_data(outcome.artifacts["data"])
    predictions = {
        "fp32": predict(variants.path(variant_file("fp32")), splits.test.inputs),
        "damaged": predict(damaged_path, splits.test.inputs),
    }
    config = get_scenario("breast-cancer").build_config(Profile.TINY).evaluate
    _, verdicts = evaluate_variants(predictions, splits.test.labels, splits.class_names, config)
    assert verdicts["fp32"].passed
    assert not verdicts["damaged"].passed
    assert "failed" in verdicts["damaged"].reason
    assert verdicts["damaged"].numbers["macro_f1"]["drop_points"] > 1.0


def _verdict(name: str, passed: bool) -> GateVerdict:
    return GateVerdict(name, passed, "rule", {}, "passed" if passed else "failed: sensitivity dropped")


def _latency(median: float, ratio: float | None = None) -> LatencyResult:
    return LatencyResult(mean_us=median, p50_us=median, p90_us=median, p95_us=median, p99_us=median,
                         minimum_us=median, median_of_windows_us=median, spread=0.01, ratio_to_fp32=ratio, rounds=5,
                         runs_per_round=40, warmup_runs=10, threads=1, provider="CPUExecutionProvider")


def test_selection_ships_the_fastest_passing_variant_and_refuses_a_failed_required_one():
    verdicts = {"fp32": _verdict("fp32", True), "fp16": _verdict("fp16", True), "int8-static": _verdict("i", False)}
    latencies = {"fp32": _latency(30.0), "fp16": _latency(25.0), "int8-static": _latency(5.0)}
    chosen, reason = choose_variant(verdicts, latencies, None)
    assert chosen == "fp16" and "25.0 µs" in reason and "fp32 30.0 µs" in reason
    # With ratios to fp32 (measured in the same rounds) the ratio decides, not the medians.
    paired = {"fp32": _latency(30.0, 1.0), "fp16": _latency(25.0, 1.05), "int8-static": _latency(5.0, 0.2)}
    chosen, reason = choose_variant(verdicts, paired, None)
    assert chosen == "fp32" and "1.00× fp32 (30.0 µs median)" in reason
    # A variant within the margin of fp32 does not displace the reference.
    close = {"fp32": _latency(30.0, 1.0), "fp16": _latency(29.0, 0.97), "int8-static": _latency(5.0, 0.2)}
    assert choose_variant(verdicts, close, None, min_speedup=0.05)[0] == "fp32"
    assert choose_variant(verdicts, close, None, min_speedup=0.0)[0] == "fp16"
    with pytest.raises(GateError, match="int8-static cannot ship"):
        choose_variant(verdicts, latencies, VariantName.INT8_STATIC)
    assert choose_variant(verdicts, latencies, VariantName.FP32)[0] == "fp32"
