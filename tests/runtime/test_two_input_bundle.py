"""A hand-made two-input binary bundle: the runtime verifies it, feeds each input by name and decides by
the manifest's binary rule; the single-input runners refuse it with a typed error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from runtime.bundle import InputShapeError, ModelContractError, TrustPolicy, load_bundle
from runtime.contract import (
    MANIFEST_NAME,
    MODEL_NAME,
    BinaryRule,
    InputSpec,
    OutputSpec,
    TaskKind,
    UnsupportedBundleError,
)
from runtime.features import FeatureKind
from runtime.tabular import predict_rows
from tests.runtime.hand_built import write_manifest

UNSIGNED = TrustPolicy.development()  # a hand-made bundle has no signature
WEIGHTS = np.array([[1.0], [-2.0], [0.5], [1.5], [-1.0]], np.float32)  # 4 beat samples + 1 RR feature


def _model(path: Path) -> None:
    beat = helper.make_tensor_value_info("beat", TensorProto.FLOAT, ["batch", 4, 1])
    rr = helper.make_tensor_value_info("rr", TensorProto.FLOAT, ["batch", 1])
    output = helper.make_tensor_value_info("v_probability", TensorProto.FLOAT, ["batch", 1])
    nodes = [
        helper.make_node("Flatten", ["beat"], ["flat"], axis=1),
        helper.make_node("Concat", ["flat", "rr"], ["joined"], axis=1),
        helper.make_node("MatMul", ["joined", "weights"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["v_probability"]),
    ]
    graph = helper.make_graph(nodes, "two_inputs", [beat, rr], [output], [numpy_helper.from_array(WEIGHTS, "weights")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


@pytest.fixture(scope="module")
def two_input_bundle(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("two-input")
    _model(folder / MODEL_NAME)
    write_manifest(folder, "pvc-test", (
            InputSpec("beat", (None, 4, 1), FeatureKind.WAVEFORM, sample_rate_hz=8.0, window_before_s=0.25,
                      window_after_s=0.25),
            InputSpec("rr", (None, 1), FeatureKind.TABULAR, feature_names=("rr_ratio",)),
        ),
                   OutputSpec(("v_probability",), TaskKind.BINARY, ("non-V", "V"),
                          BinaryRule(0.4, "sensitivity ≥ 0.95 on validation")))
    return folder


def test_each_input_is_fed_by_name_and_decided_by_the_binary_rule(two_input_bundle):
    bundle = load_bundle(two_input_bundle, provider="cpu", threads=1, trust=UNSIGNED)
    rng = np.random.default_rng(0)
    beats, rr = rng.normal(size=(7, 4)).astype(np.float32), rng.normal(size=(7, 1)).astype(np.float32)
    expected = 1 / (1 + np.exp(-(np.concatenate([beats, rr], axis=1) @ WEIGHTS)))
    outputs = bundle.predict({"beat": beats, "rr": rr})  # (n, 4) beats get their channel axis
    assert outputs.shape == (7, 1) and np.allclose(outputs, expected, atol=1e-6)
    decisions = bundle.decide({"beat": beats[..., None], "rr": rr})
    assert [d.label for d in decisions] == ["V" if p >= 0.4 else "non-V" for p in expected[:, 0]]
    assert bundle.bundle_id == bundle.manifest_sha256[:12]  # no lineage: the manifest's hash names it


def test_single_input_runners_refuse_a_two_input_bundle(two_input_bundle):
    bundle = load_bundle(two_input_bundle, provider="cpu", threads=1, trust=UNSIGNED)
    with pytest.raises(UnsupportedBundleError, match="2 inputs"):
        predict_rows(bundle, np.zeros((1, 1), np.float32))
    with pytest.raises(InputShapeError, match="beat"):
        bundle.predict({"rr": np.zeros((1, 1))})
    with pytest.raises(InputShapeError, match="same rows"):
        bundle.predict({"beat": np.zeros((2, 4, 1)), "rr": np.zeros((3, 1))})


def test_a_manifest_naming_other_inputs_than_the_graph_is_refused(two_input_bundle, tmp_path):
    folder = tmp_path / "renamed"
    folder.mkdir()
    (folder / MODEL_NAME).write_bytes((two_input_bundle / MODEL_NAME).read_bytes())
    document = json.loads((two_input_bundle / MANIFEST_NAME).read_text())
    document["inputs"][1]["name"] = "rr_features"
    (folder / MANIFEST_NAME).write_text(json.dumps(document))
    with pytest.raises(ModelContractError, match="rr_features"):
        load_bundle(folder, provider="cpu", trust=UNSIGNED)
