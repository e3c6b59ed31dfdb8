"""Pass: fuse the converters' decomposed z-scoring / layer normalization into ``LayerNormalization``.

TensorFlow's ``moments``-based normalization (Keras ``LayerNormalization`` without centre
and scale, the ECG model's per-window z-scoring) arrives as eleven element-wise nodes::

    mean = ReduceMean(x); d = Sub(x, mean); var = ReduceMean(Mul(d, d)); inv = Reciprocal(Sqrt(Add(var, ε)))
    y = Add(Mul(x, inv), Mul(Neg(mean), inv))

which equals ONNX ``LayerNormalization(x, scale=1, axis=a, epsilon=ε)`` (opset ≥ 17) whenever
the reduced axes are ``a … rank−1``, or the axes after them all have size 1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from exporters._graph import default_opset
from exporters.passes._graph_edit import add_initializer, attribute, constant, graph_outputs, producers, prune, shapes

if TYPE_CHECKING:
    import onnx

MINIMUM_OPSET = 17  # LayerNormalization entered the default domain in opset 17


def _made_by(found: dict, name: str, op_type: str) -> onnx.NodeProto | None:
    node = found.get(name)
    return node if node is not None and node.op_type == op_type else None


def _split(node: onnx.NodeProto, known: str) -> str | None:
    """The other input of a binary node one of whose inputs is ``known``."""
    inputs = list(node.input)
    if len(inputs) != 2 or known not in inputs:
        return None
    return inputs[1] if inputs[0] == known else inputs[0]


def _reduce_axes(graph: onnx.GraphProto, node: onnx.NodeProto, rank: int) -> list[int] | None:
    if attribute(node, "keepdims", 1) != 1:
        return None
    axes = attribute(node, "axes")
    if axes is None and len(node.input) > 1:
        value = constant(graph, node.input[1])
        axes = None if value is None else value.tolist()
    return None if axes is None else sorted(axis % rank for axis in axes)


def _match(graph: onnx.GraphProto, found: dict, add: onnx.NodeProto, known: dict) -> tuple | None:
    """(x, epsilon, axis, nodes) when ``add`` ends the decomposed pattern, else None."""
    if len(add.input) != 2:
        return None
    for scaled_name, shifted_name in ((add.input[0], add.input[1]), (add.input[1], add.input[0])):
        scaled, shifted = _made_by(found, scaled_name, "Mul"), _made_by(found, shifted_name, "Mul")
        if scaled is None or shifted is None:
            continue
        for inverse_name in scaled.input:
            inverse = _made_by(found, inverse_name, "Reciprocal")
            negated = _made_by(found, _split(shifted, inverse_name) or "", "Neg")
            x = _split(scaled, inverse_name)
            if inverse is None or negated is None or x is None:
                continue
            root = _made_by(found, inverse.input[0], "Sqrt")
            shifted_variance = _made_by(found, root.input[0], "Add") if root else None
            mean = _made_by(found, negated.input[0], "ReduceMean")
            if shifted_variance is None or mean is None or mean.input[0] != x:
                continue
            variance = next((found[name] for name in shifted_variance.input if name in found
                             and found[name].op_type == "ReduceMean"), None)
            epsilon = constant(graph, _split(shifted_variance, variance.output[0]) or "") if variance else None
            square = _made_by(found, variance.input[0], "Mul") if variance else None
            if epsilon is None or epsilon.size != 1 or square is None or square.input[0] != square.input[1]:
                continue
            difference = _made_by(found, square.input[0], "Sub")
            if difference is None or list(difference.input) != [x, mean.output[0]]:
                continue
            shape = known.get(x)
            if shape is None:
                continue
            axes = _reduce_axes(graph, mean, len(shape))
            if axes is None or axes != _reduce_axes(graph, variance, len(shape)) or not _trailing(axes, shape):
                continue
            nodes = [mean, difference, square, variance, shifted_variance, root, inverse, scaled, negated, shifted, add]
            return x, float(epsilon.reshape(-1)[0]), axes[0], nodes
    return None


def _trailing(axes: list[int], shape: tuple) -> bool:
    if axes != list(range(axes[0], axes[-1] + 1)):
        return False
    after = shape[axes[-1] + 1 :]
    return all(isinstance(size, int) and size == 1 for size in after) and all(
        isinstance(size, int) and size > 0 for size in shape[axes[0] :]
    )


def fuse_layernorm(model: onnx.ModelProto) -> int:
    """Fuse every matching pattern in place (opset ≥ 17 only); return how many."""
    from onnx import helper

    if (default_opset(model) or 0) < MINIMUM_OPSET:
        return 0
    graph, known, fused = model.graph, shapes(model), 0
    for add in [node for node in graph.node if node.op_type == "Add"]:
        found = producers(graph)
        match = _match(graph, found, add, known) if add in graph.node else None
        if match is None:
            continue
        x, epsilon, axis, nodes = match
        internal = {output for node in nodes[:-1] for output in node.output}
        readers = {name for node in graph.node if node not in nodes for name in node.input}
        if internal & (readers | graph_outputs(graph)):
            continue  # an intermediate value is used elsewhere: keep the decomposition
        scale = np.ones(known[x][axis:], dtype=np.float32)
        fused_node = helper.make_node("LayerNormalization", [x, add_initializer(graph, "layernorm_scale", scale)],
                                      [add.output[0]], name=(add.name or "zscore") + "_fused", axis=axis,
                                      epsilon=epsilon)
        position = min(list(graph.node).index(node) for node in nodes)
        for node in nodes:
            graph.node.remove(node)
        graph.node.insert(position, fused_node)
        fused += 1
    prune(model)
    return fused
