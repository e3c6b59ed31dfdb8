"""The bundle report's warnings: classes with too few test examples are called out above everything else."""

from __future__ import annotations

from pipeline.build.bundle_report import THIN_EVIDENCE, thin_evidence_lines
from pipeline.clinical.metrics import ClassMetrics, Estimate


def _class(name: str, support: int, sensitivity: float) -> ClassMetrics:
    estimate = Estimate(sensitivity, sensitivity - 0.3, min(1.0, sensitivity + 0.2))
    return ClassMetrics(name=name, support=support, sensitivity=estimate, specificity=estimate, ppv=estimate,
                        f1=estimate, auroc=estimate)


class _Metrics:
    def __init__(self, *per_class: ClassMetrics) -> None:
        self.per_class = per_class


def test_classes_with_few_test_examples_are_named_with_their_interval_and_the_others_are_not():
    lines = thin_evidence_lines(_Metrics(_class("clean", 900, 0.99), _class("movement", 8, 0.75),
                                         _class("noise", 1, 1.0)))
    (box,) = [line for line in lines if line]
    assert box.startswith("> **Thin evidence.**") and f"Under {THIN_EVIDENCE} test examples" in box
    assert "movement: 8 test examples, sensitivity 0.750 [0.450, 0.950]" in box
    assert "noise: 1 test example, sensitivity" in box and "clean" not in box
    assert thin_evidence_lines(_Metrics(_class("clean", 900, 0.99), _class("movement", THIN_EVIDENCE, 0.9))) == []
