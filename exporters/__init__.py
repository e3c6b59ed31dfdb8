"""edgemed exporters: Keras → ONNX conversion, parity checks, op census, portable
optimization and reduced-precision variants (fp16, int8 dynamic, int8 static); task-kind
detection and in-graph heads (softmax/sigmoid on logits, an autoencoder's reconstruction
error). Model inputs are one array, or a mapping input name → array (``exporters.inputs``).

Dependency rule: ``exporters`` may import ``runtime`` and third-party libraries
(tensorflow, keras, tf2onnx, onnx, onnxruntime, numpy), never ``pipeline`` or
``dashboard``. TensorFlow and tf2onnx are imported lazily inside the functions that
need them, so importing this package (or ``exporters.quantization``) does not load them.
"""

from exporters.census import OpCensus, op_census
from exporters.errors import (
    ExportError,
    HeadError,
    MixedOutputKindsError,
    ParityError,
    QuantizationError,
    TaskDetectionError,
)
from exporters.heads import HeadKind, append_head
from exporters.inputs import ModelInputs
from exporters.keras_to_onnx import ExportConfig, export_keras_to_onnx
from exporters.optimization.portable import optimize_portable
from exporters.parity import ParityReport, check_keras_parity, compare_outputs
from exporters.quantization import (
    CalibrationMethod,
    QuantizationConfig,
    UnknownCalibrationMethodError,
    convert_fp16,
    parse_calibration_method,
    quantize_int8_dynamic,
    quantize_int8_static,
)
from exporters.task_detection import TaskDetection, TaskKind, detect_task
from exporters.variants import UnknownVariantError, VariantName, VariantRequest, make_variant

__all__ = [
    "CalibrationMethod",
    "ExportConfig",
    "ExportError",
    "HeadError",
    "HeadKind",
    "MixedOutputKindsError",
    "ModelInputs",
    "OpCensus",
    "ParityError",
    "ParityReport",
    "QuantizationConfig",
    "QuantizationError",
    "TaskDetection",
    "TaskDetectionError",
    "TaskKind",
    "UnknownCalibrationMethodError",
    "UnknownVariantError",
    "VariantName",
    "VariantRequest",
    "append_head",
    "check_keras_parity",
    "compare_outputs",
    "convert_fp16",
    "detect_task",
    "export_keras_to_onnx",
    "make_variant",
    "op_census",
    "optimize_portable",
    "parse_calibration_method",
    "quantize_int8_dynamic",
    "quantize_int8_static",
]
