"""The archive format, its generator and its refusals (``pipeline.archive.layout``, ``generate``): no Ray needed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.archive.generate import ArchiveRecording, Corruption, overlap_s, plan_excerpts, write_archive
from pipeline.archive.layout import (
    INDEX_NAME,
    AnnotationError,
    ArchiveError,
    read_annotations,
    read_archive,
    write_annotations,
)
from pipeline.archive.run import _complete
from pipeline.archive.worker import RESULT_SCHEMA
from pipeline.errors import DataError

RATE = 360.0


def recording(name: str, seconds: float = 2.0, beats: list[int] | None = None) -> ArchiveRecording:
    samples = np.sin(np.linspace(0, 20, round(seconds * RATE))).astype(np.float32)
    positions = np.array(beats if beats is not None else [100, 400, 700])
    labels = ["non-V", "V", "non-V"][: positions.size]
    return ArchiveRecording(name, samples, RATE, positions, labels, group="g", extra={"start_s": 0.0})


def test_excerpts_are_spread_over_the_sources_and_their_overlap_is_stated():
    plans = plan_excerpts({"a": 100.0, "b": 60.0}, 5, 30.0)
    assert [(plan.source, plan.start_s) for plan in plans] == [("a", 0.0), ("a", 35.0), ("a", 70.0), ("b", 0.0),
                                                               ("b", 30.0)]
    assert overlap_s(plans) == 0.0
    assert overlap_s(plan_excerpts({"a": 100.0}, 4, 40.0)) == 20.0  # starts 0, 20, 40, 60
    with pytest.raises(DataError, match="shorter than"):
        plan_excerpts({"a": 10.0}, 1, 30.0)


def test_written_archive_reads_back_with_its_annotations_and_corrupt_files(tmp_path):
    index = write_archive(tmp_path / "archive", [recording("one"), recording("two")], "two tiny recordings",
                          {"note": "hand-made"}, corrupt=len(Corruption))
    archive = read_archive(index.parent)
    assert archive.indexed and archive.description == "two tiny recordings" and archive.source == {"note": "hand-made"}
    names = [entry.name for entry in archive.entries]
    assert names[:2] == ["one", "two"] and len(names) == 2 + len(Corruption)
    first = archive.entries[0]
    assert first.sample_rate_hz == RATE and first.group == "g" and Path(first.file).is_file()
    annotations = read_annotations(first.annotations)
    assert annotations.beat_samples.tolist() == [100, 400, 700]
    assert annotations.is_positive().tolist() == [False, True, False]
    assert annotations.beats_s() == pytest.approx(np.array([100, 400, 700]) / RATE)
    assert not any(path.name.startswith(".") for path in tmp_path.iterdir())  # no staging folder left behind
    assert not Path(archive.entries[-1].file).exists()  # the "missing file" corruption
    with pytest.raises(ArchiveError, match="not an empty folder"):
        write_archive(index.parent, [recording("three")], "again")


def test_an_unindexed_folder_is_scanned_and_takes_the_given_rate(tmp_path):
    np.save(tmp_path / "b.npy", np.zeros(10, np.float32))
    np.save(tmp_path / "a.npy", np.zeros(10, np.float32))
    write_annotations(tmp_path / "a.annotations.json", RATE, np.array([3]), ["V"])
    (tmp_path / "notes.txt").write_text("not a recording")
    archive = read_archive(tmp_path, sample_rate_hz=250.0)
    assert not archive.indexed
    assert [(entry.name, entry.sample_rate_hz, entry.annotations is not None) for entry in archive.entries] == [
        ("a", 250.0, True), ("b", 250.0, False)]


@pytest.mark.parametrize(("index", "message"), [
    ("{not json", "not valid JSON"),
    (json.dumps({"format": "something-else", "version": 1, "recordings": []}), "not an edgemed archive index"),
    (json.dumps({"format": "edgemed-archive", "version": 1, "recordings": [{"name": "x", "file": "../x.npy"}]}),
     "without '..'"),
    (json.dumps({"format": "edgemed-archive", "version": 1, "recordings": [{"name": "x", "file": "/etc/passwd"}]}),
     "relative to the archive folder"),
    (json.dumps({"format": "edgemed-archive", "version": 1, "recordings": [
        {"name": "x", "file": "a.npy"}, {"name": "x", "file": "b.npy"}]}), "recordings 1 and 2 .* same name"),
    (json.dumps({"format": "edgemed-archive", "version": 1, "recordings": [
        {"name": "x", "file": "a.npy", "sample_rate_hz": 5}]}), "outside the range"),
    (json.dumps({"format": "edgemed-archive", "version": 1, "recordings": []}), "holds no recording"),
])
def test_a_bad_index_is_refused_as_a_whole(tmp_path, index, message):
    (tmp_path / INDEX_NAME).write_text(index)
    with pytest.raises(ArchiveError, match=message) as caught:
        read_archive(tmp_path)
    assert caught.value.expected and caught.value.fix


def test_a_bad_index_entry_is_named_and_a_name_clash_in_a_folder_says_which_file_to_rename(tmp_path):
    (tmp_path / INDEX_NAME).write_text(json.dumps({"format": "edgemed-archive", "version": 1, "recordings": [
        {"name": "first", "file": "a.npy"}, {"name": "second", "file": "b.npy", "sample_rate_hz": 20000}]}))
    with pytest.raises(ArchiveError, match=r"recording 2 of the index \('second'\): sample_rate_hz") as caught:
        read_archive(tmp_path)
    assert "--sample-rate" in caught.value.fix
    folder = tmp_path / "scanned"
    folder.mkdir()
    np.save(folder / "rec1.npy", np.zeros(10, np.float32))
    (folder / "rec1.csv").write_text("0\n")
    with pytest.raises(ArchiveError, match="more than once") as caught:
        read_archive(folder, sample_rate_hz=360.0)
    assert "rename one of the files" in caught.value.fix


@pytest.mark.parametrize(("second", "field"), [({"name": "one", "file": "b.npy"}, "name"),
                                               ({"name": "two", "file": "./a.npy"}, "file '[.]/a[.]npy' and lead")])
def test_a_recording_listed_twice_is_refused_not_scored_twice(tmp_path, second, field):
    (tmp_path / INDEX_NAME).write_text(json.dumps({"format": "edgemed-archive", "version": 1, "recordings": [
        {"name": "one", "file": "a.npy"}, {"name": "other", "file": "c.npy"}, second]}))
    with pytest.raises(ArchiveError, match=f"recordings 1 and 3 of the index have the same {field}") as caught:
        read_archive(tmp_path)
    assert "listed once" in caught.value.expected and "remove the repeated entry" in caught.value.fix


def test_a_missing_or_empty_archive_says_what_and_how_to_fix(tmp_path):
    with pytest.raises(ArchiveError, match="does not exist") as caught:
        read_archive(tmp_path / "nowhere")
    assert "edgemed make-archive" in caught.value.fix
    with pytest.raises(ArchiveError, match="holds no recording"):
        read_archive(tmp_path)


@pytest.mark.parametrize(("document", "message"), [
    ({"format": "edgemed-beat-annotations", "version": 1, "sample_rate_hz": 360.0, "beat_samples": [5, 3],
      "labels": ["V", "V"]}, "unsorted"),
    ({"format": "edgemed-beat-annotations", "version": 1, "sample_rate_hz": 360.0, "beat_samples": [5],
      "labels": ["V", "non-V"]}, "aligned"),
    ({"format": "edgemed-beat-annotations", "version": 1, "sample_rate_hz": 360.0, "beat_samples": [1.5],
      "labels": ["V"]}, "aligned"),
    ({"format": "edgemed-beat-annotations", "version": 1, "sample_rate_hz": 1.0, "beat_samples": [],
      "labels": []}, "outside the range"),
    ({"beat_samples": []}, "not an edgemed beat-annotation file"),
    ({"format": "edgemed-beat-annotations", "version": 1, "sample_rate_hz": 360.0, "beat_samples": [10, 10**30],
      "labels": ["V", "V"]}, "beyond any recording's length"),
    # a PVC labelled "PVC" (or "v", or an MIT-BIH symbol) used to be read as non-V: every true V call a false alarm
    ({"format": "edgemed-beat-annotations", "version": 1, "sample_rate_hz": 360.0, "beat_samples": [10, 400, 800],
      "labels": ["non-V", "PVC", "v"]}, "2 label\\(s\\) are neither 'V' nor 'non-V' \\(e.g. 'PVC', 'v'\\)"),
    ({"format": "edgemed-beat-annotations", "version": 1, "sample_rate_hz": 360.0, "beat_samples": [10],
      "labels": ["Jane Doe 1970-01-01"]}, "1 label\\(s\\) are neither 'V' nor 'non-V'\\. "),
])
def test_a_bad_sidecar_fails_its_recording(tmp_path, document, message):
    path = tmp_path / "x.annotations.json"
    path.write_text(json.dumps(document))
    with pytest.raises(AnnotationError, match=message) as caught:
        read_annotations(path)
    assert caught.value.expected and caught.value.fix and "Jane" not in str(caught.value)  # a label is not echoed


def test_a_recording_whose_worker_died_is_reported_not_dropped(tmp_path):
    index = write_archive(tmp_path / "archive", [recording("one"), recording("two")], "two")
    archive = read_archive(index.parent)
    survivor = {name: None for name in RESULT_SCHEMA.names} | {"order": 1, "name": "two", "status": "ok"}
    rows = _complete([survivor], archive)
    assert [row["name"] for row in rows] == ["one", "two"]
    assert rows[0]["status"] == "failed" and rows[0]["error_type"] == "WorkerLost" and rows[1] is survivor
