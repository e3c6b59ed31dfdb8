"""Small editing helpers shared by the graph passes (top-level graph only)."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnx

_fresh_names = itertools.count()


def constant(graph: onnx.GraphProto, name: str) -> np.ndarray | None:
    """The value of ``name`` when it is an initializer or a ``Constant`` node's output."""
    from onnx import numpy_helper

    for initializer in graph.initializer:
        if initializer.name == name:
            return numpy_helper.to_array(initializer)
    for node in graph.node:
        if node.op_type == "Constant" and node.output and node.output[0] == name:
            for attribute in node.attribute:
                if attribute.name == "value":
                    return numpy_helper.to_array(attribute.t)
    return None


def add_initializer(graph: onnx.GraphProto, base_name: str, value: np.ndarray) -> str:
    """Add ``value`` as a new initializer with a unique name derived from ``base_name``; return the name."""
    from onnx import numpy_helper

    existing = {initializer.name for initializer in graph.initializer}
    name = f"{base_name}__pass{next(_fresh_names)}"
    while name in existing:
        name = f"{base_name}__pass{next(_fresh_names)}"
    graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
    return name


def consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    used: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            used.setdefault(name, []).append(node)
    return used


def producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {output: node for node in graph.node for output in node.output}


def graph_outputs(graph: onnx.GraphProto) -> set[str]:
    return {value.name for value in graph.output}


def attribute(node: onnx.NodeProto, name: str, default=None):
    from onnx import helper

    for item in node.attribute:
        if item.name == name:
            return helper.get_attribute_value(item)
    return default


def set_attribute(node: onnx.NodeProto, name: str, value) -> None:
    from onnx import helper

    for index, item in enumerate(node.attribute):
        if item.name == name:
            del node.attribute[index]
            break
    node.attribute.append(helper.make_attribute(name, value))


def rename_uses(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Every node input named ``old`` reads ``new`` instead."""
    for node in graph.node:
        for index, name in enumerate(node.input):
            if name == old:
                node.input[index] = new


def bypass(graph: onnx.GraphProto, node: onnx.NodeProto, source: str | None = None) -> bool:
    """Remove ``node`` whose output equals ``source`` (default: its first input); False if impossible.

    When the node's output is a graph output, the producer of ``source`` is renamed to
    write it instead (possible when ``source`` is produced by a node and used only here).
    """
    source = node.input[0] if source is None else source
    output = node.output[0]
    if output in graph_outputs(graph):
        producer = producers(graph).get(source)
        if producer is None or len(consumers(graph).get(source, [])) != 1 or source in graph_outputs(graph):
            return False
        producer.output[list(producer.output).index(source)] = output
    else:
        rename_uses(graph, output, source)
    graph.node.remove(node)
    return True


def remove_identities(graph: onnx.GraphProto) -> int:
    removed = 0
    for node in [node for node in graph.node if node.op_type == "Identity"]:
        removed += bypass(graph, node)
    return removed


def prune(model: onnx.ModelProto) -> None:
    """Drop initializers and Constant nodes nothing reads, and stale value_info."""
    graph = model.graph
    used = {name for node in graph.node for name in node.input} | graph_outputs(graph)
    for node in [node for node in graph.node if node.op_type == "Constant" and node.output[0] not in used]:
        graph.node.remove(node)
    kept = [initializer for initializer in graph.initializer if initializer.name in used]
    dropped = {initializer.name for initializer in graph.initializer} - {initializer.name for initializer in kept}
    del graph.initializer[:]
    graph.initializer.extend(kept)
    inputs_to_keep = [value for value in graph.input if value.name not in dropped]
    del graph.input[:]
    graph.input.extend(inputs_to_keep)
    del graph.value_info[:]


def ranks(model: onnx.ModelProto) -> dict[str, int]:
    """Rank of every tensor ONNX shape inference can tell."""
    return {name: len(shape) for name, shape in shapes(model).items()}


def shapes(model: onnx.ModelProto) -> dict[str, tuple[int | str, ...]]:
    """Shape of every tensor ONNX shape inference can tell (symbolic axes as strings)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    found = {}
    values = (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output)
    for value in values:
        if value.type.tensor_type.HasField("shape"):
            found[value.name] = tuple(
                dimension.dim_value if dimension.HasField("dim_value") else dimension.dim_param or "?"
                for dimension in value.type.tensor_type.shape.dim
            )
    for initializer in model.graph.initializer:
        found[initializer.name] = tuple(initializer.dims)
    return found


def replace_bias_and_absorb(graph: onnx.GraphProto, node: onnx.NodeProto, bias_name: str,
                            absorbed: onnx.NodeProto) -> None:
    """Give Conv/Gemm ``node`` the bias ``bias_name`` and let it write ``absorbed``'s output instead."""
    if len(node.input) > 2:
        node.input[2] = bias_name
    else:
        node.input.append(bias_name)
    node.output[0] = absorbed.output[0]
    graph.node.remove(absorbed)
