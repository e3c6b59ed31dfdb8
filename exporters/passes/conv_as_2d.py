"""Pass: run a 1-D convolution stack as 2-D convolutions of height 1 (``conv1d-as-2d``).

ONNX Runtime's fastest x86 fp32 convolutions are its NCHWc kernels (direct convolution on
channel blocks of 8, no im2col), which its ``ORT_ENABLE_ALL`` layout transformer applies to
2-D ``Conv``/``MaxPool``/``AveragePool`` only — and it keeps a chain of them in the blocked
layout only while nothing 3-D sits between them. This pass lifts every 1-D Conv/MaxPool/
AveragePool to 2-D (kernel ``(1, k)``, weight ``(F, C, 1, k)``), moves element-wise
activations between them onto the 4-D tensors, and removes the Squeeze/Unsqueeze pairs that
then meet, so the whole stack becomes one NCHWc region with a single reorder at its end.

It is the opposite of ``conv1d-native`` and is chosen per model by measurement
(``exporters.optimization.conv_layout.choose_conv_layout``): the int8 kernels prefer the 1-D form.
The saved model stays standard ONNX; the blocked layout exists only inside the session.
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
    producers,
    prune,
    rename_uses,
    set_attribute,
)

if TYPE_CHECKING:
    import onnx

ELEMENTWISE_OPS = ("Relu", "LeakyRelu", "Sigmoid", "Tanh", "Elu", "Selu", "HardSigmoid", "HardSwish", "Softplus")
_HEIGHT_AXIS = 2


def _opset(model: onnx.ModelProto) -> int:
    return next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), 1)


def _axes_node(model: onnx.ModelProto, op_type: str, source: str, output: str, name: str) -> onnx.NodeProto:
    from onnx import helper

    if _opset(model) >= 13:
        axes = add_initializer(model.graph, "height_axis", np.array([_HEIGHT_AXIS], np.int64))
        return helper.make_node(op_type, [source, axes], [output], name=name)
    return helper.make_node(op_type, [source], [output], name=name, axes=[_HEIGHT_AXIS])


def _height_axes(graph: onnx.GraphProto, node: onnx.NodeProto) -> list[int] | None:
    axes = attribute(node, "axes")
    if axes is None and len(node.input) > 1:
        value = constant(graph, node.input[1])
        axes = None if value is None else value.tolist()
    return None if axes is None else [int(axis) for axis in axes]


def _lift(model: onnx.ModelProto) -> int:
    """Every 1-D spatial op → 2-D, wrapped in Unsqueeze/Squeeze on the height axis."""
    graph, lifted = model.graph, 0
    for node in list(graph.node):
        kernel = attribute(node, "kernel_shape")
        if node.op_type == "Conv":
            weight = constant(graph, node.input[1])
            if weight is None or weight.ndim != 3:
                continue
            node.input[1] = add_initializer(graph, node.input[1] + "_2d", weight[:, :, None, :])
            kernel = kernel or [int(weight.shape[2])]
        elif node.op_type not in ("MaxPool", "AveragePool") or kernel is None or len(kernel) != 1:
            continue
        if attribute(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            continue
        set_attribute(node, "kernel_shape", [1, *kernel])
        for name in ("strides", "dilations"):
            if attribute(node, name) is not None:
                set_attribute(node, name, [1, *attribute(node, name)])
        if attribute(node, "pads") is not None:
            begin, end = attribute(node, "pads")
            set_attribute(node, "pads", [0, begin, 0, end])
        position = list(graph.node).index(node)
        entry = _axes_node(model, "Unsqueeze", node.input[0], node.input[0] + "_lifted", node.name + "_lift_in")
        node.input[0] = entry.output[0]
        lifted_output = node.output[0] + "_lifted"
        leave = _axes_node(model, "Squeeze", lifted_output, node.output[0], node.name + "_lift_out")
        node.output[0] = lifted_output
        graph.node.insert(position, entry)
        graph.node.insert(position + 2, leave)
        lifted += 1
    return lifted


def _is_height(graph: onnx.GraphProto, node: onnx.NodeProto, op_type: str) -> bool:
    return node.op_type == op_type and _height_axes(graph, node) == [_HEIGHT_AXIS]


def _sink_squeezes(graph: onnx.GraphProto) -> int:
    """Squeeze(height) → activation: run the activation on the 4-D tensor, then squeeze."""
    moved = 0
    for squeeze in [node for node in graph.node if _is_height(graph, node, "Squeeze")]:
        users = consumers(graph).get(squeeze.output[0], [])
        if len(users) != 1 or users[0].op_type not in ELEMENTWISE_OPS or squeeze.output[0] in graph_outputs(graph):
            continue
        activation = users[0]
        # x4 → Squeeze → s → act → y   becomes   x4 → act → s → Squeeze → y
        squeezed_input, activation_output = squeeze.input[0], activation.output[0]
        activation.input[0], activation.output[0] = squeezed_input, squeeze.output[0]
        squeeze.input[0], squeeze.output[0] = activation.output[0], activation_output
        graph.node.remove(squeeze)
        graph.node.insert(list(graph.node).index(activation) + 1, squeeze)
        moved += 1
    return moved


def _unsqueezes_with_producers(graph: onnx.GraphProto):
    """(Unsqueeze on the height axis, the node producing its input) for every such Unsqueeze."""
    made_by = producers(graph)
    for unsqueeze in [node for node in graph.node if _is_height(graph, node, "Unsqueeze")]:
        if unsqueeze.input[0] in made_by:
            yield unsqueeze, made_by[unsqueeze.input[0]]


def _cancel_pairs(graph: onnx.GraphProto) -> int:
    """Squeeze(height) → Unsqueeze(height): the Unsqueeze's readers read the 4-D tensor."""
    cancelled = 0
    for unsqueeze, producer in list(_unsqueezes_with_producers(graph)):
        if not _is_height(graph, producer, "Squeeze") or unsqueeze.output[0] in graph_outputs(graph):
            continue
        rename_uses(graph, unsqueeze.output[0], producer.input[0])
        graph.node.remove(unsqueeze)
        if not consumers(graph).get(producer.output[0]) and producer.output[0] not in graph_outputs(graph):
            graph.node.remove(producer)
        cancelled += 1
    return cancelled


def _merge_entry_reshapes(graph: onnx.GraphProto) -> int:
    """Reshape to a constant 3-D shape → Unsqueeze(height): one Reshape to the 4-D shape."""
    merged = 0
    for unsqueeze, producer in list(_unsqueezes_with_producers(graph)):
        if producer.op_type != "Reshape":
            continue
        target = constant(graph, producer.input[1])
        users = consumers(graph).get(producer.output[0], [])
        if target is None or target.shape != (3,) or np.any(target == 0) or len(users) != 1:
            continue
        producer.input[1] = add_initializer(graph, producer.input[1] + "_4d",
                                            np.array([target[0], target[1], 1, target[2]], np.int64))
        producer.output[0] = unsqueeze.output[0]
        graph.node.remove(unsqueeze)
        merged += 1
    return merged


def conv1d_as_2d(model: onnx.ModelProto) -> int:
    """Lift the 1-D stack; return how many spatial ops were lifted (0: nothing to do)."""
    from exporters.passes.cancel_transposes import cancel_transposes

    lifted = _lift(model)
    if lifted:
        while _sink_squeezes(model.graph) + _cancel_pairs(model.graph):
            pass
        _merge_entry_reshapes(model.graph)
        cancel_transposes(model)  # a final Squeeze feeding the flatten Reshape goes
    prune(model)
    return lifted
