"""Task-kind detection: the final activation, the output width, autoencoders, labels — or a typed
error asking for --task."""

from __future__ import annotations

import numpy as np
import pytest

from exporters.errors import ExportError, MixedOutputKindsError, TaskDetectionError
from exporters.heads import HeadKind
from exporters.task_detection import TaskKind, detect_task, parse_task_kind

FEATURES = 6
RANDOM = np.random.default_rng(0)
CLASS_LABELS = RANDOM.integers(0, 3, size=50)
BINARY_LABELS = RANDOM.integers(0, 2, size=50)
FLOAT_TARGETS = RANDOM.normal(size=50).astype(np.float32)
MULTI_HOT = (RANDOM.random((50, 4)) > 0.6).astype(np.float32)


def _dense(width: int, activation: str | None = None, separate_activation: bool = False) -> object:
    import keras

    inputs = keras.Input((FEATURES,), name="features")
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    if separate_activation:
        outputs = keras.layers.Activation(activation)(keras.layers.Dense(width)(hidden))
    else:
        outputs = keras.layers.Dense(width, activation=activation, name="out")(hidden)
    return keras.Model(inputs, outputs, name=f"dense_{width}_{activation}")


@pytest.mark.parametrize(
    ("model", "labels", "kind", "logits", "head"),
    [
        (lambda: _dense(1, "sigmoid"), None, TaskKind.BINARY, False, None),
        (lambda: _dense(1, "sigmoid"), BINARY_LABELS, TaskKind.BINARY, False, None),
        (lambda: _dense(3, "softmax"), None, TaskKind.MULTICLASS, False, None),
        (lambda: _dense(3, "softmax", separate_activation=True), CLASS_LABELS, TaskKind.MULTICLASS, False, None),
        (lambda: _dense(4, "sigmoid"), None, TaskKind.MULTILABEL, False, None),
        (lambda: _dense(4, "sigmoid"), MULTI_HOT, TaskKind.MULTILABEL, False, None),
        (lambda: _dense(1), FLOAT_TARGETS, TaskKind.REGRESSION, False, None),
        (lambda: _dense(2, "relu"), None, TaskKind.REGRESSION, False, None),
        (lambda: _dense(3), CLASS_LABELS, TaskKind.MULTICLASS, True, HeadKind.SOFTMAX),
        (lambda: _dense(3), np.eye(3)[CLASS_LABELS], TaskKind.MULTICLASS, True, HeadKind.SOFTMAX),
        (lambda: _dense(1), BINARY_LABELS, TaskKind.BINARY, True, HeadKind.SIGMOID),
        (lambda: _dense(1), BINARY_LABELS.astype(np.float32), TaskKind.BINARY, True, HeadKind.SIGMOID),
        (lambda: _dense(4), MULTI_HOT, TaskKind.MULTILABEL, True, HeadKind.SIGMOID),
    ],
    ids=["sigmoid-binary", "sigmoid-binary-labels", "softmax", "softmax-activation-layer", "multilabel-sigmoid",
         "multilabel-sigmoid-labels", "regression-linear-float-labels", "regression-relu", "multiclass-logits",
         "multiclass-logits-one-hot", "binary-logits", "binary-logits-float-01", "multilabel-logits"],
)
def test_detects_the_task_kind(model, labels, kind: TaskKind, logits: bool, head: HeadKind | None) -> None:
    detection = detect_task(model(), labels)

    assert (detection.kind, detection.logits, detection.head) == (kind, logits, head)
    assert detection.reason and detection.to_dict()["kind"] == kind.value


def test_an_autoencoder_is_an_anomaly_detector_scored_by_its_reconstruction_error() -> None:
    import keras

    inputs = keras.Input((16, 2), name="window")
    code = keras.layers.Dense(4, activation="relu")(keras.layers.Flatten()(inputs))
    outputs = keras.layers.Reshape((16, 2))(keras.layers.Dense(32, activation="sigmoid")(code))  # through Reshape
    model = keras.Model(inputs, outputs)

    detection = detect_task(model)
    flagged = detect_task(model, labels=BINARY_LABELS)  # per-sample anomaly flags do not change it

    assert (detection.kind, detection.head) == (TaskKind.ANOMALY, HeadKind.RECONSTRUCTION_ERROR)
    assert detection.output_activation == "sigmoid" and "autoencoder" in detection.reason
    assert flagged.kind is TaskKind.ANOMALY


def test_activations_are_read_through_nested_models_and_keras_ops() -> None:
    import keras

    inner = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(3, activation="softmax")])
    inputs = keras.Input((FEATURES,))
    nested = keras.Model(inputs, keras.layers.Dropout(0.1)(inner(inputs)))
    operation = keras.Model(inputs, keras.ops.sigmoid(keras.layers.Dense(1)(inputs)))

    assert detect_task(nested).kind is TaskKind.MULTICLASS
    assert detect_task(operation).kind is TaskKind.BINARY


@pytest.mark.parametrize(("activation", "width", "labels", "kind"), [("sigmoid", 1, BINARY_LABELS, TaskKind.BINARY),
                                                                    ("softmax", 3, CLASS_LABELS, TaskKind.MULTICLASS)])
def test_a_linear_activation_layer_at_the_end_passes_the_activation_before_it_through(activation, width, labels,
                                                                                      kind) -> None:
    """Keras' mixed-precision recipe ends a model in Activation("linear", dtype="float32"): read as "no activation",
    the model was taken for logits and a second sigmoid/softmax appended (P 0.594 reported as 0.644, found by an
    audit; parity passed, as the same head was appended to the Keras side)."""
    import keras

    inputs = keras.Input((FEATURES,))
    squashed = keras.layers.Dense(width, activation=activation)(keras.layers.Dense(8, activation="relu")(inputs))
    model = keras.Model(inputs, keras.layers.Activation("linear", dtype="float32", name="output")(squashed))
    detection = detect_task(model, labels)
    assert (detection.kind, detection.logits, detection.head) == (kind, False, None)
    assert detection.output_activation == activation


@pytest.mark.parametrize(
    ("model", "labels", "message"),
    [
        (lambda: _dense(3), None, "without labels"),
        (lambda: _dense(1), None, "without labels"),
        (lambda: _dense(3, "softmax"), FLOAT_TARGETS, "float targets"),
        (lambda: _dense(1), CLASS_LABELS + 3, "6 classes"),
        (lambda: _dense(3), np.eye(4)[CLASS_LABELS], "one-hot labels \\(4 classes\\)"),
    ],
    ids=["linear-width-3-no-labels", "linear-width-1-no-labels", "softmax-float-labels", "too-many-classes",
         "one-hot-width-mismatch"],
)
def test_ambiguous_or_contradictory_models_ask_for_the_task(model, labels, message: str) -> None:
    with pytest.raises(TaskDetectionError, match=message) as raised:
        detect_task(model(), labels)

    assert "--task multiclass|binary|multilabel|regression|anomaly" in raised.value.fix
    assert isinstance(raised.value, ExportError) and isinstance(raised.value, ValueError)


def test_a_named_task_settles_a_linear_output_and_is_checked_against_the_model() -> None:
    assert detect_task(_dense(3), task="multiclass").head is HeadKind.SOFTMAX
    assert detect_task(_dense(3), task="regression").head is None
    assert detect_task(_dense(1), task=" Binary ").logits
    with pytest.raises(TaskDetectionError, match="--task binary"):
        detect_task(_dense(3, "softmax"), task="binary")
    with pytest.raises(TaskDetectionError, match="--task anomaly"):
        detect_task(_dense(3), task="anomaly")
    with pytest.raises(TaskDetectionError, match="unknown task 'segmentation'"):
        parse_task_kind("segmentation")


def test_two_outputs_of_different_kinds_are_a_typed_error() -> None:
    import keras

    inputs = keras.Input((FEATURES,))
    rhythm = keras.layers.Dense(3, activation="softmax", name="rhythm")(inputs)
    heart_rate = keras.layers.Dense(1, activation="relu", name="heart_rate")(inputs)
    mixed = keras.Model(inputs, [rhythm, heart_rate])
    alike = keras.Model(inputs, [rhythm, keras.layers.Dense(2, activation="softmax", name="quality")(inputs)])

    with pytest.raises(MixedOutputKindsError, match="'rhythm': multiclass; 'heart_rate': regression") as raised:
        detect_task(mixed)

    assert "one model per kind" in raised.value.fix
    assert detect_task(alike).kind is TaskKind.MULTICLASS
    with pytest.raises(MixedOutputKindsError):
        detect_task(mixed, labels={"rhythm": CLASS_LABELS, "heart_rate": FLOAT_TARGETS})


def test_a_custom_final_layer_needs_to_be_told_whether_it_outputs_logits() -> None:
    import keras

    class Scale(keras.layers.Layer):  # no `activation` to read
        def call(self, inputs: object) -> object:
            return inputs * 2.0

    inputs = keras.Input((FEATURES,))
    model = keras.Model(inputs, Scale()(keras.layers.Dense(3)(inputs)))

    with pytest.raises(TaskDetectionError, match="final activation unknown"):
        detect_task(model, CLASS_LABELS)
    told_logits = detect_task(model, CLASS_LABELS, logits=True)
    told_probabilities = detect_task(model, CLASS_LABELS, logits=False)
    assert (told_logits.kind, told_logits.head) == (TaskKind.MULTICLASS, HeadKind.SOFTMAX)
    assert (told_probabilities.kind, told_probabilities.head) == (TaskKind.MULTICLASS, None)
    with pytest.raises(TaskDetectionError, match="logits=True was given"):
        detect_task(_dense(3, "softmax"), logits=True)


def test_an_output_with_more_than_one_axis_per_sample_is_refused_unless_it_is_a_reconstruction() -> None:
    import keras

    pooled = keras.Sequential([keras.Input((64, 1)), keras.layers.Conv1D(8, 5),
                               keras.layers.GlobalAveragePooling1D(keepdims=True),
                               keras.layers.Dense(3, activation="softmax")])  # (batch, 1, 3)
    per_step = keras.Sequential([keras.Input((64, 1)), keras.layers.Conv1D(3, 5, padding="same",
                                                                           activation="softmax")])  # (batch, 64, 3)
    for model in (pooled, per_step):
        with pytest.raises(TaskDetectionError, match="more than one axis per sample") as refused:
            detect_task(model, np.array([0, 1, 2, 1]))
        assert "Flatten" in refused.value.fix
        with pytest.raises(TaskDetectionError, match="more than one axis per sample"):
            detect_task(model, task="multiclass")
    autoencoder = keras.Sequential([keras.Input((64, 1)), keras.layers.Conv1D(4, 5, padding="same"),
                                    keras.layers.Conv1D(1, 5, padding="same")])
    assert detect_task(autoencoder).kind is TaskKind.ANOMALY and detect_task(autoencoder, task="anomaly")


def test_a_softmax_per_time_step_is_refused_flattened_or_not_and_a_pooled_one_is_a_classifier() -> None:
    """A (steps, k) softmax flattened to (steps·k,) read as steps·k classes whose rows summed to ``steps`` (the
    refusal of the unflattened model even suggested Flatten); a softmax over pooled features is one decision."""
    import keras

    def model(*tail: object) -> object:
        inputs = keras.Input((50, 1))
        outputs = keras.layers.Conv1D(8, 3, padding="same")(inputs)
        for layer in tail:
            outputs = layer(outputs)
        return keras.Model(inputs, outputs)

    with pytest.raises(TaskDetectionError, match="more than one axis per sample") as unflattened:
        detect_task(model(keras.layers.Dense(4, activation="softmax")))
    assert "never after a per-time-step softmax" in str(unflattened.value)
    with pytest.raises(TaskDetectionError, match="softmax is taken over each position") as flattened:
        detect_task(model(keras.layers.Dense(4, activation="softmax"), keras.layers.Flatten()))
    assert "GlobalAveragePooling1D" in str(flattened.value)
    pooled = model(keras.layers.GlobalAveragePooling1D(keepdims=True), keras.layers.Dense(4, activation="softmax"),
                   keras.layers.Flatten())
    assert detect_task(pooled).kind is TaskKind.MULTICLASS  # (1, 4) flattened: one sample's 4 classes
