"""The clinical gate as the accuracy check of int8 tuning (``exporters.quantization.tuning``), on held-out data.

Tuning must not see the test split — the real gate runs there afterwards — so candidates are
judged on held-out data with the rule of their task kind (point estimates only):

* **multiclass**: the gate (macro-F1 and per-class sensitivity drops vs fp32) on the validation
  split; a user-model build without validation data uses the calibration inputs with fp32's own
  predicted classes as labels, which asks for agreement with fp32 (stricter than the gate);
* **binary / multilabel**: the kind's gate on the labelled decision data, each candidate at the
  threshold the build's rule chooses there on its own scores (as the evaluate stage does);
* **regression**: the regression gate on labelled validation data; without targets, agreement
  with fp32: every output's mean |candidate − fp32| at most ``REGRESSION_AGREEMENT`` of the
  spread (standard deviation) of fp32's outputs;
* **anomaly**: alarm agreement with fp32 on the normal data, each at its own threshold for the
  build's false-alarm rate (the unlabelled anomaly gate).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from exporters.inputs import ModelInputs, sample_count
from exporters.quantization import AccuracyCheck, AccuracyVerdict
from pipeline.clinical.gate import DEFAULT_GATE_CONFIG, GateConfig, judge_variant
from pipeline.clinical.metrics import EvaluationConfig, evaluate_predictions
from pipeline.clinical.task_evaluation import DecisionConfig, TaskData, evaluate_task_variants, scores
from pipeline.clinical.task_kind import TaskKind

_POINT_ESTIMATES_ONLY = EvaluationConfig(bootstrap_samples=0)
REGRESSION_AGREEMENT = 0.05  # unlabelled regression: mean |Δ| vs fp32 ≤ 5 % of the spread of fp32's outputs
_CANDIDATE = "int8 candidate"


@dataclass(frozen=True)
class CheckSplit:
    """Inputs the tuning judges candidates on, their labels (None: none) and where they come from."""

    inputs: ModelInputs
    labels: np.ndarray | None
    description: str


def _predicted_classes(probabilities: np.ndarray) -> np.ndarray:
    return (probabilities[:, 0] >= 0.5).astype(np.int64) if probabilities.shape[-1] == 1 else probabilities.argmax(-1)


def choose_check_split(validation_inputs: ModelInputs, validation_labels: np.ndarray | None,
                       calibration_inputs: ModelInputs, fp32_predict: Callable[[ModelInputs], np.ndarray]
                       ) -> CheckSplit:
    """Multiclass: the validation split when it has labelled samples, else calibration inputs labelled by fp32."""
    samples = sample_count(validation_inputs)
    if samples and validation_labels is not None:
        return CheckSplit(validation_inputs, validation_labels, f"validation split ({samples} samples)")
    labels = _predicted_classes(fp32_predict(calibration_inputs))
    return CheckSplit(calibration_inputs, labels,
                      f"calibration inputs labelled by fp32's predictions ({sample_count(calibration_inputs)} samples)")


def gate_accuracy_check(labels: np.ndarray, reference_probabilities: np.ndarray, class_names: Sequence[str],
                        gate: GateConfig) -> AccuracyCheck:
    """An ``AccuracyCheck`` applying the multiclass ``gate`` against the fp32 reference's metrics on ``labels``."""
    reference = evaluate_predictions(labels, reference_probabilities, class_names, _POINT_ESTIMATES_ONLY)

    def check(probabilities: np.ndarray) -> AccuracyVerdict:
        candidate = evaluate_predictions(labels, probabilities, class_names, _POINT_ESTIMATES_ONLY)
        verdict = judge_variant("int8 candidate", reference, candidate, gate)
        drops = [verdict.numbers["macro_f1"]["drop_points"],
                 *(comparison["drop_points"] for comparison in verdict.numbers["sensitivity"].values())]
        defined = [drop for drop in drops if drop is not None]
        return AccuracyVerdict(verdict.passed, verdict.reason, max(defined) if defined else float("inf"))

    return check


def _worst_points(numbers: object) -> list[float]:
    """Every drop / rise in points in a verdict's numbers; a regression MAE growth in percent of fp32's."""
    found: list[float] = []
    if isinstance(numbers, dict):
        for key in ("drop_points", "rise_points"):
            if numbers.get(key) is not None:
                found.append(float(numbers[key]))
        if numbers.get("increase") is not None and numbers.get("reference"):
            found.append(100.0 * float(numbers["increase"]) / abs(float(numbers["reference"])))
        for value in numbers.values():
            found += _worst_points(value)
    return found


def _regression_agreement(reference_outputs: np.ndarray) -> AccuracyCheck:
    reference = scores(TaskKind.REGRESSION, reference_outputs)
    spread = reference.std(axis=0)

    def check(outputs: np.ndarray) -> AccuracyVerdict:
        difference = np.abs(scores(TaskKind.REGRESSION, outputs) - reference).mean(axis=0)
        ratio = np.divide(difference, spread, out=np.where(difference > 0, np.inf, 0.0), where=spread > 0)
        worst = float(ratio.max()) if np.all(np.isfinite(ratio)) else float("inf")
        passed = worst <= REGRESSION_AGREEMENT
        reason = (f"{'passed' if passed else 'failed'}: mean |Δ| vs fp32 is {worst:.2%} of the spread of fp32's "
                  f"outputs (limit {REGRESSION_AGREEMENT:.0%})")
        return AccuracyVerdict(passed, reason, worst * 100.0)

    return check


def task_accuracy_check(data: TaskData, reference_outputs: np.ndarray, decision: DecisionConfig,
                        gate: object | None = None) -> AccuracyCheck:
    """An ``AccuracyCheck`` for ``data.kind`` on the check data (module docstring).

    ``data.test_labels`` are the check data's labels (None: unlabelled); binary and multilabel
    thresholds are chosen on the check data itself. ``reference_outputs``: fp32's on the check data.
    """
    if data.kind is TaskKind.MULTICLASS:
        return gate_accuracy_check(data.test_labels, reference_outputs, data.names, gate or DEFAULT_GATE_CONFIG)
    if data.kind is TaskKind.REGRESSION and data.test_labels is None:
        return _regression_agreement(reference_outputs)
    if data.kind in (TaskKind.BINARY, TaskKind.MULTILABEL):
        data = replace(data, decision_labels=data.test_labels)

    def check(outputs: np.ndarray) -> AccuracyVerdict:
        both = {"fp32": reference_outputs, _CANDIDATE: outputs}
        verdict = evaluate_task_variants(data, both, both, _POINT_ESTIMATES_ONLY, decision, gate).verdicts[_CANDIDATE]
        points = _worst_points(verdict.numbers)
        worst = max(points) if points else (0.0 if verdict.passed else float("inf"))
        return AccuracyVerdict(verdict.passed, verdict.reason, worst)

    return check
