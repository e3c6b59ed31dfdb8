"""The stage cache: ids, reuse, atomic writes, tamper detection, lineage."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.build.artifacts import (
    MANIFEST_NAME,
    StageResult,
    artifact_id,
    load_artifact,
    run_stage,
    write_json_atomic,
)
from runtime.hashing import sha256_file


@dataclass(frozen=True)
class ToyConfig:
    value: int = 1


def _writer(calls: list[int], content: str = "hello"):
    def produce(work: Path) -> StageResult:
        calls.append(1)
        (work / "out.txt").write_text(content)
        return StageResult({"length": len(content)})

    return produce


def test_same_request_is_reused_and_changed_config_is_not(tmp_path):
    calls: list[int] = []
    first, reused_first = run_stage("toy", ToyConfig(), None, tmp_path, _writer(calls))
    second, reused_second = run_stage("toy", ToyConfig(), None, tmp_path, _writer(calls))
    third, _ = run_stage("toy", ToyConfig(value=2), None, tmp_path, _writer(calls))
    assert (reused_first, reused_second) == (False, True)
    assert first.id == second.id != third.id
    assert len(calls) == 2


def test_manifest_records_lineage_hashes_and_times(tmp_path):
    parent, _ = run_stage("parent", ToyConfig(), None, tmp_path, _writer([]))
    child, _ = run_stage("child", ToyConfig(), parent, tmp_path, _writer([], "world"))
    manifest = json.loads((child.directory / MANIFEST_NAME).read_text())
    assert manifest["parent_id"] == parent.id
    assert manifest["id"] == artifact_id("child", ToyConfig(), parent.id) == child.directory.name
    assert manifest["config"] == {"value": 1}
    assert manifest["metrics"] == {"length": 5}
    assert manifest["files"] == {"out.txt": sha256_file(child.directory / "out.txt")}
    assert manifest["started_at"] <= manifest["ended_at"]
    assert "numpy" in manifest["tool_versions"]


def test_changed_parent_changes_child_id(tmp_path):
    parent_a, _ = run_stage("parent", ToyConfig(1), None, tmp_path, _writer([]))
    parent_b, _ = run_stage("parent", ToyConfig(2), None, tmp_path, _writer([]))
    assert artifact_id("child", ToyConfig(), parent_a.id) != artifact_id("child", ToyConfig(), parent_b.id)


def test_tampered_artifact_is_rebuilt_not_reused(tmp_path):
    calls: list[int] = []
    artifact, _ = run_stage("toy", ToyConfig(), None, tmp_path, _writer(calls))
    (artifact.directory / "out.txt").write_text("tampered")
    assert load_artifact(artifact.directory) is None
    rebuilt, reused = run_stage("toy", ToyConfig(), None, tmp_path, _writer(calls))
    assert not reused and len(calls) == 2
    assert (rebuilt.directory / "out.txt").read_text() == "hello"


def test_interrupted_stage_leaves_nothing_that_would_be_reused(tmp_path):
    class InterruptedStageError(RuntimeError):
        pass

    def crash(work: Path) -> StageResult:
        (work / "half.txt").write_text("half")
        raise InterruptedStageError

    with pytest.raises(InterruptedStageError):
        run_stage("toy", ToyConfig(), None, tmp_path, crash)
    stage_folder = tmp_path / "toy"
    assert list(stage_folder.iterdir()) == []
    calls: list[int] = []
    _, reused = run_stage("toy", ToyConfig(), None, tmp_path, _writer(calls))
    assert not reused and calls == [1]


def test_atomic_json_write_keeps_the_old_file_when_serialisation_fails(tmp_path):
    target = tmp_path / "data.json"
    write_json_atomic(target, {"ok": 1})
    with pytest.raises(ValueError):
        write_json_atomic(target, {"bad": float("nan")})
    assert json.loads(target.read_text()) == {"ok": 1}
    assert [path.name for path in tmp_path.iterdir()] == ["data.json"]


def test_a_parent_rebuilt_under_its_id_with_other_content_rebuilds_its_children(tmp_path):
    """A stage chosen by measurement (int8 settings by timing) can be rebuilt under the same id with other content:
    its children, and theirs, are rebuilt rather than reused with figures of the old content."""
    parent_calls: list[int] = []
    child_calls: list[int] = []
    grandchild_calls: list[int] = []
    parent, _ = run_stage("parent", ToyConfig(), None, tmp_path, _writer(parent_calls, "int8 per-tensor"))
    child, _ = run_stage("child", ToyConfig(), parent, tmp_path, _writer(child_calls, "metrics of per-tensor"))
    run_stage("grandchild", ToyConfig(), child, tmp_path, _writer(grandchild_calls))
    (parent.directory / "out.txt").write_text("damaged")  # the parent no longer verifies: rebuilt, same id
    rebuilt, reused = run_stage("parent", ToyConfig(), None, tmp_path, _writer(parent_calls, "int8 per-channel"))
    assert not reused and rebuilt.id == parent.id and len(parent_calls) == 2
    again, reused_child = run_stage("child", ToyConfig(), rebuilt, tmp_path, _writer(child_calls, "new metrics"))
    assert not reused_child and again.id == child.id and len(child_calls) == 2
    assert again.manifest["parent_manifest_sha256"] == sha256_file(rebuilt.directory / MANIFEST_NAME)
    _, reused_grandchild = run_stage("grandchild", ToyConfig(), again, tmp_path, _writer(grandchild_calls))
    assert not reused_grandchild and len(grandchild_calls) == 2
    _, reused_now = run_stage("child", ToyConfig(), rebuilt, tmp_path, _writer(child_calls))
    assert reused_now and len(child_calls) == 2  # the same parent: reused


def test_metrics_edited_in_a_stage_manifest_are_not_reused(tmp_path):
    """Later stages build the bundle's manifest from a stage's recorded metrics: an edit to them (or a manifest
    written before manifests were sealed) rebuilds the stage."""
    calls: list[int] = []
    first, _ = run_stage("toy", ToyConfig(), None, tmp_path, _writer(calls))
    path = first.directory / MANIFEST_NAME
    manifest = json.loads(path.read_text())
    manifest["metrics"]["length"] = 999
    path.write_text(json.dumps(manifest))
    assert load_artifact(first.directory) is None
    again, reused = run_stage("toy", ToyConfig(), None, tmp_path, _writer(calls))
    assert not reused and again.metrics == {"length": 5} and len(calls) == 2
    manifest = json.loads(path.read_text())
    del manifest["seal"]
    path.write_text(json.dumps(manifest))
    assert load_artifact(first.directory) is None
