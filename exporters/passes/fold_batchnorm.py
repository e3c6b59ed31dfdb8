"""Pass: fold inference ``BatchNormalization`` into the ``Conv`` or ``Gemm`` before it.

y = γ·(Wx + b − μ)/√(σ² + ε) + β  ⇒  W' = W·s, b' = (b − μ)·s + β with s = γ/√(σ² + ε),
per output channel (axis 0 of a Conv weight; the output columns of a Gemm).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from exporters.passes._graph_edit import (
    add_initializer,
    attribute,
    constant,
    consumers,
    graph_outputs,
    prune,
    replace_bias_and_absorb,
)

if TYPE_CHECKING:
    import onnx


def _statistics(graph: onnx.GraphProto, batchnorm: onnx.NodeProto) -> tuple[np.ndarray, np.ndarray] | None:
    """(scale s, shift t) with BN(x) = s·x + t per channel, or None when not constant."""
    values = [constant(graph, name) for name in batchnorm.input[1:5]]
    if len(batchnorm.output) != 1 or any(value is None for value in values) or attribute(batchnorm, "training_mode", 0):
        return None
    gamma, beta, mean, variance = (value.astype(np.float64) for value in values)
    scale = gamma / np.sqrt(variance + attribute(batchnorm, "epsilon", 1e-5))
    return scale, beta - mean * scale


def _fold(graph: onnx.GraphProto, node: onnx.NodeProto, batchnorm: onnx.NodeProto) -> bool:
    statistics, weight = _statistics(graph, batchnorm), constant(graph, node.input[1])
    if statistics is None or weight is None:
        return False
    scale, shift = statistics
    if node.op_type == "Conv":
        new_weight = weight * scale.reshape((-1,) + (1,) * (weight.ndim - 1))
        channels = weight.shape[0]
    else:
        if attribute(node, "alpha", 1.0) != 1.0 or attribute(node, "beta", 1.0) != 1.0:
            return False
        transposed = bool(attribute(node, "transB", 0))
        new_weight = weight * (scale[:, None] if transposed else scale[None, :])
        channels = weight.shape[0] if transposed else weight.shape[1]
    if scale.size != channels:
        return False
    bias = constant(graph, node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros(channels)
    if bias is None:
        return False
    new_bias = np.broadcast_to(bias.reshape(-1), (channels,)) * scale + shift
    node.input[1] = add_initializer(graph, node.input[1] + "_bn", new_weight.astype(weight.dtype))
    bias_name = add_initializer(graph, node.input[1] + "_bias", new_bias.astype(weight.dtype))
    replace_bias_and_absorb(graph, node, bias_name, batchnorm)
    return True


def fold_batchnorm(model: onnx.ModelProto) -> int:
    """Fold every Conv/Gemm → BatchNormalization pair in place; return how many."""
    graph, folded = model.graph, 0
    for node in list(graph.node):
        if node not in graph.node or node.op_type not in ("Conv", "Gemm"):
            continue
        users = consumers(graph).get(node.output[0], [])
        follows = len(users) == 1 and users[0].op_type == "BatchNormalization" and users[0].input[0] == node.output[0]
        if follows and node.output[0] not in graph_outputs(graph):
            folded += _fold(graph, node, users[0])
    prune(model)
    return folded
