"""Pass: fold constant bias ``Add``s into the ``Conv``/``Gemm`` before them; ``MatMul`` + bias → ``Gemm``.

Converters emit ``Conv`` (no bias) → ``Add(bias)`` and ``MatMul`` → ``Add(bias)``. A per-channel
constant (broadcasting along axis 1 of the Conv output only) becomes the Conv's bias input; a
2-D ``MatMul`` with a constant weight followed by a constant bias becomes one ``Gemm``.
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
    ranks,
    replace_bias_and_absorb,
)

if TYPE_CHECKING:
    import onnx


def _single_consumer(graph: onnx.GraphProto, name: str, used: dict) -> onnx.NodeProto | None:
    users = used.get(name, [])
    return users[0] if len(users) == 1 and name not in graph_outputs(graph) else None


def _bias_operand(graph: onnx.GraphProto, add: onnx.NodeProto, tensor: str) -> np.ndarray | None:
    if add.op_type != "Add" or list(add.input).count(tensor) != 1:
        return None
    other = add.input[1] if add.input[0] == tensor else add.input[0]
    return constant(graph, other)


def _per_channel(bias: np.ndarray, rank: int, channels: int) -> np.ndarray | None:
    """The bias as a (channels,) vector when it broadcasts along axis 1 only, else None."""
    if bias.ndim > rank:
        return None
    full = bias.reshape((1,) * (rank - bias.ndim) + bias.shape)
    if any(size != 1 for axis, size in enumerate(full.shape) if axis != 1) or full.shape[1] not in (1, channels):
        return None
    return np.broadcast_to(full.reshape(-1), (channels,)).astype(np.float32)


def _fold_conv(graph: onnx.GraphProto, conv: onnx.NodeProto, add: onnx.NodeProto, rank: int) -> bool:
    weight = constant(graph, conv.input[1])
    bias = _bias_operand(graph, add, conv.output[0])
    if weight is None or bias is None or bias.dtype != weight.dtype:
        return False
    vector = _per_channel(bias, rank, weight.shape[0])
    existing = constant(graph, conv.input[2]) if len(conv.input) > 2 and conv.input[2] else np.zeros_like(vector)
    if vector is None or existing is None:
        return False
    new_bias = add_initializer(graph, conv.input[1] + "_bias", (existing + vector).astype(weight.dtype))
    replace_bias_and_absorb(graph, conv, new_bias, add)
    return True


def _matmul_to_gemm(graph: onnx.GraphProto, matmul: onnx.NodeProto, add: onnx.NodeProto, rank_of: dict) -> bool:
    from onnx import helper

    weight = constant(graph, matmul.input[1])
    bias = _bias_operand(graph, add, matmul.output[0])
    if weight is None or bias is None or weight.ndim != 2 or rank_of.get(matmul.input[0]) != 2:
        return False
    if bias.size != weight.shape[1] or bias.shape[:-1] not in ((), (1,)):
        return False
    bias_name = add_initializer(graph, matmul.input[1] + "_bias", bias.reshape(-1).astype(weight.dtype))
    gemm = helper.make_node("Gemm", [matmul.input[0], matmul.input[1], bias_name], [add.output[0]],
                            name=(matmul.name or "gemm") + "_with_bias")
    position = list(graph.node).index(matmul)
    graph.node.remove(matmul)
    graph.node.remove(add)
    graph.node.insert(position, gemm)
    return True


def _fold_gemm(graph: onnx.GraphProto, gemm: onnx.NodeProto, add: onnx.NodeProto) -> bool:
    bias = _bias_operand(graph, add, gemm.output[0])
    weight = constant(graph, gemm.input[1])
    if bias is None or weight is None or attribute(gemm, "beta", 1.0) != 1.0:
        return False
    columns = weight.shape[0] if attribute(gemm, "transB", 0) else weight.shape[1]
    if bias.size != columns or bias.shape[:-1] not in ((), (1,)):
        return False
    existing = constant(graph, gemm.input[2]) if len(gemm.input) > 2 and gemm.input[2] else np.zeros(columns)
    if existing is None or existing.size not in (1, columns):
        return False
    total = (np.broadcast_to(existing.reshape(-1), (columns,)) + bias.reshape(-1)).astype(weight.dtype)
    name = add_initializer(graph, gemm.input[1] + "_bias", total)
    replace_bias_and_absorb(graph, gemm, name, add)
    return True


def fold_bias(model: onnx.ModelProto) -> int:
    """Fold every eligible bias Add in place; return how many were folded."""
    graph, rank_of, folded = model.graph, ranks(model), 0
    for node in list(graph.node):
        if node not in graph.node or node.op_type not in ("Conv", "MatMul", "Gemm"):
            continue
        add = _single_consumer(graph, node.output[0], consumers(graph))
        if add is None or add.op_type != "Add":
            continue
        if node.op_type == "Conv":
            folded += _fold_conv(graph, node, add, rank_of.get(node.output[0], 0))
        elif node.op_type == "MatMul":
            folded += _matmul_to_gemm(graph, node, add, rank_of)
        else:
            folded += _fold_gemm(graph, node, add)
    prune(model)
    return folded
