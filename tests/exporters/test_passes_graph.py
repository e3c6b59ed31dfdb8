"""Each graph pass removes the pattern it targets and keeps the outputs (max |Δ| ≤ 1e-4)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from exporters.passes import PassName, run_passes

TOLERANCE = 1e-4
RANDOM = np.random.default_rng(3)


def _constant(name: str, value) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def _model(nodes, inputs, outputs, initializers) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "test", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _io(name: str, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _run(model: onnx.ModelProto, inputs: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: inputs})[0]


def _apply(model: onnx.ModelProto, name: PassName, inputs: np.ndarray) -> tuple[onnx.ModelProto, int]:
    before = _run(model, inputs)
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    count = run_passes(rewritten, [name])[name.value]
    onnx.checker.check_model(rewritten, full_check=True)
    after = _run(rewritten, inputs)
    assert after.shape == before.shape
    assert float(np.max(np.abs(after - before))) <= TOLERANCE
    return rewritten, count


def _ops(model: onnx.ModelProto) -> list[str]:
    return [node.op_type for node in model.graph.node]


def _weights(*shape: int) -> np.ndarray:
    return RANDOM.normal(size=shape).astype(np.float32)


def test_conv1d_native_removes_unsqueeze_squeeze_and_2d_kernels() -> None:
    nodes = [
        helper.make_node("Unsqueeze", ["x", "axis2"], ["x4"]),
        helper.make_node("Conv", ["x4", "w"], ["c4"], kernel_shape=[1, 3], pads=[0, 1, 0, 1], strides=[1, 1]),
        helper.make_node("Squeeze", ["c4", "axis2"], ["c3"]),
        helper.make_node("Add", ["c3", "b"], ["biased"]),
        helper.make_node("Relu", ["biased"], ["r3"]),
        helper.make_node("Unsqueeze", ["r3", "axis2"], ["r4"]),
        helper.make_node("MaxPool", ["r4"], ["p4"], kernel_shape=[1, 2], strides=[1, 2]),
        helper.make_node("Relu", ["p4"], ["q4"]),
        helper.make_node("Squeeze", ["q4", "axis2"], ["y"]),
    ]
    initializers = [_constant("axis2", np.array([2], np.int64)), _constant("w", _weights(4, 3, 1, 3)),
                    _constant("b", _weights(1, 4, 1))]
    model = _model(nodes, [_io("x", ["n", 3, 16])], [_io("y", ["n", 4, 8])], initializers)
    rewritten, count = _apply(model, PassName.CONV1D_NATIVE, _weights(5, 3, 16))
    assert count == 2
    assert "Unsqueeze" not in _ops(rewritten) and "Squeeze" not in _ops(rewritten)
    conv = next(node for node in rewritten.graph.node if node.op_type == "Conv")
    weight = next(init for init in rewritten.graph.initializer if init.name == conv.input[1])
    assert list(weight.dims) == [4, 3, 3]


def test_conv1d_native_converts_reshape_entry_and_leaves_other_regions_alone() -> None:
    nodes = [
        helper.make_node("Reshape", ["x", "shape4"], ["x4"]),
        helper.make_node("Conv", ["x4", "w"], ["c4"], kernel_shape=[1, 5], pads=[0, 2, 0, 2]),
        helper.make_node("Squeeze", ["c4", "axis2"], ["y"]),
        helper.make_node("Conv", ["x4", "w"], ["z"], kernel_shape=[1, 5], pads=[0, 2, 0, 2]),
    ]
    initializers = [_constant("shape4", np.array([-1, 1, 1, 20], np.int64)),
                    _constant("axis2", np.array([2], np.int64)), _constant("w", _weights(2, 1, 1, 5))]
    outputs = [_io("y", ["n", 2, 20]), _io("z", ["n", 2, 1, 20])]
    model = _model(nodes, [_io("x", ["n", 20, 1])], outputs, initializers)
    _, count = _apply(model, PassName.CONV1D_NATIVE, _weights(3, 20, 1))
    assert count == 0  # x4 also feeds a graph output that must stay 4-D


def test_fold_bias_into_conv_and_matmul_into_gemm() -> None:
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3], pads=[1, 1]),
        helper.make_node("Add", ["c", "conv_bias"], ["cb"]),
        helper.make_node("Flatten", ["cb"], ["f"]),
        helper.make_node("MatMul", ["f", "dense"], ["m"]),
        helper.make_node("Add", ["dense_bias", "m"], ["y"]),
    ]
    initializers = [_constant("w", _weights(4, 2, 3)), _constant("conv_bias", _weights(1, 4, 1)),
                    _constant("dense", _weights(32, 5)), _constant("dense_bias", _weights(5))]
    model = _model(nodes, [_io("x", ["n", 2, 8])], [_io("y", ["n", 5])], initializers)
    rewritten, count = _apply(model, PassName.FOLD_BIAS, _weights(6, 2, 8))
    assert count == 2 and "Add" not in _ops(rewritten) and "MatMul" not in _ops(rewritten)
    assert _ops(rewritten) == ["Conv", "Flatten", "Gemm"]
    assert len(rewritten.graph.node[0].input) == 3


def test_fold_bias_keeps_adds_that_are_not_per_channel() -> None:
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3], pads=[1, 1]),
             helper.make_node("Add", ["c", "not_a_bias"], ["y"])]
    initializers = [_constant("w", _weights(4, 2, 3)), _constant("not_a_bias", _weights(1, 4, 8))]
    model = _model(nodes, [_io("x", ["n", 2, 8])], [_io("y", ["n", 4, 8])], initializers)
    _, count = _apply(model, PassName.FOLD_BIAS, _weights(2, 2, 8))
    assert count == 0


@pytest.mark.parametrize("transposed", [False, True])
def test_fold_batchnorm_into_conv_and_gemm(transposed: bool) -> None:
    def batchnorm(prefix: str, channels: int) -> tuple[list[onnx.TensorProto], list[str]]:
        values = [_weights(channels), _weights(channels), _weights(channels), np.abs(_weights(channels)) + 0.5]
        names = [f"{prefix}_{kind}" for kind in ("gamma", "beta", "mean", "variance")]
        return [_constant(name, value) for name, value in zip(names, values, strict=True)], names

    conv_stats, conv_names = batchnorm("conv", 4)
    gemm_stats, gemm_names = batchnorm("gemm", 3)
    dense = _weights(3, 32) if transposed else _weights(32, 3)
    nodes = [
        helper.make_node("Conv", ["x", "w", "cb"], ["c"], kernel_shape=[3], pads=[1, 1]),
        helper.make_node("BatchNormalization", ["c", *conv_names], ["n1"], epsilon=1e-3),
        helper.make_node("Flatten", ["n1"], ["f"]),
        helper.make_node("Gemm", ["f", "dense", "db"], ["g"], transB=int(transposed)),
        helper.make_node("BatchNormalization", ["g", *gemm_names], ["y"]),
    ]
    initializers = [_constant("w", _weights(4, 2, 3)), _constant("cb", _weights(4)), _constant("dense", dense),
                    _constant("db", _weights(3)), *conv_stats, *gemm_stats]
    model = _model(nodes, [_io("x", ["n", 2, 8])], [_io("y", ["n", 3])], initializers)
    rewritten, count = _apply(model, PassName.FOLD_BATCHNORM, _weights(6, 2, 8))
    assert count == 2 and "BatchNormalization" not in _ops(rewritten)


def test_cancel_transposes_pairs_reshape_chains_and_flatten_into_matmul() -> None:
    nodes = [
        helper.make_node("Transpose", ["x"], ["t1"], perm=[0, 2, 1]),
        helper.make_node("Transpose", ["t1"], ["t2"], perm=[0, 2, 1]),
        helper.make_node("Relu", ["t2"], ["r"]),
        helper.make_node("Transpose", ["r"], ["t3"], perm=[0, 2, 1]),
        helper.make_node("Unsqueeze", ["t3", "axis"], ["u"]),
        helper.make_node("Reshape", ["u", "flat"], ["f"]),
        helper.make_node("MatMul", ["f", "dense"], ["y"]),
    ]
    initializers = [_constant("axis", np.array([1], np.int64)), _constant("flat", np.array([-1, 24], np.int64)),
                    _constant("dense", _weights(24, 5))]
    model = _model(nodes, [_io("x", ["n", 4, 6])], [_io("y", ["n", 5])], initializers)
    rewritten, count = _apply(model, PassName.CANCEL_TRANSPOSES, _weights(7, 4, 6))
    assert "Transpose" not in _ops(rewritten) and "Unsqueeze" not in _ops(rewritten)
    assert _ops(rewritten) == ["Relu", "Reshape", "MatMul"] and count == 4


def _decomposed_zscore() -> list[onnx.NodeProto]:
    """tf2onnx's 11-node z-scoring over axis 1 (moments, epsilon, reciprocal std)."""
    return [
        helper.make_node("ReduceMean", ["x"], ["mean"], axes=[1], keepdims=1),
        helper.make_node("Sub", ["x", "mean"], ["d"]),
        helper.make_node("Mul", ["d", "d"], ["sq"]),
        helper.make_node("ReduceMean", ["sq"], ["var"], axes=[1], keepdims=1),
        helper.make_node("Add", ["var", "eps"], ["ve"]),
        helper.make_node("Sqrt", ["ve"], ["sd"]),
        helper.make_node("Reciprocal", ["sd"], ["inv"]),
        helper.make_node("Mul", ["x", "inv"], ["scaled"]),
        helper.make_node("Neg", ["mean"], ["negated"]),
        helper.make_node("Mul", ["negated", "inv"], ["shift"]),
        helper.make_node("Add", ["scaled", "shift"], ["y"]),
    ]


def test_fuse_layernorm_replaces_the_decomposed_zscore() -> None:
    nodes = _decomposed_zscore()
    model = _model(nodes, [_io("x", ["n", 30, 1])], [_io("y", ["n", 30, 1])],
                   [_constant("eps", np.float32(1e-3))])
    inputs = (_weights(8, 30, 1) * 40 + 7).astype(np.float32)
    rewritten, count = _apply(model, PassName.FUSE_LAYERNORM, inputs)
    assert count == 1 and _ops(rewritten) == ["LayerNormalization"]


def test_fuse_layernorm_skips_when_other_axes_are_not_singletons() -> None:
    nodes = _decomposed_zscore()
    model = _model(nodes, [_io("x", ["n", 30, 2])], [_io("y", ["n", 30, 2])],
                   [_constant("eps", np.float32(1e-3))])
    _, count = _apply(model, PassName.FUSE_LAYERNORM, _weights(4, 30, 2))
    assert count == 0


def _conv1d_stack(flatten_consumer: str) -> onnx.ModelProto:
    """(N, 40, 1) → Reshape (N, 1, 40) → Conv(1→4) → Relu → Reshape (N, 160) → Dense."""
    dense = (helper.make_node("MatMul", ["flat", "dense_weight"], ["y"]) if flatten_consumer == "MatMul"
             else helper.make_node("Gemm", ["flat", "dense_weight", "dense_bias"], ["y"], transB=1))
    dense_weight = _weights(160, 3) if flatten_consumer == "MatMul" else _weights(3, 160)
    initializers = [_constant("to_channels_first", np.array([-1, 1, 40], np.int64)),
                    _constant("kernel", _weights(4, 1, 5)), _constant("conv_bias", _weights(4)),
                    _constant("flat_shape", np.array([-1, 160], np.int64)), _constant("dense_weight", dense_weight),
                    _constant("dense_bias", _weights(3))]
    nodes = [helper.make_node("Reshape", ["x", "to_channels_first"], ["channels_first"]),
             helper.make_node("Conv", ["channels_first", "kernel", "conv_bias"], ["conv"], pads=[2, 2]),
             helper.make_node("Relu", ["conv"], ["relu"]),
             helper.make_node("Reshape", ["relu", "flat_shape"], ["flat"]), dense]
    return _model(nodes, [_io("x", ["batch", 40, 1])], [_io("y", ["batch", 3])], initializers)


@pytest.mark.parametrize("consumer", ["MatMul", "Gemm"])
def test_channels_last_boundaries_turns_boundary_reshapes_into_transposes(consumer: str) -> None:
    model = _conv1d_stack(consumer)
    rewritten, count = _apply(model, PassName.CHANNELS_LAST, RANDOM.normal(size=(3, 40, 1)).astype(np.float32))
    assert count == 2
    assert _ops(rewritten) == ["Transpose", "Conv", "Relu", "Transpose", "Reshape", consumer]


def test_channels_last_boundaries_quantizes_to_the_same_int8_model_outputs(tmp_path) -> None:
    """The rewritten boundaries are layout-only: quantized with the same calibration, both graphs answer alike.

    (Whether ONNX Runtime then drops its own layout Transposes depends on the CPU's int8 kernels, so
    only our graph and the numbers are asserted.)"""
    import onnxruntime
    from onnxruntime.quantization import QuantType, quantize_static

    inputs = RANDOM.normal(size=(64, 40, 1)).astype(np.float32)

    class Reader:
        def __init__(self) -> None:
            self.batches = iter([{"x": inputs[start : start + 16]} for start in range(0, 64, 16)])

        def get_next(self):
            return next(self.batches, None)

    def int8_outputs(model: onnx.ModelProto, name: str) -> np.ndarray:
        source, quantized = tmp_path / f"{name}.onnx", tmp_path / f"{name}-int8.onnx"
        onnx.save(model, source)
        quantize_static(source, quantized, Reader(), per_channel=True, weight_type=QuantType.QInt8)
        session = onnxruntime.InferenceSession(str(quantized), providers=["CPUExecutionProvider"])
        return session.run(None, {"x": inputs})[0]

    model = _conv1d_stack("MatMul")
    rewritten, count = _apply(model, PassName.CHANNELS_LAST, inputs)
    assert count > 0
    before, after = int8_outputs(model, "before"), int8_outputs(rewritten, "after")
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-4 * float(np.abs(before).max()))


def test_channels_last_boundaries_leaves_multichannel_inputs_and_graph_outputs_alone() -> None:
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["y"])]
    model = _model(nodes, [_io("x", ["batch", 4, 10])], [_io("y", ["batch", 40])],
                   [_constant("shape", np.array([-1, 40], np.int64))])
    _, count = _apply(model, PassName.CHANNELS_LAST, RANDOM.normal(size=(2, 4, 10)).astype(np.float32))
    assert count == 0


def _two_conv_stack() -> onnx.ModelProto:
    """(N, 40, 1) → Reshape (N, 1, 40) → Conv(1→8) → Relu → MaxPool(2) → Conv(8→8) → Relu → flatten → MatMul."""
    initializers = [_constant("to_channels_first", np.array([-1, 1, 40], np.int64)),
                    _constant("kernel_a", _weights(8, 1, 5)), _constant("bias_a", _weights(8)),
                    _constant("kernel_b", _weights(8, 8, 3)), _constant("bias_b", _weights(8)),
                    _constant("flat_shape", np.array([-1, 160], np.int64)), _constant("dense", _weights(160, 3))]
    nodes = [helper.make_node("Reshape", ["x", "to_channels_first"], ["channels_first"]),
             helper.make_node("Conv", ["channels_first", "kernel_a", "bias_a"], ["conv_a"], pads=[2, 2]),
             helper.make_node("Relu", ["conv_a"], ["relu_a"]),
             helper.make_node("MaxPool", ["relu_a"], ["pool"], kernel_shape=[2], strides=[2]),
             helper.make_node("Conv", ["pool", "kernel_b", "bias_b"], ["conv_b"], pads=[1, 1]),
             helper.make_node("Relu", ["conv_b"], ["relu_b"]),
             helper.make_node("Reshape", ["relu_b", "flat_shape"], ["flat"]),
             helper.make_node("MatMul", ["flat", "dense"], ["y"])]
    return _model(nodes, [_io("x", ["batch", 40, 1])], [_io("y", ["batch", 3])], initializers)


def test_conv1d_as_2d_lifts_the_stack_without_leaving_squeezes_between_layers() -> None:
    inputs = RANDOM.normal(size=(3, 40, 1)).astype(np.float32)
    rewritten, count = _apply(_two_conv_stack(), PassName.CONV1D_AS_2D, inputs)

    assert count == 3  # two convolutions and the pooling
    assert _ops(rewritten) == ["Reshape", "Conv", "Relu", "MaxPool", "Conv", "Relu", "Reshape", "MatMul"]
    kernels = {node.input[1] for node in rewritten.graph.node if node.op_type == "Conv"}
    assert all(numpy_helper.to_array(item).ndim == 4 for item in rewritten.graph.initializer if item.name in kernels)
    # Our graph keeps the stack 4-D from the first Conv to the last Relu: nothing 3-D sits between the
    # layers, which is what lets a runtime keep one blocked layout. (How ONNX Runtime then lays the stack
    # out — its NCHWc reorders — depends on the CPU's vector width, so it is not asserted here.)
    inferred = onnx.shape_inference.infer_shapes(rewritten)
    ranks = {value.name: len(value.type.tensor_type.shape.dim) for value in inferred.graph.value_info}
    stack = rewritten.graph.node[1:6]
    assert [ranks[node.output[0]] for node in stack] == [4, 4, 4, 4, 4]

