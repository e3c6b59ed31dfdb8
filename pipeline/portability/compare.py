"""One target's events against this machine's, event by event and field by field.

Every field must be equal, except numbers, which may differ by ``NUMBER_TOLERANCE`` (kernels of other CPUs add in
another order: fp32 answers agree to about 1e-6), and ``latency_us``, a timing. A decision (class, low-confidence
call, quality flags) is never allowed to differ: that is what a patient would see. For annotated recordings the
EC57 counts are computed from each target's own beats, so the figures the bundle was validated with are shown to
hold (or not) on that CPU.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.portability.cases import Reference
from pipeline.validation import ec57
from pipeline.validation.recordings import RecordingValidationConfig

NUMBER_TOLERANCE = 1e-4
IGNORED_FIELDS = frozenset({"latency_us"})  # a timing: different on every run
DECISION_FIELDS = frozenset({"class", "low_confidence", "quality_flags", "judged", "type"})


@dataclass
class Comparison:
    """How one target's events compare with the reference's."""

    reference_events: int
    target_events: int
    differing_events: int = 0  # events with any field beyond tolerance (decisions included)
    decision_changes: int = 0  # events whose decision differs
    max_differences: dict[str, float] = field(default_factory=dict)  # numeric field → largest |Δ|
    first_difference: str | None = None

    @property
    def passed(self) -> bool:
        return self.reference_events == self.target_events and self.differing_events == 0

    @property
    def largest_difference(self) -> float:
        return max(self.max_differences.values(), default=0.0)


def read_events(path: Path) -> list[dict[str, Any]]:
    with path.open() as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _flat(event: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    values = {}
    for key, value in event.items():
        if isinstance(value, dict):
            values.update(_flat(value, f"{prefix}{key}."))
        else:
            values[f"{prefix}{key}"] = value
    return values


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def compare_events(reference: list[dict[str, Any]], target: list[dict[str, Any]],
                   tolerance: float = NUMBER_TOLERANCE) -> Comparison:
    result = Comparison(len(reference), len(target))
    if len(reference) != len(target):
        result.first_difference = f"{len(target)} events, the reference {len(reference)}"
    for index, (expected, actual) in enumerate(zip(reference, target)):
        expected_fields, actual_fields = _flat(expected), _flat(actual)
        beyond, decision = [], False
        for name in sorted((expected_fields.keys() | actual_fields.keys()) - IGNORED_FIELDS):
            left, right = expected_fields.get(name), actual_fields.get(name)
            if _is_number(left) and _is_number(right):
                difference = abs(float(left) - float(right))
                result.max_differences[name] = max(result.max_differences.get(name, 0.0), difference)
                if not difference <= tolerance:  # NaN too
                    beyond.append(f"{name} {left} → {right}")
            elif left != right:
                beyond.append(f"{name} {left!r} → {right!r}")
                decision = decision or name.split(".")[0] in DECISION_FIELDS
        if beyond:
            result.differing_events += 1
            result.decision_changes += int(decision)
            if result.first_difference is None:
                where = expected.get("time_s", expected.get("row", index))
                result.first_difference = f"event {index} (at {where}): {'; '.join(beyond[:3])}"
    return result


def ec57_counts(name: str, events: list[dict[str, Any]], reference: Reference) -> ec57.BeatCounts:
    """EC57 counts of one annotated recording from its beat events (an unclassified beat: detected, not V)."""
    beats = [event for event in events if event.get("type") == "beat"]
    detected = np.asarray([event["time_s"] for event in beats], dtype=np.float64)
    positive = RecordingValidationConfig.positive_label  # the build's scoring: the PVC class, AAMI V
    called_v = np.asarray([event.get("class") == positive for event in beats], dtype=bool)
    return ec57.score_record(name, reference.beats_s, detected, reference.is_v, called_v)
