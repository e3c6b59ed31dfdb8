"""The manifest against the model, before any inference: input names, shapes and dtypes are the graph's,
outputs are floats whose width is the label count (from the graph, or a probe run where it left it symbolic)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from runtime.bundle import ModelContractError, TrustPolicy, load_bundle
from runtime.contract import (
    MODEL_NAME,
    InputSpec,
    MulticlassRule,
    OutputSpec,
    TaskKind,
)
from runtime.features import FeatureKind
from tests.runtime.hand_built import write_manifest

UNSIGNED = TrustPolicy.development()  # hand-made bundles: the signature is not what is tested here


def _bundle(folder: Path, *, input_type=TensorProto.FLOAT, width: int = 2, declared_width: int | str = 2,
            cast_output_to: int | None = None, labels: tuple[str, ...] = ("no", "yes")) -> Path:
    """x (n, 3) → softmax(x @ W) with W (3, width); the graph output declares ``declared_width`` columns."""
    folder.mkdir()
    numpy_type = {TensorProto.FLOAT: np.float32, TensorProto.DOUBLE: np.float64}[input_type]
    weights = numpy_helper.from_array(np.arange(3 * width, dtype=numpy_type).reshape(3, width) / 10, "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["logits"]), helper.make_node("Softmax", ["logits"], ["p"])]
    output_type = input_type
    if cast_output_to is not None:
        nodes.append(helper.make_node("Cast", ["p"], ["y"], to=cast_output_to))
        output_type = cast_output_to
    else:
        nodes.append(helper.make_node("Identity", ["p"], ["y"]))
    graph = helper.make_graph(nodes, "contract", [helper.make_tensor_value_info("x", input_type, ["n", 3])],
                              [helper.make_tensor_value_info("y", output_type, ["n", declared_width])], [weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, folder / MODEL_NAME)
    row = InputSpec("x", (None, 3), FeatureKind.TABULAR, feature_names=("a", "b", "c"))
    write_manifest(folder, "contract-test", (row,),
                   OutputSpec(("y",), TaskKind.MULTICLASS, labels, MulticlassRule()))
    return folder


def test_a_fitting_model_loads_and_predicts_its_label_count(tmp_path):
    bundle = load_bundle(_bundle(tmp_path / "ok"), provider="cpu", trust=UNSIGNED)
    assert bundle.predict(np.ones((4, 3))).shape == (4, 2)


def test_an_input_dtype_other_than_the_manifest_is_refused(tmp_path):
    with pytest.raises(ModelContractError, match=r"input 'x' is a tensor\(double\), the manifest says float32"):
        load_bundle(_bundle(tmp_path / "double", input_type=TensorProto.DOUBLE), provider="cpu", trust=UNSIGNED)


def test_a_non_float_output_is_refused(tmp_path):
    with pytest.raises(ModelContractError, match=r"output 'y' is a tensor\(int64\), not a float tensor"):
        load_bundle(_bundle(tmp_path / "int", cast_output_to=TensorProto.INT64), provider="cpu", trust=UNSIGNED)


def test_label_count_must_equal_the_output_width(tmp_path):
    with pytest.raises(ModelContractError, match=r"have 2 columns, the multiclass output declares 3"):
        load_bundle(_bundle(tmp_path / "labels", labels=("a", "b", "c")), provider="cpu", trust=UNSIGNED)


def test_a_symbolic_output_width_is_measured_by_a_probe_before_any_inference(tmp_path):
    fits = _bundle(tmp_path / "symbolic", declared_width="k")
    assert load_bundle(fits, provider="cpu", trust=UNSIGNED).predict(np.ones((1, 3))).shape == (1, 2)
    wider = _bundle(tmp_path / "wider", width=3, declared_width="k")
    with pytest.raises(ModelContractError, match=r"have 3 columns, the multiclass output declares 2"):
        load_bundle(wider, provider="cpu", trust=UNSIGNED)
