"""Keras → ONNX export: every model family converts faithfully, names and axes are stable,
unconvertible layers are named, and failures never leave a partial file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest

from exporters.errors import ExportError
from exporters.keras_to_onnx import ExportConfig, export_keras_to_onnx
from exporters.parity import check_keras_parity
from tests.exporters.toy_models import FAMILY_NAMES, SIGNAL_LENGTH, TABULAR_FEATURES, ModelZoo, Splits

TOLERANCE = 1e-4


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_each_family_exports_and_matches_keras_at_two_batch_sizes(zoo: ModelZoo, family: str) -> None:
    inputs = zoo.inputs(family)
    assert len(inputs) % 32 != 0  # the last batch of 32 is partial: proves the dynamic batch axis

    report = check_keras_parity(zoo.model(family), zoo.onnx_path(family), inputs, batch_sizes=(1, 32))

    assert report.passed, report.failures
    assert report.batch_sizes == (1, 32)
    assert report.samples == len(inputs)
    assert report.max_abs_diff <= TOLERANCE
    assert report.argmax_agreement == 1.0


def test_zscore_layer_normalization_stays_within_tolerance_on_extreme_offsets(zoo: ModelZoo) -> None:
    # Per-window z-scoring must survive raw signals with DC offsets up to 4000x the amplitude.
    # (Beyond ~40000x, float32 itself runs out of digits: Keras computes x*inv - mean*inv, and
    # Keras and ONNX Runtime then differ by ~1e-3 because they round in different orders.)
    generator = np.random.default_rng(3)
    time = np.arange(SIGNAL_LENGTH) / SIGNAL_LENGTH
    amplitude = generator.uniform(0.5, 5.0, size=(96, 1))
    offset = generator.uniform(-2000.0, 2000.0, size=(96, 1))
    windows = (amplitude * np.sin(2 * np.pi * 5 * time) + offset).astype(np.float32)[..., None]

    report = check_keras_parity(
        zoo.model("conv1d_zscore"), zoo.onnx_path("conv1d_zscore"), windows, batch_sizes=(1, 32)
    )

    assert report.max_abs_diff <= TOLERANCE
    assert report.argmax_agreement == 1.0


def test_graph_has_named_input_dynamic_batch_axis_and_renamed_output(zoo: ModelZoo) -> None:
    model = onnx.load(str(zoo.onnx_path("conv1d_zscore")))

    assert [value.name for value in model.graph.input] == ["input"]
    assert [value.name for value in model.graph.output] == ["probabilities"]
    input_dimensions = model.graph.input[0].type.tensor_type.shape.dim
    assert input_dimensions[0].dim_param == "batch"
    assert [dimension.dim_value for dimension in input_dimensions[1:]] == [SIGNAL_LENGTH, 1]
    assert model.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert {opset.version for opset in model.opset_import if opset.domain in ("", "ai.onnx")} == {17}

    session = onnxruntime.InferenceSession(str(zoo.onnx_path("conv1d_zscore")), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == ["batch", SIGNAL_LENGTH, 1]
    for batch_size in (1, 5, 64):
        batch = np.zeros((batch_size, SIGNAL_LENGTH, 1), np.float32)
        assert session.run(["probabilities"], {"input": batch})[0].shape == (batch_size, 3)


def test_output_name_is_configurable(zoo: ModelZoo) -> None:
    model = onnx.load(str(zoo.onnx_path("autoencoder")))
    assert [value.name for value in model.graph.output] == ["reconstruction"]
    assert model.graph.output[0].type.tensor_type.shape.dim[1].dim_value == TABULAR_FEATURES


def test_sequential_model_with_adapted_normalization_exports(tmp_path: Path, tabular: Splits) -> None:
    # tf2onnx.from_keras alone fails on Keras 3 Sequential models (KeyError on output names).
    import keras

    keras.utils.set_random_seed(1)
    normalization = keras.layers.Normalization()
    normalization.adapt(tabular.train_x)
    model = keras.Sequential(
        [keras.Input((TABULAR_FEATURES,)), normalization, keras.layers.Dense(3, activation="softmax")]
    )
    path = tmp_path / "sequential.onnx"

    export_keras_to_onnx(model, path, ExportConfig())

    report = check_keras_parity(model, path, tabular.test_x, batch_sizes=(1, 32))
    assert report.passed and report.max_abs_diff <= TOLERANCE
    assert [value.name for value in onnx.load(str(path)).graph.input] == ["input"]


def _model_with_unconvertible_layer() -> object:
    import keras

    class InverseErrorWarp(keras.layers.Layer):
        """erfinv has no tf2onnx converter (TensorFlow op Erfinv)."""

        def call(self, inputs: object) -> object:
            return keras.ops.erfinv(keras.ops.tanh(inputs) * 0.5)

    keras.utils.set_random_seed(2)
    inputs = keras.Input((8,))
    hidden = keras.layers.Dense(4, name="dense_in")(inputs)
    hidden = InverseErrorWarp(name="warp")(hidden)
    outputs = keras.layers.Dense(3, activation="softmax", name="head")(hidden)
    return keras.Model(inputs, outputs, name="warped")


def test_unconvertible_layer_is_named_and_nothing_is_written(tmp_path: Path) -> None:
    destination = tmp_path / "warped.onnx"

    with pytest.raises(ExportError) as raised:
        export_keras_to_onnx(_model_with_unconvertible_layer(), destination, ExportConfig())

    message = str(raised.value)
    assert "'warp'" in message and "InverseErrorWarp" in message and "Erfinv" in message
    assert "replace the layer" in raised.value.fix
    assert not destination.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


def test_known_unconvertible_settings_get_their_own_fix_which_exports(tmp_path: Path) -> None:
    """Exact GELU (TensorFlow's Erfc) and a grouped convolution (a function call) cannot be converted: the fix
    names the layer setting and the replacement, and that replacement exports with parity."""
    import keras
    import onnxruntime

    def model(kind: str) -> object:
        keras.utils.set_random_seed(3)
        inputs = keras.Input((16, 4))
        if kind == "gelu":
            hidden = keras.layers.Conv1D(8, 3, activation="gelu", name="exact_gelu")(inputs)
        elif kind == "grouped":
            hidden = keras.layers.Conv1D(8, 3, groups=2, name="grouped")(inputs)
        else:  # both replacements the fixes name
            halves = keras.layers.Lambda(lambda values: keras.ops.split(values, 2, axis=-1))(inputs)
            hidden = keras.layers.Concatenate()([keras.layers.Conv1D(4, 3)(half) for half in halves])
            hidden = keras.layers.Activation(lambda values: keras.activations.gelu(values, approximate=True))(hidden)
        return keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling1D()(hidden)))

    for kind, needle in (("gelu", "use its tanh approximation (keras.activations.gelu(x, approximate=True)"),
                         ("grouped", "grouped convolution: 'grouped' has groups=2")):
        with pytest.raises(ExportError) as raised:
            export_keras_to_onnx(model(kind), tmp_path / f"{kind}.onnx", ExportConfig())
        assert needle in raised.value.fix, raised.value.fix
        assert "otherwise replace the layer" in raised.value.fix
    replaced = model("replaced")
    export_keras_to_onnx(replaced, tmp_path / "replaced.onnx", ExportConfig())
    session = onnxruntime.InferenceSession(str(tmp_path / "replaced.onnx"), providers=["CPUExecutionProvider"])
    values = np.random.default_rng(0).normal(size=(4, 16, 4)).astype(np.float32)
    onnx_outputs = session.run(None, {session.get_inputs()[0].name: values})[0]
    assert np.abs(onnx_outputs - np.asarray(replaced(values))).max() < 1e-5


def test_failed_export_leaves_an_existing_destination_untouched(tmp_path: Path) -> None:
    destination = tmp_path / "model.onnx"
    destination.write_bytes(b"previous model")

    with pytest.raises(ExportError):
        export_keras_to_onnx(_model_with_unconvertible_layer(), destination, ExportConfig())

    assert destination.read_bytes() == b"previous model"
    assert [path.name for path in tmp_path.iterdir()] == ["model.onnx"]


def test_multi_input_model_keeps_its_keras_input_names(tmp_path: Path) -> None:
    import keras

    first, second = keras.Input((4,)), keras.Input((2,))  # unnamed: Keras names them
    model = keras.Model([first, second], keras.layers.Dense(2)(keras.layers.Concatenate()([first, second])))
    destination = tmp_path / "two.onnx"

    export_keras_to_onnx(model, destination, ExportConfig())

    graph = onnx.load(str(destination)).graph
    assert sorted(value.name for value in graph.input) == sorted([first.name, second.name])
    assert all(value.type.tensor_type.shape.dim[0].dim_param == "batch" for value in graph.input)
    assert [value.name for value in graph.output] == ["probabilities"]


def test_unknown_non_batch_axis_is_rejected(tmp_path: Path) -> None:
    import keras

    inputs = keras.Input((None, 3))
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling1D()(inputs))

    with pytest.raises(ExportError, match="unknown non-batch axes"):
        export_keras_to_onnx(model, tmp_path / "ragged.onnx", ExportConfig())


def test_unsupported_opset_is_rejected(zoo: ModelZoo, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="opset 9 is not supported"):
        export_keras_to_onnx(zoo.model("autoencoder"), tmp_path / "old.onnx", ExportConfig(opset=9))


def test_op_converted_only_at_a_higher_opset_suggests_raising_the_opset(tmp_path: Path) -> None:
    import keras
    import tensorflow as tf

    class ScatterAccumulate(keras.layers.Layer):
        """tf.tensor_scatter_nd_add → TensorScatterAdd, which tf2onnx converts from opset 16."""

        def call(self, inputs: object) -> object:
            return tf.tensor_scatter_nd_add(inputs, [[0], [0]], tf.ones((2, 4)))

    inputs = keras.Input((4,))
    model = keras.Model(inputs, ScatterAccumulate(name="accumulate")(keras.layers.Dense(4)(inputs)))

    with pytest.raises(ExportError) as raised:
        export_keras_to_onnx(model, tmp_path / "scatter.onnx", ExportConfig(opset=13))

    assert "'accumulate' (ScatterAccumulate)" in str(raised.value)
    assert raised.value.fix.startswith("raise ExportConfig.opset from 13 to 16")
