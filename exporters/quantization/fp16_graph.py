"""float32 → float16 conversion that keeps float32 IO and float32 input preprocessing.

Wraps ``onnxruntime.transformers.float16.convert_float_to_float16`` and fixes the two
ways it loses precision on raw sensor inputs:

1. With ``keep_io_types`` the graph input is cast to float16 first, and nodes kept in
   float32 (the block list) get it cast back — the float16 rounding has already
   happened. Between two blocked nodes it also inserts a float32→float16→float32
   round trip.
2. Input preprocessing (Normalization, z-scoring) subtracts large offsets: in float16 a
   value of 500 has a spacing of 0.25, so ``x − mean`` loses most of its digits.

So the input preprocessing nodes are blocked (kept float32), and every
``Cast(to=float32)`` of a ``Cast(to=float16)`` of a float32 tensor is removed so
blocked nodes read the original float32 values. Everything from the first weighted op
(Conv, MatMul, Gemm, LSTM, ...) on runs in float16, except an in-graph head
(``exporters.heads``): its nodes are blocked too, so a reconstruction error is computed
against the float32 input, and softmax/sigmoid probabilities are float32 computations.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from exporters._graph import head_node_names, input_preprocessing_node_names, iterate_nodes

if TYPE_CHECKING:
    import onnx

logger = logging.getLogger(__name__)


def convert_to_float16_keeping_float32_input_path(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return a float16 copy of ``model`` with float32 IO and float32 input preprocessing."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.ModelProto.FromString(model.SerializeToString())  # never modify the caller's model
    _name_unnamed_nodes(model.graph)
    blocked = input_preprocessing_node_names(model.graph) + head_node_names(model.graph)
    logger.debug("keeping %d input preprocessing and head node(s) in float32: %s", len(blocked), blocked)
    float32_inputs = [
        value.name for value in model.graph.input if value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    ]
    converted = convert_float_to_float16(model, keep_io_types=True, node_block_list=blocked)
    blocked_set = set(blocked)
    float32_tensors = set(float32_inputs) | {
        name for node in converted.graph.node if node.name in blocked_set for name in node.output
    }
    removed = _remove_float16_round_trips(converted.graph, float32_tensors)
    logger.debug("removed %d float32→float16→float32 round trip(s)", removed)
    return converted


def _name_unnamed_nodes(graph: onnx.GraphProto) -> None:
    """The block list works by node name; give every unnamed node a unique one."""
    used = {node.name for node in graph.node}
    for index, node in enumerate(graph.node):
        if not node.name:
            candidate = f"edgemed_{node.op_type}_{index}"
            while candidate in used:
                candidate += "_"
            node.name = candidate
            used.add(candidate)


def _cast_target(node: onnx.NodeProto) -> int | None:
    if node.op_type != "Cast" or node.domain not in ("", "ai.onnx"):
        return None
    for attribute in node.attribute:
        if attribute.name == "to":
            return int(attribute.i)
    return None


def _remove_float16_round_trips(graph: onnx.GraphProto, float32_tensors: set[str]) -> int:
    """Replace Cast(float32, Cast(float16, x)) by x when x is a float32 tensor; return how many.

    When the round trip makes a graph output (a float32 head computes it, and ``keep_io_types``
    still casts it to float16 and back), the output Cast reads ``x`` itself instead (a no-op cast).
    """
    import onnx

    producers = {name: node for node in graph.node for name in node.output}
    graph_outputs = {value.name for value in graph.output}
    replacements: dict[str, str] = {}
    outputs_rewired = 0
    for node in graph.node:
        if _cast_target(node) != onnx.TensorProto.FLOAT:
            continue
        upstream = producers.get(node.input[0])
        if upstream is None or _cast_target(upstream) != onnx.TensorProto.FLOAT16:
            continue
        if upstream.input[0] not in float32_tensors:
            continue
        if node.output[0] in graph_outputs:
            node.input[0] = upstream.input[0]
            outputs_rewired += 1
        else:
            replacements[node.output[0]] = upstream.input[0]
    if not replacements and not outputs_rewired:
        return 0
    for node in iterate_nodes(graph):  # subgraphs may read outer-scope tensors by name
        for index, name in enumerate(node.input):
            if name in replacements:
                node.input[index] = replacements[name]
    removed_outputs = set(replacements)
    kept = [node for node in graph.node if not (node.output and node.output[0] in removed_outputs)]
    # Drop float16 casts nobody reads any more (subgraph reads included).
    still_read = {name for node in kept for name in node.input} | graph_outputs
    for node in kept:
        for attribute in node.attribute:
            subgraphs = [attribute.g] if attribute.HasField("g") else list(attribute.graphs)
            for subgraph in subgraphs:
                still_read.update(name for inner in iterate_nodes(subgraph) for name in inner.input)
    kept = [
        node
        for node in kept
        if not (_cast_target(node) == onnx.TensorProto.FLOAT16 and node.output[0] not in still_read)
    ]
    kept_copies = [onnx.NodeProto.FromString(node.SerializeToString()) for node in kept]
    del graph.node[:]
    graph.node.extend(kept_copies)
    return len(replacements) + outputs_rewired
