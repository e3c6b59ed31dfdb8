"""What a bundle's model outputs and how the device decides from it: the task kind and its rule.

One table, read by every side: ``TaskKind`` names the kind of answer, ``RULES`` the typed decision
rule each kind carries (thresholds, the rule that chose them, units). ``OutputSpec`` checks that
labels, outputs and rule fit the kind; ``runtime.decide`` applies the rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from runtime.contract.errors import invalid, show
from runtime.contract.fields import Fields, is_number


class TaskKind(StrEnum):
    """The kind of answer a model gives (and so how the device decides)."""

    MULTICLASS = "multiclass"  # softmax over ≥ 2 labels; the argmax is the decision
    BINARY = "binary"  # one sigmoid, P(positive); positive at or above an operating threshold
    MULTILABEL = "multilabel"  # independent sigmoids, one per label, each with its own threshold
    REGRESSION = "regression"  # continuous values, one per target, with units
    ANOMALY = "anomaly"  # one score; anomalous at or above a threshold set for a target false-alarm rate


def _probability(value: object) -> bool:
    return is_number(value) and 0 < value < 1


def _described(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


@dataclass(frozen=True)
class MulticlassRule:
    """Argmax over the labels; optionally flag answers whose top probability is low."""

    low_confidence_below: float | None = None  # 0 < x < 1; None: never flagged

    def __post_init__(self) -> None:
        if self.low_confidence_below is not None and not _probability(self.low_confidence_below):
            raise invalid("low_confidence_below", show(self.low_confidence_below), "null or a number in (0, 1)")

    def to_dict(self) -> dict:
        return {"low_confidence_below": self.low_confidence_below}

    @classmethod
    def from_fields(cls, fields: Fields) -> MulticlassRule:
        return cls(fields.number("low_confidence_below", optional=True))


@dataclass(frozen=True)
class BinaryRule:
    """Positive when P(positive) ≥ the operating threshold."""

    threshold: float  # 0 < threshold < 1
    chosen_by: str  # the rule that chose it, e.g. "sensitivity ≥ 0.95 on validation"

    def __post_init__(self) -> None:
        if not _probability(self.threshold):
            raise invalid("threshold", show(self.threshold), "a probability strictly between 0 and 1")
        if not _described(self.chosen_by):
            raise invalid("chosen_by", show(self.chosen_by), "the rule that chose the threshold, in words")

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "chosen_by": self.chosen_by}

    @classmethod
    def from_fields(cls, fields: Fields) -> BinaryRule:
        return cls(fields.number("threshold"), fields.text("chosen_by"))


@dataclass(frozen=True)
class MultilabelRule:
    """Each label present when its own sigmoid ≥ its threshold."""

    thresholds: tuple[float, ...]  # one per label, each in (0, 1)
    chosen_by: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "thresholds", tuple(self.thresholds))
        for index, value in enumerate(self.thresholds):
            if not _probability(value):
                raise invalid(f"thresholds[{index}]", show(value), "a probability strictly between 0 and 1")
        if not _described(self.chosen_by):
            raise invalid("chosen_by", show(self.chosen_by), "the rule that chose the thresholds, in words")

    def to_dict(self) -> dict:
        return {"thresholds": list(self.thresholds), "chosen_by": self.chosen_by}

    @classmethod
    def from_fields(cls, fields: Fields) -> MultilabelRule:
        return cls(fields.numbers("thresholds"), fields.text("chosen_by"))


@dataclass(frozen=True)
class RegressionRule:
    """Report each value in its unit (no threshold)."""

    units: tuple[str, ...]  # one per target, e.g. "ms", "bpm", "mmol/L"

    def __post_init__(self) -> None:
        object.__setattr__(self, "units", tuple(self.units))
        for index, unit in enumerate(self.units):
            if not _described(unit):
                raise invalid(f"units[{index}]", show(unit), "a unit, e.g. 'ms' or 'bpm' ('1' when unitless)")

    def to_dict(self) -> dict:
        return {"units": list(self.units)}

    @classmethod
    def from_fields(cls, fields: Fields) -> RegressionRule:
        return cls(fields.texts("units"))


@dataclass(frozen=True)
class AnomalyRule:
    """Anomalous when the score ≥ the threshold, set for a target false-alarm rate on normal data."""

    threshold: float  # any finite score
    target_false_alarm_rate: float  # 0 < rate < 1
    chosen_by: str  # e.g. "99th percentile of the validation scores of normal inputs"

    def __post_init__(self) -> None:
        if not is_number(self.threshold):
            raise invalid("threshold", show(self.threshold), "a finite number")
        if not _probability(self.target_false_alarm_rate):
            raise invalid("target_false_alarm_rate", show(self.target_false_alarm_rate), "a rate in (0, 1)")
        if not _described(self.chosen_by):
            raise invalid("chosen_by", show(self.chosen_by), "the rule that chose the threshold, in words")

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "target_false_alarm_rate": self.target_false_alarm_rate,
                "chosen_by": self.chosen_by}

    @classmethod
    def from_fields(cls, fields: Fields) -> AnomalyRule:
        return cls(fields.number("threshold"), fields.number("target_false_alarm_rate"), fields.text("chosen_by"))


DecisionRule = MulticlassRule | BinaryRule | MultilabelRule | RegressionRule | AnomalyRule

# The contract as data: each task kind's rule type.
RULES: dict[TaskKind, type[DecisionRule]] = {
    TaskKind.MULTICLASS: MulticlassRule,
    TaskKind.BINARY: BinaryRule,
    TaskKind.MULTILABEL: MultilabelRule,
    TaskKind.REGRESSION: RegressionRule,
    TaskKind.ANOMALY: AnomalyRule,
}
# Kinds with exactly one output column: a probability (binary) or a score (anomaly).
_ONE_COLUMN = frozenset({TaskKind.BINARY, TaskKind.ANOMALY})
_NO_ACTIVATION = frozenset({TaskKind.REGRESSION, TaskKind.ANOMALY})


@dataclass(frozen=True)
class OutputSpec:
    """The graph output(s), what they mean, and the rule the device decides by."""

    names: tuple[str, ...]  # graph output names; their columns are read in this order
    task: TaskKind
    labels: tuple[str, ...]  # classes; (negative, positive) for binary, (normal, anomalous) for anomaly; targets
    decision: DecisionRule  # RULES[task]
    graph_outputs_logits: bool = False  # False: the graph applies its softmax / sigmoid; True: the runtime does
    semantics: str = ""  # the output in words, for people

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "labels", tuple(self.labels))
        if self.task not in tuple(TaskKind):
            raise invalid("task", show(self.task), f"one of {', '.join(TaskKind)}")
        object.__setattr__(self, "task", TaskKind(self.task))
        if not self.names or not all(_described(name) for name in self.names) or len(set(self.names)) < len(
            self.names
        ):
            raise invalid("names", show(list(self.names)), "the distinct names of the graph outputs")
        if not all(_described(label) for label in self.labels) or len(set(self.labels)) < len(self.labels):
            raise invalid("labels", show(list(self.labels)), "distinct, non-empty labels")
        if not isinstance(self.graph_outputs_logits, bool):
            raise invalid("graph_outputs_logits", show(self.graph_outputs_logits), "true or false")
        if not isinstance(self.semantics, str):
            raise invalid("semantics", show(self.semantics), "a description in words")
        rule = RULES[self.task]
        if not isinstance(self.decision, rule):
            raise invalid("decision", f"a {type(self.decision).__name__}", f"a {rule.__name__} for a {self.task} task")
        self._check_kind()

    def _check_kind(self) -> None:
        task, labels = self.task, self.labels
        if task is TaskKind.MULTICLASS and len(labels) < 2:
            raise invalid("labels", show(list(labels)), "at least 2 labels for a multiclass task")
        if task in _ONE_COLUMN:
            if len(self.names) != 1:
                raise invalid("names", show(list(self.names)), f"exactly one output for a {task} task")
            pair = "(negative, positive)" if task is TaskKind.BINARY else "(normal, anomalous)"
            if len(labels) != 2:
                raise invalid("labels", show(list(labels)), f"exactly 2 labels {pair} for a {task} task")
        if task in (TaskKind.MULTILABEL, TaskKind.REGRESSION) and not labels:
            raise invalid("labels", "[]", f"one label per output column of a {task} task")
        if task is TaskKind.MULTILABEL and len(self.decision.thresholds) != len(labels):
            raise invalid("decision.thresholds", f"{len(self.decision.thresholds)} thresholds",
                          f"one threshold per label ({len(labels)})")
        if task is TaskKind.REGRESSION and len(self.decision.units) != len(labels):
            raise invalid("decision.units", f"{len(self.decision.units)} units", f"one unit per output ({len(labels)})")
        if task in _NO_ACTIVATION and self.graph_outputs_logits:
            raise invalid("graph_outputs_logits", "true", f"false: a {task} output has no activation to apply")

    @property
    def columns(self) -> int:
        """Columns of the model's output (all names together): 1 for binary and anomaly, else one per label."""
        return 1 if self.task in _ONE_COLUMN else len(self.labels)

    def to_dict(self) -> dict:
        return {
            "names": list(self.names),
            "task": self.task.value,
            "labels": list(self.labels),
            "graph_outputs_logits": self.graph_outputs_logits,
            "semantics": self.semantics,
            "decision": self.decision.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: object) -> OutputSpec:
        fields = data if isinstance(data, Fields) else Fields(data)
        task = fields.choice("task", TaskKind, tuple(kind.value for kind in TaskKind))
        spec = cls(
            names=fields.texts("names"),
            task=task,
            labels=fields.texts("labels"),
            decision=fields.section("decision", lambda rule: _rule(RULES[task], rule)),
            graph_outputs_logits=fields.flag("graph_outputs_logits"),
            semantics=fields.text("semantics", empty=True),
        )
        fields.done()
        return spec


def _rule(rule: type[DecisionRule], fields: Fields) -> DecisionRule:
    parsed = rule.from_fields(fields)
    fields.done()
    return parsed
