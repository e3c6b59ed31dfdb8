"""Small helpers over ONNX graphs shared by the exporters."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx

DEFAULT_DOMAINS = ("", "ai.onnx")  # both spellings of the standard ONNX operator domain
# Every node of an in-graph head (exporters.heads) is named with this prefix, so the variants can
# keep the head in float32 (fp16 block list, int8 excluded nodes) without guessing.
HEAD_NODE_PREFIX = "edgemed_head/"


def iterate_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node of ``graph``, including nodes inside Loop/Scan/If bodies (depth first)."""
    import onnx

    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from iterate_nodes(attribute.g)
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                for subgraph in attribute.graphs:
                    yield from iterate_nodes(subgraph)


def non_standard_op_types(model: onnx.ModelProto) -> list[str]:
    """Sorted ``domain.op_type`` of every node outside the default ONNX domain."""
    return sorted(
        {f"{node.domain}.{node.op_type}" for node in iterate_nodes(model.graph) if node.domain not in DEFAULT_DOMAINS}
    )


def head_node_names(graph: onnx.GraphProto) -> list[str]:
    """Names of the top-level nodes an ``exporters.heads`` head appended."""
    return [node.name for node in graph.node if node.name.startswith(HEAD_NODE_PREFIX)]


def default_opset(model: onnx.ModelProto) -> int | None:
    """The model's ai.onnx opset version, or None when it imports none."""
    for opset_import in model.opset_import:
        if opset_import.domain in DEFAULT_DOMAINS:
            return int(opset_import.version)
    return None


# Ops that carry learned weights and do the bulk of the arithmetic. What runs between the
# graph input and the first of them is the model's input preprocessing (Normalization,
# per-window z-scoring, reshapes).
WEIGHTED_OP_TYPES = frozenset(
    {"Conv", "ConvTranspose", "MatMul", "Gemm", "Einsum", "LSTM", "GRU", "RNN", "Loop", "Scan"}
)


def input_preprocessing_node_names(graph: onnx.GraphProto) -> list[str]:
    """Names of top-level nodes that depend on a graph input but run before any weighted op.

    These nodes see raw input values (large offsets, features on very different scales)
    and must stay in float32: in float16 a value of 500 has a spacing of 0.25, and a
    single per-tensor int8 scale cannot represent a feature of scale 0.01 next to one
    of scale 100. Once standardized, values are safe to reduce.
    """
    nodes = list(graph.node)
    consumers: dict[str, list[int]] = {}
    for index, node in enumerate(nodes):
        for name in node.input:
            consumers.setdefault(name, []).append(index)

    def downstream_of(names: list[str]) -> set[int]:
        reached: set[int] = set()
        pending = list(names)
        while pending:
            for index in consumers.get(pending.pop(), []):
                if index not in reached:
                    reached.add(index)
                    pending.extend(nodes[index].output)
        return reached

    initializer_names = {initializer.name for initializer in graph.initializer}
    graph_inputs = [value.name for value in graph.input if value.name not in initializer_names]
    weighted = [index for index, node in enumerate(nodes) if node.op_type in WEIGHTED_OP_TYPES]
    after_weights = downstream_of([name for index in weighted for name in nodes[index].output])
    after_weights.update(weighted)
    after_input = downstream_of(graph_inputs)
    return [
        node.name
        for index, node in enumerate(nodes)
        if index in after_input and index not in after_weights and node.name
    ]
