"""In-graph heads: what the device gets instead of raw logits or a reconstruction.

* ``softmax`` — a multiclass classifier trained ``from_logits``: the device gets probabilities.
* ``sigmoid`` — a binary or multilabel classifier that outputs logits: probabilities per column.
* ``reconstruction-error`` — an autoencoder (its output has its single input's shape): the device
  gets one anomaly score per sample, the mean squared error over every non-batch axis, as a
  ``(batch, 1)`` column — never the reconstruction itself.

A head is appended to the exported ONNX graph (``append_head``), not wrapped around the Keras
model before export, for three reasons:

1. it works on every ONNX model the variants start from, including one a device team brings
   as ONNX (no Keras model to wrap);
2. the graph stays clean and known: one ``Softmax``/``Sigmoid`` node, or
   ``Sub → Mul → Flatten → ReduceMean`` — whereas tf2onnx lowers the same Keras ops under
   Keras scope names (and ``keras.ops.mean`` as a ReduceSum and a Div);
3. every head node is named ``edgemed_head/...`` (``exporters._graph.HEAD_NODE_PREFIX``), so
   the fp16 and int8 variants keep the head in float32 by name: a reconstruction error
   quantized to 8 bits loses the small differences that make it an anomaly score.

Parity is exact to the fp32 tolerance either way: ``exporters.parity.check_keras_parity(...,
head=...)`` compares the ONNX graph with the Keras model's outputs run through the same head
in numpy (``head_reference``), float64 arithmetic rounded to float32.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from exporters._files import atomic_destination, load_onnx_model
from exporters._graph import HEAD_NODE_PREFIX, default_opset, head_node_names, iterate_nodes
from exporters.errors import HeadError
from exporters.inputs import ModelInputs, arrays

if TYPE_CHECKING:
    import onnx

logger = logging.getLogger(__name__)

ANOMALY_SCORE_OUTPUT = "anomaly_score"  # the reconstruction-error head's output, unless named otherwise


class HeadKind(StrEnum):
    """What is appended to a model's single output."""

    SOFTMAX = "softmax"  # multiclass logits → probabilities (over the last axis)
    SIGMOID = "sigmoid"  # binary/multilabel logits → a probability per column
    RECONSTRUCTION_ERROR = "reconstruction-error"  # autoencoder → per-sample MSE, shape (batch, 1)


# The name the head's input keeps inside the graph when the head's output takes its place.
_INNER_NAMES = {HeadKind.SOFTMAX: "logits", HeadKind.SIGMOID: "logits",
                HeadKind.RECONSTRUCTION_ERROR: "reconstruction"}


def parse_head_kind(name: HeadKind | str) -> HeadKind:
    """The ``HeadKind`` called ``name`` (case and surrounding spaces ignored).

    Raises:
        HeadError: ``name`` is no head kind; the message lists the valid ones.
    """
    valid = ", ".join(kind.value for kind in HeadKind)
    try:
        return HeadKind(str(name).strip().lower())
    except ValueError:
        raise HeadError(f"unknown head {name!r}", expected=f"one of: {valid}", fix=f"choose one of {valid}") from None


def append_head(source: Path, destination: Path, head: HeadKind | str, output_name: str | None = None) -> dict:
    """Write ``source`` with ``head`` appended to its single output to ``destination`` (atomically).

    The head's output is named ``output_name``; by default a softmax/sigmoid head takes the
    name of the output it replaces (the device API is unchanged, e.g. ``probabilities``) and a
    reconstruction-error head is called ``anomaly_score``. When the head takes the old output's
    name, the old output becomes the inner tensor ``logits`` / ``reconstruction``. The batch
    axis stays dynamic. Returns what was appended (head, output, node names).

    Raises:
        HeadError: ``source`` is missing or invalid, already has a head, has several outputs (or,
            for the reconstruction error, several inputs or an output of another shape than its
            input), or the result fails ``onnx.checker``.
    """
    import onnx

    head = parse_head_kind(head)
    source, destination = Path(source), Path(destination)
    model = load_onnx_model(source, HeadError)
    graph = model.graph
    _check_appendable(model, source, head)
    old_output = graph.output[0]
    new_name = output_name or (ANOMALY_SCORE_OUTPUT if head is HeadKind.RECONSTRUCTION_ERROR else old_output.name)
    head_input = old_output.name
    if new_name == old_output.name:
        head_input = _free_name(graph, _INNER_NAMES[head])
        _rename_tensor(graph, old_output.name, head_input)
    elif new_name in _tensor_names(graph):
        raise HeadError(
            f"cannot name the head's output {new_name!r}: {source.name} already has a tensor of that name",
            expected="an output name no tensor of the graph uses",
            fix="pass another output_name",
        )
    nodes, initializers = _head_nodes(model, head, head_input, new_name)
    graph.node.extend(nodes)
    graph.initializer.extend(initializers)
    output_value = _output_value(graph, old_output, head, new_name)
    del graph.output[:]
    graph.output.append(output_value)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as error:
        raise HeadError(
            f"appending the {head.value} head to {source.name} gave an invalid graph: {error}",
            expected="a graph that passes onnx.checker.check_model",
            fix="report the model to the exporters maintainers",
        ) from error
    with atomic_destination(destination) as temporary:
        onnx.save_model(model, str(temporary))
    report = {"head": head.value, "output": new_name, "head_input": head_input,
              "nodes": [node.name for node in nodes]}
    logger.info("appended the %s head to %s → %s: %s", head.value, source.name, destination.name, report)
    return report


def head_reference(head: HeadKind | str | None, outputs: np.ndarray, inputs: ModelInputs) -> np.ndarray:
    """The head computed in numpy on a model's ``outputs`` (float64, rounded to float32).

    ``inputs`` are the model inputs that gave ``outputs`` (the reconstruction error compares
    them); ``head`` None returns ``outputs`` unchanged.

    Raises:
        HeadError: the reconstruction error of outputs whose shape differs from the input's.
    """
    if head is None:
        return outputs
    head = parse_head_kind(head)
    values = np.asarray(outputs, dtype=np.float64)
    if head is HeadKind.SOFTMAX:
        shifted = np.exp(values - values.max(axis=-1, keepdims=True))
        return (shifted / shifted.sum(axis=-1, keepdims=True)).astype(np.float32)
    if head is HeadKind.SIGMOID:
        return (0.5 * (1.0 + np.tanh(0.5 * values))).astype(np.float32)  # 1/(1+e^-x) without overflow
    original = arrays(inputs)
    if len(original) != 1 or original[0].shape != values.shape:
        shapes = ", ".join(str(value.shape) for value in original)
        raise HeadError(
            f"the reconstruction error needs outputs of the input's shape: outputs {values.shape}, inputs {shapes}",
            expected="an autoencoder with one input and an output of the same shape",
            fix="use the reconstruction-error head only for autoencoders",
        )
    squared = (original[0].astype(np.float64) - values) ** 2
    return squared.reshape(len(squared), -1).mean(axis=1, keepdims=True).astype(np.float32)


def nodes_kept_in_float(graph: onnx.GraphProto) -> list[str]:
    """Nodes int8 quantization must leave in float: the head's, and for a reconstruction error
    the node that makes the reconstruction — its 8-bit output would add rounding noise to the
    very differences the anomaly score measures."""
    names = head_node_names(graph)
    if _node_name("sub") not in names:
        return names
    subtract = next(node for node in graph.node if node.name == _node_name("sub"))
    producers = [node.name for node in graph.node if subtract.input[1] in node.output and node.name]
    return producers + names


def read_float_head_inputs(model: onnx.ModelProto) -> int:
    """In a QDQ-quantized graph, let the head read the float tensors its inputs were quantized from.

    ORT's QDQ quantizer gives every consumer of a quantized tensor the DequantizeLinear copy — the
    graph input included, so a reconstruction error would compare an 8-bit copy of the input. Each
    head input made by DequantizeLinear(QuantizeLinear(x)) is replaced by ``x``; QuantizeLinear and
    DequantizeLinear nodes left without readers are removed. Returns how many inputs were replaced.
    """
    graph = model.graph
    producers = {name: node for node in graph.node for name in node.output}
    replaced = 0
    for node in graph.node:
        if not node.name.startswith(HEAD_NODE_PREFIX):
            continue
        for index, name in enumerate(node.input):
            dequantize = producers.get(name)
            quantize = producers.get(dequantize.input[0]) if dequantize is not None else None
            if dequantize is not None and dequantize.op_type == "DequantizeLinear" and quantize is not None \
                    and quantize.op_type == "QuantizeLinear":
                node.input[index] = quantize.input[0]
                replaced += 1
    while True:  # drop Q/DQ nodes nobody reads any more
        read = {name for node in iterate_nodes(graph) for name in node.input} | {value.name for value in graph.output}
        unread = [node for node in graph.node if node.op_type in ("QuantizeLinear", "DequantizeLinear")
                  and not any(name in read for name in node.output)]
        if not unread:
            return replaced
        for node in unread:
            graph.node.remove(node)


# ----------------------------------------------------------------------------- graph surgery


def _check_appendable(model: onnx.ModelProto, source: Path, head: HeadKind) -> None:
    graph = model.graph
    if head_node_names(graph):
        raise HeadError(
            f"{source.name} already has an in-graph head ({', '.join(head_node_names(graph))})",
            expected="a model without an edgemed head",
            fix="append the head to the exported model once",
        )
    if len(graph.output) != 1:
        raise HeadError(
            f"{source.name} has {len(graph.output)} outputs",
            expected="a single-output model (a head replaces the one output)",
            fix="export each output as its own model, or compute the head outside the graph",
        )
    if head is not HeadKind.RECONSTRUCTION_ERROR:
        return
    initializers = {initializer.name for initializer in graph.initializer}
    inputs = [value for value in graph.input if value.name not in initializers]
    input_shape = _shape(inputs[0]) if len(inputs) == 1 else None
    output_shape = _shape(graph.output[0])
    if len(inputs) != 1 or input_shape is None or output_shape is None or input_shape[1:] != output_shape[1:]:
        raise HeadError(
            f"{source.name} is no autoencoder: inputs {[_shape(value) for value in inputs]}, "
            f"output {output_shape}",
            expected="one input and one output of the same fixed non-batch shape",
            fix="use the reconstruction-error head only for autoencoders (task kind 'anomaly')",
        )
    if inputs[0].type.tensor_type.elem_type != graph.output[0].type.tensor_type.elem_type:
        raise HeadError(
            f"{source.name}'s input and output have different element types",
            expected="an autoencoder whose reconstruction has its input's type",
            fix="re-export the model in float32",
        )


def _shape(value: onnx.ValueInfoProto) -> tuple[int | str, ...] | None:
    """The value's shape (symbolic axes as their names), None when a non-batch axis is unknown."""
    dimensions = value.type.tensor_type.shape.dim
    shape = tuple(dimension.dim_value if dimension.HasField("dim_value") else dimension.dim_param
                  for dimension in dimensions)
    if not dimensions or any(not isinstance(axis, int) for axis in shape[1:]):
        return None
    return shape


def _head_nodes(model: onnx.ModelProto, head: HeadKind, head_input: str,
                output: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    from onnx import helper, numpy_helper

    name = _node_name
    if head is HeadKind.SOFTMAX:
        return [helper.make_node("Softmax", [head_input], [output], name=name("softmax"), axis=-1)], []
    if head is HeadKind.SIGMOID:
        return [helper.make_node("Sigmoid", [head_input], [output], name=name("sigmoid"))], []
    graph = model.graph
    initializers = {initializer.name for initializer in graph.initializer}
    model_input = next(value.name for value in graph.input if value.name not in initializers)
    difference, squared, flat = name("difference"), name("squared"), name("squared_flat")
    nodes = [
        helper.make_node("Sub", [model_input, head_input], [difference], name=name("sub")),
        helper.make_node("Mul", [difference, difference], [squared], name=name("square")),
        helper.make_node("Flatten", [squared], [flat], name=name("flatten"), axis=1),
    ]
    if (default_opset(model) or 0) >= 18:  # ReduceMean takes its axes as an input from opset 18 on
        axes = numpy_helper.from_array(np.array([1], dtype=np.int64), name("mean_axes"))
        nodes.append(helper.make_node("ReduceMean", [flat, axes.name], [output], name=name("mean"), keepdims=1))
        return nodes, [axes]
    nodes.append(helper.make_node("ReduceMean", [flat], [output], name=name("mean"), axes=[1], keepdims=1))
    return nodes, []


def _node_name(part: str) -> str:
    return f"{HEAD_NODE_PREFIX}{part}"


def _output_value(graph: onnx.GraphProto, old_output: onnx.ValueInfoProto, head: HeadKind,
                  name: str) -> onnx.ValueInfoProto:
    import onnx

    value = onnx.ValueInfoProto()
    value.CopyFrom(old_output)
    value.name = name
    if head is HeadKind.RECONSTRUCTION_ERROR:
        dimensions = value.type.tensor_type.shape.dim
        batch = onnx.TensorShapeProto.Dimension()
        batch.CopyFrom(dimensions[0])
        del dimensions[:]
        dimensions.add().CopyFrom(batch)
        dimensions.add().dim_value = 1
    return value


def _tensor_names(graph: onnx.GraphProto) -> set[str]:
    names = {name for node in iterate_nodes(graph) for name in (*node.input, *node.output)}
    names.update(initializer.name for initializer in graph.initializer)
    names.update(value.name for value in (*graph.input, *graph.output, *graph.value_info))
    return names


def _free_name(graph: onnx.GraphProto, wanted: str) -> str:
    used, candidate, number = _tensor_names(graph), wanted, 1
    while candidate in used:
        candidate, number = f"{wanted}_{number}", number + 1
    return candidate


def _rename_tensor(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Rename ``old`` everywhere it appears (node IO incl. subgraphs, value_info; not graph outputs)."""
    for value in graph.value_info:
        if value.name == old:
            value.name = new
    for node in iterate_nodes(graph):
        for index, name in enumerate(node.input):
            if name == old:
                node.input[index] = new
        for index, name in enumerate(node.output):
            if name == old:
                node.output[index] = new

