"""choose_conv_layout: both forms timed, the choice and its reason recorded, outputs unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime

from exporters.optimization.conv_layout import ONE_D, TWO_D, choose_conv_layout
from exporters.timing import InterleavedTiming
from tests.exporters.test_passes_graph import _two_conv_stack

QUICK = InterleavedTiming(rounds=3, runs_per_round=10, warmup_runs=2)


def _run(path: Path, inputs: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": inputs})[0]


def test_the_chosen_layout_is_written_with_its_measurement(tmp_path: Path) -> None:
    source, destination = tmp_path / "one-d.onnx", tmp_path / "chosen.onnx"
    onnx.save(_two_conv_stack(), source)
    inputs = np.random.default_rng(0).normal(size=(64, 40, 1)).astype(np.float32)

    report = choose_conv_layout(source, destination, inputs, QUICK)

    assert report["lifted_ops"] == 3 and report["chosen"] in (ONE_D, TWO_D)
    assert report["ratio_2d_to_1d"] > 0 and set(report["median_of_windows_us"]) == {ONE_D, TWO_D}
    assert (report["chosen"] == TWO_D) == (report["ratio_2d_to_1d"] <= 0.98)
    assert np.max(np.abs(_run(destination, inputs) - _run(source, inputs))) <= 1e-4


def test_a_model_without_convolutions_is_copied_unchanged(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    source, destination = tmp_path / "relu.onnx", tmp_path / "chosen.onnx"
    onnx.save(model, source)

    report = choose_conv_layout(source, destination, np.ones((4, 4), np.float32), QUICK)

    assert report["chosen"] == ONE_D and report["lifted_ops"] == 0 and "no 1-D" in report["reason"]
    assert destination.read_bytes() == source.read_bytes()
