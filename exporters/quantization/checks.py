"""What every variant shares: it must load in ONNX Runtime, and the errors its tooling raises."""

from __future__ import annotations

from pathlib import Path

from exporters._onnxruntime import cpu_session
from exporters.errors import QuantizationError
from runtime.session import onnxruntime_errors


def onnx_tooling_errors() -> tuple[type[BaseException], ...]:
    """Exception types ONNX Runtime's Python tooling (quantization, pre-processing, float16
    conversion) and ONNX's checker and shape inference raise on a model they cannot handle.

    Besides ``onnxruntime_errors()`` (the tooling opens sessions to calibrate): ONNX's C++
    ``ValidationError`` and ``InferenceError`` and protobuf's ``DecodeError``, which derive from
    ``Exception`` only, and the plain Python errors of the tooling's own checks — ``assert``
    statements, lookups of tensor names in dicts and lists, type checks (``TypeError``,
    ``AttributeError``), ``NotImplementedError`` for unsupported ops (a ``RuntimeError``), files it
    writes next to the model (``OSError``), an optional dependency it imports (``ImportError``),
    histogram arithmetic (``ArithmeticError``) and calibrators that hold every activation in
    memory (``MemoryError``). ORT's symbolic shape inference also raises a bare ``Exception``;
    that one call catches it itself (``exporters.quantization.preprocess``).
    """
    import onnx.checker
    import onnx.shape_inference
    from google.protobuf.message import DecodeError

    return (
        *onnxruntime_errors(),
        onnx.checker.ValidationError,
        onnx.shape_inference.InferenceError,
        DecodeError,
        ArithmeticError,
        AssertionError,
        AttributeError,
        ImportError,
        LookupError,
        MemoryError,
        OSError,
        TypeError,
    )


def check_loads(model_path: Path, variant: str) -> None:
    """The written variant must open in ONNX Runtime's CPU provider before it is moved into place."""
    try:
        cpu_session(model_path, QuantizationError)
    except QuantizationError as error:
        raise QuantizationError(
            f"the {variant} variant does not load in ONNX Runtime: {error.what}",
            expected="a variant ONNX Runtime's CPU execution provider can run",
            fix="ship the fp32 variant for this model and report the failure",
        ) from error
