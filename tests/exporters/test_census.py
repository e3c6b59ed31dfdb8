"""Op census: counts include subgraph nodes, domains are prefixed, portability warnings."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from exporters.census import op_census
from exporters.errors import ExportError
from tests.exporters.toy_models import ModelZoo


def test_gru_exports_as_a_loop_and_is_warned_about(zoo: ModelZoo) -> None:
    census = op_census(zoo.onnx_path("gru"))

    assert census.counts["Loop"] == 1
    assert census.opset == 17
    assert len(census.warnings) == 1
    assert "1 Loop op(s) (from a recurrent layer)" in census.warnings[0]
    # The GRU cell's gates live inside the Loop body: the census must see them.
    top_level = {node.op_type for node in onnx.load(str(zoo.onnx_path("gru"))).graph.node}
    assert "Tanh" in census.counts and "Tanh" not in top_level
    assert sum(census.counts.values()) > len(onnx.load(str(zoo.onnx_path("gru"))).graph.node)


def test_lstm_exports_as_one_fused_lstm_op_without_warning(zoo: ModelZoo) -> None:
    census = op_census(zoo.onnx_path("lstm"))

    assert census.counts["LSTM"] == 1
    assert "Loop" not in census.counts
    assert census.warnings == []


def test_feed_forward_families_have_no_warnings(zoo: ModelZoo) -> None:
    for family in ("conv1d_zscore", "attention", "separable_conv1d"):
        census = op_census(zoo.onnx_path(family))
        assert census.warnings == [], family
        assert all("." not in op_type for op_type in census.counts), family
    assert op_census(zoo.onnx_path("conv1d_zscore")).counts["Conv"] == 2
    assert op_census(zoo.onnx_path("separable_conv1d")).counts["Conv"] == 2  # depthwise + pointwise


def _hand_made_model(path: Path) -> None:
    """If(then: Add, else: Sub) plus one com.microsoft FusedMatMul."""
    then_branch = helper.make_graph(
        [helper.make_node("Add", ["x", "x"], ["then_out"])],
        "then",
        [],
        [helper.make_tensor_value_info("then_out", TensorProto.FLOAT, [2])],
    )
    else_branch = helper.make_graph(
        [helper.make_node("Sub", ["x", "x"], ["else_out"])],
        "else",
        [],
        [helper.make_tensor_value_info("else_out", TensorProto.FLOAT, [2])],
    )
    graph = helper.make_graph(
        [
            helper.make_node("If", ["condition"], ["branched"], then_branch=then_branch, else_branch=else_branch),
            helper.make_node("FusedMatMul", ["branched", "branched"], ["y"], domain="com.microsoft"),
        ],
        "hand_made",
        [
            helper.make_tensor_value_info("condition", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    onnx.save(model, str(path))


def test_counts_subgraph_nodes_prefixes_domains_and_warns(tmp_path: Path) -> None:
    path = tmp_path / "hand_made.onnx"
    _hand_made_model(path)

    census = op_census(path)

    assert census.counts == {"Add": 1, "If": 1, "Sub": 1, "com.microsoft.FusedMatMul": 1}
    assert census.opset == 17
    assert any(warning.startswith("graph contains 1 If op(s)") for warning in census.warnings)
    assert any("outside the standard ONNX domain (com.microsoft.FusedMatMul)" in w for w in census.warnings)
    assert json.loads(json.dumps(census.to_dict()))["counts"]["If"] == 1


def test_missing_file_is_an_export_error(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="does not exist"):
        op_census(tmp_path / "absent.onnx")
