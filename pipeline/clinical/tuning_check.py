"""The clinical gate as the accuracy check of int8 tuning (``exporters.quantization.tuning``), on held-out data.

Tuning must not see the test split — the real gate runs there afterwards — so candidates
are judged on the validation split with the same rule (macro-F1 and per-class
sensitivity drops vs fp32, point estimates only). A user-model build has no validation
split; then the calibration inputs are used with fp32's own predicted classes as labels,
which asks for agreement with fp32 (a stricter test than the gate's).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from exporters.quantization import AccuracyCheck, AccuracyVerdict
from pipeline.clinical.gate import GateConfig, judge_variant
from pipeline.clinical.metrics import EvaluationConfig, evaluate_predictions

_POINT_ESTIMATES_ONLY = EvaluationConfig(bootstrap_samples=0)


@dataclass(frozen=True)
class CheckSplit:
    """Inputs the tuning judges candidates on, their labels and where they come from."""

    inputs: np.ndarray
    labels: np.ndarray
    description: str


def _predicted_classes(probabilities: np.ndarray) -> np.ndarray:
    return (probabilities[:, 0] >= 0.5).astype(np.int64) if probabilities.shape[-1] == 1 else probabilities.argmax(-1)


def choose_check_split(validation_inputs: np.ndarray, validation_labels: np.ndarray, calibration_inputs: np.ndarray,
                       fp32_predict) -> CheckSplit:
    """The validation split when it has samples, else calibration inputs labelled by fp32."""
    if len(validation_inputs):
        return CheckSplit(validation_inputs, validation_labels, f"validation split ({len(validation_inputs)} samples)")
    labels = _predicted_classes(fp32_predict(calibration_inputs))
    return CheckSplit(calibration_inputs, labels,
                      f"calibration inputs labelled by fp32's predictions ({len(calibration_inputs)} samples)")


def gate_accuracy_check(labels: np.ndarray, reference_probabilities: np.ndarray, class_names: Sequence[str],
                        gate: GateConfig) -> AccuracyCheck:
    """An ``AccuracyCheck`` applying ``gate`` against the fp32 reference's metrics on ``labels``."""
    reference = evaluate_predictions(labels, reference_probabilities, class_names, _POINT_ESTIMATES_ONLY)

    def check(probabilities: np.ndarray) -> AccuracyVerdict:
        candidate = evaluate_predictions(labels, probabilities, class_names, _POINT_ESTIMATES_ONLY)
        verdict = judge_variant("int8 candidate", reference, candidate, gate)
        drops = [verdict.numbers["macro_f1"]["drop_points"],
                 *(comparison["drop_points"] for comparison in verdict.numbers["sensitivity"].values())]
        defined = [drop for drop in drops if drop is not None]
        return AccuracyVerdict(verdict.passed, verdict.reason, max(defined) if defined else float("inf"))

    return check
