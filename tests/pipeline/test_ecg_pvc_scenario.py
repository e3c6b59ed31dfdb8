"""The registered real-data scenario ``ecg-pvc``: record-wise splits, a tiny end-to-end build with its recording-level
validation (manifest, report, gate), and the published bundle on a real record excerpt through ``runtime.runner``."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from pipeline.build.recording_results import RESULTS_FILE
from pipeline.build.stages.data import load_data
from pipeline.config import Profile
from pipeline.errors import DataError
from pipeline.scenarios import default_scenario_names, get_scenario, scenario_names
from pipeline.scenarios.ecg_pvc.mitdb import RECORD_IDS, RECORD_LEADS, excerpt, load_records
from pipeline.scenarios.ecg_pvc.scenario import TINY_RECORDS, RecordSplits, held_out_leads
from pipeline.splits import SPLIT_NAMES
from runtime.bundle import load_bundle
from runtime.contract import BundleManifest, TaskKind
from runtime.contract.derived import StreamFeature
from runtime.events import BeatEvent
from runtime.runner import RunOptions, run
from runtime.trust import TrustPolicy

VARIANTS = {"fp32", "fp16", "int8-dynamic", "int8-static"}


def _manifest(build) -> BundleManifest:
    _, outcome = build
    return BundleManifest.from_dict(json.loads((outcome.bundle_directory / "manifest.json").read_text()))


def test_make_build_ships_the_real_data_scenarios_and_keeps_the_synthetic_one_registered():
    shipped = default_scenario_names()
    assert shipped[:2] == ["ecg-pvc", "breast-cancer"] and "ecg-arrhythmia" not in shipped
    assert "ecg-arrhythmia" in scenario_names() and not get_scenario("ecg-arrhythmia").shipped_by_default
    scenario = get_scenario("ecg-pvc")
    assert scenario.class_names == ("non-V", "V") and scenario.task is TaskKind.BINARY


@pytest.mark.parametrize("profile", list(Profile))
def test_record_splits_never_share_a_record(profile):
    records = get_scenario("ecg-pvc").data_config(profile).records
    splits = [set(records.of(name)) for name in SPLIT_NAMES]
    assert all(splits), "every split has a record"
    assert sum(len(split) for split in splits) == len(set().union(*splits))  # pairwise disjoint
    assert set().union(*splits) <= set(RECORD_IDS)


def test_a_record_in_two_splits_is_refused():
    with pytest.raises(DataError, match="record 119 is in the train and the test split"):
        RecordSplits(train=("119", "200"), validation=("114",), calibration=("123",), test=("119",))
    with pytest.raises(DataError, match="not in the vendored subset"):
        replace(TINY_RECORDS, calibration=("999",))


def test_the_bundle_declares_the_leads_of_its_held_out_records_only():
    """The held-out gate measures the test records, all MLII in every profile; 114's V5 only sets the threshold
    (validation), so no profile declares it — a split that tests on 114 would."""
    assert {record.record_id: record.lead for record in load_records()} == RECORD_LEADS
    for profile in Profile:
        config = get_scenario("ecg-pvc").data_config(profile)
        assert held_out_leads(config.records) == ("MLII",)
        residual = get_scenario("ecg-pvc").device_contract(config).inputs[0]
        assert residual.leads == ("MLII",)
    assert held_out_leads(RecordSplits(train=("200",), validation=("116",), calibration=("123",),
                                       test=("114", "119"))) == ("MLII", "V5")


def test_the_data_stage_takes_each_split_from_its_own_records_only(ecg_pvc_build):
    _, outcome = ecg_pvc_build
    data = outcome.artifacts["data"]
    splits, provenance = load_data(data), data.metrics["provenance"]
    assert provenance["record_splits"] == TINY_RECORDS.to_dict()
    per_record = provenance["beats_per_record"]
    for name in SPLIT_NAMES:
        records = TINY_RECORDS.of(name)
        assert len(splits.split(name)) == sum(per_record[record]["detections"] for record in records)
        assert int(np.sum(splits.split(name).labels)) == sum(per_record[record]["v"] for record in records)
    assert provenance["synthetic"] is False and "ODC-By" in provenance["licence"]
    assert provenance["trained_on"].startswith("MIT-BIH records 200 only")
    # one record's beats are one bootstrap group: the test intervals resample records, not beats
    test = splits.test
    assert sorted(set(test.groups.tolist())) == [f"record {record}" for record in sorted(TINY_RECORDS.test)]
    assert splits.group_unit.startswith("MIT-BIH record")
    assert provenance["test_resampling"] == {
        "unit": splits.group_unit, "groups": len(TINY_RECORDS.test), "samples": len(test),
        "note": f"whole groups resampled ({splits.group_unit}): the samples of one group are correlated"}


def test_tiny_build_runs_every_stage_and_gates_on_recordings(ecg_pvc_build):
    _, outcome = ecg_pvc_build
    assert list(outcome.artifacts) == ["data", "train", "export", "variants", "evaluate", "validate", "bundle"]
    validate = outcome.artifacts["validate"]
    document = json.loads(validate.path(RESULTS_FILE).read_text())
    assert set(document["variants"]) == VARIANTS
    assert [item["record"] for item in document["records"]] == list(TINY_RECORDS.test)
    fp32 = document["variants"]["fp32"]
    assert [row["record"] for row in fp32["per_record"]] == list(TINY_RECORDS.test)
    references = {item["record"]: item for item in document["records"]}
    for row in fp32["per_record"]:  # every reference beat is found or missed; every reference V is a TP or FN
        assert row["qrs_true_positives"] + row["qrs_false_negatives"] == references[row["record"]]["reference_beats"]
        assert row["v_true_positives"] + row["v_false_negatives"] == references[row["record"]]["reference_v"]
    assert fp32["verdict"]["passed"] and "no absolute floors" in fp32["verdict"]["rule"]  # tiny: a smoke build
    assert fp32["healthy"] is None  # the tiny profile leaves the healthy recordings out
    assert validate.metrics["passed"]["fp32"] is True


def test_manifest_and_report_carry_the_per_record_tables(ecg_pvc_build):
    _, outcome = ecg_pvc_build
    manifest = _manifest(ecg_pvc_build)
    section = manifest.recording_validation
    assert section["shipped_variant"] == manifest.variant and set(section["variants"]) == VARIANTS
    assert manifest.lineage["validate"] == outcome.artifacts["validate"].id
    shipped = manifest.variants[manifest.variant]
    assert shipped["gate"]["passed"] and "| recordings passed" in shipped["gate"]["reason"]
    assert set(shipped["recordings"]) >= {"v_sensitivity", "qrs_sensitivity", "healthy_false_pvc_rate", "gate"}
    assert manifest.output.task is TaskKind.BINARY and manifest.output.labels == ("non-V", "V")
    assert "F1" in manifest.output.decision.chosen_by and 0 < manifest.output.decision.threshold < 1
    assert {spec.name: spec.stream_feature for spec in manifest.inputs} == {
        "residual": StreamFeature.TEMPLATE_RESIDUAL, "rr": StreamFeature.RR_FEATURES}
    assert manifest.inputs[0].derived.template.minimum_pre_to_local == 0.9
    assert manifest.inputs[0].leads == ("MLII",) and manifest.inputs[1].leads == ()  # the test records' lead
    assert manifest.data.synthetic is False
    report = (outcome.bundle_directory / "report.md").read_text()
    assert "## Recording-level validation (held-out records, full device stream)" in report
    assert "| record | beats | V | QRS Se | QRS +P | V Se | V +P | V FPR | V TP / FN / FP | unclassified |" in report
    for record in TINY_RECORDS.test:
        assert f"\n| {record} | " in report
    assert "validated on lead MLII (the held-out recordings' lead): the device refuses" in report
    assert "| **gross** |" in report and "Healthy recordings: not run in this build." in report
    assert (f"Intervals: percentile bootstrap over {len(TINY_RECORDS.test)} whole groups of the "
            in report) and "(one group: MIT-BIH record" in report
    assert manifest.data.provenance["test_resampling"]["groups"] == len(TINY_RECORDS.test)
    assert "Trained on: MIT-BIH records 200 only" in report and "Moody GB, Mark RG" in report
    assert "Synthetic data" not in report


def test_rerun_reuses_the_validation(ecg_pvc_build):
    root, first = ecg_pvc_build
    from tests.pipeline.conftest import tiny_build

    again = tiny_build("ecg-pvc", root)
    assert again.reused["validate"] and again.artifacts["validate"].id == first.artifacts["validate"].id


def test_the_published_bundle_runs_on_a_real_record_excerpt(ecg_pvc_build, tmp_path):
    _, outcome = ecg_pvc_build
    (record,) = load_records(["119"])
    part = excerpt(record, 60.0)
    signal = tmp_path / "record.npy"
    np.save(signal, part.signal_mv)
    events = list(run(outcome.bundle_directory, signal, RunOptions(sample_rate_hz=360.0,
                                                                   trust=TrustPolicy.development())))
    beats = [event for event in events if isinstance(event, BeatEvent)]
    assert abs(len(beats) - part.beat_indices.size) <= 2
    classified = [event for event in beats if event.classified]
    assert classified and {event.beat_class for event in classified} <= {"non-V", "V"}
    assert all(event.pre_rr_ms and event.local_rr_ms for event in classified)
    assert all(event.quality_flags for event in beats if not event.classified)  # unjudged beats say why
    assert "warming_up" in beats[0].quality_flags
    assert load_bundle(outcome.bundle_directory, trust=TrustPolicy.development()).variant in VARIANTS


def test_the_published_bundle_refuses_record_114s_v5_lead_and_runs_119s_mlii(ecg_pvc_build, tmp_path):
    """``edgemed export-record`` names the lead in the CSV header; the device runs the MLII record and refuses the V5
    one (lead 114 is in no held-out split, so the bundle was never validated on it) with one clear line."""
    from click.testing import CliRunner

    from pipeline.cli import main

    _, outcome = ecg_pvc_build
    runner = CliRunner()
    notes = {}
    for record in ("114", "119"):
        written = runner.invoke(main, ["export-record", record, "--output", str(tmp_path / f"{record}.csv"),
                                       "--seconds", "30"])
        assert written.exit_code == 0, written.output
        notes[record] = [line for line in written.output.splitlines() if line.startswith("note:")]
    assert notes == {"114": ["note: lead V5: the shipped ecg-pvc bundle is validated on MLII only; it refuses this "
                             "CSV (its header names the lead)"], "119": []}
    assert (tmp_path / "114.csv").read_text().startswith("V5\n")
    assert (tmp_path / "119.csv").read_text().startswith("MLII\n")
    common = ["run", str(outcome.bundle_directory), "--sample-rate", "360", "--allow-unsigned"]
    refused = runner.invoke(main, [*common, "--input", str(tmp_path / "114.csv")])
    assert refused.exit_code != 0 and "114.csv is lead V5; this bundle's model was validated on MLII only" in (
        refused.output)
    assert "Traceback" not in refused.output
    # an .npy carries no lead: the device runs it unchecked, unless --lead says which lead it is
    assert runner.invoke(main, ["export-record", "114", "--output", str(tmp_path / "114.npy"), "--seconds", "30"]
                         ).exit_code == 0
    stated = runner.invoke(main, [*common, "--input", str(tmp_path / "114.npy"), "--lead", "V5"])
    assert stated.exit_code != 0 and "114.npy is lead V5; this bundle's model was validated on MLII only" in (
        stated.output)
    ran = runner.invoke(main, [*common, "--input", str(tmp_path / "119.csv"), "--output",
                               str(tmp_path / "events.jsonl")])
    assert ran.exit_code == 0, ran.output
    beats = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert sum(beat.get("class") in ("non-V", "V") for beat in beats) > 20  # 30 s of bigeminy: ~40 beats
