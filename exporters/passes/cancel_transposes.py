"""Pass: remove Transposes and Reshapes that cancel or can be absorbed.

* ``Transpose`` → ``Transpose`` whose permutations compose to the identity: both go;
  otherwise they become one ``Transpose``.
* a shape-only op (``Reshape``/``Unsqueeze``/``Squeeze``/``Flatten``) feeding only a ``Reshape``
  to a constant shape without 0 entries: the first one goes.
* ``Transpose`` → flatten ``Reshape`` → ``MatMul``/``Gemm`` with a constant weight (Keras'
  channels-last ``Flatten`` after channels-first convolutions): the Transpose goes and the
  weight's rows are permuted to match the untransposed order instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from exporters.passes._graph_edit import (
    add_initializer,
    attribute,
    bypass,
    constant,
    consumers,
    graph_outputs,
    prune,
    set_attribute,
    shapes,
)

if TYPE_CHECKING:
    import onnx

SHAPE_OPS = ("Reshape", "Unsqueeze", "Squeeze", "Flatten")


def _only_consumer(graph: onnx.GraphProto, name: str) -> onnx.NodeProto | None:
    users = consumers(graph).get(name, [])
    return users[0] if len(users) == 1 and name not in graph_outputs(graph) else None


def _transpose_pairs(graph: onnx.GraphProto) -> int:
    removed = 0
    for first in [node for node in graph.node if node.op_type == "Transpose"]:
        second = _only_consumer(graph, first.output[0]) if first in graph.node else None
        if second is None or second.op_type != "Transpose":
            continue
        outer, inner = attribute(first, "perm"), attribute(second, "perm")
        if outer is None or inner is None:
            continue
        composed = [outer[axis] for axis in inner]
        if composed == sorted(composed):
            graph.node.remove(first)
            second.input[0] = first.input[0]
            removed += 1 + bypass(graph, second)
        else:
            set_attribute(second, "perm", composed)
            second.input[0] = first.input[0]
            graph.node.remove(first)
            removed += 1
    return removed


def _reshape_chains(graph: onnx.GraphProto) -> int:
    removed = 0
    for first in [node for node in graph.node if node.op_type in SHAPE_OPS]:
        second = _only_consumer(graph, first.output[0]) if first in graph.node else None
        if second is None or second.op_type != "Reshape" or second.input[0] != first.output[0]:
            continue
        shape = constant(graph, second.input[1])
        if shape is None or np.any(shape == 0):
            continue
        second.input[0] = first.input[0]
        graph.node.remove(first)
        removed += 1
    return removed


def _transpose_into_weights(model: onnx.ModelProto) -> int:
    graph, known, removed = model.graph, shapes(model), 0
    for transpose in [node for node in graph.node if node.op_type == "Transpose"]:
        reshape = _only_consumer(graph, transpose.output[0])
        perm = attribute(transpose, "perm")
        source_shape = known.get(transpose.input[0])
        if reshape is None or reshape.op_type != "Reshape" or perm is None or perm[0] != 0 or source_shape is None:
            continue
        inner = source_shape[1:]
        if not all(isinstance(size, int) and size > 0 for size in inner):
            continue
        features = int(np.prod(inner))
        target = constant(graph, reshape.input[1])
        if target is None or target.shape != (2,) or target[1] not in (features, -1) or target[0] not in (-1, 0):
            continue
        users = consumers(graph).get(reshape.output[0], [])
        if not users or reshape.output[0] in graph_outputs(graph) or not all(_is_linear(graph, user) for user in users):
            continue
        order = np.arange(features).reshape(inner).transpose([axis - 1 for axis in perm[1:]]).reshape(-1)
        for user in users:
            weight = constant(graph, user.input[1])
            transposed = user.op_type == "Gemm" and attribute(user, "transB", 0)
            permuted = np.empty_like(weight)
            if transposed:
                permuted[:, order] = weight
            else:
                permuted[order] = weight
            user.input[1] = add_initializer(graph, user.input[1] + "_unpermuted", permuted)
        reshape.input[0] = transpose.input[0]
        graph.node.remove(transpose)
        removed += 1
    return removed


def _is_linear(graph: onnx.GraphProto, node: onnx.NodeProto) -> bool:
    weight = constant(graph, node.input[1]) if len(node.input) > 1 else None
    if node.op_type == "MatMul":
        return weight is not None and weight.ndim == 2
    return node.op_type == "Gemm" and weight is not None and not attribute(node, "transA", 0)


def cancel_transposes(model: onnx.ModelProto) -> int:
    """Apply the three rewrites until nothing changes; return how many nodes were removed."""
    total = 0
    while True:
        removed = _transpose_pairs(model.graph) + _reshape_chains(model.graph) + _transpose_into_weights(model)
        total += removed
        if not removed:
            break
    prune(model)
    return total
