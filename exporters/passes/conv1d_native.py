"""Pass: turn the converters' Conv1D-as-2-D pattern into native 1-D ``Conv``/``MaxPool``.

tf2onnx lowers ``Conv1D`` to ``Unsqueeze``/``Reshape`` (insert a height axis of 1) →
2-D ``Conv`` with kernel ``(1, k)`` → ``Squeeze``, and ``MaxPooling1D`` to ``Unsqueeze`` →
2-D ``MaxPool``. Every region of 4-D tensors whose axis 2 is that inserted 1 — entered
through such an ``Unsqueeze``/``Reshape``, left through ``Squeeze(axes=[2])``, and
containing only height-trivial Conv/MaxPool/AveragePool and element-wise activations —
is rewritten on the 3-D tensors: the kernels lose their height axis and the
Unsqueeze/Squeeze pairs disappear. Regions that touch anything else are left alone.
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
    remove_identities,
    set_attribute,
)

if TYPE_CHECKING:
    import onnx

SPATIAL_OPS = ("Conv", "MaxPool", "AveragePool")
ELEMENTWISE_OPS = ("Relu", "LeakyRelu", "Sigmoid", "Tanh", "Elu", "Selu", "HardSigmoid", "HardSwish", "Softplus")


def _axes(graph: onnx.GraphProto, node: onnx.NodeProto, rank: int) -> list[int] | None:
    axes = attribute(node, "axes")
    if axes is None and len(node.input) > 1:
        value = constant(graph, node.input[1])
        axes = None if value is None else value.tolist()
    return None if axes is None else sorted(axis % rank for axis in axes)


def _entry_shape(graph: onnx.GraphProto, node: onnx.NodeProto, rank_of: dict[str, int]) -> list[int] | None:
    """For an Unsqueeze/Reshape that inserts the height axis: [] (Unsqueeze) or the 3-D Reshape shape."""
    if node.op_type == "Unsqueeze" and rank_of.get(node.input[0]) == 3 and _axes(graph, node, 4) == [2]:
        return []
    if node.op_type == "Reshape":
        shape = constant(graph, node.input[1])
        if shape is not None and shape.shape == (4,) and shape[2] == 1 and shape[3] != 0:
            return [int(shape[0]), int(shape[1]), int(shape[3])]
    return None


def _height_trivial(graph: onnx.GraphProto, node: onnx.NodeProto) -> bool:
    kernel = attribute(node, "kernel_shape")
    if node.op_type == "Conv":
        weight = constant(graph, node.input[1])
        if weight is None or weight.ndim != 4 or weight.shape[2] != 1:
            return False
        kernel = kernel or list(weight.shape[2:])
    if kernel is None or len(kernel) != 2 or kernel[0] != 1:
        return False
    strides, dilations = attribute(node, "strides", [1, 1]), attribute(node, "dilations", [1, 1])
    pads = attribute(node, "pads", [0, 0, 0, 0])
    auto_pad = attribute(node, "auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    return strides[0] == 1 and dilations[0] == 1 and pads[0] == 0 and pads[2] == 0 and auto_pad in ("NOTSET", "VALID")


def _region(graph: onnx.GraphProto, rank_of: dict[str, int]) -> tuple[set[str], dict[str, list[int]]]:
    """(4-D tensors that can become 3-D, entry node output → new Reshape shape or [])."""
    entries, tensors = {}, set()
    for node in graph.node:
        shape = _entry_shape(graph, node, rank_of)
        if shape is not None:
            entries[node.output[0]] = shape
            tensors.add(node.output[0])
        elif node.input and node.input[0] in tensors and (
            (node.op_type in SPATIAL_OPS and _height_trivial(graph, node)) or node.op_type in ELEMENTWISE_OPS
        ):
            tensors.add(node.output[0])
    used, outputs = consumers(graph), graph_outputs(graph)
    changed = True
    while changed:
        changed = False
        for tensor in list(tensors):
            fine = tensor not in outputs
            for node in used.get(tensor, []):
                squeeze = node.op_type == "Squeeze" and node.input[0] == tensor and _axes(graph, node, 4) == [2]
                inside = node.input[0] == tensor and node.output[0] in tensors and list(node.input).count(tensor) == 1
                fine &= squeeze or inside
            producer_ok = tensor in entries or any(
                node.output[0] == tensor and node.input[0] in tensors for node in graph.node
            )
            if not (fine and producer_ok):
                tensors.discard(tensor)
                changed = True
    return tensors, {name: shape for name, shape in entries.items() if name in tensors}


def _to_1d(graph: onnx.GraphProto, node: onnx.NodeProto) -> None:
    kernel = attribute(node, "kernel_shape")
    if node.op_type == "Conv":
        weight = constant(graph, node.input[1])
        node.input[1] = add_initializer(graph, node.input[1], weight[:, :, 0, :])
        kernel = kernel or list(weight.shape[2:])
    set_attribute(node, "kernel_shape", [int(kernel[1])])
    for name, default in (("strides", [1, 1]), ("dilations", [1, 1])):
        if attribute(node, name) is not None or name == "strides":
            set_attribute(node, name, [int(attribute(node, name, default)[1])])
    pads = attribute(node, "pads")
    if pads is not None:
        set_attribute(node, "pads", [int(pads[1]), int(pads[3])])


def conv1d_native(model: onnx.ModelProto) -> int:
    """Rewrite every eligible region in place; return how many Conv/pool nodes became 1-D."""
    graph = model.graph
    tensors, entries = _region(graph, ranks(model))
    converted = 0
    for node in list(graph.node):
        if node.output and node.output[0] in entries:
            if entries[node.output[0]]:
                node.input[1] = add_initializer(graph, node.input[1], np.array(entries[node.output[0]], np.int64))
            else:
                node.op_type = "Identity"
                del node.input[1:]
                del node.attribute[:]
        elif node.op_type in SPATIAL_OPS and node.output[0] in tensors:
            _to_1d(graph, node)
            converted += 1
        elif node.op_type == "Squeeze" and node.input[0] in tensors:
            node.op_type = "Identity"
            del node.input[1:]
            del node.attribute[:]
    remove_identities(graph)
    prune(model)
    return converted
