"""Errors raised by scenarios, data, training, evaluation, stages and the CLI.

Usage errors (the caller asked for something that does not exist or does not
fit) subclass ``UsageError`` so the CLI can exit with status 2; every other
``EdgemedError`` is a failure and exits with status 1.
"""

from __future__ import annotations

from runtime.errors import EdgemedError


class UsageError(EdgemedError):
    """The request itself is wrong: unknown name, bad option, wrong file."""


class UnknownScenarioError(UsageError):
    """No scenario is registered under the requested name."""


class DataError(UsageError):
    """Input data has the wrong shape or dtype, or contains NaN/inf."""


class ModelLoadError(UsageError):
    """A ``.keras`` file is missing, unreadable or corrupt."""


class GateConfigError(UsageError):
    """A clinical gate threshold is not a non-negative number of percentage points."""


class GateError(EdgemedError):
    """No variant, or a required variant, passed the clinical gate."""


class StageError(EdgemedError):
    """A stage could not produce or reuse its artefact."""


class ThresholdRuleError(DataError):
    """A threshold rule cannot be met on the data it is given (no positives, too few normal samples, …)."""


class TaskKindError(UsageError):
    """What a model predicts cannot be told, or contradicts its data or the named task (``--task``)."""
