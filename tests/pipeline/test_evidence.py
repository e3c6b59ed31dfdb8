"""The evidence rule (``pipeline/clinical/evidence.py``): one bar for every build — each class needs 30 real test
examples from 2 recordings or subjects that no training example came from — judged from what each scenario's data
stage records, enforced on full builds, recorded and said on every build."""

from __future__ import annotations

import pytest

from pipeline.build.bundle_report import evidence_lines, thin_evidence_lines
from pipeline.clinical.evidence import (
    WHOLE_SPLIT,
    ClassSources,
    EvidenceError,
    EvidenceRule,
    class_test_counts,
    judge_evidence,
    one_source_each,
    refuse_unvalidated,
    sources_by_split,
)
from pipeline.config import Profile
from pipeline.scenarios import default_scenario_names, get_scenario, scenario_names
from pipeline.scenarios.base import Scenario

RULE = EvidenceRule()


def test_a_class_needs_enough_real_examples_from_enough_independent_sources():
    sources = {"a": ClassSources({"r1": 20, "r2": 20}), "b": ClassSources({"r1": 40}),
               "c": ClassSources({"r1": 25, "r3": 15}, frozenset({"r3"}))}
    verdict = judge_evidence(RULE, {"a": 40, "b": 40, "c": 40}, synthetic=False, sources=sources)
    assert [item.passed for item in verdict.classes] == [True, False, False] and not verdict.passed
    by_label = {item.label: item for item in verdict.classes}
    assert by_label["b"].shortfalls == ("1 independent source of 1 (at least 2 needed)",)
    assert by_label["c"].shortfalls == ("1 independent source of 2 (at least 2 needed; 1 of them also in training)",)
    assert verdict.to_dict()["classes"]["c"] == {"examples": 40, "sources": 2, "independent_sources": 1,
                                                "largest_source_share": 1.0, "effective_sources": 1.0,
                                                "passed": False, "shortfalls": list(by_label["c"].shortfalls)}


def test_a_class_passing_on_a_stray_example_of_a_second_source_is_disclosed_as_concentrated():
    # ecg-pvc's V beats: three test records, but 444 of the 486 from one of them
    sources = {"non-V": ClassSources({"r1": 2000, "r2": 2300, "r3": 2056}),
               "V": ClassSources({"r1": 1, "r2": 41, "r3": 444})}
    verdict = judge_evidence(RULE, {"non-V": 6356, "V": 486}, synthetic=False, sources=sources)
    assert verdict.passed  # the rule counts sources; concentration is disclosed, not refused
    v = verdict.to_dict()["classes"]["V"]
    assert (v["largest_source_share"], v["effective_sources"]) == (0.9136, 1.19)
    assert verdict.concentration() == "V: 91% of its examples from one source (worth 1.2 sources)"
    lines = "\n".join(evidence_lines(verdict.to_dict()))
    assert "**Evidence concentrated in one source.** V: 91%" in lines
    assert "| V | 486 | 3 | 3 | 91% | 1.2 | passes |" in lines
    balanced = judge_evidence(RULE, {"a": 60}, synthetic=False, sources={"a": ClassSources({"r1": 30, "r2": 30})})
    assert balanced.concentration() == "" and balanced.classes[0].effective_sources == 2.0
    assert "concentrated" not in "\n".join(evidence_lines(balanced.to_dict()))


def test_synthetic_test_data_has_no_real_examples_and_unknown_sources_count_examples_only():
    synthetic = judge_evidence(RULE, {"a": 500}, synthetic=True, sources=None)
    assert not synthetic.passed and synthetic.classes[0].examples == 0
    assert "synthetic (0 real)" in synthetic.summary()
    unknown = judge_evidence(RULE, {"a": 30, "b": 29}, synthetic=False, sources=None)
    assert [item.passed for item in unknown.classes] == [True, False] and not unknown.sources_recorded
    assert judge_evidence(RULE, {"a": 30}, synthetic=False, sources=None).summary().endswith(
        "(sources not recorded: independence unverified)")


def test_only_an_enforced_rule_refuses_and_the_refusal_says_what_and_how():
    failing = judge_evidence(RULE, {"movement": 8}, synthetic=False, sources=None)
    with pytest.raises(EvidenceError) as refused:
        refuse_unvalidated(failing, "the bundle for eeg-artifact")
    message = str(refused.value)
    assert "movement: 8 real test examples (at least 30 needed)" in message
    assert "Expected: every class needs at least 30 real test examples" in message and "--allow-unvalidated" in message
    refuse_unvalidated(judge_evidence(EvidenceRule(enforced=False), {"movement": 8}, synthetic=False, sources=None),
                       "x")  # recorded, not refused


def test_test_counts_are_per_class_or_the_whole_split_for_a_model_without_classes():
    balance = {"test": {"non-V": 6356, "V": 486}, "train": {"non-V": 1, "V": 1}}
    assert class_test_counts(balance, {"test": 6842}, ("non-V", "V")) == {"non-V": 6356, "V": 486}
    assert class_test_counts({}, {"test": 120}, ("heart_rate",)) == {WHOLE_SPLIT: 120}
    assert class_test_counts({"test": {"normal": 90, "anomalous": 1}}, {}, ("normal", "anomalous")) == {
        "normal": 90, "anomalous": 1}


def test_sources_by_split_marks_a_source_any_of_whose_rows_trained():
    rows = [("seg3", "em", "train", 186), ("seg3", "em", "test", 19), ("seg2", "mv", "test", 8),
            ("o", "clean", "test", 62), ("h", "clean", "test", 64), ("seg2", "mv", "validation", 4)]
    sources = sources_by_split(rows)
    assert sources["em"].independent() == 0 and sources["mv"].independent() == 1
    assert sources["clean"].examples == {"o": 62, "h": 64} and sources["clean"].independent() == 2
    assert one_source_each({"benign": 3})["benign"].independent() == 3


def _eeg_provenance() -> dict:
    """The parts of the published eeg-artifact data stage (full profile) that the rule reads."""
    def part(file, label, split, kept):
        return {"file": file, "label": label, "split": split, "kept": kept}

    return {"synthetic": False, "parts": [
        part("o.h5", "clean", "test", 62), part("1cm_h.h5", "clean", "test", 64), part("0cm_v.h5", "clean", "test", 64),
        part("seg1.h5", "movement", "train", 73), part("seg2.h5", "movement", "test", 8),
        part("seg3.h5", "electromagnetic", "train", 186), part("seg3.h5", "electromagnetic", "test", 19)]}


def test_eeg_artifact_fails_the_rule_on_its_real_evidence():
    counts = {"clean": 190, "movement": 8, "electromagnetic": 19}
    verdict = judge_evidence(RULE, counts, synthetic=False,
                             sources=get_scenario("eeg-artifact").test_sources(_eeg_provenance(), counts))
    assert {item.label: item.passed for item in verdict.classes} == {"clean": True, "movement": False,
                                                                    "electromagnetic": False}
    assert {item.label: item.independent for item in verdict.classes} == {"clean": 3, "movement": 1,
                                                                         "electromagnetic": 0}


def test_ecg_pvc_sources_are_its_test_records_and_ppg_its_real_blocks():
    provenance = {"record_splits": {"train": ["106"], "test": ["100", "105", "119"]},
                  "beats_per_record": {"106": {"detections": 10, "v": 5}, "100": {"detections": 2272, "v": 1},
                                       "105": {"detections": 2583, "v": 41}, "119": {"detections": 1987, "v": 444}}}
    sources = get_scenario("ecg-pvc").test_sources(provenance, {})
    assert sources["V"].examples == {"100": 1, "105": 41, "119": 444} and sources["V"].independent() == 3
    assert sum(sources["non-V"].examples.values()) == 6356
    blocks = {"train": [{"block": "rest_a 0–60 s", "real": {"acceptable": 50}}],
              "test": [{"block": "motion 13.7–16.7 s", "real": {"artefact": 6, "acceptable": 2}},
                       {"block": "rest_b 0–40 s", "real": {"acceptable": 40}}]}
    ppg = get_scenario("ppg-quality").test_sources({"windows_per_block": blocks}, {})
    assert ppg["motion_artefact"].examples == {"motion": 6} and ppg["acceptable"].independent() == 2


def test_every_default_scenario_records_where_its_test_examples_come_from():
    """The default build ships only scenarios whose sources are recorded (their verdict is checked on real figures
    above and enforced in every full build); the others stay registered, built only when named."""
    for name in default_scenario_names():
        scenario = get_scenario(name)
        assert type(scenario).test_sources is not Scenario.test_sources, name
    assert set(default_scenario_names()) == {"ecg-pvc", "breast-cancer"}
    assert set(scenario_names()) >= {"eeg-artifact", "ppg-quality", "vitals-anomaly", "ecg-arrhythmia"}


def test_the_tiny_profile_records_the_verdict_without_enforcing_it():
    scenario = get_scenario("breast-cancer")
    assert scenario.build_config(Profile.FULL).bundle.evidence.enforced
    assert not scenario.build_config(Profile.TINY).bundle.evidence.enforced


def test_the_report_opens_with_a_box_when_the_rule_failed_and_shows_the_table():
    failing = judge_evidence(EvidenceRule(enforced=False), {"clean": 190, "movement": 8}, synthetic=False,
                             sources={"clean": ClassSources({"a": 100, "b": 90}), "movement": ClassSources({"c": 8})})
    lines = evidence_lines(failing.to_dict())
    assert lines[0].startswith("> **NOT VALIDATED ON REAL DATA — not for clinical use.** movement: 8 real test")
    table = "\n".join(lines)
    assert "| movement | 8 | 1 | 1 | 100% | 1.0 | 8 real test examples (at least 30 needed); 1 independent" in table
    assert "concentrated" not in table  # a failing class is refused, not disclosed as concentrated
    passing = judge_evidence(RULE, {"clean": 190}, synthetic=False, sources=None).to_dict()
    assert not evidence_lines(passing)[0].startswith(">") and "independence unverified" in "\n".join(
        evidence_lines(passing))
    assert evidence_lines(None) == []


def test_the_thin_evidence_box_reads_a_binary_results_classes():
    from types import SimpleNamespace

    interval = SimpleNamespace(to_dict=lambda: {"value": 0.5, "low": 0.1, "high": 0.9})
    item = SimpleNamespace(name="motion_artefact", support=6, sensitivity=interval)
    binary = SimpleNamespace(metrics=SimpleNamespace(per_class=[item]))  # BinaryMetrics keeps them one level down
    assert thin_evidence_lines(binary)[0].startswith("> **Thin evidence.** motion_artefact: 6 test examples")


def test_a_build_records_the_verdict_and_an_enforced_rule_stops_it_before_any_bundle(breast_cancer_build):
    import dataclasses
    import json

    from pipeline.build.builder import build_scenario
    from pipeline.build.context import StageContext

    root, outcome = breast_cancer_build
    manifest = json.loads((outcome.bundle_directory / "manifest.json").read_text())
    evidence = manifest["data"]["provenance"]["evidence"]
    assert evidence["enforced"] is False and evidence["sources_recorded"] is True
    assert set(evidence["classes"]) == {"malignant", "benign"}
    report = (outcome.bundle_directory / "report.md").read_text()
    assert "## Real test evidence per class" in report
    assert ("NOT VALIDATED ON REAL DATA" in report) is (not evidence["passed"])

    scenario = get_scenario("breast-cancer")
    config = scenario.build_config(Profile.TINY, seed=0)
    strict = dataclasses.replace(config.bundle, evidence=EvidenceRule(min_examples=10_000, enforced=True))
    with pytest.raises(EvidenceError, match="real test examples \\(at least 10000 needed\\)"):
        build_scenario(scenario, dataclasses.replace(config, bundle=strict), StageContext(root / "artifacts"),
                       root / "bundles", name="breast-cancer-strict")
    assert not (root / "bundles" / "breast-cancer-strict").exists()
