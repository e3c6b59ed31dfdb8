"""The clinical gate: may a compressed variant replace the fp32 reference?

Every candidate variant (fp16, int8-dynamic, int8-static, …) is judged against
the fp32 reference's metrics on the same test split. It passes when macro-F1
drops by at most ``max_macro_f1_drop_points`` and no class's sensitivity drops
by more than ``max_sensitivity_drop_points`` (percentage points, 1 pt = 0.01).
Improvements (negative drops) always pass. A value that is defined for the
reference but undefined (NaN) for the candidate fails the gate.

The gate compares point estimates; the confidence intervals are reported
alongside, not used for the decision.

This module must not import tensorflow, keras or onnx.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from numbers import Real

from pipeline.clinical.metrics import ClinicalMetrics
from pipeline.errors import DataError, GateConfigError

logger = logging.getLogger(__name__)

# Drops within this many points of a limit count as on the limit (floating-point noise).
POINTS_TOLERANCE = 1e-9


@dataclass(frozen=True)
class GateConfig:
    """Largest tolerated drops versus the reference, in percentage points (1 pt = 0.01)."""

    max_macro_f1_drop_points: float = 1.0  # macro-F1 may fall at most 1 pt below fp32
    max_sensitivity_drop_points: float = 2.0  # no class's sensitivity may fall more than 2 pt

    def __post_init__(self) -> None:
        validate_points_limits(self, ("max_macro_f1_drop_points", "max_sensitivity_drop_points"))


def validate_points_limits(config: object, names: tuple[str, ...]) -> None:
    """Raise ``GateConfigError`` unless every field ``names`` of ``config`` is a non-negative number of points."""
    for name in names:
        limit = getattr(config, name)
        if isinstance(limit, bool) or not isinstance(limit, Real) or math.isnan(limit) or limit < 0:
            raise GateConfigError(
                f"gate threshold {name} is {limit!r}",
                expected="a non-negative number of percentage points (e.g. 1.0 means 0.01)",
                fix=f"set gate.{name} to 0 or more; use 0 to forbid any drop",
            )


DEFAULT_GATE_CONFIG = GateConfig()


@dataclass(frozen=True)
class GateVerdict:
    """The gate's decision for one variant, with the numbers it was based on."""

    variant: str
    passed: bool
    rule: str  # the rule in words, with its thresholds
    numbers: dict  # {"macro_f1": {...}, "sensitivity": {class name: {...}}}; None for undefined
    reason: str  # one line: "passed: …" or "failed: …" listing every violated check

    def to_dict(self) -> dict:
        return {
            "variant": self.variant,
            "passed": self.passed,
            "rule": self.rule,
            "numbers": self.numbers,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: dict) -> GateVerdict:
        return cls(
            variant=str(data["variant"]),
            passed=bool(data["passed"]),
            rule=str(data["rule"]),
            numbers=dict(data["numbers"]),
            reason=str(data["reason"]),
        )


def _json_number(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def compare_points(reference: float, candidate: float) -> dict:
    """Reference, candidate and drop in points (positive = worse); None where undefined."""
    drop = (reference - candidate) * 100.0
    return {
        "reference": _json_number(reference),
        "candidate": _json_number(candidate),
        "drop_points": _json_number(drop),
    }


def signed_points(drop_points: float) -> str:
    change = -drop_points
    if abs(change) < 0.005:
        change = 0.0
    sign = "+" if change >= 0 else "−"
    return f"{sign}{abs(change):.2f} pt"


def check_same_split(reference: ClinicalMetrics, candidate: ClinicalMetrics) -> None:
    if reference.class_names != candidate.class_names:
        raise DataError(
            f"class names differ: reference {list(reference.class_names)}, candidate {list(candidate.class_names)}",
            expected="the same class names in the same order for reference and candidate",
            fix="evaluate every variant with the scenario's class_names on the same test split",
        )
    reference_support = [metrics.support for metrics in reference.per_class]
    candidate_support = [metrics.support for metrics in candidate.per_class]
    if reference.samples != candidate.samples or reference_support != candidate_support:
        raise DataError(
            f"test splits differ: reference has {reference.samples} samples {reference_support}, "
            f"candidate {candidate.samples} samples {candidate_support}",
            expected="both variants evaluated on the same test split",
            fix="evaluate the candidate on the reference's test split",
        )


def _rule_text(config: GateConfig, reference_name: str) -> str:
    return (
        f"macro-F1 drop ≤ {config.max_macro_f1_drop_points} pt and every class's sensitivity "
        f"drop ≤ {config.max_sensitivity_drop_points} pt versus {reference_name}"
    )


def points_violation(label: str, numbers: dict, limit: float) -> str | None:
    """Why ``numbers`` (one comparison) breaks ``limit``, or None if it does not."""
    reference, candidate, drop = numbers["reference"], numbers["candidate"], numbers["drop_points"]
    if reference is None:
        return None  # nothing to compare against; reported in numbers only
    if candidate is None:
        return f"{label} is undefined for the candidate (reference {reference * 100:.2f} %)"
    if drop > limit + POINTS_TOLERANCE:
        return f"{label} dropped {drop:.2f} pt (limit {limit})"
    return None


def _worst_sensitivity(sensitivity: dict[str, dict]) -> tuple[str, float] | None:
    drops = [(name, item["drop_points"]) for name, item in sensitivity.items() if item["drop_points"] is not None]
    return max(drops, key=lambda pair: pair[1]) if drops else None


def _passed_reason(numbers: dict) -> str:
    reason = f"passed: macro-F1 {signed_points(numbers['macro_f1']['drop_points'])}"
    worst = _worst_sensitivity(numbers["sensitivity"])
    if worst is not None:
        reason += f", worst sensitivity {signed_points(worst[1])} ({worst[0]})"
    return reason


def judge_variant(
    variant: str,
    reference: ClinicalMetrics,
    candidate: ClinicalMetrics,
    config: GateConfig = DEFAULT_GATE_CONFIG,
    *,
    reference_name: str = "fp32",
) -> GateVerdict:
    """Judge ``candidate`` against ``reference`` (same class names and test split)."""
    check_same_split(reference, candidate)
    numbers = {
        "macro_f1": compare_points(reference.macro_f1.value, candidate.macro_f1.value),
        "sensitivity": {
            ref.name: compare_points(ref.sensitivity.value, cand.sensitivity.value)
            for ref, cand in zip(reference.per_class, candidate.per_class, strict=True)
        },
    }
    violations = []
    if numbers["macro_f1"]["reference"] is None:
        violations.append("macro-F1 is undefined for the reference")
    else:
        violations.append(points_violation("macro-F1", numbers["macro_f1"], config.max_macro_f1_drop_points))
    for name, comparison in numbers["sensitivity"].items():
        label = f"sensitivity of {name}"
        violations.append(points_violation(label, comparison, config.max_sensitivity_drop_points))
    violations = [violation for violation in violations if violation is not None]
    passed = not violations
    reason = _passed_reason(numbers) if passed else "failed: " + "; ".join(violations)
    logger.info("gate %s: %s", variant, reason)
    return GateVerdict(
        variant=variant,
        passed=passed,
        rule=_rule_text(config, reference_name),
        numbers=numbers,
        reason=reason,
    )


def reference_verdict(variant: str = "fp32") -> GateVerdict:
    """The reference passes by definition: it is what every other variant is judged against."""
    return GateVerdict(
        variant=variant,
        passed=True,
        rule=f"{variant} is the reference; every other variant is compared with it",
        numbers={},
        reason=f"passed: {variant} is the reference variant (passes by definition)",
    )
