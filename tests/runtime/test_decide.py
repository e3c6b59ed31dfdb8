"""The per-kind decision functions: each task kind's rule applied to model outputs, with known answers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from runtime.contract import MulticlassRule, TaskKind, UnsupportedBundleError
from runtime.decide import DECIDERS, OutputShapeError, decide, require_single_label
from tests.runtime.test_contract import OUTPUTS


def test_every_task_kind_has_a_decide_function():
    assert set(DECIDERS) == set(TaskKind)


def test_multiclass_is_argmax_with_the_low_confidence_flag():
    spec = OUTPUTS[TaskKind.MULTICLASS]  # N, S, V, F; low confidence under 0.5
    decisions = decide(spec, np.array([[0.7, 0.1, 0.1, 0.1], [0.2, 0.3, 0.45, 0.05]], np.float32))
    assert [d.label for d in decisions] == ["N", "V"]
    assert [d.low_confidence for d in decisions] == [False, True]
    assert decisions[1].confidence == pytest.approx(0.45) and decisions[1].scores["S"] == pytest.approx(0.3)


def test_multiclass_logits_get_the_softmax_and_no_threshold_means_no_flag():
    spec = dataclasses.replace(OUTPUTS[TaskKind.MULTICLASS], graph_outputs_logits=True, decision=MulticlassRule(None))
    (decision,) = decide(spec, np.array([[0.0, 0.0, np.log(2.0), 0.0]]))
    assert decision.label == "V" and decision.confidence == pytest.approx(0.4) and not decision.low_confidence
    assert sum(decision.scores.values()) == pytest.approx(1.0)


def test_binary_is_positive_at_or_above_the_operating_threshold():
    spec = OUTPUTS[TaskKind.BINARY]  # non-V / V at 0.31
    decisions = decide(spec, np.array([[0.30], [0.31], [0.9]]))
    assert [d.label for d in decisions] == ["non-V", "V", "V"]
    assert decisions[0].confidence == pytest.approx(0.70) and decisions[2].confidence == pytest.approx(0.9)
    assert decisions[1].scores == pytest.approx({"non-V": 0.69, "V": 0.31})


def test_multilabel_applies_each_labels_own_threshold_after_the_sigmoid():
    spec = OUTPUTS[TaskKind.MULTILABEL]  # af ≥ 0.4, lbbb ≥ 0.5, rbbb ≥ 0.6; graph outputs logits
    probabilities = np.array([[0.45, 0.45, 0.65], [0.1, 0.5, 0.59]])
    logits = np.log(probabilities / (1 - probabilities))
    first, second = decide(spec, logits)
    assert first.labels == ("af", "rbbb") and first.label is None
    assert second.labels == ("lbbb",) and second.scores["rbbb"] == pytest.approx(0.59)


def test_regression_reports_values_by_target():
    spec = OUTPUTS[TaskKind.REGRESSION]  # qt_interval [ms], heart_rate [bpm], from two outputs
    (decision,) = decide(spec, np.array([[412.0, 61.5]]))
    assert decision.labels == () and decision.scores == {"qt_interval": 412.0, "heart_rate": 61.5}
    assert decision.confidence is None


def test_anomaly_flags_scores_at_or_above_the_threshold():
    spec = OUTPUTS[TaskKind.ANOMALY]  # threshold −3.25
    decisions = decide(spec, np.array([[-4.0], [-3.25], [10.0]]))
    assert [d.label for d in decisions] == ["normal", "anomalous", "anomalous"]
    assert decisions[0].scores == {"score": -4.0}


@pytest.mark.parametrize("kind", list(TaskKind))
def test_outputs_with_the_wrong_columns_are_refused(kind):
    spec = OUTPUTS[kind]
    with pytest.raises(OutputShapeError, match=f"\\(n, {spec.columns}\\)"):
        decide(spec, np.zeros((2, spec.columns + 1)))
    assert decide(spec, np.zeros((0, spec.columns))) == []


def test_event_runners_take_only_single_label_kinds():
    for kind in (TaskKind.MULTICLASS, TaskKind.BINARY):
        require_single_label(OUTPUTS[kind], "tabular runner")
    for kind in (TaskKind.MULTILABEL, TaskKind.REGRESSION, TaskKind.ANOMALY):
        with pytest.raises(UnsupportedBundleError, match=kind.value):
            require_single_label(OUTPUTS[kind], "tabular runner")
