"""What a Keras model predicts, read from the model (and its labels when given): ``detect_task``.

The answer decides what the device gets and how variants are compared with fp32:

| kind | decision | head appended when the model outputs logits / a reconstruction |
|---|---|---|
| ``multiclass`` | argmax | ``softmax`` |
| ``binary`` (one column) | value > 0.5 | ``sigmoid`` |
| ``multilabel`` | each column > 0.5 | ``sigmoid`` |
| ``regression`` | none (values only) | — |
| ``anomaly`` | none (values only) | ``reconstruction-error`` for an autoencoder |

Read from the model: the final activation of each output — a Dense/Conv ``activation=``, a
separate ``Activation``/``Softmax`` layer, a ``keras.ops`` softmax/sigmoid, looking through
shape-only layers (Reshape, Flatten, Dropout) and nested models — its width, and whether the
output has its single input's shape (an autoencoder). Read from the labels: integer (or 0/1)
classes → classification, other floats → regression, 2-D 0/1 rows → multilabel (one 1 per row:
one-hot, multiclass), none → unlabelled (an autoencoder is an anomaly detector). Where the two
cannot settle it — a linear output without labels is logits or a regression alike —
``TaskDetectionError`` asks for the task (``--task``) instead of guessing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np

from exporters.errors import MixedOutputKindsError, TaskDetectionError
from exporters.heads import HeadKind

if TYPE_CHECKING:
    import keras


class TaskKind(StrEnum):
    """What a model's output means (the kinds a device bundle knows)."""

    MULTICLASS = "multiclass"  # one class per sample: probabilities over classes, decision = argmax
    BINARY = "binary"  # one probability column, decision = value > 0.5
    MULTILABEL = "multilabel"  # one probability per label column, each decided > 0.5
    REGRESSION = "regression"  # real values, no decision
    ANOMALY = "anomaly"  # one anomaly score per sample (an autoencoder's reconstruction error), no decision


CLASSIFICATION_KINDS = frozenset({TaskKind.MULTICLASS, TaskKind.BINARY, TaskKind.MULTILABEL})
_TASK_FIX = "name the task: --task " + "|".join(kind.value for kind in TaskKind)


@dataclass(frozen=True)
class TaskDetection:
    """What a model predicts and what the device needs appended to get it."""

    kind: TaskKind
    logits: bool  # the outputs are logits (no final softmax/sigmoid)
    head: HeadKind | None  # what ``exporters.heads.append_head`` must append; None: ship the output as it is
    reason: str  # why, in a sentence or two (for the build log and manifest)
    output_activation: str  # the final activation read from the model ("unknown" when it could not be read)
    output_width: int | None  # values per sample of each output (None when an axis is unknown)

    def to_dict(self) -> dict:
        detection = asdict(self)
        detection["kind"] = self.kind.value
        detection["head"] = self.head.value if self.head else None
        return detection


def parse_task_kind(name: TaskKind | str) -> TaskKind:
    """The ``TaskKind`` called ``name`` (case and surrounding spaces ignored).

    Raises:
        TaskDetectionError: ``name`` is no task kind; the message lists the valid ones.
    """
    valid = ", ".join(kind.value for kind in TaskKind)
    try:
        return TaskKind(str(name).strip().lower())
    except ValueError:
        raise TaskDetectionError(f"unknown task {name!r}", expected=f"one of: {valid}",
                                 fix=f"choose one of {valid}") from None


def detect_task(
    model: keras.Model,
    labels: np.ndarray | Sequence[np.ndarray] | Mapping[str, np.ndarray] | None = None,
    task: TaskKind | str | None = None,
    logits: bool | None = None,
) -> TaskDetection:
    """Detect what ``model`` predicts (see the module docstring for the rules).

    ``labels``: the training labels (optional): one array, or for a model with several outputs
    one array per output (a sequence in output order or a mapping by output name). ``task``:
    the kind the user named (``--task``); the model is then only checked against it and read for
    whether it outputs logits. ``logits``: whether the outputs are logits, for a final activation
    that cannot be read (a custom layer); it must agree with an activation that can.

    Raises:
        TaskDetectionError: the model and labels do not settle the kind (the message asks for
            ``--task``), contradict each other or the named task, or the model cannot be inspected.
        MixedOutputKindsError: two outputs are of different kinds (or one is logits, one is not).
    """
    inputs, outputs = list(getattr(model, "inputs", None) or []), list(getattr(model, "outputs", None) or [])
    if not inputs or not outputs:
        raise TaskDetectionError(
            f"model {model.name!r} has no symbolic inputs/outputs to read its task from",
            expected="a Functional or Sequential model built on keras.Input",
            fix="build the model with keras.Input (subclassed models: wrap them in keras.Model(inputs, model(inputs)))",
        )
    named_task = parse_task_kind(task) if task is not None else None
    names = _output_names(model, len(outputs))
    per_output_labels = _labels_per_output(labels, names)
    input_shapes = [tuple(tensor.shape[1:]) for tensor in inputs]
    detections = [
        _detect_output(_Output(name, tuple(tensor.shape[1:]), _final_activation(tensor)), input_shapes,
                       _summarize(per_output_labels[name]), named_task, logits)
        for name, tensor in zip(names, outputs, strict=True)
    ]
    if len(detections) == 1:
        return detections[0]
    signatures = {(detection.kind, detection.logits, detection.head) for detection in detections}
    if len(signatures) > 1:
        described = "; ".join(f"{name!r}: {detection.kind.value}{' (logits)' if detection.logits else ''}"
                              for name, detection in zip(names, detections, strict=True))
        raise MixedOutputKindsError(
            f"model {model.name!r} has outputs of different kinds: {described}",
            expected="every output of one kind (one bundle, one decision rule)",
            fix="export one model per kind: keras.Model(model.inputs, model.get_layer(name).output) for each output",
        )
    first = detections[0]
    return TaskDetection(first.kind, first.logits, first.head,
                         f"all {len(detections)} outputs: " + " | ".join(detection.reason for detection in detections),
                         first.output_activation, first.output_width)


# ----------------------------------------------------------------------------- reading the model

# Layers that only move values around: the activation before them is the output's activation.
_SHAPE_ONLY = frozenset({"Reshape", "Flatten", "Dropout", "SpatialDropout1D", "SpatialDropout2D", "AlphaDropout",
                         "GaussianDropout", "GaussianNoise", "ActivityRegularization", "Identity"})
# Activation layers and keras.ops operations, by class name.
_ACTIVATION_CLASSES = {"Softmax": "softmax", "Sigmoid": "sigmoid", "HardSigmoid": "hard_sigmoid", "ReLU": "relu",
                       "LeakyReLU": "leaky_relu", "ELU": "elu", "PReLU": "prelu", "LogSoftmax": "log_softmax",
                       "Tanh": "tanh", "Softplus": "softplus"}
_FAMILIES = (("softmax", frozenset({"softmax"})), ("sigmoid", frozenset({"sigmoid", "hard_sigmoid"})),
             ("linear", frozenset({"linear"})), ("probabilities", frozenset({"probabilities (as told)"})))


@dataclass(frozen=True)
class _Output:
    name: str
    shape: tuple[int | None, ...]  # without the batch axis
    activation: str

    @property
    def width(self) -> int | None:
        return math.prod(self.shape) if all(axis is not None for axis in self.shape) else None

    @property
    def family(self) -> str:
        for family, names in _FAMILIES:
            if self.activation in names:
                return family
        return "unknown" if self.activation == "unknown" else "other"

    def describe(self) -> str:
        activation = "linear (no activation)" if self.family == "linear" else self.activation
        return f"output {self.name!r} of shape {self.shape} with final activation {activation}"


def _output_names(model: keras.Model, count: int) -> list[str]:
    names = list(getattr(model, "output_names", None) or [])
    return names if len(names) == count and len(set(names)) == count else [f"output_{i}" for i in range(count)]


def _activation_name(activation: object) -> str:
    if activation is None:
        return "linear"
    class_name = type(activation).__name__
    if class_name in _ACTIVATION_CLASSES:
        return _ACTIVATION_CLASSES[class_name]
    name = getattr(activation, "__name__", None)
    return str(name).lower() if name else "unknown"


def _final_activation(tensor: object) -> str:
    """The activation that produced ``tensor``: through shape-only layers and into nested models."""
    import keras

    reshaped = False  # a Flatten / Reshape lies between the activation and the output
    for _ in range(256):  # a bound, not a depth any real model reaches
        history = getattr(tensor, "_keras_history", None)
        if history is None:
            return "unknown"
        operation, node_index, tensor_index = history
        class_name = type(operation).__name__
        if isinstance(operation, keras.Model):
            nested = keras.tree.flatten(getattr(operation, "outputs", None) or [])
            if tensor_index >= len(nested):
                return "unknown"
            tensor = nested[tensor_index]
        elif class_name == "Activation" and _activation_name(operation.activation) == "linear":
            # Activation("linear") passes values through (Keras' float32 cast at the end of a mixed-precision model):
            # the output's activation is the one before it, never "no activation" (a softmax appended a second time)
            tensor = operation._inbound_nodes[node_index].input_tensors[0]
        elif class_name == "Activation":
            return _per_sample(_activation_name(operation.activation), tensor, reshaped)
        elif class_name in _ACTIVATION_CLASSES:
            return _per_sample(_ACTIVATION_CLASSES[class_name], tensor, reshaped)
        elif class_name in _SHAPE_ONLY:
            reshaped = True
            tensor = operation._inbound_nodes[node_index].input_tensors[0]
        elif hasattr(operation, "activation"):
            return _per_sample(_activation_name(operation.activation), tensor, reshaped)
        else:
            return "unknown"
    return "unknown"


def _per_sample(activation: str, tensor: object, reshaped: bool) -> str:
    """``activation``, unless it is a softmax taken over each position of a (positions, k) tensor that a Flatten or
    Reshape then laid out as one row: those are not positions × k classes (a sample's row sums to the number of
    positions, not to 1), and no task edgemed ships reads them."""
    shape = tuple(getattr(tensor, "shape", ()) or ())[1:]
    if activation == "softmax" and reshaped and sum(1 for size in shape if size != 1) > 1:
        raise TaskDetectionError(
            f"the model's softmax is taken over each position of a {('batch', *shape)} tensor, then flattened: one "
            "probability distribution per position, not one per sample",
            expected="one decision per sample: a softmax over the sample's k classes, its row summing to 1",
            fix="pool over the positions before the classifier (e.g. GlobalAveragePooling1D(), then Dense(k, "
                "activation='softmax')); edgemed ships one decision per sample, not one per time step")
    return activation


# ----------------------------------------------------------------------------- reading the labels


@dataclass(frozen=True)
class _Labels:
    form: str  # "none", "class-indices", "one-hot", "multi-hot", "continuous"
    classes: int | None = None  # class-indices: largest index + 1; one/multi-hot: columns
    description: str = "no labels"
    per_sample: bool = True  # one value per sample (1-D, or one column)


def _labels_per_output(labels: object, names: list[str]) -> dict[str, np.ndarray | None]:
    if labels is None:
        return dict.fromkeys(names)
    if isinstance(labels, Mapping):
        return {name: labels.get(name) for name in names}
    if len(names) == 1 and not isinstance(labels, (list, tuple)):
        return {names[0]: labels}
    if isinstance(labels, (list, tuple)) and len(labels) == len(names):
        return dict(zip(names, labels, strict=True))
    raise TaskDetectionError(
        f"labels for a model with {len(names)} outputs ({', '.join(names)}) must be given per output",
        expected="one label array per output: a list in output order or a mapping by output name",
        fix="pass labels={name: array, ...}, or no labels and --task",
    )


def _summarize(labels: np.ndarray | None) -> _Labels:
    if labels is None:
        return _Labels("none")
    values = np.asarray(labels)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.size == 0:
        return _Labels("none")
    if values.dtype == bool:
        values = values.astype(np.int64)
    integral = np.issubdtype(values.dtype, np.integer)
    zero_one = bool(np.isin(values, (0, 1)).all()) if np.issubdtype(values.dtype, np.number) else False
    if values.ndim == 1:
        if integral or zero_one:
            if values.min() < 0:
                raise TaskDetectionError(
                    f"integer labels include negative values (smallest {int(values.min())})",
                    expected="class indices 0, 1, … (or float targets for a regression)",
                    fix="encode the classes as 0 … n-1, or pass float targets and --task regression",
                )
            classes = int(values.max()) + 1
            return _Labels("class-indices", classes, f"integer class labels ({classes} classes)")
        return _Labels("continuous", None, "float targets")
    if values.ndim == 2 and zero_one:
        if bool((values.sum(axis=1) == 1).all()):
            return _Labels("one-hot", values.shape[1], f"one-hot labels ({values.shape[1]} classes)", False)
        return _Labels("multi-hot", values.shape[1], f"0/1 label rows ({values.shape[1]} labels)", False)
    return _Labels("continuous", None, f"float targets of shape {values.shape[1:]}", False)


# ----------------------------------------------------------------------------- the rules


def _detection(kind: TaskKind, logits: bool, head: HeadKind | None, output: _Output, why: str) -> TaskDetection:
    return TaskDetection(kind, logits, head, f"{output.describe()}: {why}", output.activation, output.width)


def _error(what: str, expected: str = "a model and labels that agree on one task kind") -> TaskDetectionError:
    return TaskDetectionError(what, expected=expected, fix=_TASK_FIX)


def _reconstructs(output: _Output, input_shapes: list[tuple]) -> bool:
    return (len(input_shapes) == 1 and output.shape == input_shapes[0] and output.width is not None
            and output.width > 1)


def _detect_output(output: _Output, input_shapes: list[tuple], labels: _Labels, task: TaskKind | None,
                   logits: bool | None) -> TaskDetection:
    if len(output.shape) > 1 and task is not TaskKind.ANOMALY and not _reconstructs(output, input_shapes):
        # a per-timestep softmax would otherwise read as classes × timesteps
        raise TaskDetectionError(
            f"the model's output has shape {('batch', *output.shape)}: more than one axis per sample",
            expected="one axis per sample, (batch, k), for classes, labels or targets; several axes only for an "
            "autoencoder's reconstruction (the anomaly kind)",
            fix="decide once per sample: pool over time before the final layer (e.g. GlobalAveragePooling1D(), then "
            "Dense(k, activation=...)); Flatten() or Reshape((k,)) only where the axes hold one sample's k values "
            "(after GlobalAveragePooling1D(keepdims=True)), never after a per-time-step softmax")
    if output.family == "unknown" and logits is not None:
        output = _Output(output.name, output.shape, "linear" if logits else "probabilities (as told)")
    elif logits is not None and output.family in ("softmax", "sigmoid", "linear") and \
            logits != (output.family == "linear"):
        raise _error(f"logits={logits} was given, but {output.describe()}",
                     expected="logits=True only for a linear final activation, False for softmax/sigmoid")
    if task is not None:
        return _named(task, output, input_shapes)
    if _reconstructs(output, input_shapes) and output.family != "softmax":
        if labels.per_sample:
            return _detection(TaskKind.ANOMALY, False, HeadKind.RECONSTRUCTION_ERROR, output,
                              "the output has the input's shape, an autoencoder: the device gets the per-sample "
                              f"reconstruction error ({labels.description})")
        raise _error(f"{output.describe()} has its input's shape (an autoencoder?) but the labels are "
                     f"{labels.description} (a multilabel or dense regression target?)")
    rules = {"softmax": _softmax, "sigmoid": _sigmoid, "linear": _linear, "probabilities": _probabilities}
    return rules.get(output.family, _other)(output, labels)


def _softmax(output: _Output, labels: _Labels) -> TaskDetection:
    if output.width is not None and output.width < 2:
        raise _error(f"{output.describe()}: a softmax over one value is always 1",
                     expected="a softmax over two or more classes, or a sigmoid for one column")
    if labels.form in ("continuous", "multi-hot"):
        raise _error(f"{output.describe()}, but the labels are {labels.description}")
    _check_classes(output, labels)
    return _detection(TaskKind.MULTICLASS, False, None, output, f"softmax probabilities ({labels.description})")


def _sigmoid(output: _Output, labels: _Labels) -> TaskDetection:
    if labels.form == "continuous":
        return _detection(TaskKind.REGRESSION, False, None, output, f"a sigmoid-bounded {labels.description}")
    if output.width == 1:
        if labels.form == "class-indices" and labels.classes > 2:
            raise _error(f"{output.describe()} (one probability), but the labels are {labels.description}")
        return _detection(TaskKind.BINARY, False, None, output, f"one sigmoid probability ({labels.description})")
    if labels.form in ("class-indices", "one-hot"):
        _check_classes(output, labels)
        return _detection(TaskKind.MULTICLASS, False, None, output,
                          f"one-vs-rest sigmoid scores with {labels.description}: decided by argmax")
    _check_classes(output, labels)
    return _detection(TaskKind.MULTILABEL, False, None, output,
                      f"a sigmoid probability per column ({labels.description})")


def _linear(output: _Output, labels: _Labels) -> TaskDetection:
    if labels.form == "none":
        raise _error(f"cannot tell what {output.describe()} predicts without labels: classifier logits and a "
                     "regression look the same", expected="labels, or the task named explicitly")
    if labels.form == "continuous":
        return _detection(TaskKind.REGRESSION, False, None, output, f"linear values for {labels.description}")
    _check_classes(output, labels)
    if labels.form == "multi-hot":
        return _detection(TaskKind.MULTILABEL, True, HeadKind.SIGMOID, output,
                          f"logits for {labels.description}: a sigmoid is appended")
    if output.width == 1:
        return _detection(TaskKind.BINARY, True, HeadKind.SIGMOID, output,
                          f"one logit for {labels.description}: a sigmoid is appended")
    return _detection(TaskKind.MULTICLASS, True, HeadKind.SOFTMAX, output,
                      f"logits for {labels.description}: a softmax is appended")


def _probabilities(output: _Output, labels: _Labels) -> TaskDetection:
    """A custom final activation the caller says gives probabilities (logits=False)."""
    if labels.form == "continuous":
        return _detection(TaskKind.REGRESSION, False, None, output, labels.description)
    if output.width == 1 and labels.form in ("none", "class-indices"):
        _check_classes(output, labels)
        return _detection(TaskKind.BINARY, False, None, output, f"one probability ({labels.description})")
    if labels.form in ("class-indices", "one-hot", "multi-hot"):
        _check_classes(output, labels)
        kind = TaskKind.MULTILABEL if labels.form == "multi-hot" else TaskKind.MULTICLASS
        return _detection(kind, False, None, output, f"probabilities for {labels.description}")
    raise _error(f"cannot tell whether {output.describe()} holds one class's or several labels' probabilities "
                 "without labels", expected="labels, or the task named explicitly")


def _other(output: _Output, labels: _Labels) -> TaskDetection:
    if output.family == "other" and labels.form in ("none", "continuous"):
        return _detection(TaskKind.REGRESSION, False, None, output,
                          f"a {output.activation} output is no probability or logit ({labels.description})")
    if output.family == "unknown" and labels.form == "continuous":
        return _detection(TaskKind.REGRESSION, False, None, output, labels.description)
    raise _error(f"cannot tell what {output.describe()} predicts with {labels.description}",
                 expected="a final softmax/sigmoid/linear activation, or the task named explicitly (and logits=)")


def _check_classes(output: _Output, labels: _Labels) -> None:
    if labels.classes is None or output.width is None:
        return
    fits = labels.classes <= max(output.width, 2) if labels.form == "class-indices" else \
        labels.classes == output.width
    if not fits:
        raise _error(f"{output.describe()} ({output.width} values), but the labels are {labels.description}",
                     expected="as many output columns as classes (one column for a binary classifier)")


def _named(task: TaskKind, output: _Output, input_shapes: list[tuple]) -> TaskDetection:
    """The kind the user named, checked against the model; whether a head is needed."""
    family, told = output.family, f"the task was named {task.value}"
    if task is TaskKind.REGRESSION:
        return _detection(task, False, None, output, told)
    if task is TaskKind.ANOMALY:
        if _reconstructs(output, input_shapes):
            return _detection(task, False, HeadKind.RECONSTRUCTION_ERROR, output,
                              f"{told}; the output has the input's shape: the reconstruction error is appended")
        if output.width == 1:
            return _detection(task, False, None, output, f"{told}; the model already outputs one score per sample")
        raise _error(f"--task anomaly, but {output.describe()} is neither a reconstruction of input shape "
                     f"{input_shapes} nor one score per sample", expected="an autoencoder or a one-column score")
    if family in ("other", "unknown"):
        raise _error(f"--task {task.value}, but {output.describe()} is no probability or logit",
                     expected="a final softmax, sigmoid or linear activation (or logits= for a custom one)")
    if task is TaskKind.MULTICLASS:
        if output.width is not None and output.width < 2:
            raise _error(f"--task multiclass, but {output.describe()} has one column",
                         expected="one column per class (use --task binary for one probability)")
        if family == "linear":
            return _detection(task, True, HeadKind.SOFTMAX, output, f"{told}; logits: a softmax is appended")
        return _detection(task, False, None, output, f"{told}; {_probabilities_text(family)}")
    if family == "softmax":
        raise _error(f"--task {task.value}, but {output.describe()} (a softmax couples the columns)",
                     expected="a sigmoid or linear output (use --task multiclass for a softmax)")
    if task is TaskKind.BINARY and output.width != 1:
        raise _error(f"--task binary, but {output.describe()} has {output.width} columns",
                     expected="one column (use --task multiclass or multilabel for several)")
    if family == "linear":
        return _detection(task, True, HeadKind.SIGMOID, output, f"{told}; logits: a sigmoid is appended")
    return _detection(task, False, None, output, f"{told}; {_probabilities_text(family)}")


def _probabilities_text(family: str) -> str:
    return "probabilities" if family == "probabilities" else f"{family} probabilities"
