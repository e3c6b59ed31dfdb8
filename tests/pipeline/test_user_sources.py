"""A user's .npz says where its test rows come from (``test_sources``) and what trained the model
(``train_sources``): the evidence rule counts independent sources per class, the manifest holds opaque numbers
only, and an enforced build that fails stops before the export."""

from __future__ import annotations

import json
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np
import pytest
from click.testing import CliRunner

from pipeline.build.user_sources import PROVENANCE_KEY, sources_provenance, user_test_sources
from pipeline.cli import main
from pipeline.clinical.evidence import WHOLE_SPLIT, EvidenceRule, judge_evidence
from pipeline.errors import DataError
from runtime.contract import TaskKind
from tests.pipeline.test_user_models import TEST, make_mlp

NAMES = ("class_0", "class_1", "class_2")
PATIENT_IDS = np.array(["MRN-4471", "MRN-4471", "MRN-9902", "MRN-9902", "MRN-1200", "MRN-1200"])
LABELS = np.array([0, 1, 0, 1, 0, 1])


def _verdict(contents, labels=LABELS, kind=TaskKind.BINARY, names=("negative", "positive"), minimum=1):
    entry = sources_provenance(contents, kind, labels, names, len(labels))
    counts = {name: int(np.sum(labels == index)) for index, name in enumerate(names)}
    rule = EvidenceRule(min_examples=minimum, min_sources=2)
    return entry, judge_evidence(rule, counts, synthetic=False, sources=user_test_sources({PROVENANCE_KEY: entry},
                                                                                           counts))


def test_test_sources_count_distinct_recordings_per_class_and_training_overlap_is_not_independent():
    entry, verdict = _verdict({"test_sources": PATIENT_IDS, "train_sources": np.array(["MRN-1200", "MRN-0001"])})
    assert verdict.passed and verdict.training_recorded
    assert [(item.sources, item.independent) for item in verdict.classes] == [(3, 2), (3, 2)]
    assert "MRN" not in json.dumps(entry)  # ids never reach the provenance (nor the manifest copied from it)
    assert entry == {"sources": 3, "examples": {"negative": {"1": 1, "2": 1, "3": 1}, "positive": {"1": 1, "2": 1,
                                                                                                   "3": 1}},
                     "training_recorded": True, "in_training": [3]}

    _, overlapping = _verdict({"test_sources": PATIENT_IDS, "train_sources": np.array(["MRN-1200", "MRN-9902"])})
    assert not overlapping.passed
    assert "1 independent source of 3 (at least 2 needed; 2 of them also in training)" in overlapping.summary()


def test_without_train_sources_the_verdict_says_independence_of_training_is_unverified():
    _, verdict = _verdict({"test_sources": PATIENT_IDS})
    assert verdict.passed and verdict.sources_recorded and not verdict.training_recorded
    assert "training sources not recorded" in verdict.summary()
    assert verdict.to_dict()["training_sources_recorded"] is False
    _, verdict = _verdict({"test_sources": np.array([7, 7, 7, 7, 7, 7])})  # integer ids: one recording
    assert [item.sources for item in verdict.classes] == [1, 1] and not verdict.passed


def test_a_model_without_classes_counts_sources_over_the_whole_test_split():
    entry = sources_provenance({"test_sources": PATIENT_IDS}, TaskKind.REGRESSION, None, ("value",), 6)
    assert entry["examples"] == {WHOLE_SPLIT: {"1": 2, "2": 2, "3": 2}}
    multilabel = sources_provenance({"test_sources": PATIENT_IDS}, TaskKind.MULTILABEL,
                                    np.array([[1, 0], [1, 1], [0, 1], [0, 0], [1, 0], [0, 0]]), ("a", "b"), 6)
    assert multilabel["examples"] == {"a": {"1": 2, "3": 1}, "b": {"1": 1, "2": 1}}


@pytest.mark.parametrize(("contents", "needle"), [
    ({"train_sources": PATIENT_IDS}, "train_sources but no test_sources"),
    ({"test_sources": PATIENT_IDS[:4]}, "test_sources has 4 ids for 6 test rows"),
    ({"test_sources": np.linspace(0, 1, 6)}, "test_sources is a float64 array"),
    ({"test_sources": PATIENT_IDS.reshape(3, 2)}, "test_sources is a <U8 array of shape (3, 2)"),
    ({"test_sources": np.array(["MRN-4471", "", "x", "y", "z", "w"])}, "test_sources[1] is empty"),
    ({"test_sources": PATIENT_IDS, "train_sources": np.array([], dtype=str)}, "train_sources is empty"),
])
def test_bad_source_arrays_are_refused_naming_the_key_never_an_id(contents, needle):
    with pytest.raises(DataError) as caught:
        sources_provenance(contents, TaskKind.BINARY, LABELS, ("negative", "positive"), 6)
    text = f"{caught.value.what} {caught.value.expected} {caught.value.fix}"
    assert needle in text and "MRN" not in text


def _user_build(folder, *extra):
    return CliRunner().invoke(main, ["build", "--model", str(folder / "model.keras"), "--data",
                                     str(folder / "data.npz"), "--name", "sourced", "--artifacts",
                                     str(folder / "artifacts"), "--bundles", str(folder / "bundles"), *extra])


def _with_sources(folder, test_sources, train_sources):
    with np.load(folder / "data.npz") as arrays:
        contents = {key: arrays[key] for key in arrays.files}
    np.savez(folder / "data.npz", **(contents | {"test_sources": test_sources, "train_sources": train_sources}))


def test_a_user_build_is_judged_on_its_sources_before_the_export_and_the_manifest_holds_no_id(tmp_path):
    import keras

    keras.utils.set_random_seed(0)
    make_mlp(tmp_path)
    recording = np.array([f"MRN-{index % 3}" for index in range(TEST)])  # 3 recordings, ~100 rows each
    _with_sources(tmp_path, recording, np.array(["MRN-0", "MRN-1", "MRN-7"]))  # two of them also trained it

    refused = _user_build(tmp_path)  # the default profile enforces the rule
    assert refused.exit_code != 0
    assert "does not ship" in refused.output and "2 of them also in training" in refused.output
    assert "MRN" not in refused.output
    assert not (tmp_path / "artifacts" / "export").exists() and not (tmp_path / "bundles" / "sourced").exists()
    inspected = CliRunner().invoke(main, ["inspect", str(tmp_path / "model.keras"), "--data",
                                          str(tmp_path / "data.npz")])
    assert inspected.exit_code == 0 and "evidence: fails — class_0: 1 independent source of 3" in inspected.output

    _with_sources(tmp_path, recording, np.array(["MRN-7", "MRN-8"]))  # trained on other recordings
    built = _user_build(tmp_path, "--profile", "tiny")
    assert built.exit_code == 0, built.output
    manifest_text = (tmp_path / "bundles" / "sourced" / "manifest.json").read_text()
    evidence = json.loads(manifest_text)["data"]["provenance"]["evidence"]
    assert evidence["passed"] and evidence["sources_recorded"] and evidence["training_sources_recorded"]
    assert {label: item["independent_sources"] for label, item in evidence["classes"].items()} == {
        name: 3 for name in NAMES}
    assert "MRN" not in manifest_text
