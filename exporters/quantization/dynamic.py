"""int8 dynamic variant: int8 per-channel weights (7-bit range), activations quantized on the fly.

ONNX Runtime writes DynamicQuantizeLinear → MatMulInteger / ConvInteger; no calibration data. The weights keep to
7 bits (``reduce_range``) so that the variant gives the same answers on every x86 CPU: ORT's u8×s8 kernels on CPUs
without VNNI (AVX2, SSE4) add pairs of products in saturating int16, which 8-bit weights overflow (see
``exporters.quantization``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from exporters._files import atomic_destination, load_onnx_model, scratch_directory
from exporters.errors import QuantizationError
from exporters.quantization.checks import check_loads, onnx_tooling_errors
from exporters.quantization.preprocess import onnxruntime_advice_demoted, preprocess

logger = logging.getLogger(__name__)


def quantize_int8_dynamic(source: Path, destination: Path, reduce_range: bool = True) -> None:
    """Write an int8 dynamically quantized copy of ``source`` (int8 per-channel weights; 7-bit with
    ``reduce_range``, the portable default).

    Raises:
        QuantizationError: ``source`` is missing or invalid, quantization failed, or the
            result does not load in ONNX Runtime.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source, destination = Path(source), Path(destination)
    load_onnx_model(source, QuantizationError)
    with scratch_directory(destination) as scratch, atomic_destination(destination) as temporary_path:
        preprocessed = scratch / "preprocessed.onnx"
        preprocess(source, preprocessed)  # shape inference + basic optimizations, as ORT recommends
        try:
            with onnxruntime_advice_demoted():
                quantize_dynamic(preprocessed, temporary_path, per_channel=True, reduce_range=reduce_range,
                                 weight_type=QuantType.QInt8)
        except onnx_tooling_errors() as error:
            raise QuantizationError(
                f"int8 dynamic quantization of {source.name} failed ({type(error).__name__}: {error})",
                expected="an fp32 model whose MatMul/Gemm/Conv weights are constant initializers",
                fix="ship the fp32 or fp16 variant for this model",
            ) from error
        check_loads(temporary_path, "int8 dynamic")
    logger.info("int8 dynamic variant of %s written to %s", source.name, destination)
