"""What a model's output means: ``TaskKind``, the key of every per-task evaluation and gate.

``TaskKind`` is the runtime contract's (``runtime.contract``), so the gate, the bundle
manifest and the device's decision rule name the kinds with the same strings:
"multiclass", "binary", "multilabel", "regression", "anomaly".

This module must not import tensorflow, keras or onnx.
"""

from __future__ import annotations

from pipeline.errors import UsageError
from runtime.contract import TaskKind

__all__ = ["TaskKind", "parse_task_kind"]


def parse_task_kind(kind: TaskKind | str) -> TaskKind:
    """``kind`` as a ``TaskKind``; unknown values raise ``UsageError`` listing the known ones."""
    try:
        return TaskKind(kind)
    except ValueError:
        raise UsageError(
            f"unknown task kind {kind!r}",
            expected=f"one of {[member.value for member in TaskKind]}",
            fix="use the task kind recorded in the scenario or the bundle manifest",
        ) from None
