"""Keras and LiteRT peers: converted from the same Keras model, measured, with predictions, and head-to-head."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.benchmark.harness import BenchmarkConfig, plan_units
from pipeline.benchmark.head_to_head import HEAD_TO_HEAD_ENGINE, QUICK_HEAD_TO_HEAD
from pipeline.benchmark.litert_conversion import LiteRtVariant, convert_to_litert
from pipeline.benchmark.litert_models import LiteRtModel
from pipeline.benchmark.memory import run_in_subprocess
from pipeline.benchmark.peers import keras_outputs, run_keras, run_litert
from pipeline.benchmark.scenario_inputs import ScenarioInputs
from pipeline.benchmark.statistics import QUICK_STABILITY

LENGTH, CLASSES = 32, 3


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((LENGTH, 1), name="input")
    hidden = keras.layers.Conv1D(4, 3, padding="same", activation="relu")(inputs)
    hidden = keras.layers.Flatten()(hidden)
    outputs = keras.layers.Dense(CLASSES, activation="softmax")(hidden)
    path = tmp_path_factory.mktemp("peers") / "model.keras"
    keras.Model(inputs, outputs).save(path)
    return path


@pytest.fixture(scope="module")
def samples() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(16, LENGTH, 1)).astype(np.float32)


@pytest.fixture(scope="module")
def litert_models(keras_file: Path, samples: np.ndarray) -> dict:
    conversion = convert_to_litert(keras_file, samples, keras_file.parent / "litert")
    assert conversion.failures == {}
    return conversion.models


def test_every_litert_variant_is_made_and_cached(litert_models: dict, keras_file: Path, samples) -> None:
    assert set(litert_models) == set(LiteRtVariant)  # fp32, dynamic-range, int8
    assert all(path.stat().st_size > 0 for path in litert_models.values())
    modified = {variant: path.stat().st_mtime_ns for variant, path in litert_models.items()}
    again = convert_to_litert(keras_file, samples, keras_file.parent / "litert").models
    assert {variant: path.stat().st_mtime_ns for variant, path in again.items()} == modified


@pytest.mark.parametrize("variant", list(LiteRtVariant))
def test_litert_peer_measures_and_predicts(litert_models: dict, samples: np.ndarray, variant: LiteRtVariant) -> None:
    spec = {"model": str(litert_models[variant]), "threads": 1, "batch_sizes": [1, 8]}
    result = run_litert(spec, samples, QUICK_STABILITY)
    assert result["latency"]["iterations"] > 0 and set(result["throughput"]) == {"1", "8"}
    assert result["runtime"]["engine"] == "litert" and result["runtime"]["implementation"]
    predictions = LiteRtModel(litert_models[variant], 1).predict_in_batches(samples, batch_size=5)
    assert predictions.shape == (len(samples), CLASSES)
    np.testing.assert_allclose(predictions.sum(axis=1), 1.0, atol=0.02)


def test_keras_peer_matches_litert_fp32(keras_file: Path, litert_models: dict, samples: np.ndarray) -> None:
    import keras

    spec = {"model": str(keras_file), "threads": 1, "batch_sizes": [2], "mode": "call"}
    result = run_keras(spec, samples, QUICK_STABILITY)
    assert result["runtime"]["mode"] == "call" and result["first_inference_us"] > 0
    keras_predictions = keras_outputs(keras.saving.load_model(keras_file), samples, batch_size=5)
    litert_predictions = LiteRtModel(litert_models[LiteRtVariant.FP32], 1).predict_in_batches(samples)
    np.testing.assert_allclose(keras_predictions, litert_predictions, atol=1e-4)


def test_plan_has_keras_and_litert_peers_for_every_thread_count(keras_file: Path, samples, tmp_path: Path) -> None:
    scenario = ScenarioInputs(
        name="peers", variants={}, timing_inputs=samples, keras_model=keras_file, test_inputs=samples,
        test_labels=np.zeros(len(samples), int), calibration_inputs=samples, peer_folder=keras_file.parent / "litert",
    )
    units = plan_units(scenario, BenchmarkConfig(threads=(1, 2)), ["CPUExecutionProvider"], tmp_path)
    peers = {(unit["engine"], unit["variant"], unit["threads"]) for unit in units
             if unit["engine"] != HEAD_TO_HEAD_ENGINE}
    expected = {(engine, variant, threads) for threads in (1, 2)
                for engine, variant in (("keras", "predict"), ("keras", "call"), ("litert", "fp32"),
                                        ("litert", "dynamic-range"), ("litert", "int8"))}
    assert peers == expected
    assert all(unit["inputs"].endswith(".npy") for unit in units)  # one input: a plain array file


def tiny_onnx(path: Path) -> Path:
    """An ONNX model taking the Keras model's (batch, LENGTH, 1) input: flatten, MatMul, Softmax."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.random.default_rng(0).normal(size=(LENGTH, CLASSES)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"], axis=1),
         helper.make_node("MatMul", ["flat", "weights"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1)],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", LENGTH, 1])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", CLASSES])],
        [numpy_helper.from_array(weights, "weights")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(path))
    return path


def test_head_to_head_worker_times_onnx_and_litert_together(keras_file: Path, litert_models: dict, samples,
                                                            tmp_path: Path) -> None:
    scenario = ScenarioInputs(
        name="h2h", variants={"fp32": tiny_onnx(tmp_path / "fp32.onnx")}, timing_inputs=samples,
        keras_model=keras_file, test_inputs=samples, test_labels=np.zeros(len(samples), int),
        calibration_inputs=samples, peer_folder=keras_file.parent / "litert",
    )
    config = BenchmarkConfig(stability=QUICK_STABILITY, batch_sizes=(1,), threads=(1, 2), quick=True)
    units = [unit for unit in plan_units(scenario, config, ["CPUExecutionProvider"], tmp_path)
             if unit["engine"] == HEAD_TO_HEAD_ENGINE]
    assert [unit["threads"] for unit in units] == [1, 2]
    expected = {"onnxruntime fp32", "litert fp32", "litert dynamic-range", "litert int8"}  # never Keras
    assert all(set(unit["candidates"]) == expected for unit in units)
    result = run_in_subprocess(units[0])
    assert "error" not in result, result
    assert set(result["models"]) == expected and result["threads"] == 1
    assert QUICK_HEAD_TO_HEAD.min_rounds <= result["rounds"] <= QUICK_HEAD_TO_HEAD.max_rounds
    for model in result["models"].values():
        assert len(model["window_medians_us"]) == result["rounds"] and model["median_of_windows_us"] > 0
    assert result["runtime"]["litert"] and result["runtime"]["onnxruntime"]
    part = result["batch_256"]  # the LiteRT interpreters resized to batch 256
    assert set(part["models"]) == expected and part["runs_per_round"] >= QUICK_HEAD_TO_HEAD.batch_min_runs_per_round
    assert all(model["samples_per_second"] > 0 for model in part["models"].values())
    without_peers = plan_units(scenario, BenchmarkConfig(threads=(1,), peers=False, quick=True),
                               ["CPUExecutionProvider"], tmp_path)
    assert not [unit for unit in without_peers if unit["engine"] == HEAD_TO_HEAD_ENGINE]  # one model: nothing to pair


def test_a_variant_the_converter_cannot_make_becomes_a_row_with_its_reason(keras_file: Path, samples, tmp_path,
                                                                           monkeypatch) -> None:
    from pipeline.benchmark import litert_conversion
    from pipeline.benchmark.harness import unconverted_rows

    convert = litert_conversion._convert

    def refuse_int8(saved_model, variant, representative):
        if variant is LiteRtVariant.INT8:  # shaped like the converter's MLIR diagnostics: many lines of call sites
            raise ValueError('<unknown>:0: error: loc(callsite(fused["Fancy:", "model/fancy@__inference_703"])): '
                             "op FANCY is not supported by TFLITE_BUILTINS_INT8\n<unknown>:0: note: loc(fused[...]): "
                             "called from\n" + "<unknown>:0: note: called from\n" * 40)
        return convert(saved_model, variant, representative)

    monkeypatch.setattr(litert_conversion, "_convert", refuse_int8)
    made = convert_to_litert(keras_file, samples, tmp_path / "litert")
    assert set(made.models) == {LiteRtVariant.FP32, LiteRtVariant.DYNAMIC_RANGE}
    assert "FANCY is not supported" in made.failures[LiteRtVariant.INT8]
    monkeypatch.setattr(litert_conversion, "_convert", None)  # the cached outcome is reused, failure included
    assert convert_to_litert(keras_file, samples, tmp_path / "litert") == made
    (row,) = unconverted_rows(made)
    assert (row["engine"], row["variant"], row["status"]) == ("litert", "int8", "not available")
    assert row["reason"] == ("not available: the TFLite converter could not make it: ValueError: op FANCY is not "
                             "supported by TFLITE_BUILTINS_INT8") and row["gate_passed"] is None
    scenario = ScenarioInputs(name="refused", variants={}, timing_inputs=samples, keras_model=keras_file,
                              calibration_inputs=samples, peer_folder=tmp_path / "litert")
    units = plan_units(scenario, BenchmarkConfig(threads=(1,)), ["CPUExecutionProvider"], tmp_path, made)
    assert {unit["variant"] for unit in units if unit["engine"] == "litert"} == {"fp32", "dynamic-range"}


def test_a_peer_that_cannot_run_is_a_row_with_its_reason_not_a_failed_bench(keras_file: Path, samples,
                                                                             tmp_path: Path) -> None:
    import json

    from pipeline.benchmark.harness import run_benchmark

    folder = tmp_path / "litert"
    folder.mkdir()
    for variant in LiteRtVariant:  # "converted" earlier, but not LiteRT models at all
        (folder / f"{variant.value}.tflite").write_bytes(b"not a flatbuffer")
    (folder / "conversion.json").write_text(json.dumps({"variants": {
        variant.value: {"file": f"{variant.value}.tflite"} for variant in LiteRtVariant}}))
    scenario = ScenarioInputs(name="broken", variants={"fp32": tiny_onnx(tmp_path / "fp32.onnx")},
                              timing_inputs=samples, keras_model=keras_file, calibration_inputs=samples,
                              peer_folder=folder)
    config = BenchmarkConfig(stability=QUICK_STABILITY, batch_sizes=(1,), threads=(1,), quick=True)
    (result,) = run_benchmark([scenario], config)["scenarios"]
    litert = [row for row in result["rows"] if row["engine"] == "litert"]
    assert len(litert) == len(LiteRtVariant) and all(row["status"] == "not available" for row in litert)
    assert all(row["reason"].startswith("measuring failed:") for row in litert)
    assert {row["status"] for row in result["rows"] if row["engine"] == "onnxruntime" and row["threads"]} == {"ok"}
    (peer,) = result["peers"]
    assert peer["chosen"] is None and peer["reason"].startswith("no LiteRT variant passes the gate")
    assert result["head_to_head"] == []  # every peer left out: one ONNX model, nothing to compare
