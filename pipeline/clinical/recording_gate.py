"""The recording-level gate: may a variant ship, judged on whole held-out recordings through the device stream?

The figures are those of ``pipeline.validation.recordings`` (gross EC57 counts over the held-out
records, and the false PVC rate on healthy recordings), one set per variant. A variant passes when

* every **absolute floor** holds — for fp32 too: a reference that misses a floor fails, so nothing
  ships (QRS detection Se and +P, V Se and +P at least the floor; the false PVC rate on healthy
  recordings at most its ceiling), and
* compared with fp32 (the reference), no figure worsens by more than its limit in percentage points
  (QRS Se/+P, V Se/+P drops; V false-positive-rate and healthy false PVC rate rises).

A figure that is undefined (``None``: no V beat in the records, no healthy recording available) is
reported and not judged against a floor or a limit; the verdict says which were not checked. An
undefined candidate figure where fp32's is defined fails, as in every other gate here.

This module must not import tensorflow, keras or onnx.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from pipeline.clinical.gate import POINTS_TOLERANCE, GateVerdict, validate_points_limits
from pipeline.errors import GateConfigError

REFERENCE = "fp32"
# Gross figures the gate reads: higher is better for these …
HIGHER_IS_BETTER = ("qrs_sensitivity", "qrs_positive_predictivity", "v_sensitivity", "v_positive_predictivity")
# … lower for these.
LOWER_IS_BETTER = ("v_false_positive_rate", "healthy_false_pvc_rate")
FIGURES = HIGHER_IS_BETTER + LOWER_IS_BETTER
LABELS = {
    "qrs_sensitivity": "QRS Se",
    "qrs_positive_predictivity": "QRS +P",
    "v_sensitivity": "V Se",
    "v_positive_predictivity": "V +P",
    "v_false_positive_rate": "V FPR",
    "healthy_false_pvc_rate": "false PVC rate on healthy recordings",
}


@dataclass(frozen=True)
class RecordingFloors:
    """Absolute limits on the gross figures over the held-out records, for every variant (fractions)."""

    qrs_sensitivity: float = 0.99  # at least: a missed beat is a beat the model never sees
    qrs_positive_predictivity: float = 0.99  # at least: a false detection can become a false PVC
    v_sensitivity: float = 0.90  # at least
    v_positive_predictivity: float = 0.90  # at least
    healthy_false_pvc_rate: float = 0.01  # at most: PVC calls per classified beat of healthy people

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise GateConfigError(f"recording floor {name} is {value!r}", expected="a fraction in [0, 1]",
                                      fix="give floors as fractions, e.g. 0.99 for 99 %")

    def describe(self) -> str:
        return (f"QRS Se ≥ {self.qrs_sensitivity:.1%}, QRS +P ≥ {self.qrs_positive_predictivity:.1%}, V Se ≥ "
                f"{self.v_sensitivity:.1%}, V +P ≥ {self.v_positive_predictivity:.1%} (gross over the held-out "
                f"records), false PVC rate on healthy recordings ≤ {self.healthy_false_pvc_rate:.1%}")


@dataclass(frozen=True)
class RecordingGateConfig:
    """Floors (None: none, for smoke builds only) and the largest changes versus fp32, in points (1 pt = 0.01)."""

    floors: RecordingFloors | None = field(default_factory=RecordingFloors)
    max_qrs_drop_points: float = 0.1  # detection does not depend on the model: any change is a defect
    max_v_sensitivity_drop_points: float = 2.0
    max_v_positive_predictivity_drop_points: float = 2.0
    max_v_false_positive_rate_rise_points: float = 0.5
    max_healthy_false_pvc_rate_rise_points: float = 0.5

    def __post_init__(self) -> None:
        validate_points_limits(self, ("max_qrs_drop_points", "max_v_sensitivity_drop_points",
                                      "max_v_positive_predictivity_drop_points",
                                      "max_v_false_positive_rate_rise_points",
                                      "max_healthy_false_pvc_rate_rise_points"))

    def limit(self, figure: str) -> float:
        """The largest tolerated change of ``figure`` versus fp32, in points."""
        if figure.startswith("qrs_"):
            return self.max_qrs_drop_points
        return getattr(self, f"max_{figure}_{'drop' if figure in HIGHER_IS_BETTER else 'rise'}_points")

    def describe(self) -> str:
        floors = self.floors.describe() if self.floors else "no absolute floors (smoke build)"
        return (f"floors: {floors}; versus fp32: QRS Se/+P drop ≤ {self.max_qrs_drop_points} pt, V Se drop ≤ "
                f"{self.max_v_sensitivity_drop_points} pt, V +P drop ≤ {self.max_v_positive_predictivity_drop_points}"
                f" pt, V FPR rise ≤ {self.max_v_false_positive_rate_rise_points} pt, healthy false PVC rate rise ≤ "
                f"{self.max_healthy_false_pvc_rate_rise_points} pt")


def _undefined(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _floor_checks(figures: dict[str, float | None], floors: RecordingFloors) -> tuple[dict, list[str], list[str]]:
    numbers, failures, unchecked = {}, [], []
    for name in asdict(floors):  # every figure with a floor (the V FPR has none: V +P bounds false alarms)
        limit, value = getattr(floors, name), figures.get(name)
        if _undefined(value):
            numbers[name] = {"value": None, "floor": limit, "passed": None}
            unchecked.append(LABELS[name])
            continue
        passed = value >= limit if name in HIGHER_IS_BETTER else value <= limit
        numbers[name] = {"value": value, "floor": limit, "passed": passed}
        if not passed:
            relation = "under" if name in HIGHER_IS_BETTER else "over"
            failures.append(f"{LABELS[name]} {value:.2%} is {relation} its floor {limit:.2%}")
    return numbers, failures, unchecked


def _reference_checks(figures: dict, reference: dict, config: RecordingGateConfig) -> tuple[dict, list[str]]:
    numbers, failures = {}, []
    for name in FIGURES:
        known, value = reference.get(name), figures.get(name)
        if _undefined(known):
            numbers[name] = {"reference": None, "candidate": None if _undefined(value) else value,
                             "change_points": None}
            continue
        if _undefined(value):
            numbers[name] = {"reference": known, "candidate": None, "change_points": None}
            failures.append(f"{LABELS[name]} is undefined (fp32 {known:.2%})")
            continue
        worse = (known - value if name in HIGHER_IS_BETTER else value - known) * 100.0
        numbers[name] = {"reference": known, "candidate": value, "change_points": -worse}
        if worse > config.limit(name) + POINTS_TOLERANCE:
            failures.append(f"{LABELS[name]} {'dropped' if name in HIGHER_IS_BETTER else 'rose'} {worse:.2f} pt "
                            f"(limit {config.limit(name)})")
    return numbers, failures


def judge_recordings(variant: str, figures: dict[str, float | None], reference: dict[str, float | None] | None,
                     config: RecordingGateConfig = RecordingGateConfig()) -> GateVerdict:
    """The recording gate's verdict on ``variant`` from its figures (``FIGURES``) and fp32's (None for fp32 itself)."""
    failures: list[str] = []
    numbers: dict = {}
    unchecked: list[str] = []
    if config.floors is not None:
        numbers["floors"], floor_failures, unchecked = _floor_checks(figures, config.floors)
        failures += floor_failures
    if reference is not None and variant != REFERENCE:
        numbers["versus_fp32"], reference_failures = _reference_checks(figures, reference, config)
        failures += reference_failures
    shown = ", ".join(f"{LABELS[name]} {figures[name]:.2%}" for name in FIGURES if not _undefined(figures.get(name)))
    note = f"; not checked (undefined): {', '.join(unchecked)}" if unchecked else ""
    reason = ("failed: " + "; ".join(failures) if failures else f"passed: {shown or 'no figures'}") + note
    return GateVerdict(variant, not failures, config.describe(), numbers, reason)


def combine_verdicts(first: GateVerdict, second: GateVerdict) -> GateVerdict:
    """One verdict that passes only when both do (the rules and reasons joined)."""
    if first.variant != second.variant:
        raise GateConfigError(f"verdicts of {first.variant} and {second.variant}", expected="one variant's verdicts",
                              fix="combine the verdicts of the same variant")
    return GateVerdict(
        first.variant,
        first.passed and second.passed,
        f"{first.rule}; and on recordings: {second.rule}",
        {**first.numbers, "recordings": second.numbers},
        f"{first.reason} | recordings {second.reason}",
    )
