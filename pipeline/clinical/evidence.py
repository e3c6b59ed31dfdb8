"""The evidence rule: may a bundle ship its classes, judged by how much REAL test evidence each one has?

The clinical gate compares variants with the fp32 reference; it cannot tell that the reference itself was measured
on too little. One rule holds for every scenario and user build (``EvidenceRule``): each class (each label, or the
whole test split for a model without classes) needs at least ``min_examples`` real test examples, from at least
``min_sources`` distinct sources (recordings, subjects) that no training example came from. A synthetic test split
has no real examples. Where a build does not say where its test examples come from (a user's ``.npz`` without
``test_sources``; a scenario without ``Scenario.test_sources``), only the examples are counted and the verdict says
independence is unverified; where it says where they come from but not what trained the model (a ``.npz`` without
``train_sources``), the sources are counted and the verdict says their independence of training is unverified.

A failing verdict stops the bundle stage (``EvidenceError``) unless the rule is not enforced: the ``tiny`` profile
(tests and smoke builds, never releases) and ``edgemed build --allow-unvalidated`` (a development build that must
say so). Either way the verdict is written into the manifest (``data.provenance.evidence``) and the report.

Counting sources cannot tell a class spread over its recordings from one whose second recording adds a stray beat.
Every class therefore also carries its largest source's share and its effective number of sources (the inverse
Simpson index of its independent sources' examples), and a passing class with over ``CONCENTRATED_SHARE`` of its
examples from one source is named in the verdict's ``concentration`` and in a box of the report: disclosed, not
refused (its figures are real, but they describe mostly that recording or subject).

This module must not import tensorflow, keras or onnx.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import GateError

WHOLE_SPLIT = "all test examples"  # the one "class" of a model without classes (regression, anomaly scores)
CONCENTRATED_SHARE = 0.8  # a passing class with over this share of its examples from one source is disclosed


class EvidenceError(GateError):
    """A class has too little real, independent test evidence to ship."""


@dataclass(frozen=True)
class EvidenceRule:
    """How much real test evidence every shipped class needs, and whether a shortfall stops the build."""

    min_examples: int = 30  # real test examples per class (under 30, a sensitivity's interval spans ±0.15 or more)
    min_sources: int = 2  # distinct recordings/subjects among them, none also used for training
    enforced: bool = True  # False: tiny profile, or --allow-unvalidated (recorded, said in the report)

    def describe(self) -> str:
        return (f"every class needs at least {self.min_examples} real test examples from at least {self.min_sources} "
                "recordings or subjects that no training example came from")


@dataclass(frozen=True)
class ClassSources:
    """Where one class's test examples come from: examples per source, and the sources also used in training."""

    examples: Mapping[str, int]
    in_training: frozenset[str] = field(default_factory=frozenset)
    training_recorded: bool = True  # False: what trained the model is not known (``in_training`` is then empty)

    def independent(self) -> int:
        return sum(1 for source, count in self.examples.items() if count > 0 and source not in self.in_training)

    def spread(self) -> tuple[float, float] | None:
        """(largest source's share, effective number of sources) of the independent sources' examples; None when
        there are none. The effective number is the inverse Simpson index 1 / Σ pᵢ²: 486 beats of which 444 come
        from one recording are worth ~1.2 recordings, however many others add a beat or two."""
        counts = [count for source, count in self.examples.items() if count > 0 and source not in self.in_training]
        total = sum(counts)
        if not total:
            return None
        return max(counts) / total, total * total / sum(count * count for count in counts)


@dataclass(frozen=True)
class ClassEvidence:
    label: str
    examples: int  # real test examples
    sources: int | None  # distinct sources among them (None: not recorded)
    independent: int | None  # of which none also in training
    shortfalls: tuple[str, ...]
    largest_share: float | None = None  # of the independent sources' examples, the largest one's share
    effective_sources: float | None = None  # inverse Simpson index of the independent sources (ClassSources.spread)

    @property
    def passed(self) -> bool:
        return not self.shortfalls

    @property
    def concentrated(self) -> bool:
        """Whether the class passes on its source count while one source holds over ``CONCENTRATED_SHARE`` of its
        examples (its figures describe mostly that recording): disclosed beside the verdict, not a failure of it."""
        return self.passed and self.largest_share is not None and self.largest_share > CONCENTRATED_SHARE

    def to_dict(self) -> dict[str, Any]:
        return {"examples": self.examples, "sources": self.sources, "independent_sources": self.independent,
                "largest_source_share": None if self.largest_share is None else round(self.largest_share, 4),
                "effective_sources": None if self.effective_sources is None else round(self.effective_sources, 2),
                "passed": self.passed, "shortfalls": list(self.shortfalls)}


@dataclass(frozen=True)
class EvidenceVerdict:
    rule: EvidenceRule
    classes: tuple[ClassEvidence, ...]
    synthetic: bool
    sources_recorded: bool
    training_recorded: bool = True  # False: sources recorded, but not the training's (their independence unverified)

    @property
    def passed(self) -> bool:
        return all(item.passed for item in self.classes)

    def failing(self) -> list[ClassEvidence]:
        return [item for item in self.classes if not item.passed]

    def summary(self) -> str:
        if self.passed:
            return f"every class has the real test evidence the rule asks{self.caveat()}"
        return "; ".join(f"{item.label}: {', '.join(item.shortfalls)}" for item in self.failing())

    def concentration(self) -> str:
        """The classes whose real test examples come mostly from one source (``ClassEvidence.concentrated``), in
        words; empty when none."""
        found = [f"{item.label}: {item.largest_share:.0%} of its examples from one source (worth "
                 f"{item.effective_sources:.1f} sources)" for item in self.classes if item.concentrated]
        return "; ".join(found)

    def caveat(self) -> str:
        """What the verdict could not check, in parentheses (empty when it checked everything)."""
        if not self.sources_recorded:
            return " (sources not recorded: independence unverified)"
        if not self.training_recorded:
            return " (training sources not recorded: independence of training unverified)"
        return ""

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule.describe(), "enforced": self.rule.enforced, "passed": self.passed,
                "synthetic_test_data": self.synthetic, "sources_recorded": self.sources_recorded,
                "training_sources_recorded": self.training_recorded, "summary": self.summary(),
                "concentration": self.concentration(),
                "classes": {item.label: item.to_dict() for item in self.classes}}


def class_test_counts(class_balance: Mapping[str, Any], sizes: Mapping[str, Any],
                      labels: Sequence[str]) -> dict[str, int]:
    """Test examples per class from a data stage's ``class_balance["test"]`` (label → count); a model without
    classes (or a balance of another shape) counts its whole test split (``sizes["test"]``) as one."""
    balance = class_balance.get("test") if isinstance(class_balance, Mapping) else None
    if labels and isinstance(balance, Mapping) and all(isinstance(balance.get(label, 0), int) for label in labels):
        return {label: int(balance.get(label, 0)) for label in labels}
    total = sizes.get("test") if isinstance(sizes, Mapping) else None
    return {WHOLE_SPLIT: int(total) if isinstance(total, int) else 0}


def sources_by_split(rows: Iterable[tuple[str, str, str, int]]) -> dict[str, ClassSources]:
    """Per class, its test examples by source, from ``(source, class, split, examples)`` rows of a data stage's
    provenance; a source is also in training when any of its rows (any class) is in the train split."""
    rows = list(rows)
    trained = frozenset(source for source, _, split, count in rows if split == "train" and count > 0)
    tested: dict[str, dict[str, int]] = {}
    for source, label, split, count in rows:
        if split == "test" and count > 0:
            found = tested.setdefault(label, {})
            found[source] = found.get(source, 0) + int(count)
    return {label: ClassSources(examples, trained & frozenset(examples)) for label, examples in tested.items()}


def one_source_each(counts: Mapping[str, int]) -> dict[str, ClassSources]:
    """Each test example its own source (a row per patient, as in a tabular study), none in training."""
    return {label: ClassSources({f"{label} #{index}": 1 for index in range(count)}) for label, count in counts.items()}


def judge_evidence(rule: EvidenceRule, counts: Mapping[str, int], *, synthetic: bool,
                   sources: Mapping[str, ClassSources] | None) -> EvidenceVerdict:
    """The rule applied to each class's test ``counts``; ``sources`` per class where the build records them."""
    classes = []
    for label, count in counts.items():
        real = 0 if synthetic else count
        shortfalls = []
        if synthetic:
            shortfalls.append(f"its {count} test examples are synthetic (0 real)")
        elif real < rule.min_examples:
            shortfalls.append(f"{real} real test example{'s' * (real != 1)} (at least {rule.min_examples} needed)")
        found = sources.get(label) if sources is not None else None
        distinct = independent = spread = None
        if found is not None:
            spread = found.spread()
            distinct = sum(1 for value in found.examples.values() if value > 0)
            independent = found.independent()
            if not synthetic and independent < rule.min_sources:
                shared = distinct - independent
                also = f"; {shared} of them also in training" if shared else ""
                shortfalls.append(f"{independent} independent source{'s' * (independent != 1)} of {distinct} "
                                  f"(at least {rule.min_sources} needed{also})")
        share, effective = spread if spread is not None and not synthetic else (None, None)
        classes.append(ClassEvidence(label, real, distinct, independent, tuple(shortfalls), share, effective))
    training = sources is not None and all(found.training_recorded for found in sources.values())
    return EvidenceVerdict(rule, tuple(classes), synthetic, sources is not None, training or sources is None)


def refuse_unvalidated(verdict: EvidenceVerdict, bundle_name: str) -> None:
    """``EvidenceError`` when the verdict failed under an enforced rule."""
    if verdict.passed or not verdict.rule.enforced:
        return
    raise EvidenceError(
        f"{bundle_name} does not ship: {verdict.summary()}",
        expected=verdict.rule.describe(),
        fix="validate the class on more real recordings (add them to the test split), or build it for development "
            "only with 'edgemed build --allow-unvalidated' (the manifest and report then say it is not validated)",
    )
