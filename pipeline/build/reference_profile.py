"""The bundle's ``reference_profile.json``: what inputs and predictions looked like at validation time.

Drift monitoring compares device telemetry with it. Per summary feature it keeps
decile edges (for PSI on 10 reference-quantile bins), moments and a bounded
sample (for KS / Wasserstein). Predictions are profiled as the device decides them
(``runtime.decide`` with the bundle's output spec):

* multiclass, binary, anomaly: the decided class's counts and fractions (``class_counts``,
  ``class_fractions``) and the distribution of its confidence (multiclass, binary) or of the
  anomaly score (``score``);
* multilabel: how often each label is present (``label_counts``, ``label_fractions``) and each
  label's probability distribution (``scores``);
* regression: each target's value distribution (``values``).

A model with several inputs has its summary features per input, named ``<input>/<feature>``.
It never stores raw inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from runtime.contract import MulticlassRule, OutputSpec, TaskKind
from runtime.decide import ANOMALY_SCORE, decide

PROFILE_SCHEMA_VERSION = 1
SAMPLE_LIMIT = 500
_DECILES = np.linspace(0, 100, 11)


def _distribution(values: np.ndarray, rng: np.random.Generator) -> dict:
    values = np.asarray(values, dtype=np.float64)
    sample = values if len(values) <= SAMPLE_LIMIT else rng.choice(values, SAMPLE_LIMIT, replace=False)
    return {
        "count": len(values),
        "mean": float(values.mean()),
        "std": float(values.std()),
        "decile_edges": [float(edge) for edge in np.percentile(values, _DECILES)],
        "sample": [round(float(value), 6) for value in np.sort(sample)],
    }


def _class_counts(labels: Sequence[str], decided: list[str], rng, confidence: np.ndarray, key: str) -> dict:
    counts = {name: sum(1 for label in decided if label == name) for name in labels}
    total = max(sum(counts.values()), 1)
    return {
        "class_counts": counts,
        "class_fractions": {name: float(count / total) for name, count in counts.items()},
        key: _distribution(confidence, rng),
    }


def prediction_profile(output: OutputSpec, predictions: np.ndarray, rng: np.random.Generator) -> dict:
    """The shipped variant's test-split predictions as the device decides them (module docstring)."""
    values = np.asarray(predictions, dtype=np.float64).reshape(len(predictions), -1)
    if output.task is TaskKind.REGRESSION:
        return {"values": {name: _distribution(values[:, index], rng) for index, name in enumerate(output.labels)}}
    decisions = decide(output, values)
    if output.task is TaskKind.MULTILABEL:
        counts = {name: sum(1 for decision in decisions if name in decision.labels) for name in output.labels}
        return {
            "label_counts": counts,
            "label_fractions": {name: float(count / max(len(decisions), 1)) for name, count in counts.items()},
            "scores": {name: _distribution(values[:, index], rng) for index, name in enumerate(output.labels)},
        }
    decided = [decision.label for decision in decisions]
    if output.task is TaskKind.ANOMALY:
        return _class_counts(output.labels, decided, rng,
                             np.array([decision.scores[ANOMALY_SCORE] for decision in decisions]), "score")
    return _class_counts(output.labels, decided, rng, np.array([decision.confidence for decision in decisions]),
                         "confidence")


def build_reference_profile(
    features: dict[str, np.ndarray],
    probabilities: np.ndarray,
    class_names: Sequence[str],
    feature_kind: str,
    seed: int = 0,
    *,
    output: OutputSpec | None = None,
) -> dict:
    """Profile of the test split's summary features and of the shipped variant's predictions
    (``output``: the bundle's output spec; None = multiclass probabilities over ``class_names``)."""
    rng = np.random.default_rng(seed)
    if output is None:
        output = OutputSpec(("probabilities",), TaskKind.MULTICLASS, tuple(class_names), MulticlassRule())
    return {
        "schema_version": PROFILE_SCHEMA_VERSION,
        "split": "test",
        "samples": len(probabilities),
        "task": output.task.value,
        "feature_kind": feature_kind,
        "features": {name: _distribution(values, rng) for name, values in features.items()},
        "predictions": prediction_profile(output, probabilities, rng),
    }
