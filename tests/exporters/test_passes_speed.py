"""The speed passes on a real tf2onnx export: patterns gone, parity kept, portable, errors typed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from exporters._graph import non_standard_op_types
from exporters.errors import ExportError
from exporters.optimization.graph_passes import optimize_for_speed
from exporters.passes import apply_passes


def test_real_conv1d_export_loses_its_conversion_debris(zoo, signals, tmp_path: Path) -> None:
    source = zoo.onnx_path("conv1d_zscore")
    before = [node.op_type for node in onnx.load(str(source)).graph.node]
    assert "Unsqueeze" in before and "Squeeze" in before  # what tf2onnx leaves around Conv1D
    report = optimize_for_speed(source, tmp_path / "fast.onnx", signals.calibration_x)
    model = onnx.load(str(tmp_path / "fast.onnx"))
    after = [node.op_type for node in model.graph.node]
    assert report["max_abs_diff"] <= 1e-4 and report["nodes_after"] < report["nodes_before"]
    assert "Unsqueeze" not in after and "Transpose" not in after
    assert after.count("Squeeze") == 1  # only GlobalAveragePool's (N, C, 1) → (N, C) is left, not Conv1D's
    assert "LayerNormalization" in after and non_standard_op_types(model) == []
    assert all(len(init.dims) != 4 for init in model.graph.initializer)  # 1-D kernels only


def test_passes_on_an_mlp_keep_outputs(zoo, tabular, tmp_path: Path) -> None:
    counts = apply_passes(zoo.onnx_path("mlp"), tmp_path / "mlp.onnx")
    assert counts["fold-bias"] >= 1
    report = optimize_for_speed(zoo.onnx_path("mlp"), tmp_path / "mlp-checked.onnx", tabular.test_x)
    assert report["max_abs_diff"] <= 1e-4
    ops = [node.op_type for node in onnx.load(str(tmp_path / "mlp-checked.onnx")).graph.node]
    assert "Gemm" in ops and "MatMul" not in ops


def test_missing_model_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="does not exist"):
        optimize_for_speed(tmp_path / "none.onnx", tmp_path / "out.onnx", np.zeros((2, 3), np.float32))
    assert not (tmp_path / "out.onnx").exists()
