"""Archive validation on Ray Data in local mode: a tiny archive of real MIT-BIH excerpts and one corrupt file.

Ray starts once for the module (two CPUs, no dashboard); ``validate_archive`` finds it running and uses it. The
bundle is the hand-built PVC bundle of the runtime tests (linear, unsigned): the figures are not the point, the
agreement with the build's own recording validation is.
"""

from __future__ import annotations

import concurrent.futures
import copy
import dataclasses
import json
import logging
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from pipeline.archive import read_archive
from pipeline.archive.bare import bare_run
from pipeline.archive.generate import ArchiveRecording, Corruption, write_archive
from pipeline.archive.layout import ArchiveEntry
from pipeline.archive.loopback import loopback_only
from pipeline.archive.report import class_shares, render_markdown
from pipeline.archive.run import REPORT_JSON, REPORT_MARKDOWN, RESULTS_NAME, ArchiveRunConfig, validate_archive
from pipeline.archive.worker import RESULT_SCHEMA, TrustSettings, WorkerConfig, entry_from_row
from pipeline.cli import main
from pipeline.scenarios.ecg_pvc.mitdb import excerpt, load_records
from pipeline.validation.ec57 import METRICS, Ec57Config
from pipeline.validation.recordings import AnnotatedRecording, RecordingValidationConfig, validate_bundle
from runtime.real_data import RealDataStatus
from tests.runtime.pvc_bundle import RESIDUAL, RR_INPUT, build_pvc_bundle

ray = pytest.importorskip("ray")

UNSIGNED = TrustSettings(allow_unsigned=True)
RECORDING = RecordingValidationConfig(ec57=Ec57Config(replicates=200), healthy=False)
CONFIG = ArchiveRunConfig(workers=2, worker=WorkerConfig(recording=RECORDING))
EXCERPTS = (("119", 0.0), ("119", 300.0), ("200", 0.0), ("106", 600.0))  # PVC-rich records, 60 s each
SECONDS = 60.0
HANG_GUARD_S = 120  # a probe still running after this is stuck (a hang guard, not a speed target)


@pytest.fixture(scope="module")
def local_ray():
    with loopback_only(ray):  # as the pipeline starts it: servers on 127.0.0.1 only
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.ERROR,
                 log_to_driver=False, object_store_memory=128 * 1024**2)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def excerpts():
    records = {record.record_id: record for record in load_records(sorted({name for name, _ in EXCERPTS}))}
    return {f"mitdb-{name}-{int(start):04d}": excerpt(records[name], SECONDS, start) for name, start in EXCERPTS}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, excerpts):
    root = tmp_path_factory.mktemp("archive")
    bundle = build_pvc_bundle(root / "bundle")
    recordings = [ArchiveRecording(name, part.signal_mv, part.sample_rate_hz, part.beat_indices,
                                   ["V" if is_v else "non-V" for is_v in part.is_pvc.tolist()], group=part.record_id)
                  for name, part in excerpts.items()]
    write_archive(root / "archive", recordings, "four MIT-BIH minutes and a truncated file", corrupt=1)
    return root, bundle


@pytest.fixture(scope="module")
def outcome(local_ray, workspace):
    root, bundle = workspace
    return validate_archive(bundle, read_archive(root / "archive"), root / "out", UNSIGNED, CONFIG)


def test_the_corrupt_file_is_listed_and_every_other_recording_runs(outcome):
    report = outcome.report
    assert report["totals"]["recordings"] == 5 and report["totals"]["succeeded"] == 4
    assert report["totals"]["annotated"] == 4
    assert report["totals"]["signal_s"] == pytest.approx(4 * SECONDS)
    (failure,) = report["failed"]
    assert failure["name"] == f"corrupt-00-{Corruption.TRUNCATED_NPY.value}"
    assert failure["error_type"] == "InputError" and "header claims" in failure["error"]
    ran = [row for row in outcome.rows if row["status"] == "ok"]
    assert all(row["beats"] > 50 and row["stream_s"] > 0 and row["inference_s"] > 0 for row in ran)
    assert sum(report["run"]["rows_per_worker"].values()) == 5


def test_parquet_has_one_row_per_file_in_index_order(outcome, workspace):
    root, _ = workspace
    table = pq.read_table(root / "out" / RESULTS_NAME)
    assert table.schema.equals(RESULT_SCHEMA)
    assert table.num_rows == 5
    assert table.column("name").to_pylist() == [entry.name for entry in read_archive(root / "archive").entries]
    assert table.column("status").to_pylist() == ["ok"] * 4 + ["failed"]
    report = json.loads((root / "out" / REPORT_JSON).read_text())
    assert report["results"]["rows"] == 5 and report["failed"][0]["name"].startswith("corrupt-00")
    markdown = (root / "out" / REPORT_MARKDOWN).read_text()
    assert "corrupt-00-truncated-npy" in markdown and "QRS Se" in markdown
    real_data = report["bundle"]["real_data"]  # the hand-built bundle's manifest says its data are synthetic
    assert real_data == {"status": RealDataStatus.NOT_VALIDATED.value, "validated": False,
                         "reason": "its training and test data are synthetic (a simulation)"}
    assert "**Real data: the bundle is NOT validated on real data** (its training and test data are synthetic" \
        in markdown
    assert sorted(path.name for path in (root / "out").iterdir()) == [REPORT_JSON, REPORT_MARKDOWN, RESULTS_NAME]
    # the classes called: per recording (every classified beat once, the positive label's count as called_v) and in all
    rows = [row for row in table.to_pylist() if row["status"] == "ok"]
    for row in rows:
        classes = json.loads(row["classes"])
        assert sum(classes.values()) == row["classified"] and classes.get("V", 0) == row["called_v"]
    assert report["totals"]["classes"] == dict(sum((Counter(json.loads(row["classes"])) for row in rows), Counter()))
    shares = ", ".join(f"{name} {count} ({count / report['totals']['classified']:.1%})"
                       for name, count in report["totals"]["classes"].items())
    assert f"Classes called (classified beats): {shares}." in markdown


def test_the_report_says_what_the_manifest_says_about_real_data(outcome):
    """An archive run is an evaluation: it runs a bundle a device would refuse, and its report says which it was."""
    report = copy.deepcopy(outcome.report)
    report["bundle"]["real_data"] = {"status": RealDataStatus.NOT_STATED.value, "validated": False,
                                     "reason": "its manifest carries no evidence verdict"}
    assert "**Real data: real-data validation not stated** (its manifest carries no evidence verdict)" \
        in render_markdown(report)
    report["bundle"]["real_data"] = {"status": RealDataStatus.VALIDATED.value, "validated": True, "reason": "passed"}
    assert "Real data: the bundle's manifest says it was validated on real data (passed)." in render_markdown(report)


def test_ec57_figures_equal_the_build_recording_validation(outcome, workspace, excerpts):
    """The same recordings run directly through pipeline.validation.recordings give the same counts and figures."""
    _, bundle = workspace
    recordings = [AnnotatedRecording(name, part.signal_mv, part.sample_rate_hz, part.beat_indices / part.sample_rate_hz,
                                     part.is_pvc.copy()) for name, part in excerpts.items()]
    direct = validate_bundle(bundle, recordings, RECORDING)
    archived = outcome.report["validation"]
    assert archived["per_record"] == direct["per_record"]
    assert archived["gross"] == direct["gross"]
    assert archived["intervals"] == direct["intervals"]
    assert archived["gross"]["v_true_positives"] > 0  # there were PVCs to find
    rows = {row["name"]: row for row in outcome.rows}
    for record in direct["per_record"]:
        assert {name: rows[record["record"]][name] for name in METRICS} == {name: record[name] for name in METRICS}
    assert {group["record"] for group in archived["groups"]} == {"106", "119", "200"}
    assert archived["floors"]["numbers"]["floors"]["healthy_false_pvc_rate"]["passed"] is None


def test_the_command_runs_on_ray_and_writes_its_outputs(local_ray, workspace):
    root, bundle = workspace
    result = CliRunner().invoke(main, ["validate-archive", str(bundle), "--archive", str(root / "archive"),
                                       "--output", str(root / "cli-out"), "--allow-unsigned", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "4/5 recordings ran" in result.output and "FAILED corrupt-00-truncated-npy" in result.output
    assert (root / "cli-out" / RESULTS_NAME).is_file() and (root / "cli-out" / REPORT_MARKDOWN).is_file()
    classes = json.loads((root / "cli-out" / REPORT_JSON).read_text())["totals"]["classes"]
    assert classes and f"classes called: {class_shares(classes)}" in result.output


def test_refusals_exit_1_before_ray_and_bad_options_exit_2(tmp_path, workspace):
    root, bundle = workspace
    runner = CliRunner()
    missing = runner.invoke(main, ["validate-archive", str(bundle), "--archive", str(tmp_path / "none"),
                                   "--allow-unsigned"])
    assert missing.exit_code == 1 and "does not exist" in missing.output and "Fix:" in missing.output
    (tmp_path / "empty").mkdir()
    empty = runner.invoke(main, ["validate-archive", str(bundle), "--archive", str(tmp_path / "empty"),
                                 "--allow-unsigned"])
    assert empty.exit_code == 1 and "holds no recording" in empty.output
    unsigned = runner.invoke(main, ["validate-archive", str(bundle), "--archive", str(root / "archive")])
    assert unsigned.exit_code == 1 and "Expected:" in unsigned.output  # no trust store, no allowance: refused
    no_bundle = runner.invoke(main, ["validate-archive", str(tmp_path / "no-bundle"), "--archive",
                                     str(root / "archive"), "--allow-unsigned"])
    assert no_bundle.exit_code == 1
    zero = runner.invoke(main, ["validate-archive", str(bundle), "--archive", str(root / "archive"), "--workers", "0"])
    assert zero.exit_code == 2


def test_a_wrong_bundle_a_non_ray_port_and_a_run_where_nothing_ran_fail_clearly(local_ray, tmp_path, workspace,
                                                                                tmp_path_factory):
    """A tabular bundle is refused for what it is, before Ray, leaving no output folder and no rollback record; a
    port that answers TCP but is not Ray is refused, not waited on (Ray's own connect retries for ever); a run where
    every recording failed exits 1; "--archive ." writes ARCHIVE-validation beside the archive, not "-validation"
    inside it; a failed file's name with '|' keeps the report's table whole."""
    import os
    import shutil
    import socket
    import threading

    from pipeline.archive.layout import ArchiveError
    from pipeline.archive.run import check_reachable
    from tests.runtime.conftest import session_trust, tiny_bundle

    root, bundle = workspace
    runner = CliRunner()
    store = tmp_path / "trust-store"
    store.mkdir()
    for key in session_trust(tmp_path_factory).store.glob("*.pem"):
        shutil.copy(key, store)
    tabular = runner.invoke(main, ["validate-archive", str(tiny_bundle("breast-cancer", tmp_path_factory)),
                                   "--archive", str(root / "archive"), "--trust-store", str(store), "--output",
                                   str(tmp_path / "tabular-out"), "--no-progress"])
    assert tabular.exit_code == 1 and "cannot run on the device's ECG stream" in tabular.output, tabular.output
    assert "an ECG beat-classifier bundle" in tabular.output
    assert not (tmp_path / "tabular-out").exists() and not (store / "bundle-versions.json").exists()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    threading.Thread(target=listener.accept, daemon=True).start()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # a probe that hung would fail here, not block the suite
        probe = pool.submit(check_reachable, f"127.0.0.1:{listener.getsockname()[1]}", timeout_s=2.0)
        with pytest.raises(ArchiveError, match="something answers there, but not Ray"):
            probe.result(timeout=HANG_GUARD_S)
    listener.close()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a|b.npy").write_bytes(b"not a numpy file")
    (broken / "c.npy").write_bytes(b"nor this")
    result = runner.invoke(main, ["validate-archive", str(bundle), "--archive", str(broken), "--sample-rate", "360",
                                  "--allow-unsigned", "--no-progress"])
    assert result.exit_code == 1 and "none of the 2 recordings ran" in result.output, result.output
    markdown = (tmp_path / "broken-validation" / REPORT_MARKDOWN).read_text()
    failed = [line for line in markdown.splitlines() if line.startswith("| a")]
    assert failed and "a\\|b" in failed[0] and failed[0].replace("\\|", "").count("|") == 4, failed
    here = os.getcwd()
    try:
        os.chdir(broken)
        dot = runner.invoke(main, ["validate-archive", str(bundle), "--archive", ".", "--sample-rate", "360",
                                   "--allow-unsigned", "--no-progress"])
    finally:
        os.chdir(here)
    assert "broken-validation" in dot.output and not (broken / "-validation").exists(), dot.output


def test_every_field_of_an_entry_reaches_the_ray_worker():
    entry = ArchiveEntry("a", "/x/a.hea", 360.0, "/x/a.atr", "patient 1", "V5")
    assert entry_from_row({"order": 7, **entry.to_row()}) == (entry, 7)


def test_on_ray_the_index_lead_is_kept_and_a_lead_the_bundle_was_not_validated_on_is_refused(local_ray, tmp_path,
                                                                                              excerpts):
    """The index's lead travels with each entry to the Ray workers: MLII runs, V5 is a refused row, unscored."""
    bundle = build_pvc_bundle(tmp_path / "bundle", (dataclasses.replace(RESIDUAL, leads=("MLII",)), RR_INPUT))
    name, part = next(iter(excerpts.items()))
    recordings = [ArchiveRecording(f"{name}-{lead}", part.signal_mv, part.sample_rate_hz, part.beat_indices,
                                   ["V" if is_v else "non-V" for is_v in part.is_pvc.tolist()], extra={"lead": lead})
                  for lead in ("MLII", "V5")]
    write_archive(tmp_path / "archive", recordings, "one excerpt, said to be two leads")
    outcome = validate_archive(bundle, read_archive(tmp_path / "archive"), None, UNSIGNED, CONFIG)
    assert [(row["lead"], row["status"]) for row in outcome.rows] == [("MLII", "ok"), ("V5", "refused")]
    assert outcome.report["totals"]["refused"] == {"V5": 1} and outcome.report["failed"] == []
    assert [item["record"] for item in outcome.report["validation"]["per_record"]] == [f"{name}-MLII"]
    control = bare_run(str(bundle), read_archive(tmp_path / "archive"), UNSIGNED, CONFIG.worker, workers=1)
    assert (control["failed"], control["refused"]) == (0, 1), control  # the scaling control counts as the report does


def test_make_archive_writes_annotated_excerpts_and_corrupt_files(tmp_path):
    result = CliRunner().invoke(main, ["make-archive", "--output", str(tmp_path / "made"), "--recordings", "3",
                                       "--seconds", "20", "--records", "119", "--corrupt", "2"])
    assert result.exit_code == 0, result.output
    archive = read_archive(tmp_path / "made")
    assert [entry.name for entry in archive.entries] == ["mitdb-119-000", "mitdb-119-001", "mitdb-119-002",
                                                         "corrupt-00-truncated-npy", "corrupt-01-text-csv"]
    assert archive.entries[0].group == "119 (test)" and "do not overlap" in archive.source["note"]
    assert archive.source["excerpts"]["records"] == ["119"] and "from 1 MIT-BIH records" in archive.source["note"]
    assert np.load(archive.entries[0].file).shape == (20 * 360,)
    again = CliRunner().invoke(main, ["make-archive", "--output", str(tmp_path / "made")])
    assert again.exit_code == 2 and "already exists" in again.output
