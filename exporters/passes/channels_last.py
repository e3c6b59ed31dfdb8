"""Pass (for int8 graphs): express the 1-D convolution stack's boundaries as Transposes.

ONNX Runtime runs quantized convolutions channels-last: its layout transformer wraps the
QLinearConv/MaxPool stack in a Transpose to NWC on the way in and a Transpose back to NCW on
the way out, and cancels those against neighbouring Transposes — but not against Reshapes.
The fp32 passes leave exactly Reshapes there:

* the single-channel input ``(N, T, 1) → (N, 1, T)`` is a Reshape (the same bytes);
* the channels-last ``Flatten`` was folded into the first Dense weight's row order, so the
  stack ends in a Reshape ``(N, C, T) → (N, C·T)``.

This pass turns the first into ``Transpose(perm=[0, 2, 1])`` and the second into
``Transpose(perm=[0, 2, 1])`` → Reshape with the weight rows put back into channels-last
order, so after quantization ORT cancels both of its Transposes with ours: the int8 graph
runs with no layout change at all. Outputs are unchanged (a permutation of a sum's terms).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from exporters.passes._graph_edit import add_initializer, attribute, constant, consumers, graph_outputs, prune, shapes

if TYPE_CHECKING:
    import onnx

_LINEAR = ("MatMul", "Gemm")


def _rank3_reshapes(graph: onnx.GraphProto, known: dict):
    """(Reshape, its (N, A, B) input shape with A and B known, its constant target shape, its readers)."""
    users = consumers(graph)
    for reshape in [node for node in graph.node if node.op_type == "Reshape"]:
        source = known.get(reshape.input[0])
        target = constant(graph, reshape.input[1])
        if source is None or len(source) != 3 or target is None or target.ndim != 1:
            continue
        if all(isinstance(size, int) and size > 0 for size in source[1:]) and target[0] in (-1, 0):
            yield reshape, source, target, users.get(reshape.output[0], [])


def _input_reshapes(model: onnx.ModelProto, known: dict) -> int:
    from onnx import helper

    graph, rewritten = model.graph, 0
    for reshape, source, target, readers in list(_rank3_reshapes(graph, known)):
        if source[2] != 1 or list(target[1:]) != [1, source[1]]:
            continue
        if not readers or not all(reader.op_type == "Conv" for reader in readers):
            continue
        transpose = helper.make_node("Transpose", [reshape.input[0]], [reshape.output[0]], perm=[0, 2, 1],
                                     name=reshape.name + "_as_transpose")
        position = list(graph.node).index(reshape)
        graph.node.remove(reshape)
        graph.node.insert(position, transpose)
        rewritten += 1
    return rewritten


def _flatten_reshapes(model: onnx.ModelProto, known: dict) -> int:
    from onnx import helper

    graph, rewritten = model.graph, 0
    for reshape, source, target, readers in list(_rank3_reshapes(graph, known)):
        channels, steps = source[1], source[2]
        if target.shape != (2,) or channels == 1 or steps == 1 or target[1] not in (channels * steps, -1):
            continue
        if not readers or reshape.output[0] in graph_outputs(graph) or not all(_linear(graph, r) for r in readers):
            continue
        # Row r of the new weight multiplies feature (t, c) = divmod(r, channels); in the old
        # (channels-first) order that feature was row c·steps + t.
        order = np.arange(channels * steps).reshape(channels, steps).T.reshape(-1)
        for reader in readers:
            weight = constant(graph, reader.input[1])
            transposed = reader.op_type == "Gemm" and attribute(reader, "transB", 0)
            reordered = weight[:, order] if transposed else weight[order]
            reader.input[1] = add_initializer(graph, reader.input[1] + "_channels_last", reordered)
        transposed_name = reshape.input[0] + "_channels_last"
        transpose = helper.make_node("Transpose", [reshape.input[0]], [transposed_name], perm=[0, 2, 1],
                                     name=reshape.name + "_channels_last")
        graph.node.insert(list(graph.node).index(reshape), transpose)
        reshape.input[0] = transposed_name
        rewritten += 1
    return rewritten


def _linear(graph: onnx.GraphProto, node: onnx.NodeProto) -> bool:
    if node.op_type not in _LINEAR or len(node.input) < 2 or node.input[0] == node.input[1]:
        return False
    weight = constant(graph, node.input[1])
    if weight is None or weight.ndim != 2:
        return False
    return node.op_type == "MatMul" or not attribute(node, "transA", 0)


def channels_last_boundaries(model: onnx.ModelProto) -> int:
    """Rewrite both boundary kinds; return how many were rewritten."""
    known = shapes(model)
    rewritten = _input_reshapes(model, known) + _flatten_reshapes(model, known)
    prune(model)
    return rewritten
