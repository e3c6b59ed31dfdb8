"""Which inference events still travel as individual telemetry records next to the minute aggregates.

Every event is counted in its minute's aggregate (``runtime.telemetry.aggregates``); an event the filter keeps
is *also* sent as a schema-2 record (``runtime.runner.telemetry_record``), so a reviewer can see it on its own.
Filter version 1 (protocol.md, "What is sent per event") keeps an event when any enabled rule matches:

* ``positive`` — its class is one of ``positive_labels`` (default: every label but the bundle's first, i.e. a
  binary bundle's positive class such as ``V``; a multiclass bundle's non-reference classes); multilabel: any
  label present;
* ``low_confidence`` — the decision rule flagged it low-confidence;
* ``alarm`` — an anomaly bundle's score reached its threshold;
* ``unjudged`` — a row the model could not judge (``input_not_finite``, ``out_of_domain``, ``output_not_finite``);
* ``quality_change`` — its quality flags differ from the previous recorded event's (a flagged stretch starts or
  ends; the first event of a stream counts as a change only when it is flagged).

Only events that have a schema-2 record form are offered (classified beats and row predictions); beats the
stream could not classify are counted per flag in the aggregate instead.

Dependency rule: standard library only (this package ships to the device).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

FILTER_VERSION = 1


class FilterRule(StrEnum):
    POSITIVE = "positive"
    LOW_CONFIDENCE = "low_confidence"
    ALARM = "alarm"
    UNJUDGED = "unjudged"
    QUALITY_CHANGE = "quality_change"


ALL_RULES = tuple(FilterRule)


@dataclass(frozen=True)
class EventFilterConfig:
    """What the filter keeps (version ``FILTER_VERSION``)."""

    rules: tuple[FilterRule, ...] = ALL_RULES  # the rules that send an event on its own
    positive_labels: tuple[str, ...] | None = None  # None: every label of the bundle but the first

    def describe(self, labels: Sequence[str]) -> dict:
        """The filter as an aggregate carries it (``filter``): version, rules and the positive labels."""
        return {"version": FILTER_VERSION, "rules": [rule.value for rule in self.rules],
                "positive_labels": list(self.positives(labels))}

    def positives(self, labels: Sequence[str]) -> tuple[str, ...]:
        return tuple(self.positive_labels) if self.positive_labels is not None else tuple(labels[1:])


@dataclass
class EventFilter:
    """Stateful (the quality-change rule remembers the previous event's flags); one per stream."""

    labels: Sequence[str]  # the bundle's output labels
    config: EventFilterConfig = field(default_factory=EventFilterConfig)

    def __post_init__(self) -> None:
        rules = set(self.config.rules)
        self._positive = frozenset(self.config.positives(self.labels)) if FilterRule.POSITIVE in rules else frozenset()
        self._low_confidence = FilterRule.LOW_CONFIDENCE in rules
        self._alarm = FilterRule.ALARM in rules
        self._unjudged = FilterRule.UNJUDGED in rules
        self._quality_change = FilterRule.QUALITY_CHANGE in rules
        self._multilabel_positive = FilterRule.POSITIVE in rules
        self._previous_flags: tuple[str, ...] = ()

    def keeps(self, event) -> bool:
        """Whether ``event`` (a classified ``BeatEvent`` or a ``RowPrediction``) is sent on its own."""
        flags = event.quality_flags
        changed = flags != self._previous_flags
        self._previous_flags = flags
        if changed and self._quality_change:
            return True
        label = getattr(event, "beat_class", None)
        if label is not None:  # a classified beat: the common case, checked without attribute lookups below
            return label in self._positive or (self._low_confidence and event.low_confidence)
        result = event.result
        if result is None:
            return self._unjudged
        if self._alarm and getattr(result, "alarm", False):
            return True
        if getattr(result, "label", None) in self._positive:
            return True
        if self._low_confidence and getattr(result, "low_confidence", False):
            return True
        return self._multilabel_positive and bool(getattr(result, "labels", ()))

    def select(self, events: Sequence) -> list:
        """The events of ``events`` the filter keeps, in order."""
        return [events[position] for position in self.positions(events)]

    def positions(self, events: Sequence) -> list[int]:
        """Where in ``events`` the kept ones are: ``keeps`` for each, in one pass for a batch of classified beats."""
        if not events:
            return []
        try:
            labels = [event.beat_class for event in events]
        except AttributeError:  # rows or windows
            return [position for position, event in enumerate(events) if self.keeps(event)]
        flags = [event.quality_flags for event in events]
        before = [self._previous_flags, *flags[:-1]]
        self._previous_flags = flags[-1]
        positive, change = self._positive, self._quality_change
        low = [event.low_confidence for event in events] if self._low_confidence else [False] * len(events)
        return [position for position, (label, now, then, unsure) in enumerate(zip(labels, flags, before, low,
                                                                                   strict=True))
                if (change and now != then) or label in positive or unsure]
