"""In-graph heads: logits get a Softmax/Sigmoid, an autoencoder gets its per-sample reconstruction
error; parity against Keras + the same head in numpy; the head stays float32 in every variant."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest

from exporters.errors import HeadError, ParityError
from exporters.heads import ANOMALY_SCORE_OUTPUT, HeadKind, append_head, head_reference
from exporters.keras_to_onnx import ExportConfig, export_keras_to_onnx
from exporters.parity import check_keras_parity, compare_outputs
from exporters.quantization import QuantizationConfig
from exporters.variants import VariantName, VariantRequest, make_variant, prepare_variant_source
from tests.exporters.toy_models import CLASSES, TABULAR_FEATURES, ModelZoo, Splits, random_inputs

TOLERANCE = 1e-4


def _run(path: Path, inputs: np.ndarray) -> dict[str, np.ndarray]:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(None, {session.get_inputs()[0].name: inputs}), strict=True))


def _logits_model(width: int, seed: int = 5) -> object:
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((TABULAR_FEATURES,), name="features")
    hidden = keras.layers.Dense(16, activation="relu", name="hidden")(inputs)
    return keras.Model(inputs, keras.layers.Dense(width, name="logits")(hidden), name=f"logits_{width}")


def _head_ops(path: Path) -> list[tuple[str, str]]:
    graph = onnx.load(str(path)).graph
    return [(node.op_type, node.name) for node in graph.node if node.name.startswith("edgemed_head/")]


@pytest.mark.parametrize(("width", "head", "task"), [(CLASSES, HeadKind.SOFTMAX, "multiclass"),
                                                     (1, HeadKind.SIGMOID, "binary"),
                                                     (4, HeadKind.SIGMOID, "multilabel")])
def test_logits_get_probabilities_in_the_graph_with_parity(tmp_path: Path, tabular: Splits, width: int,
                                                           head: HeadKind, task: str) -> None:
    model, exported, headed = _logits_model(width), tmp_path / "logits.onnx", tmp_path / "headed.onnx"
    export_keras_to_onnx(model, exported, ExportConfig())
    inputs = tabular.test_x[:150] / 100.0  # logits of a few units: probabilities away from 0 and 1

    appended = append_head(exported, headed, head)
    report = check_keras_parity(model, headed, inputs, batch_sizes=(1, 32), head=head, task=task)

    assert report.passed, report.failures
    assert report.max_abs_diff <= TOLERANCE and report.argmax_agreement == 1.0
    graph = onnx.load(str(headed)).graph
    assert [value.name for value in graph.output] == ["probabilities"]  # the device API is unchanged
    assert appended["head_input"] == "logits" and appended["output"] == "probabilities"
    assert _head_ops(headed) == [(head.value.capitalize(), f"edgemed_head/{head.value}")]
    probabilities = _run(headed, inputs)["probabilities"]
    logits = _run(exported, inputs)["probabilities"]
    np.testing.assert_allclose(probabilities, head_reference(head, logits, inputs), atol=1e-6)
    assert probabilities.min() >= 0.0 and probabilities.max() <= 1.0
    if head is HeadKind.SOFTMAX:
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)


def test_parity_without_the_head_catches_a_headed_graph(tmp_path: Path, tabular: Splits) -> None:
    model, exported, headed = _logits_model(CLASSES), tmp_path / "logits.onnx", tmp_path / "headed.onnx"
    export_keras_to_onnx(model, exported, ExportConfig())
    append_head(exported, headed, HeadKind.SOFTMAX)

    report = check_keras_parity(model, headed, tabular.test_x[:40] / 100.0, raise_on_failure=False)

    assert not report.passed  # Keras logits vs ONNX probabilities: the head is part of what parity checks


@pytest.fixture(scope="module")
def autoencoder_with_score(zoo: ModelZoo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("anomaly") / "anomaly.onnx"
    append_head(zoo.onnx_path("autoencoder"), path, HeadKind.RECONSTRUCTION_ERROR)
    return path


def test_an_autoencoder_outputs_one_reconstruction_error_per_sample(zoo: ModelZoo, autoencoder_with_score: Path
                                                                    ) -> None:
    inputs = zoo.inputs("autoencoder")

    report = check_keras_parity(zoo.model("autoencoder"), autoencoder_with_score, inputs, batch_sizes=(1, 32),
                                head=HeadKind.RECONSTRUCTION_ERROR, task="anomaly")

    assert report.passed, report.failures
    assert report.argmax_agreement is None  # an anomaly score has no decision to agree on
    graph = onnx.load(str(autoencoder_with_score)).graph
    assert [value.name for value in graph.output] == [ANOMALY_SCORE_OUTPUT]
    assert [axis.dim_param or axis.dim_value for axis in graph.output[0].type.tensor_type.shape.dim] == ["batch", 1]
    assert [op for op, _ in _head_ops(autoencoder_with_score)] == ["Sub", "Mul", "Flatten", "ReduceMean"]
    scores = _run(autoencoder_with_score, inputs)[ANOMALY_SCORE_OUTPUT]
    reconstruction = np.asarray(zoo.model("autoencoder")(inputs))
    np.testing.assert_allclose(scores[:, 0], np.mean((inputs - reconstruction) ** 2, axis=1), rtol=1e-5)


def test_the_reconstruction_error_head_works_at_opset_18(tmp_path: Path, zoo: ModelZoo) -> None:
    exported, headed = tmp_path / "ae18.onnx", tmp_path / "ae18-score.onnx"
    export_keras_to_onnx(zoo.model("autoencoder"), exported, ExportConfig(opset=18))  # ReduceMean axes as input

    append_head(exported, headed, "reconstruction-error", output_name="score")

    report = check_keras_parity(zoo.model("autoencoder"), headed, zoo.inputs("autoencoder"),
                                head="reconstruction-error", task="anomaly")
    assert report.passed, report.failures
    assert report.outputs == ("score",)


@pytest.fixture(scope="module")
def anomaly_source(autoencoder_with_score: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("anomaly_source") / "fp32-source.onnx"
    prepare_variant_source(autoencoder_with_score, path, random_inputs((TABULAR_FEATURES,), 128, seed=11, scale=2.0),
                           task="anomaly")
    return path


@pytest.mark.parametrize(("variant", "relative"), [(VariantName.FP16, 1e-2), (VariantName.INT8_STATIC, 0.2),
                                                    (VariantName.INT8_DYNAMIC, 0.2)])
def test_reduced_precision_variants_keep_the_head_in_float32_and_rank_samples_alike(
    anomaly_source: Path, tmp_path: Path, variant: VariantName, relative: float
) -> None:
    calibration = random_inputs((TABULAR_FEATURES,), 128, seed=11, scale=2.0)
    test = random_inputs((TABULAR_FEATURES,), 150, seed=12, scale=2.0)
    destination = tmp_path / f"{variant.value}.onnx"

    make_variant(variant, anomaly_source, destination,
                 VariantRequest(calibration, QuantizationConfig(calibration_samples=128), task="anomaly"))

    reference = _run(anomaly_source, test)[ANOMALY_SCORE_OUTPUT]
    scores = _run(destination, test)[ANOMALY_SCORE_OUTPUT]
    assert scores.shape == (len(test), 1) and np.all(np.isfinite(scores))
    assert float(np.max(np.abs(scores - reference) / reference)) <= relative
    ranks = lambda values: np.argsort(np.argsort(values[:, 0]))  # noqa: E731
    assert np.corrcoef(ranks(scores), ranks(reference))[0, 1] >= 0.98  # the same samples look anomalous
    graph = onnx.load(str(destination)).graph
    head_nodes = [node for node in graph.node if node.name.startswith("edgemed_head/")]
    assert [node.op_type for node in head_nodes] == ["Sub", "Mul", "Flatten", "ReduceMean"]  # not quantized
    assert head_nodes[0].input[0] == "input"  # the score compares the float32 input, not an int8/fp16 copy
    producers = {name: node for node in graph.node for name in node.output}
    assert all(producers[name].op_type not in ("DequantizeLinear", "Cast") for node in head_nodes[1:]
               for name in node.input if name in producers)
    assert producers[head_nodes[0].input[1]].op_type != "DequantizeLinear"  # nor an 8-bit reconstruction
    assert compare_outputs(reference, scores, 0.0, "anomaly")[1] is None


def test_heads_refuse_what_they_cannot_append_to(zoo: ModelZoo, autoencoder_with_score: Path, tmp_path: Path
                                                 ) -> None:
    with pytest.raises(HeadError, match="no autoencoder"):
        append_head(zoo.onnx_path("mlp"), tmp_path / "x.onnx", HeadKind.RECONSTRUCTION_ERROR)
    with pytest.raises(HeadError, match="already has an in-graph head"):
        append_head(autoencoder_with_score, tmp_path / "x.onnx", HeadKind.SIGMOID)
    with pytest.raises(HeadError, match="unknown head 'tanh'") as raised:
        append_head(zoo.onnx_path("mlp"), tmp_path / "x.onnx", "tanh")
    assert "softmax, sigmoid, reconstruction-error" in raised.value.expected
    with pytest.raises(HeadError, match="already has a tensor of that name"):
        append_head(zoo.onnx_path("autoencoder"), tmp_path / "x.onnx", HeadKind.RECONSTRUCTION_ERROR,
                    output_name="input")
    assert list(tmp_path.iterdir()) == []


def test_a_head_on_a_multi_output_model_is_refused(tmp_path: Path) -> None:
    import keras

    inputs = keras.Input((4,), name="features")
    model = keras.Model(inputs, [keras.layers.Dense(2, name="a")(inputs), keras.layers.Dense(1, name="b")(inputs)])
    exported = tmp_path / "two.onnx"
    export_keras_to_onnx(model, exported, ExportConfig())

    with pytest.raises(HeadError, match="2 outputs"):
        append_head(exported, tmp_path / "headed.onnx", HeadKind.SOFTMAX)
    with pytest.raises(ParityError, match="returns 2 outputs"):
        check_keras_parity(model, exported, np.zeros((4, 4), np.float32), head=HeadKind.SOFTMAX)
