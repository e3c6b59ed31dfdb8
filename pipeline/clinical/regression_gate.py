"""The clinical gate for regression outputs: may a compressed variant replace fp32?

For every output, in its own units, a candidate fails when

* its MAE grows by more than ``max_mae_increase + max_mae_increase_fraction × fp32's MAE``, or
* its Bland–Altman limits of agreement widen (upper − lower = 2 · 1.96 · SD) by more than
  ``max_limits_widening + max_limits_widening_fraction × fp32's width``.

Each allowance is an absolute part (in units) plus a relative part, like ``numpy.isclose``'s
``atol + rtol · |reference|``: set one part to 0 to use only the other. Absolute parts are
one number for every output or a mapping output name → amount, for outputs in different
units. A shifted bias shows up as a larger MAE; the bias itself is reported, not gated.
Shrinking errors always pass. A value defined for fp32 but undefined for the candidate fails.

This module must not import tensorflow, keras or onnx.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Real

from pipeline.clinical.gate import GateVerdict
from pipeline.clinical.regression_metrics import RegressionMetrics
from pipeline.errors import DataError, GateConfigError

logger = logging.getLogger(__name__)

# Increases within this share of (1 + |reference|) of a limit count as on the limit (floating-point noise).
RELATIVE_TOLERANCE = 1e-9


def _is_non_negative_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, Real) and not math.isnan(value) and value >= 0


@dataclass(frozen=True)
class RegressionGateConfig:
    """How much worse than fp32 each output's errors may get: allowed growth = absolute + fraction × fp32's value."""

    max_mae_increase: float | Mapping[str, float] = 0.0  # absolute MAE growth, in the output's units (or per output)
    max_mae_increase_fraction: float = 0.05  # plus 5 % of fp32's MAE
    max_limits_widening: float | Mapping[str, float] = 0.0  # absolute widening of the limits of agreement, in units
    max_limits_widening_fraction: float = 0.10  # plus 10 % of fp32's limits-of-agreement width

    def __post_init__(self) -> None:
        for name in ("max_mae_increase_fraction", "max_limits_widening_fraction"):
            if not _is_non_negative_number(getattr(self, name)):
                raise GateConfigError(
                    f"gate threshold {name} is {getattr(self, name)!r}",
                    expected="a non-negative fraction of fp32's value (e.g. 0.05 means 5 %)",
                    fix=f"set gate.{name} to 0 or more; use 0 to allow no relative growth",
                )
        for name in ("max_mae_increase", "max_limits_widening"):
            setting = getattr(self, name)
            amounts = setting.values() if isinstance(setting, Mapping) else [setting]
            if not all(_is_non_negative_number(amount) for amount in amounts):
                raise GateConfigError(
                    f"gate threshold {name} is {setting!r}",
                    expected="a non-negative amount in the output's units, or a mapping output name → such an amount",
                    fix=f"set gate.{name} to 0 or more; use 0 to allow no absolute growth",
                )

    def absolute_allowance(self, name: str, output: str) -> float:
        """The absolute part of allowance ``name`` for ``output``, in that output's units."""
        setting = getattr(self, name)
        if not isinstance(setting, Mapping):
            return float(setting)
        if output not in setting:
            raise GateConfigError(
                f"gate.{name} gives amounts for {sorted(setting)} but not for output {output!r}",
                expected="an amount for every output when the setting is a mapping",
                fix=f"add {output!r} to gate.{name}, or give one number for every output",
            )
        return float(setting[output])


DEFAULT_REGRESSION_GATE_CONFIG = RegressionGateConfig()


def _json_number(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _growth(reference: float, candidate: float, absolute: float, fraction: float) -> dict:
    """Reference, candidate, increase and allowed increase (all in units); None where undefined."""
    return {
        "reference": _json_number(reference),
        "candidate": _json_number(candidate),
        "increase": _json_number(candidate - reference),
        "allowed_increase": _json_number(absolute + fraction * reference),
    }


def _amount(value: float, unit: str, sign: str = "") -> str:
    return f"{value:{sign}.3g}" + (f" {unit}" if unit else "")


def _change(growth: dict, unit: str) -> str:
    """The increase in units and, where fp32's value is non-zero, in percent: "+0.682 mmHg, +17.2 %"."""
    reference, increase = growth["reference"], growth["increase"]
    text = _amount(increase, unit, "+")
    return f"{text}, {increase / reference * 100:+.1f} %" if reference else text


def _growth_violation(label: str, unit: str, growth: dict) -> str | None:
    reference, candidate, increase, allowed = (
        growth[key] for key in ("reference", "candidate", "increase", "allowed_increase")
    )
    if reference is None:
        return None  # nothing to compare against (e.g. limits of agreement of a single sample)
    if candidate is None:
        return f"{label} is undefined for the candidate (reference {_amount(reference, unit)})"
    if increase > allowed + RELATIVE_TOLERANCE * (1.0 + abs(reference)):
        return f"{label} grew {_change(growth, unit)} (allowed {_amount(allowed, unit, '+')})"
    return None


def _check_same_split(reference: RegressionMetrics, candidate: RegressionMetrics) -> None:
    reference_outputs = [(output.name, output.unit) for output in reference.outputs]
    candidate_outputs = [(output.name, output.unit) for output in candidate.outputs]
    if reference_outputs != candidate_outputs or reference.samples != candidate.samples:
        raise DataError(
            f"evaluations differ: reference has {reference.samples} samples of {reference_outputs}, "
            f"candidate {candidate.samples} samples of {candidate_outputs}",
            expected="both variants evaluated on the same test split with the same output names and units",
            fix="evaluate every variant with the scenario's output names and units on the same test split",
        )


def _rule_text(config: RegressionGateConfig, reference_name: str) -> str:
    return (
        f"for every output, MAE growth ≤ {config.max_mae_increase} units + {config.max_mae_increase_fraction:g} × "
        f"{reference_name}'s MAE, and limits-of-agreement widening ≤ {config.max_limits_widening} units + "
        f"{config.max_limits_widening_fraction:g} × {reference_name}'s width, versus {reference_name}"
    )


def _passed_reason(numbers: dict) -> str:
    parts = []
    for metric, label in (("mae", "MAE"), ("limits_width", "limits-of-agreement width")):
        growths = [
            (name, item[metric]) for name, item in numbers["outputs"].items() if item[metric]["increase"] is not None
        ]
        if growths:
            name, worst = max(growths, key=lambda pair: pair[1]["increase"] / (pair[1]["reference"] or 1.0))
            unit = numbers["outputs"][name]["unit"]
            parts.append(f"worst {label} {_change(worst, unit)} ({name})")
    return "passed: " + (", ".join(parts) if parts else "no comparable output")


def judge_regression_variant(
    variant: str,
    reference: RegressionMetrics,
    candidate: RegressionMetrics,
    config: RegressionGateConfig = DEFAULT_REGRESSION_GATE_CONFIG,
    *,
    reference_name: str = "fp32",
) -> GateVerdict:
    """Judge ``candidate`` against ``reference`` (same outputs, units and test split)."""
    _check_same_split(reference, candidate)
    numbers: dict = {"outputs": {}}
    violations = []
    for ref, cand in zip(reference.outputs, candidate.outputs, strict=True):
        item = {
            "unit": ref.unit,
            "mae": _growth(
                ref.mae.value,
                cand.mae.value,
                config.absolute_allowance("max_mae_increase", ref.name),
                config.max_mae_increase_fraction,
            ),
            "limits_width": _growth(
                ref.limits_width,
                cand.limits_width,
                config.absolute_allowance("max_limits_widening", ref.name),
                config.max_limits_widening_fraction,
            ),
            "bias": {"reference": _json_number(ref.bias.value), "candidate": _json_number(cand.bias.value)},
        }
        numbers["outputs"][ref.name] = item
        violations.append(_growth_violation(f"MAE of {ref.name}", ref.unit, item["mae"]))
        violations.append(_growth_violation(f"limits-of-agreement width of {ref.name}", ref.unit, item["limits_width"]))
    violations = [violation for violation in violations if violation is not None]
    passed = not violations
    reason = _passed_reason(numbers) if passed else "failed: " + "; ".join(violations)
    logger.info("gate %s: %s", variant, reason)
    return GateVerdict(
        variant=variant, passed=passed, rule=_rule_text(config, reference_name), numbers=numbers, reason=reason
    )
