"""What one row's decision is, per task kind: the typed result a row event reports and telemetry carries.

``result_for(spec, decision)`` turns a ``runtime.decide.Decision`` into the result type of the bundle's
task kind (``RESULTS``: one line per kind). Each result writes its event fields (``to_event``) and its
telemetry object (``to_telemetry``, the shapes ``runtime.telemetry.records`` checks):

* multiclass, binary: the class, its probability, every label's probability, the low-confidence flag;
* multilabel: the labels at or above their own thresholds and every label's score, by name;
* regression: each target's value and unit, by name;
* anomaly: the score, the alarm (score ≥ threshold), the threshold, and the label it means.

A row the model cannot judge (a non-finite input, an input outside the bundle's validated domain, or a non-finite
output) gets no result at all,
only a flag (``UNJUDGED_FLAGS``): never a class, a value or an alarm made up from NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from runtime.contract import AnomalyRule, OutputSpec, RegressionRule, TaskKind
from runtime.decide import ANOMALY_SCORE, Decision, decide

INPUT_NOT_FINITE = "input_not_finite"  # NaN, ±inf, or a number beyond float32 in some input of the row
OUTPUT_NOT_FINITE = "output_not_finite"  # the model gave NaN or ±inf for the row
OUT_OF_DOMAIN = "out_of_domain"  # an input outside the values the model was developed on (runtime.domain)
UNJUDGED_FLAGS = (INPUT_NOT_FINITE, OUTPUT_NOT_FINITE, OUT_OF_DOMAIN)  # a row flagged so has no result


def probability(value: float) -> float:
    """A probability for JSON: six decimals."""
    return round(float(value), 6)


def measurement(value: float) -> float:
    """A value or score for JSON: nine significant digits (every float32 reads back exactly)."""
    number = float(value)
    return float(f"{number:.9g}") if math.isfinite(number) else number


@dataclass(frozen=True)
class ClassResult:
    """Multiclass and binary: one class with its probability."""

    label: str
    probability: float  # of the decided class
    probabilities: dict[str, float]  # every label's
    low_confidence: bool = False  # multiclass: top probability under the rule's threshold

    def to_event(self) -> dict:
        return {"class": self.label, "probability": probability(self.probability),
                "probabilities": {label: probability(p) for label, p in self.probabilities.items()},
                "low_confidence": self.low_confidence}

    def to_telemetry(self) -> dict:
        return {"class": self.label, "confidence": probability(self.probability), "low_confidence": self.low_confidence}


@dataclass(frozen=True)
class LabelsResult:
    """Multilabel: every label at or above its own threshold, and each label's score."""

    labels: tuple[str, ...]  # present, in the manifest's label order (may be empty)
    scores: dict[str, float]  # probability per label

    def to_event(self) -> dict:
        return {"labels": list(self.labels), "scores": {label: probability(p) for label, p in self.scores.items()}}

    def to_telemetry(self) -> dict:
        return self.to_event()


@dataclass(frozen=True)
class ValuesResult:
    """Regression: each target's value in its unit."""

    values: dict[str, float]  # target → value
    units: dict[str, str]  # target → unit

    def to_event(self) -> dict:
        return {"values": {name: measurement(value) for name, value in self.values.items()}, "units": dict(self.units)}

    def to_telemetry(self) -> dict:
        return self.to_event()


@dataclass(frozen=True)
class AnomalyResult:
    """Anomaly: the score, and an alarm when it is at or above the threshold."""

    label: str  # the output's normal or anomalous label
    score: float
    alarm: bool
    threshold: float

    def to_event(self) -> dict:
        return {"class": self.label, "score": measurement(self.score), "alarm": self.alarm,
                "threshold": measurement(self.threshold)}

    def to_telemetry(self) -> dict:
        return {"class": self.label, "score": float(self.score), "alarm": self.alarm,
                "threshold": float(self.threshold)}


Result = ClassResult | LabelsResult | ValuesResult | AnomalyResult


def _class_result(spec: OutputSpec, decision: Decision) -> ClassResult:
    return ClassResult(decision.label, float(decision.confidence), dict(decision.scores), decision.low_confidence)


def _labels_result(spec: OutputSpec, decision: Decision) -> LabelsResult:
    return LabelsResult(tuple(decision.labels), dict(decision.scores))


def _values_result(spec: OutputSpec, decision: Decision) -> ValuesResult:
    rule: RegressionRule = spec.decision
    return ValuesResult(dict(decision.scores), dict(zip(spec.labels, rule.units, strict=True)))


def _anomaly_result(spec: OutputSpec, decision: Decision) -> AnomalyResult:
    rule: AnomalyRule = spec.decision
    score = float(decision.scores[ANOMALY_SCORE])
    return AnomalyResult(decision.label, score, decision.label == spec.labels[1], float(rule.threshold))


# The contract as data: each task kind's result type, made from its decision.
RESULTS: dict[TaskKind, Callable[[OutputSpec, Decision], Result]] = {
    TaskKind.MULTICLASS: _class_result,
    TaskKind.BINARY: _class_result,
    TaskKind.MULTILABEL: _labels_result,
    TaskKind.REGRESSION: _values_result,
    TaskKind.ANOMALY: _anomaly_result,
}


def result_for(spec: OutputSpec, decision: Decision) -> Result:
    """The typed result of one decision under ``spec``'s task kind."""
    return RESULTS[spec.task](spec, decision)


def results_for(spec: OutputSpec, outputs: np.ndarray) -> list[Result | None]:
    """One result per row of model ``outputs`` (``decide``, then ``result_for``: the row runner's path); None
    for a row with a non-finite output, which its caller flags ``OUTPUT_NOT_FINITE``."""
    answered = np.isfinite(outputs).all(axis=1)
    decisions = iter(decide(spec, outputs[answered]))
    return [result_for(spec, next(decisions)) if ok else None for ok in answered.tolist()]

