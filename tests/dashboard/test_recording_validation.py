"""The Builds page's recording-level validation: per-record tables from the manifest, healthy recordings, and the
leave-one-record-out table beside bench.json; a bundle without the section shows none of it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from dashboard.data.builds import (
    healthy_frame,
    leads_note,
    loro_frame,
    recording_records_frame,
    recording_validation,
    recording_variants_frame,
)
from dashboard.data.bundles import read_bundle
from dashboard.data.files import DataUnavailableError
from dashboard.data.settings import DashboardSettings
from pipeline.clinical.recording_gate import judge_recordings
from pipeline.validation.ec57 import BeatCounts, Ec57Config
from pipeline.validation.recordings import RecordingValidationConfig, gate_figures, summarise_counts
from runtime.contract import MANIFEST_NAME, TaskKind
from tests.runtime.hand_built import OUTPUTS, TABULAR, write_manifest
from tests.runtime.pvc_bundle import RESIDUAL, RR_INPUT

BUNDLE = "pvc-test"
COUNTS = [BeatCounts("100", 2272, 1, 0, 1, 0, 0, 2271), BeatCounts("119", 1987, 0, 0, 441, 3, 0, 1543)]
HEALTHY = {"available": True, "source": "PLUX", "beats": 400, "classified": 380, "called_v": 1,
           "false_pvc_rate": 1 / 380,
           "files": {"ecg_5_min.h5": {"sample_rate_hz": 1000.0, "beats": 390, "classified": 380, "called_v": 1,
                                      "false_pvc_rate": 1 / 380},
                     "ecg_20_sec_10_Hz.h5": {"sample_rate_hz": 10.0, "skipped": "too low for QRS detection"}}}


def _section() -> dict:
    config = RecordingValidationConfig(ec57=Ec57Config(replicates=100), healthy=True)
    skipped = {"100": {"beats": 11, "flags": {"warming_up": 11}}, "119": {"beats": 12, "flags": {"warming_up": 12}}}
    variants = {}
    for name in ("fp32", "int8-static"):
        summary = summarise_counts(COUNTS, skipped, config, HEALTHY if name == "fp32" else {"available": False,
                                                                                               "note": "not installed"})
        figures = gate_figures(summary)
        reference = None if name == "fp32" else variants["fp32"]["figures"]
        variants[name] = {"threshold": 0.9, **summary, "figures": figures,
                          "verdict": judge_recordings(name, figures, reference).to_dict()}
    return json.loads(json.dumps({
        "what": "Every variant through the device stream", "source": {"records": ["100", "119"]},
        "records": [{"record": "100", "description": "normal rhythm", "duration_s": 1805.6, "reference_beats": 2273,
                     "reference_v": 1},
                    {"record": "119", "description": "bigeminy", "duration_s": 1805.6, "reference_beats": 1987,
                     "reference_v": 444}],
        "gate": {"rule": "floors: V Se ≥ 90.0%"}, "intervals": "bootstrap", "variants": variants,
        "shipped_variant": "fp32",
    }, default=float))


@pytest.fixture
def recording_settings(tmp_path: Path) -> DashboardSettings:
    folder = tmp_path / "bundles" / BUNDLE
    folder.mkdir(parents=True)
    write_manifest(folder, BUNDLE, (replace(RESIDUAL, leads=("MLII",)), RR_INPUT), OUTPUTS[TaskKind.BINARY],
                   lineage={"bundle": "pvc-id"})
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    manifest["recording_validation"] = _section()
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))
    results = tmp_path / "results"
    results.mkdir()
    folds = [{"record": "100", "counts": {"record": "100", "qrs_true_positives": 2272, "qrs_false_negatives": 1,
                                          "qrs_false_positives": 0, "v_true_positives": 1, "v_false_negatives": 0,
                                          "v_false_positives": 1, "v_true_negatives": 2270},
              "rates": {"qrs_sensitivity": 0.9996, "qrs_positive_predictivity": 1.0, "v_sensitivity": 1.0,
                        "v_positive_predictivity": 0.5, "v_false_positive_rate": 0.0004}}]
    (results / "ecg_pvc_loro.json").write_text(json.dumps({"variants": {"gated-template+rr": {
        "description": "the shipped design", "folds": folds,
        "pooled": {"counts": {**folds[0]["counts"], "record": "pooled"}, "rates": folds[0]["rates"]}}}}))
    return DashboardSettings(tmp_path / "artifacts", tmp_path / "bundles", tmp_path / "telemetry.sqlite3",
                             results / "bench.json")


def test_per_record_and_per_variant_tables_come_from_the_manifest(recording_settings):
    bundle = read_bundle(recording_settings.bundles / BUNDLE)
    assert recording_validation(bundle) is not None
    records = recording_records_frame(bundle)
    assert records["record"].tolist() == ["100", "119", "gross"]
    assert records["beats"].tolist() == [2273, 1987, 4260] and records["V"].tolist() == [1, 444, 445]
    assert records["V Se (%)"].tolist() == ["100.0", f"{100 * 441 / 444:.1f}", f"{100 * 442 / 445:.1f}"]
    assert records["V TP / FN / FP"].tolist()[1] == "441 / 3 / 0" and records["unclassified"].tolist() == [11, 12, 23]
    variants = recording_variants_frame(bundle)
    assert variants["variant"].tolist() == ["fp32", "int8-static"] and variants["shipped"].tolist() == [True, False]
    assert variants["V Se [95 % CI]"].str.match(r"0\.\d{3} \[0\.\d{3}, 1\.000\]").all()
    assert variants["recording gate"].tolist() == ["pass", "FAIL"]  # int8-static lost its healthy figure
    assert variants["healthy false PVC (%)"].tolist() == [f"{100 / 380:.2f}", "—"]
    healthy, why_not = healthy_frame(bundle)
    assert why_not is None and healthy["file"].tolist() == ["ecg_5_min.h5", "ecg_20_sec_10_Hz.h5"]
    assert healthy["note"].tolist() == ["", "skipped: too low for QRS detection"]
    missing, why_not = healthy_frame(bundle, "int8-static")
    assert missing.empty and why_not == "not installed"
    loro, design = loro_frame(recording_settings.benchmarks.parent / "ecg_pvc_loro.json")
    assert loro["record"].tolist() == ["100", "pooled"] and design.startswith("gated-template+rr")
    with pytest.raises(DataUnavailableError, match="make validate-ecg"):
        loro_frame(recording_settings.benchmarks.parent / "missing.json")


def test_leave_one_record_out_over_seeds_shows_each_record_once_and_every_seeds_rates(tmp_path):
    counts = {"record": "200", "qrs_true_positives": 2 * 2597, "qrs_false_negatives": 2 * 4, "qrs_false_positives": 0,
              "v_true_positives": 477 + 661, "v_false_negatives": 349 + 165, "v_false_positives": 0,
              "v_true_negatives": 2 * 1771}
    rates = {"qrs_sensitivity": 0.998, "qrs_positive_predictivity": 1.0, "v_sensitivity": 1138 / 1652,
             "v_positive_predictivity": 1.0, "v_false_positive_rate": 0.0}
    by_seed = {"v_sensitivity": [477 / 826, 661 / 826], "v_positive_predictivity": [1.0, 1.0]}
    fold = {"record": "200", "counts": counts, "rates": rates, "by_seed": {**by_seed, "threshold": [0.7, 0.55]}}
    path = tmp_path / "ecg_pvc_loro.json"
    path.write_text(json.dumps({"variants": {"gated-template+rr": {
        "description": "the shipped design", "seeds": [0, 1], "folds": [fold],
        "pooled": {"counts": {**counts, "record": "pooled"}, "rates": rates, "by_seed": by_seed}}}}))
    loro, design = loro_frame(path)
    assert loro["beats"].tolist() == [2601, 2601] and loro["V"].tolist() == [826, 826]  # once, not per seed
    assert loro["V TP / FN / FP (sum of 2 seeds)"].tolist()[0] == "1138 / 514 / 0"
    assert loro["V Se (%)"].tolist()[0] == "68.9"
    assert loro["V Se by seed (%)"].tolist() == ["57.7 / 80.0"] * 2
    assert "training seeds 0, 1" in design and "one draw" in design


def test_builds_page_shows_the_recording_validation(recording_settings, use_settings):
    pytest.importorskip("streamlit")
    from tests.dashboard.test_pages_apptest import run_page, texts

    use_settings(recording_settings)
    app = run_page("builds")
    assert "Recording-level validation (held-out records, full device stream)" in {s.value for s in app.subheader}
    shown = [frame.value for frame in app.dataframe]
    per_record = next(frame for frame in shown if "V TP / FN / FP" in frame.columns and "unclassified" in frame.columns)
    assert per_record["record"].tolist() == ["100", "119", "gross"]
    assert any("recording gate" in frame.columns for frame in shown)
    assert any("file" in frame.columns for frame in shown)  # healthy recordings
    assert any(frame.columns.tolist()[:1] == ["record"] and "pooled" in frame["record"].tolist() for frame in shown)
    assert "Leave-one-record-out" in texts(app, "markdown")
    assert "Validated on lead MLII only (the held-out recordings' lead): the device refuses" in texts(app, "caption")


def test_a_bundle_without_recordings_shows_no_recording_section(recording_settings):
    folder = recording_settings.bundles / "plain"
    folder.mkdir()
    write_manifest(folder, "plain", (TABULAR,), OUTPUTS[TaskKind.BINARY])
    bundle = read_bundle(folder)
    assert recording_validation(bundle) is None and recording_records_frame(bundle).empty
    assert healthy_frame(bundle)[1] == "no healthy recordings were run in this build"
    assert leads_note(bundle) == ""  # no lead declared: nothing claimed
