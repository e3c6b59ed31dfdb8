"""Errors raised while converting, validating, optimizing or quantizing models."""

from __future__ import annotations

from runtime.errors import EdgemedError


class ExportError(EdgemedError):
    """Keras → ONNX conversion failed (names the layer when one is to blame)."""


class ParityError(EdgemedError):
    """An ONNX model's outputs do not match the model it was made from."""


class QuantizationError(EdgemedError):
    """A variant (fp16, int8) could not be produced."""


class TimingError(EdgemedError):
    """Latency timing was asked for with settings or models it cannot time."""
