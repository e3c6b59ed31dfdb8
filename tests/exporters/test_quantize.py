"""fp16 and int8 variants: IO types, quantization ops, agreement with fp32, errors, atomicity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import numpy_helper

from exporters.errors import QuantizationError
from exporters.quantization import (
    CalibrationMethod,
    QuantizationConfig,
    convert_fp16,
    parse_calibration_method,
    quantize_int8_dynamic,
    quantize_int8_static,
)
from exporters.quantization import fp16 as fp16_module
from tests.exporters.toy_models import ModelZoo, Splits

INT8_AGREEMENT = 0.9  # minimum fraction of test samples whose class matches fp32


def _run(path: Path, inputs: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": inputs})[0]


def _op_types(path: Path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


def _agreement(reference: np.ndarray, candidate: np.ndarray) -> float:
    return float(np.mean(reference.argmax(axis=1) == candidate.argmax(axis=1)))


def _split_for(family: str, tabular: Splits, signals: Splits) -> Splits:
    return tabular if family == "mlp" else signals


# ----------------------------------------------------------------------------- fp16


@pytest.mark.parametrize("family", ["mlp", "conv1d_zscore", "gru", "lstm", "attention"])
def test_fp16_keeps_float32_io_and_stays_close_to_fp32(zoo: ModelZoo, family: str, tmp_path: Path) -> None:
    source, destination = zoo.onnx_path(family), tmp_path / "fp16.onnx"
    test_x = zoo.inputs(family)

    convert_fp16(source, destination)

    session = onnxruntime.InferenceSession(str(destination), providers=["CPUExecutionProvider"])
    assert [value.type for value in session.get_inputs()] == ["tensor(float)"]
    assert [value.type for value in session.get_outputs()] == ["tensor(float)"]
    assert session.get_inputs()[0].shape[0] == "batch"
    model = onnx.load(str(destination))
    assert any(tensor.data_type == onnx.TensorProto.FLOAT16 for tensor in model.graph.initializer)
    fp32, fp16 = _run(source, test_x), _run(destination, test_x)
    assert np.max(np.abs(fp32 - fp16)) <= 1e-2
    assert _agreement(fp32, fp16) == 1.0


def test_fp16_keeps_input_standardization_in_float32(zoo: ModelZoo, tmp_path: Path) -> None:
    # Features offset by up to 500: in float16, x − mean would keep only a few digits.
    destination = tmp_path / "fp16.onnx"
    convert_fp16(zoo.onnx_path("mlp"), destination)

    model = onnx.load(str(destination))
    readers_of_input = [node for node in model.graph.node if "input" in node.input]
    assert readers_of_input and all(node.op_type != "Cast" for node in readers_of_input)
    first_weighted = next(node for node in model.graph.node if node.op_type == "MatMul")
    producers = {output: node for node in model.graph.node for output in node.output}
    assert producers[first_weighted.input[0]].op_type == "Cast"  # float16 starts at the first MatMul


# ----------------------------------------------------------------------------- int8 dynamic


@pytest.mark.parametrize(
    ("family", "integer_ops"),
    [("mlp", {"DynamicQuantizeLinear", "MatMulInteger"}), ("conv1d_zscore", {"DynamicQuantizeLinear", "ConvInteger"})],
)
def test_int8_dynamic_quantizes_and_agrees_with_fp32(
    zoo: ModelZoo, tabular: Splits, signals: Splits, family: str, integer_ops: set[str], tmp_path: Path
) -> None:
    source, destination = zoo.onnx_path(family), tmp_path / "dynamic.onnx"
    test_x = _split_for(family, tabular, signals).test_x

    quantize_int8_dynamic(source, destination)

    assert integer_ops <= _op_types(destination)
    assert _agreement(_run(source, test_x), _run(destination, test_x)) >= INT8_AGREEMENT


def _int8_weight_range(path: Path) -> tuple[int, int]:
    """The smallest and largest value of the model's int8 initializers (its quantized weights)."""
    values = [numpy_helper.to_array(tensor) for tensor in onnx.load(str(path)).graph.initializer
              if tensor.data_type == onnx.TensorProto.INT8]
    assert values, "no int8 weights"
    return min(int(value.min()) for value in values), max(int(value.max()) for value in values)


@pytest.mark.parametrize("variant", ["dynamic", "static"])
def test_int8_weights_keep_to_7_bits_so_no_x86_cpu_saturates(
    zoo: ModelZoo, signals: Splits, variant: str, tmp_path: Path
) -> None:
    """u8×s8 kernels on x86 CPUs without VNNI add pairs of products in int16: 255·64·2 fits, 255·127·2 does not.
    Checked on the graph edgemed writes, not on a kernel: the same on every machine that runs the tests."""
    source, destination = zoo.onnx_path("conv1d_zscore"), tmp_path / f"{variant}.onnx"
    if variant == "dynamic":
        quantize_int8_dynamic(source, destination)
    else:
        quantize_int8_static(source, destination, signals.calibration_x, QuantizationConfig())

    low, high = _int8_weight_range(destination)
    assert low >= -64 and high <= 64 and high - low > 64  # ORT's 7-bit range (±64), and used
    assert 255 * max(-low, high) * 2 <= np.iinfo(np.int16).max  # a pair of u8×s8 products fits in int16


# ----------------------------------------------------------------------------- int8 static


@pytest.fixture(scope="module")
def static_mlp_variants(
    zoo: ModelZoo, tabular: Splits, tmp_path_factory: pytest.TempPathFactory
) -> dict[CalibrationMethod, tuple[Path, list[tuple[int, int]]]]:
    """The MLP quantized with each calibration method, with the progress calls each made."""
    folder = tmp_path_factory.mktemp("static")
    variants = {}
    for method in CalibrationMethod:
        calls: list[tuple[int, int]] = []
        destination = folder / f"mlp.{method}.onnx"
        quantize_int8_static(
            zoo.onnx_path("mlp"),
            destination,
            tabular.calibration_x,
            QuantizationConfig(calibration_method=method),
            progress=lambda done, total, calls=calls: calls.append((done, total)),
        )
        variants[method] = (destination, calls)
    return variants


@pytest.mark.parametrize("method", list(CalibrationMethod))
def test_int8_static_each_calibration_method_quantizes_and_agrees_with_fp32(
    zoo: ModelZoo,
    tabular: Splits,
    static_mlp_variants: dict[CalibrationMethod, tuple[Path, list[tuple[int, int]]]],
    method: CalibrationMethod,
) -> None:
    destination, progress_calls = static_mlp_variants[method]

    assert {"QuantizeLinear", "DequantizeLinear"} <= _op_types(destination)
    fp32, int8 = _run(zoo.onnx_path("mlp"), tabular.test_x), _run(destination, tabular.test_x)
    assert _agreement(fp32, int8) >= INT8_AGREEMENT
    # 200 calibration samples → 192 used (whole batches of 32), reported batch by batch.
    assert progress_calls == [(done, 192) for done in range(32, 193, 32)]


def test_entropy_calibration_really_differs_from_minmax(
    static_mlp_variants: dict[CalibrationMethod, tuple[Path, list[tuple[int, int]]]],
) -> None:
    # onnxruntime's quantize_static defaults make "entropy" identical to MinMax (one candidate
    # threshold); the exporter calibrates with a finer histogram so the KL search can clip.
    def activation_scales(path: Path) -> list[float]:
        model = onnx.load(str(path))
        initializers = {tensor.name: numpy_helper.to_array(tensor) for tensor in model.graph.initializer}
        return [
            float(initializers[node.input[1]])
            for node in model.graph.node
            if node.op_type == "QuantizeLinear" and initializers[node.input[1]].size == 1
        ]

    minmax = activation_scales(static_mlp_variants[CalibrationMethod.MINMAX][0])
    entropy = activation_scales(static_mlp_variants[CalibrationMethod.ENTROPY][0])
    assert len(minmax) == len(entropy)
    assert any(entropy_scale < minmax_scale * 0.99 for entropy_scale, minmax_scale in zip(entropy, minmax))


def test_int8_static_conv_with_zscore_agrees_with_fp32(zoo: ModelZoo, signals: Splits, tmp_path: Path) -> None:
    destination = tmp_path / "static.onnx"

    quantize_int8_static(zoo.onnx_path("conv1d_zscore"), destination, signals.calibration_x, QuantizationConfig())

    assert {"QuantizeLinear", "DequantizeLinear"} <= _op_types(destination)
    fp32, int8 = _run(zoo.onnx_path("conv1d_zscore"), signals.test_x), _run(destination, signals.test_x)
    assert _agreement(fp32, int8) >= INT8_AGREEMENT


def test_static_quantization_survives_failed_symbolic_shape_inference(
    zoo: ModelZoo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # onnxruntime's symbolic shape inference gives up on MultiHeadAttention's reshape chains and
    # dumps sym_shape_infer_temp.onnx into the working directory; the exporter falls back to ONNX
    # shape inference and removes the dump.
    monkeypatch.chdir(tmp_path)
    inputs = zoo.inputs("attention")

    quantize_int8_static(zoo.onnx_path("attention"), tmp_path / "attention.int8.onnx", inputs, QuantizationConfig())

    assert {"QuantizeLinear", "DequantizeLinear"} <= _op_types(tmp_path / "attention.int8.onnx")
    assert [path.name for path in tmp_path.iterdir()] == ["attention.int8.onnx"]


@pytest.mark.parametrize("batches", [16, 17])
def test_minmax_calibration_uses_every_batch(zoo: ModelZoo, tabular: Splits, tmp_path: Path, batches: int) -> None:
    # Regression: with onnxruntime's CalibMaxIntermediateOutputs=16, 16 batches failed with
    # "No data is collected" and 17 batches calibrated on the last batch only.
    samples = np.resize(tabular.calibration_x, (batches * 32, tabular.calibration_x.shape[1]))
    destination = tmp_path / f"static-{batches}.onnx"
    calls: list[tuple[int, int]] = []
    quantize_int8_static(
        zoo.onnx_path("mlp"),
        destination,
        samples,
        QuantizationConfig(calibration_samples=len(samples)),
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls[-1] == (len(samples), len(samples))
    fp32, int8 = _run(zoo.onnx_path("mlp"), tabular.test_x), _run(destination, tabular.test_x)
    assert _agreement(fp32, int8) >= INT8_AGREEMENT


def test_calibration_samples_are_capped(zoo: ModelZoo, tabular: Splits, tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    quantize_int8_static(
        zoo.onnx_path("mlp"),
        tmp_path / "capped.onnx",
        tabular.calibration_x,
        QuantizationConfig(calibration_samples=64),
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(32, 64), (64, 64)]


def test_calibration_inputs_of_the_wrong_shape_are_rejected(zoo: ModelZoo, signals: Splits, tmp_path: Path) -> None:
    with pytest.raises(QuantizationError, match=r"the model expects \(16,\)"):
        quantize_int8_static(zoo.onnx_path("mlp"), tmp_path / "x.onnx", signals.calibration_x, QuantizationConfig())
    assert list(tmp_path.iterdir()) == []


def test_non_finite_calibration_inputs_are_rejected(zoo: ModelZoo, tabular: Splits, tmp_path: Path) -> None:
    calibration = tabular.calibration_x.copy()
    calibration[0, 0] = np.inf
    with pytest.raises(QuantizationError, match="NaN or inf"):
        quantize_int8_static(zoo.onnx_path("mlp"), tmp_path / "x.onnx", calibration, QuantizationConfig())


# ----------------------------------------------------------------------------- failures and atomicity


@pytest.mark.parametrize("variant", ["fp16", "dynamic", "static"])
def test_failed_variant_leaves_existing_destination_and_no_temporary_files(
    tabular: Splits, tmp_path: Path, variant: str
) -> None:
    source = tmp_path / "corrupt.onnx"
    source.write_bytes(b"\x08\x07not an onnx model\xff\xff")
    destination = tmp_path / "variant.onnx"
    destination.write_bytes(b"previous variant")
    convert = {
        "fp16": lambda: convert_fp16(source, destination),
        "dynamic": lambda: quantize_int8_dynamic(source, destination),
        "static": lambda: quantize_int8_static(source, destination, tabular.calibration_x, QuantizationConfig()),
    }[variant]

    with pytest.raises(QuantizationError) as raised:
        convert()

    assert raised.value.fix  # every error says how to fix it
    assert destination.read_bytes() == b"previous variant"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["corrupt.onnx", "variant.onnx"]


@pytest.mark.parametrize(
    "tooling_error",
    [AssertionError("rank mismatch"), onnx.shape_inference.InferenceError("[ShapeInferenceError] bad"), KeyError("x")],
)
def test_a_tooling_failure_becomes_a_quantization_error(
    zoo: ModelZoo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tooling_error: Exception
) -> None:
    # ORT's and ONNX's tooling raise plain Python and C++ exception types; each is re-raised typed.
    def failing(model: object) -> None:
        raise tooling_error

    monkeypatch.setattr(fp16_module, "convert_to_float16_keeping_float32_input_path", failing)
    with pytest.raises(QuantizationError, match=r"fp16 conversion of mlp\.onnx failed") as raised:
        convert_fp16(zoo.onnx_path("mlp"), tmp_path / "fp16.onnx")

    assert raised.value.__cause__ is tooling_error
    assert list(tmp_path.iterdir()) == []


def test_missing_source_is_a_quantization_error(tmp_path: Path) -> None:
    with pytest.raises(QuantizationError, match="does not exist"):
        quantize_int8_dynamic(tmp_path / "absent.onnx", tmp_path / "out.onnx")


# ----------------------------------------------------------------------------- calibration method names


@pytest.mark.parametrize(
    ("name", "method"),
    [
        ("minmax", CalibrationMethod.MINMAX),
        (" Entropy ", CalibrationMethod.ENTROPY),
        ("PERCENTILE", CalibrationMethod.PERCENTILE),
    ],
)
def test_parse_calibration_method(name: str, method: CalibrationMethod) -> None:
    assert parse_calibration_method(name) is method


def test_unknown_calibration_method_lists_the_valid_ones() -> None:
    with pytest.raises(QuantizationError) as raised:
        parse_calibration_method("kl-divergence")

    assert isinstance(raised.value, ValueError)  # argument parsers can catch it as a ValueError
    assert "unknown calibration method 'kl-divergence'" in str(raised.value)
    assert "minmax, entropy, percentile" in str(raised.value)
