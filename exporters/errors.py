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


class HeadError(ExportError):
    """An in-graph head (softmax, sigmoid, reconstruction error) cannot be appended to a model."""


class TaskDetectionError(ExportError, ValueError):
    """What a model predicts cannot be told from the model and its labels: the user must say (``--task``).

    Also a ``ValueError`` so command-line parsers treat it as a usage error."""


class MixedOutputKindsError(TaskDetectionError):
    """A model's outputs are of different task kinds (e.g. a multiclass head beside a regression head)."""
