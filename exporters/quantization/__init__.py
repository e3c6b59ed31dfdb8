"""Reduced-precision variants of an fp32 ONNX model: fp16, int8 dynamic, int8 static (QDQ).

Split the way ONNX Runtime's own ``onnxruntime.quantization`` is, one job a module:

* ``settings``: the typed settings (``QuantizationConfig``, ``CalibrationMethod``, ...);
* ``calibration``: the calibration data reader, subset, entropy ranges, ORT's options;
* ``preprocess``: ORT's ``quant_pre_process`` (with its symbolic-inference fallback);
* ``fp16`` (+ ``fp16_graph``), ``dynamic``, ``static``: one module per variant;
* ``tuning``: int8 static settings chosen per model by measurement;
* ``checks``: what every written variant must pass (it loads in ONNX Runtime).

Choices, for ONNX Runtime on x86-64 CPUs: fp16 keeps float32 graph inputs, outputs and
input preprocessing; int8 dynamic quantizes weights to signed int8 per channel and
activations on the fly; int8 static defaults to QDQ with signed int8 per-channel weights
and unsigned int8 activations (U8S8, what ORT's x86 kernels are built for), and
``choose_quantization`` picks the settings per model. Both keep weights to 7 bits
(``reduce_range``) by default: on x86 CPUs without VNNI (AVX2, SSE4), ORT's u8×s8 kernels
sum pairs of products in saturating int16, which full-range 8-bit weights overflow — a
variant validated on a VNNI machine (this one) then answers differently on the device.
Measured by running ``tests/exporters`` under QEMU as a Haswell (AVX2, no AVX-512/VNNI):
with full-range weights a two-input model's int8 probabilities were 0.45 from fp32 (0.15
allowed, and within it natively) and GRU/LSTM int8 variants 0.03–0.05 (0.02 allowed);
``edgemed cpu-check`` on ecg-pvc's int8-dynamic variant changed 6 314 of 21 835 beat
events and 3 decisions on that CPU. The input
preprocessing nodes are never quantized nor converted to float16. ``exporters.variants``
is the one entry point that makes a variant by name.
"""

from exporters.quantization.dynamic import quantize_int8_dynamic
from exporters.quantization.fp16 import convert_fp16
from exporters.quantization.settings import (
    ActivationType,
    CalibrationMethod,
    QuantizationConfig,
    QuantizationFormat,
    UnknownCalibrationMethodError,
    parse_calibration_method,
)
from exporters.quantization.static import (
    prepare_for_static_quantization,
    quantizable_node_names,
    quantize_int8_static,
)
from exporters.quantization.tuning import AccuracyCheck, AccuracyVerdict, TuningConfig, choose_quantization

__all__ = [
    "AccuracyCheck",
    "AccuracyVerdict",
    "ActivationType",
    "CalibrationMethod",
    "QuantizationConfig",
    "QuantizationFormat",
    "TuningConfig",
    "UnknownCalibrationMethodError",
    "choose_quantization",
    "convert_fp16",
    "parse_calibration_method",
    "prepare_for_static_quantization",
    "quantizable_node_names",
    "quantize_int8_dynamic",
    "quantize_int8_static",
]
