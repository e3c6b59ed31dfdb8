"""How int8 static quantization calibrates and writes a model: the settings and their names."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from exporters.errors import QuantizationError


class CalibrationMethod(StrEnum):
    """How static quantization derives activation ranges from calibration data."""

    MINMAX = "minmax"  # observed min/max: cheapest, sensitive to outliers
    ENTROPY = "entropy"  # KL-divergence-optimal clipping (512-bin histograms): slower
    PERCENTILE = "percentile"  # clip at a percentile of |x|: histogram per tensor, slower


class QuantizationFormat(StrEnum):
    """How quantized operators are written into the ONNX file."""

    QDQ = "qdq"  # float ops wrapped in QuantizeLinear/DequantizeLinear; ORT fuses them
    QOPERATOR = "qoperator"  # explicit QLinearConv/QLinearMatMul/QGemm nodes


class ActivationType(StrEnum):
    """Integer type of the quantized activations (weights are always signed int8)."""

    UINT8 = "uint8"  # asymmetric; the type ORT's x86 kernels are built for
    INT8 = "int8"  # symmetric; preferred by ARM kernels


@dataclass(frozen=True)
class QuantizationConfig:
    """How ``quantize_int8_static`` calibrates and quantizes."""

    # MinMax is fast and deterministic; try the others when int8 accuracy drops.
    calibration_method: CalibrationMethod = CalibrationMethod.MINMAX
    # One scale per output channel of each weight: much better accuracy for small models.
    per_channel: bool = True
    # Cap on calibration samples (spread evenly over the calibration split, rounded down to a
    # multiple of 32): entropy and percentile keep every activation of every sample in memory
    # before building histograms.
    calibration_samples: int = 512
    # Percentile of |activation| kept by PERCENTILE calibration (ORT's default).
    percentile: float = 99.999
    quant_format: QuantizationFormat = QuantizationFormat.QDQ
    activation_type: ActivationType = ActivationType.UINT8
    # 7-bit weights: no int16 saturation in u8×s8 kernels on x86 CPUs without VNNI, so the variant
    # answers alike on every CPU (full range is measured more accurate on VNNI CPUs only).
    reduce_range: bool = True
    # Nodes (names in the pre-processed graph) kept in float besides input preprocessing/Softmax.
    excluded_nodes: tuple[str, ...] = ()
    # Run the channels-last-boundaries pass first (no layout Transposes in ORT's int8 graph).
    channels_last: bool = True
    # Gemm/MatMul outputs are not re-quantized: the last layer hands float logits straight to
    # the float Softmax (one DequantizeLinear less, no rounding of the logits).
    float_linear_outputs: bool = False

    def settings_label(self) -> str:
        """Short description of the int8 settings, e.g. ``qdq u8s8 per-channel reduce-range``."""
        parts = [QuantizationFormat(self.quant_format).value,
                 "u8s8" if ActivationType(self.activation_type) is ActivationType.UINT8 else "s8s8",
                 "per-channel" if self.per_channel else "per-tensor"]
        if self.reduce_range:
            parts.append("reduce-range")
        if not self.channels_last:
            parts.append("no-channels-last")
        if self.float_linear_outputs:
            parts.append("float-linear-out")
        if self.excluded_nodes:
            parts.append(f"{len(self.excluded_nodes)} node(s) float")
        return " ".join(parts)


class UnknownCalibrationMethodError(QuantizationError, ValueError):
    """An unknown calibration method name; also a ValueError so CLI/argument parsers accept it."""


def parse_calibration_method(name: str) -> CalibrationMethod:
    """Return the calibration method called ``name`` (case and surrounding spaces ignored).

    Raises:
        UnknownCalibrationMethodError: a ``QuantizationError`` that is also a ``ValueError``,
            whose message lists the valid names.
    """
    valid_names = ", ".join(method.value for method in CalibrationMethod)
    try:
        return CalibrationMethod(str(name).strip().lower())
    except ValueError:
        raise UnknownCalibrationMethodError(
            f"unknown calibration method {name!r}",
            expected=f"one of: {valid_names}",
            fix=f"choose one of {valid_names}",
        ) from None
