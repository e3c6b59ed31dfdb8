"""The clinical gate: drops versus fp32 within the limits pass, anything else fails."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pipeline.clinical.gate import GateConfig, GateVerdict, judge_variant, reference_verdict
from pipeline.clinical.metrics import (
    ClassMetrics,
    ClinicalMetrics,
    Estimate,
    EvaluationConfig,
    evaluate_predictions,
)
from pipeline.errors import DataError, GateConfigError, UsageError

CLASS_NAMES = ("N", "S", "V")
DEFAULT = GateConfig()


def point(value: float) -> Estimate:
    return Estimate(value=value, low=value, high=value)


def build_metrics(
    macro_f1: float, sensitivity: dict[str, float], class_names: tuple[str, ...] = CLASS_NAMES
) -> ClinicalMetrics:
    """ClinicalMetrics with the two numbers the gate reads; everything else is filler."""
    per_class = tuple(
        ClassMetrics(
            name=name,
            support=10,
            sensitivity=point(sensitivity[name]),
            specificity=point(0.9),
            ppv=point(0.9),
            f1=point(0.9),
            auroc=point(0.95),
        )
        for name in class_names
    )
    return ClinicalMetrics(
        class_names=class_names,
        samples=10 * len(class_names),
        accuracy=point(0.9),
        macro_f1=point(macro_f1),
        per_class=per_class,
        confusion_matrix=[[0] * len(class_names) for _ in class_names],
    )


REFERENCE = build_metrics(0.90, {"N": 0.95, "S": 0.80, "V": 0.90})


def test_identical_metrics_pass() -> None:
    verdict = judge_variant("fp16", REFERENCE, REFERENCE, DEFAULT)
    assert verdict.passed
    assert verdict.reason.startswith("passed: macro-F1 +0.00 pt")
    assert verdict.numbers["macro_f1"] == {"reference": 0.90, "candidate": 0.90, "drop_points": 0.0}


def test_identical_evaluated_predictions_pass() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=300)
    probabilities = rng.dirichlet(np.ones(3), size=300)
    metrics = evaluate_predictions(labels, probabilities, CLASS_NAMES, EvaluationConfig(bootstrap_samples=50))
    assert judge_variant("int8-dynamic", metrics, metrics, DEFAULT).passed


@pytest.mark.parametrize(
    ("candidate_macro_f1", "passed"),
    [(0.8905, True), (0.8900, True), (0.8895, False), (0.95, True)],
    ids=["0.95pt-drop", "exactly-1pt", "1.05pt-drop", "improvement"],
)
def test_macro_f1_drop_around_the_limit(candidate_macro_f1: float, passed: bool) -> None:
    candidate = build_metrics(candidate_macro_f1, {"N": 0.95, "S": 0.80, "V": 0.90})
    verdict = judge_variant("int8-static", REFERENCE, candidate, DEFAULT)
    assert verdict.passed is passed
    if not passed:
        assert verdict.reason == "failed: macro-F1 dropped 1.05 pt (limit 1.0)"


def test_one_class_sensitivity_drop_fails_and_names_the_class() -> None:
    candidate = build_metrics(0.90, {"N": 0.955, "S": 0.80, "V": 0.866})
    verdict = judge_variant("int8-static", REFERENCE, candidate, DEFAULT)
    assert not verdict.passed
    assert verdict.reason == "failed: sensitivity of V dropped 3.40 pt (limit 2.0)"
    assert verdict.numbers["sensitivity"]["V"]["drop_points"] == pytest.approx(3.4)
    assert verdict.numbers["sensitivity"]["N"]["drop_points"] == pytest.approx(-0.5)


def test_every_violation_is_listed() -> None:
    candidate = build_metrics(0.85, {"N": 0.90, "S": 0.80, "V": 0.80})
    verdict = judge_variant("int8-static", REFERENCE, candidate, DEFAULT)
    assert not verdict.passed
    assert verdict.reason == (
        "failed: macro-F1 dropped 5.00 pt (limit 1.0); sensitivity of N dropped 5.00 pt (limit 2.0); "
        "sensitivity of V dropped 10.00 pt (limit 2.0)"
    )


def test_passing_reason_reports_the_worst_sensitivity_change() -> None:
    candidate = build_metrics(0.8988, {"N": 0.945, "S": 0.81, "V": 0.89})
    verdict = judge_variant("fp16", REFERENCE, candidate, DEFAULT)
    assert verdict.passed
    assert verdict.reason == "passed: macro-F1 −0.12 pt, worst sensitivity −1.00 pt (V)"


def test_custom_thresholds_are_honoured() -> None:
    candidate = build_metrics(0.893, {"N": 0.95, "S": 0.77, "V": 0.90})  # −0.7 pt, S −3 pt
    assert not judge_variant("fp16", REFERENCE, candidate, DEFAULT).passed
    lenient = GateConfig(max_macro_f1_drop_points=1.0, max_sensitivity_drop_points=5.0)
    assert judge_variant("fp16", REFERENCE, candidate, lenient).passed
    strict = GateConfig(max_macro_f1_drop_points=0.5, max_sensitivity_drop_points=5.0)
    verdict = judge_variant("fp16", REFERENCE, candidate, strict)
    assert not verdict.passed
    assert verdict.reason == "failed: macro-F1 dropped 0.70 pt (limit 0.5)"
    assert "≤ 0.5 pt" in verdict.rule and "≤ 5.0 pt" in verdict.rule


def test_rule_states_the_thresholds() -> None:
    verdict = judge_variant("fp16", REFERENCE, REFERENCE, DEFAULT)
    assert verdict.rule == ("macro-F1 drop ≤ 1.0 pt and every class's sensitivity drop ≤ 2.0 pt versus fp32")


def test_undefined_candidate_sensitivity_fails() -> None:
    candidate = build_metrics(0.90, {"N": 0.95, "S": math.nan, "V": 0.90})
    verdict = judge_variant("int8-static", REFERENCE, candidate, DEFAULT)
    assert not verdict.passed
    assert verdict.reason == "failed: sensitivity of S is undefined for the candidate (reference 80.00 %)"
    assert verdict.numbers["sensitivity"]["S"] == {"reference": 0.80, "candidate": None, "drop_points": None}


def test_class_undefined_in_the_reference_is_not_judged() -> None:
    reference = build_metrics(0.90, {"N": 0.95, "S": math.nan, "V": 0.90})
    candidate = build_metrics(0.90, {"N": 0.95, "S": math.nan, "V": 0.90})
    assert judge_variant("fp16", reference, candidate, DEFAULT).passed


def test_mismatched_class_names_raise_data_error() -> None:
    candidate = build_metrics(0.90, {"N": 0.95, "S": 0.80, "Q": 0.90}, class_names=("N", "S", "Q"))
    with pytest.raises(DataError, match="class names differ"):
        judge_variant("fp16", REFERENCE, candidate, DEFAULT)


def test_different_test_splits_raise_data_error() -> None:
    candidate = ClinicalMetrics.from_dict({**REFERENCE.to_dict(), "samples": 31})
    with pytest.raises(DataError, match="test splits differ"):
        judge_variant("fp16", REFERENCE, candidate, DEFAULT)


@pytest.mark.parametrize(
    "settings",
    [
        {"max_macro_f1_drop_points": -0.1},
        {"max_sensitivity_drop_points": -1.0},
        {"max_macro_f1_drop_points": math.nan},
    ],
    ids=str,
)
def test_negative_thresholds_raise_gate_config_error(settings: dict) -> None:
    with pytest.raises(GateConfigError, match="gate threshold") as raised:
        GateConfig(**settings)
    # A usage error (the CLI exits 2), but not a data error: the data is not to blame.
    assert isinstance(raised.value, UsageError) and not isinstance(raised.value, DataError)


def test_verdict_round_trips_through_json() -> None:
    candidate = build_metrics(0.88, {"N": 0.95, "S": math.nan, "V": 0.85})
    verdict = judge_variant("int8-static", REFERENCE, candidate, DEFAULT)
    text = json.dumps(verdict.to_dict(), allow_nan=False)
    assert GateVerdict.from_dict(json.loads(text)) == verdict


def test_reference_passes_by_definition() -> None:
    verdict = reference_verdict()
    assert verdict.variant == "fp32" and verdict.passed
    assert "reference" in verdict.reason
    assert GateVerdict.from_dict(json.loads(json.dumps(verdict.to_dict()))) == verdict
