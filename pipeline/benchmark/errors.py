"""Typed benchmark errors: usage errors exit 2 from the CLI, failures exit 1."""

from __future__ import annotations

from pipeline.errors import UsageError
from runtime.errors import EdgemedError


class BenchmarkError(EdgemedError):
    """A measurement could not be made (a worker crashed, a peer could not convert)."""


class ModelNotFoundError(UsageError):
    """A bundle or model path given to the benchmark does not exist."""


class MultiInputModelError(UsageError):
    """The harness times single-input models; a model with several named inputs cannot be benchmarked yet."""


class NoVariantsError(UsageError):
    """A scenario has no ONNX variants to measure yet."""


class ProviderNotInstalledError(UsageError):
    """An execution provider was requested explicitly but is not installed."""


class BatchSizeError(UsageError):
    """A batch size the model cannot take (fixed batch axis, or not positive)."""


class TimingSettingsError(UsageError):
    """Timing settings that cannot measure anything (no rounds, empty windows, no time budget)."""
