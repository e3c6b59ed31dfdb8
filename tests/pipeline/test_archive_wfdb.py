"""WFDB records in an archive: real MIT-BIH excerpts written in PhysioNet's own format (format 212, the database's
ADC integers, its header fields: gain 200, 11 bits, ADC zero 1024), with their beat annotations in ``.atr``.

The WFDB route must give what the ``.npy`` + sidecar route gives for the same excerpt (the same signal, beats and
EC57 counts), pass the converter's limits to the stream (MIT-BIH 116 clips at 0 / 2047), find the records when it
scans a folder, and fail a broken record as a row, never the run.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pipeline.archive import read_archive
from pipeline.archive.generate import ArchiveRecording, write_archive
from pipeline.archive.layout import AnnotationError, ArchiveError
from pipeline.archive.report import UNNAMED_LEAD, failures, refusals, render_markdown, totals, validation
from pipeline.archive.wfdb_records import lead_index, read_wfdb_annotations, read_wfdb_signal
from pipeline.archive.worker import COUNT_FIELDS, validate_recording
from pipeline.cli import main
from pipeline.scenarios.ecg_pvc.mitdb import excerpt, load_records
from pipeline.validation.ec57 import METRICS, Ec57Config
from pipeline.validation.recordings import RecordingValidationConfig
from runtime.bundle import load_bundle
from runtime.readers import InputError
from runtime.trust import TrustPolicy
from tests.runtime.pvc_bundle import RESIDUAL, RR_INPUT, build_pvc_bundle

wfdb = pytest.importorskip("wfdb")

RECORDING = RecordingValidationConfig(ec57=Ec57Config(replicates=50), healthy=False)
GAIN, BITS, ZERO = 200.0, 11, 1024  # MIT-BIH's header fields: mV = (code − 1024) / 200, codes 0..2047
EXCERPTS = {"119": (0.0, 120.0), "116": (990.0, 30.0)}  # 116 clips at 0 / 2047 from 1 001.9 s on


def write_wfdb(folder: Path, name: str, part, annotations: bool = True) -> Path:
    """``part`` (an excerpt) as the MIT-BIH database stores it: format 212 codes, its header fields, its lead name;
    beats as ``V`` or ``N`` in ``name.atr`` (the subset keeps V against the rest only)."""
    codes = np.round(part.signal_mv * GAIN + ZERO).astype(np.int64)[:, None]
    wfdb.wrsamp(name, fs=part.sample_rate_hz, units=["mV"], sig_name=["MLII"], d_signal=codes, fmt=["212"],
                adc_gain=[GAIN], baseline=[ZERO], write_dir=str(folder))
    header = folder / f"{name}.hea"
    # wfdb writes a 12-bit converter with zero 0; the database says 11 bits with zero 1024 (the same samples)
    header.write_text(header.read_text().replace("/mV 12 0 ", f"/mV {BITS} {ZERO} ", 1))
    if annotations:
        wfdb.wrann(name, "atr", np.asarray(part.beat_indices), symbol=["V" if pvc else "N" for pvc in
                                                                      part.is_pvc.tolist()],
                   fs=part.sample_rate_hz, write_dir=str(folder))
    return header


@pytest.fixture(scope="module")
def parts():
    records = {record.record_id: record for record in load_records(sorted(EXCERPTS))}
    return {name: excerpt(records[name], seconds, start) for name, (start, seconds) in EXCERPTS.items()}


@pytest.fixture(scope="module")
def folders(tmp_path_factory, parts):
    root = tmp_path_factory.mktemp("wfdb")
    (root / "wfdb").mkdir()
    for name, part in parts.items():
        write_wfdb(root / "wfdb", name, part)
    write_wfdb(root / "wfdb", "119-unannotated", parts["119"], annotations=False)
    write_archive(root / "npy", [ArchiveRecording(name, part.signal_mv, part.sample_rate_hz, part.beat_indices,
                                                  ["V" if pvc else "non-V" for pvc in part.is_pvc.tolist()],
                                                  group=name) for name, part in parts.items()], "the same excerpts")
    return root


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    folder = build_pvc_bundle(tmp_path_factory.mktemp("wfdb-bundle") / "bundle")
    return folder, load_bundle(folder, provider="cpu", threads=1, trust=TrustPolicy(allow_unsigned=True))


def test_the_signal_and_beats_read_back_as_the_database_holds_them(folders, parts):
    part = parts["119"]
    recording = read_wfdb_signal(folders / "wfdb" / "119.hea")
    assert recording.sample_rate_hz == 360.0 and recording.samples.size == part.signal_mv.size
    assert np.max(np.abs(recording.samples - part.signal_mv)) < 1e-6  # mV, from the same codes
    assert recording.adc_range == pytest.approx(((0 - ZERO) / GAIN, (2047 - ZERO) / GAIN))
    annotations = read_wfdb_annotations(folders / "wfdb" / "119.atr")
    assert np.array_equal(annotations.beat_samples, part.beat_indices)
    assert np.array_equal(annotations.is_positive(), part.is_pvc) and part.is_pvc.sum() > 0


def test_a_scanned_folder_lists_each_record_once_with_its_atr(folders):
    archive = read_archive(folders / "wfdb")
    by_name = {entry.name: entry for entry in archive.entries}
    assert set(by_name) == {"116", "119", "119-unannotated"}  # .dat files are a record's signal, not recordings
    assert by_name["119"].annotations.endswith("119.atr") and by_name["119-unannotated"].annotations is None


def test_the_wfdb_route_scores_exactly_as_the_npy_route_and_flags_the_converter_limits(folders, bundle):
    _, opened = bundle
    wfdb_rows = {entry.name: validate_recording(opened, entry, order, RECORDING)
                 for order, entry in enumerate(read_archive(folders / "wfdb").entries)}
    npy_rows = {entry.name: validate_recording(opened, entry, order, RECORDING)
                for order, entry in enumerate(read_archive(folders / "npy").entries)}
    same, other = wfdb_rows["119"], npy_rows["119"]
    assert same["status"] == other["status"] == "ok" and same["annotated"] and same["reference_v"] > 0
    for field in ("beats", "classified", "called_v", "unclassified", "unclassified_flags", "reference_beats",
                  "reference_v", *COUNT_FIELDS):
        assert same[field] == other[field], field
    for field in METRICS:
        assert (same[field] is None and other[field] is None) or math.isclose(same[field], other[field]), field
    assert same["v_true_positives"] > 0
    assert '"clipped"' in wfdb_rows["116"]["quality_seconds"]  # the header's limits reach the stream
    assert {row["lead"] for row in wfdb_rows.values()} == {"MLII"}  # the header's name for the lead read
    assert {row["lead"] for row in npy_rows.values()} == {None}  # a .npy names no lead, nor does this index
    assert wfdb_rows["119-unannotated"]["status"] == "ok" and not wfdb_rows["119-unannotated"]["annotated"]


def test_broken_records_fail_as_rows_naming_the_file(tmp_path, parts, bundle):
    _, opened = bundle
    header = write_wfdb(tmp_path, "cut", parts["119"])
    signal = tmp_path / "cut.dat"
    signal.write_bytes(signal.read_bytes()[:1000])  # truncated: the header promises far more samples
    write_wfdb(tmp_path, "pressure", parts["119"], annotations=False)
    pressure = tmp_path / "pressure.hea"
    pressure.write_text(pressure.read_text().replace("/mV", "/mmHg"))
    (tmp_path / "garbage.hea").write_text("this is not a header\n")
    (tmp_path / "garbage.atr").write_bytes(b"\x00\x01\x02")
    rows = {entry.name: validate_recording(opened, entry, order, RECORDING)
            for order, entry in enumerate(read_archive(tmp_path).entries)}
    assert {name: row["status"] for name, row in rows.items()} == {"cut": "failed", "pressure": "failed",
                                                                   "garbage": "failed"}
    assert rows["pressure"]["error_type"] == "InputError" and "mmHg" in rows["pressure"]["error"]
    assert "Fix:" in rows["pressure"]["error"] and "unexpected error" not in rows["garbage"]["error"]
    assert all(row["error_type"] in {"InputError", "AnnotationError"} for row in rows.values()), rows
    with pytest.raises(InputError, match="sampled at 360 Hz, but the archive says 250 Hz"):
        read_wfdb_signal(header, 250.0)
    with pytest.raises(AnnotationError, match="does not exist"):
        read_wfdb_annotations(tmp_path / "none.atr")


def test_the_lead_is_mlii_then_ii_then_the_first():
    assert lead_index(["V5", "MLII"]) == 1 and lead_index(["I", "II", "III"]) == 1
    assert lead_index(["V1", "V2"]) == 0 and lead_index(None) == 0 and lead_index(["ml ii"]) == 0
    assert lead_index(["V5", "ml II"]) == 1


def test_validate_archive_runs_a_folder_of_wfdb_records_on_ray(folders, bundle):
    folder, _ = bundle
    result = CliRunner().invoke(main, ["validate-archive", str(folder), "--archive", str(folders / "wfdb"),
                                       "--output", str(folders / "wfdb-out"), "--allow-unsigned", "--no-progress",
                                       "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "3/3 recordings ran" in result.output and "EC57 gross over 2 annotated recordings" in result.output
    assert "per lead" not in result.output  # every record is on MLII: one lead, nothing to split


def test_a_lead_the_index_names_is_scored_per_lead_and_a_file_that_names_another_is_refused(tmp_path, parts, bundle):
    """The report scores recordings per lead (a model holds only on its leads): a V5 record is never pooled
    unseen with MLII ones, and an index that names another lead than the record's header fails that record."""
    _, opened = bundle
    write_wfdb(tmp_path, "119", parts["119"])
    v5 = write_wfdb(tmp_path, "116", parts["116"])
    v5.write_text(v5.read_text().replace(" MLII", " V5"))  # the header's signal description
    (tmp_path / "archive.json").write_text(json.dumps({"format": "edgemed-archive", "version": 1, "recordings": [
        {"name": "119", "file": "119.hea", "annotations": "119.atr", "lead": "lead II"},
        {"name": "116", "file": "116.hea", "annotations": "116.atr"},
        {"name": "119-again", "file": "119.hea", "annotations": "119.atr", "lead": "mlii"}]}))
    entries = read_archive(tmp_path).entries
    assert [entry.lead for entry in entries] == ["II", None, "MLII"]  # standard names
    rows = [validate_recording(opened, entry, order, RECORDING) for order, entry in enumerate(entries)]
    assert rows[0]["status"] == "failed"
    assert "the index names lead II, the file's header names lead MLII" in rows[0]["error"]
    assert [row["lead"] for row in rows[1:]] == ["V5", "MLII"]
    assert totals(rows)["leads"] == {"MLII": 1, "V5": 1}
    summary = validation(rows, "fp32", RECORDING)
    assert [(item["record"], item["recordings"]) for item in summary["leads"]] == [("MLII", 1), ("V5", 1)]
    by_lead = {item["record"]: item for item in summary["leads"]}
    assert by_lead["V5"]["v_true_positives"] == rows[1]["v_true_positives"]
    report = {"bundle": {"path": "b", "bundle_id": "x", "variant": "fp32", "signed_by": None},
              "archive": {"folder": "a", "recordings": 3, "indexed": True, "description": ""},
              "run": {"ray": "local", "workers": 1, "threads_per_worker": 1, "pipeline_s": 1.0,
                      "recordings_per_s": 1.0, "signal_s_per_s": 1.0, "ray_start_s": 0.0},
              "totals": totals(rows), "failed": failures(rows), "validation": summary,
              "results": {"file": "r.parquet", "rows": 3, "sha256": "0" * 64}}
    text = render_markdown(report)
    assert "Leads (as each file, or the index, names it): MLII 1, V5 1." in text
    assert "### Per lead (counts pooled)" in text and "| V5 | 1 |" in text


def test_an_index_lead_that_is_no_lead_name_is_refused_without_showing_it(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(10, np.float32))
    (tmp_path / "archive.json").write_text(json.dumps({"format": "edgemed-archive", "version": 1, "recordings": [
        {"name": "a", "file": "a.npy", "sample_rate_hz": 360.0, "lead": "Jane Doe 0042137"}]}))
    with pytest.raises(ArchiveError, match="has a 'lead' that is no standard lead name") as caught:
        read_archive(tmp_path)
    assert "Jane" not in str(caught.value) and "MLII" in caught.value.expected


def test_a_rate_given_on_the_command_line_keeps_every_entry_s_lead(tmp_path):
    """--sample-rate fills in the rate an entry lacks and nothing else: it used to rebuild the entry without its
    lead, so a V5 recording was scored as if its lead were unknown instead of refused."""
    np.save(tmp_path / "a.npy", np.zeros(10, np.float32))
    np.save(tmp_path / "b.npy", np.zeros(10, np.float32))
    (tmp_path / "archive.json").write_text(json.dumps({"format": "edgemed-archive", "version": 1, "recordings": [
        {"name": "a", "file": "a.npy", "lead": "V5", "group": "114"},
        {"name": "b", "file": "b.npy", "sample_rate_hz": 250.0, "lead": "MLII"}]}))
    first, second = read_archive(tmp_path, sample_rate_hz=360.0).entries
    assert (first.sample_rate_hz, first.lead, first.group) == (360.0, "V5", "114")
    assert (second.sample_rate_hz, second.lead) == (250.0, "MLII")


def test_a_lead_the_bundle_was_not_validated_on_fails_as_the_device_refuses_it(tmp_path, parts):
    """A bundle that declares its leads (MLII here): a V5 record — named by its WFDB header, or by a CSV column's
    header — is a failed row that says why, never scored into the figures; an MLII record and an unnamed one run."""
    folder = build_pvc_bundle(tmp_path / "bundle", (dataclasses.replace(RESIDUAL, leads=("MLII",)), RR_INPUT))
    opened = load_bundle(folder, provider="cpu", threads=1, trust=TrustPolicy(allow_unsigned=True))
    archive = tmp_path / "archive"
    archive.mkdir()
    write_wfdb(archive, "119", parts["119"])
    v5 = write_wfdb(archive, "116", parts["116"])
    v5.write_text(v5.read_text().replace(" MLII", " V5"))
    for name, header in (("v5-column", "'V5'"), ("unnamed", "ecg")):
        lines = (f"{value:.3f}" for value in parts["119"].signal_mv)
        (archive / f"{name}.csv").write_text(header + "\n" + "\n".join(lines) + "\n")
    (archive / "archive.json").write_text(json.dumps({"format": "edgemed-archive", "version": 1, "recordings": [
        {"name": "119", "file": "119.hea", "annotations": "119.atr"},
        {"name": "116", "file": "116.hea", "annotations": "116.atr"},
        {"name": "v5-column", "file": "v5-column.csv", "sample_rate_hz": 360.0},
        {"name": "unnamed", "file": "unnamed.csv", "sample_rate_hz": 360.0}]}))
    entries = read_archive(archive).entries
    rows = [validate_recording(opened, entry, order, RECORDING) for order, entry in enumerate(entries)]
    assert [row["status"] for row in rows] == ["ok", "refused", "refused", "ok"]
    assert rows[1]["error_type"] == rows[2]["error_type"] == "UnvalidatedLeadError"
    assert "116 is lead V5; this bundle's model was validated on MLII only" in rows[1]["error"]
    assert "v5-column is lead V5" in rows[2]["error"] and rows[1]["v_true_positives"] is None
    assert rows[0]["lead"] == "MLII" and rows[3]["lead"] is None and rows[3]["beats"] > 100
    total = totals(rows)
    assert total["leads"] == {"MLII": 1, UNNAMED_LEAD: 1} and total["refused"] == {"V5": 2}
    assert total["failed"] == 0 and failures(rows) == []  # a refusal by design is not a broken file
    (refused,) = refusals(rows)
    assert (refused["lead"], refused["recordings"], refused["names"]) == ("V5", 2, ["116", "v5-column"])
    summary = validation(rows, "fp32", RECORDING)
    assert [item["record"] for item in summary["per_record"]] == ["119"]  # only what ran is scored
    report = {"bundle": {"path": "b", "bundle_id": "x", "variant": "fp32", "signed_by": None},
              "archive": {"folder": "a", "recordings": 4, "indexed": True, "description": ""},
              "run": {"ray": "local", "workers": 1, "threads_per_worker": 1, "pipeline_s": 1.0,
                      "recordings_per_s": 1.0, "signal_s_per_s": 1.0, "ray_start_s": 0.0},
              "totals": total, "failed": [], "refused": refusals(rows), "validation": summary,
              "results": {"file": "r.parquet", "rows": 4, "sha256": "0" * 64}}
    text = render_markdown(report)
    assert "## Refused: a lead the bundle was not validated on" in text
    assert "- lead V5: 2 recording(s) (116, v5-column) — 116 is lead V5;" in text
    assert "None: every recording ran." in text  # no failed file
