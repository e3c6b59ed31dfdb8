"""From model outputs to decisions, by the bundle's task kind: one small function per kind.

``decide(output_spec, values)`` checks the outputs' shape and hands them to ``DECIDERS[task]``,
which applies the activation when the graph outputs logits and then the kind's decision rule.
Adding a kind is a rule type in ``runtime.contract.outputs`` and a function in this table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from runtime.contract import (
    AnomalyRule,
    BinaryRule,
    MulticlassRule,
    MultilabelRule,
    OutputSpec,
    TaskKind,
    UnsupportedBundleError,
)
from runtime.errors import EdgemedError

ANOMALY_SCORE = "score"  # the key of an anomaly decision's score
# Kinds whose decision is one label with its probability: what the ECG stream's beat events report.
SINGLE_LABEL_TASKS = frozenset({TaskKind.MULTICLASS, TaskKind.BINARY})


class OutputShapeError(EdgemedError):
    """The model's outputs do not have the columns the bundle's output spec declares."""


@dataclass(frozen=True)
class Decision:
    """What the device concludes from one row of model outputs."""

    labels: tuple[str, ...]  # the class (multiclass, binary, anomaly); every label at its threshold (multilabel)
    scores: dict[str, float]  # probability per label after the activation; value per target; or {"score": s}
    confidence: float | None = None  # probability of the decided class (multiclass, binary)
    low_confidence: bool = False  # multiclass: the top probability is under the rule's threshold

    @property
    def label(self) -> str | None:
        """The decided label of a single-label kind (None when there is not exactly one)."""
        return self.labels[0] if len(self.labels) == 1 else None


def _softmax(values: np.ndarray) -> np.ndarray:
    shifted = values - values.max(axis=1, keepdims=True)
    exponentials = np.exp(shifted)
    return exponentials / exponentials.sum(axis=1, keepdims=True)


def _sigmoid(values: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * values))  # overflow-free logistic


def decide_multiclass(spec: OutputSpec, values: np.ndarray) -> list[Decision]:
    rule: MulticlassRule = spec.decision
    probabilities = _softmax(values) if spec.graph_outputs_logits else values
    best = probabilities.argmax(axis=1)
    threshold = rule.low_confidence_below
    decisions = []
    for row, index in zip(probabilities.tolist(), best.tolist(), strict=True):
        top = row[index]
        decisions.append(Decision((spec.labels[index],), dict(zip(spec.labels, row, strict=True)), top,
                                  threshold is not None and top < threshold))
    return decisions


def decide_binary(spec: OutputSpec, values: np.ndarray) -> list[Decision]:
    rule: BinaryRule = spec.decision
    positive = (_sigmoid(values) if spec.graph_outputs_logits else values)[:, 0]
    negative_label, positive_label = spec.labels
    decisions = []
    for probability in positive.tolist():
        chosen = probability >= rule.threshold
        decisions.append(Decision((positive_label if chosen else negative_label,),
                                  {negative_label: 1.0 - probability, positive_label: probability},
                                  probability if chosen else 1.0 - probability))
    return decisions


def decide_multilabel(spec: OutputSpec, values: np.ndarray) -> list[Decision]:
    rule: MultilabelRule = spec.decision
    probabilities = _sigmoid(values) if spec.graph_outputs_logits else values
    present = probabilities >= np.asarray(rule.thresholds)[None, :]
    return [
        Decision(tuple(label for label, on in zip(spec.labels, flags, strict=True) if on),
                 dict(zip(spec.labels, row, strict=True)))
        for row, flags in zip(probabilities.tolist(), present.tolist(), strict=True)
    ]


def decide_regression(spec: OutputSpec, values: np.ndarray) -> list[Decision]:
    """Each target's value, in its unit (``RegressionRule.units``); nothing is thresholded."""
    return [Decision((), dict(zip(spec.labels, row, strict=True))) for row in values.tolist()]


def decide_anomaly(spec: OutputSpec, values: np.ndarray) -> list[Decision]:
    rule: AnomalyRule = spec.decision
    normal, anomalous = spec.labels
    return [Decision((anomalous if score >= rule.threshold else normal,), {ANOMALY_SCORE: score})
            for score in values[:, 0].tolist()]


Decider = Callable[[OutputSpec, np.ndarray], list[Decision]]
DECIDERS: dict[TaskKind, Decider] = {
    TaskKind.MULTICLASS: decide_multiclass,
    TaskKind.BINARY: decide_binary,
    TaskKind.MULTILABEL: decide_multilabel,
    TaskKind.REGRESSION: decide_regression,
    TaskKind.ANOMALY: decide_anomaly,
}


def decide(spec: OutputSpec, values: np.ndarray) -> list[Decision]:
    """One decision per row of ``values`` (the model's outputs, shape (n, spec.columns))."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != spec.columns:
        raise OutputShapeError(
            f"model outputs of shape {array.shape} for a {spec.task} output with {len(spec.labels)} labels",
            expected=f"(n, {spec.columns})",
            fix="rebuild the bundle; its manifest and model disagree",
        )
    return DECIDERS[spec.task](spec, array)


@dataclass(frozen=True)
class SingleLabelColumns:
    """``decide`` for a batch of a single-label kind (multiclass, binary), as columns: the same numbers."""

    labels: tuple[str, ...]  # the output's labels
    chosen: np.ndarray  # int: index into ``labels`` of each row's decided class
    confidence: np.ndarray  # float64: the decided class's probability
    scores: np.ndarray  # float64, (rows, labels): every label's probability after the activation
    low_confidence: np.ndarray  # bool


def decide_single_label(spec: OutputSpec, values: np.ndarray) -> SingleLabelColumns:
    """What ``decide`` concludes for every row of a multiclass or binary output, without a ``Decision`` per row:
    ``Decision.label`` is ``labels[chosen]``, ``confidence``, ``scores`` (label → its column) and
    ``low_confidence`` are the columns here, computed with the same arithmetic."""
    array = np.asarray(values, dtype=np.float64)
    if spec.task not in SINGLE_LABEL_TASKS:
        raise UnsupportedBundleError(f"single-label columns for a {spec.task} output",
                                     expected=f"one of {', '.join(sorted(SINGLE_LABEL_TASKS))}",
                                     fix="use decide() for other task kinds")
    if array.ndim != 2 or array.shape[1] != spec.columns:
        raise OutputShapeError(f"model outputs of shape {array.shape} for a {spec.task} output with "
                               f"{len(spec.labels)} labels", expected=f"(n, {spec.columns})",
                               fix="rebuild the bundle; its manifest and model disagree")
    if spec.task is TaskKind.BINARY:
        positive = (_sigmoid(array) if spec.graph_outputs_logits else array)[:, 0]
        chosen = positive >= spec.decision.threshold
        scores = np.stack([1.0 - positive, positive], axis=1)
        confidence = np.where(chosen, positive, scores[:, 0])
        return SingleLabelColumns(tuple(spec.labels), chosen.astype(np.intp), confidence, scores,
                                  np.zeros(len(array), dtype=bool))
    probabilities = _softmax(array) if spec.graph_outputs_logits else array
    best = probabilities.argmax(axis=1)
    top = probabilities[np.arange(len(array)), best]
    threshold = spec.decision.low_confidence_below
    low = top < threshold if threshold is not None else np.zeros(len(array), dtype=bool)
    return SingleLabelColumns(tuple(spec.labels), best, top, probabilities, low)


def require_single_label(spec: OutputSpec, runner: str) -> None:
    """``UnsupportedBundleError`` unless ``runner`` (which reports one class per event) can run this task kind."""
    if spec.task not in SINGLE_LABEL_TASKS:
        raise UnsupportedBundleError(
            f"the {runner} reports one class and its probability per event; this bundle's task is {spec.task}",
            expected=f"a bundle whose output task is one of {', '.join(sorted(SINGLE_LABEL_TASKS))}",
            fix=f"run {spec.task} bundles on rows: cut the windows and pass an .npz with one array per input name "
            "(python -m runtime BUNDLE --input windows.npz), or call runtime.rows.predict_arrays",
        )
