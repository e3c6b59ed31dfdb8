"""Keras and LiteRT peers: converted from the same Keras model, measured, with predictions, and head-to-head."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.benchmark.harness import BenchmarkConfig, plan_units
from pipeline.benchmark.head_to_head import HEAD_TO_HEAD_ENGINE, QUICK_HEAD_TO_HEAD
from pipeline.benchmark.memory import run_in_subprocess
from pipeline.benchmark.peers import LiteRtVariant, convert_to_litert, run_keras, run_litert
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
    return convert_to_litert(keras_file, samples, keras_file.parent / "litert")


def test_litert_fp32_and_full_int8_are_made_and_cached(litert_models: dict, keras_file: Path, samples) -> None:
    assert set(litert_models) == set(LiteRtVariant)
    assert all(path.stat().st_size > 0 for path in litert_models.values())
    modified = {variant: path.stat().st_mtime_ns for variant, path in litert_models.items()}
    again = convert_to_litert(keras_file, samples, keras_file.parent / "litert")
    assert {variant: path.stat().st_mtime_ns for variant, path in again.items()} == modified


@pytest.mark.parametrize("variant", list(LiteRtVariant))
def test_litert_peer_measures_and_predicts(litert_models: dict, samples: np.ndarray, variant: LiteRtVariant) -> None:
    spec = {"model": str(litert_models[variant]), "threads": 1, "batch_sizes": [1, 8]}
    result, predictions = run_litert(spec, samples, QUICK_STABILITY, samples)
    assert result["latency"]["iterations"] > 0 and set(result["throughput"]) == {"1", "8"}
    assert result["runtime"]["engine"] == "litert" and result["runtime"]["implementation"]
    assert predictions.shape == (len(samples), CLASSES)
    np.testing.assert_allclose(predictions.sum(axis=1), 1.0, atol=0.02)


def test_keras_peer_matches_litert_fp32(keras_file: Path, litert_models: dict, samples: np.ndarray) -> None:
    spec = {"model": str(keras_file), "threads": 1, "batch_sizes": [2], "mode": "call"}
    result, keras_predictions = run_keras(spec, samples, QUICK_STABILITY, samples)
    assert result["runtime"]["mode"] == "call" and result["first_inference_us"] > 0
    litert_spec = {"model": str(litert_models[LiteRtVariant.FP32]), "threads": 1, "batch_sizes": [1]}
    _, litert_predictions = run_litert(litert_spec, samples, QUICK_STABILITY, samples)
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
                                        ("litert", "int8"))}
    assert peers == expected
    evaluated = [unit for unit in units if unit["engine"] in ("keras", "litert") and unit["threads"] == 1]
    assert all("predictions_output" in unit for unit in evaluated if unit["variant"] != "predict")


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
    expected = {"onnxruntime fp32", "litert fp32", "litert int8"}  # never Keras
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
