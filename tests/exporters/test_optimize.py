"""Portable optimization: standard ops only, same signature, same outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest

from exporters.errors import ExportError
from exporters.optimization.portable import optimize_portable
from tests.exporters.toy_models import ModelZoo


def _run(path: Path, inputs: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": inputs})[0]


@pytest.mark.parametrize("family", ["mlp", "conv1d_zscore", "attention", "gru"])
def test_optimized_model_is_portable_and_numerically_identical(zoo: ModelZoo, family: str, tmp_path: Path) -> None:
    source = zoo.onnx_path(family)
    destination = tmp_path / f"{family}.optimized.onnx"

    optimize_portable(source, destination)

    optimized = onnx.load(str(destination))
    original = onnx.load(str(source))
    domains = {node.domain for node in optimized.graph.node}
    assert domains <= {"", "ai.onnx"}
    assert [value.name for value in optimized.graph.input] == [value.name for value in original.graph.input]
    assert [value.name for value in optimized.graph.output] == [value.name for value in original.graph.output]
    assert optimized.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    inputs = zoo.inputs(family)
    for batch in (inputs[:7], inputs):  # two batch sizes: the dynamic axis survived
        assert np.max(np.abs(_run(destination, batch) - _run(source, batch))) <= 1e-5
    assert [path.name for path in tmp_path.iterdir()] == [destination.name]


def test_missing_source_is_an_export_error(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="does not exist"):
        optimize_portable(tmp_path / "absent.onnx", tmp_path / "out.onnx")
    assert list(tmp_path.iterdir()) == []


def test_invalid_source_leaves_existing_destination_untouched(tmp_path: Path) -> None:
    source = tmp_path / "corrupt.onnx"
    source.write_bytes(b"\x08\x07garbage that is not a protobuf\xff\xff")
    destination = tmp_path / "out.onnx"
    destination.write_bytes(b"previous")

    with pytest.raises(ExportError):
        optimize_portable(source, destination)

    assert destination.read_bytes() == b"previous"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["corrupt.onnx", "out.onnx"]
