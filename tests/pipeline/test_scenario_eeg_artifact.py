"""The registered real-data scenario ``eeg-artifact``: the PLUX EEG catalogue, windows and their coarse labels, splits
that never share a window, the two recurrent cells, a tiny end-to-end build whose bundle the device stream runs on a
real recording, and the GRU/LSTM comparison's rule and reading of a build."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from pipeline.config import Profile
from pipeline.errors import DataError
from pipeline.scenarios import default_scenario_names, get_scenario
from pipeline.scenarios.eeg_artifact.cells import MARGIN, choose_cell, read_cell
from pipeline.scenarios.eeg_artifact.cells_report import render
from pipeline.scenarios.eeg_artifact.data import (
    CLASS_NAMES,
    EegDataConfig,
    EvidenceConfig,
    RecordingPart,
    window_evidence,
)
from pipeline.scenarios.eeg_artifact.model import EegModelConfig, RecurrentCell, build_eeg_model, footprint
from pipeline.scenarios.eeg_artifact.recordings import RECORDINGS, at_model_rate, recording, recording_path
from pipeline.splits import SPLIT_NAMES
from runtime.contract import BundleManifest, WindowNormalization
from runtime.contract.derived import StreamFeature
from runtime.errors import IntegrityError
from runtime.events import WindowEvent
from runtime.readers import read_signal
from runtime.runner import RunOptions, run
from runtime.trust import TrustPolicy
from runtime.windows import cut_windows, model_windows

SCENARIO = get_scenario("eeg-artifact")
# What the full data config gives (windows per class), and what its screen and quality checks leave out.
BALANCE = {"train": {"clean": 1351, "movement": 73, "electromagnetic": 186},
           "validation": {"clean": 64, "movement": 7, "electromagnetic": 9},
           "calibration": {"clean": 41, "movement": 7, "electromagnetic": 5},
           "test": {"clean": 190, "movement": 8, "electromagnetic": 19}}


@pytest.fixture(scope="module")
def full_splits():
    return SCENARIO.make_data(SCENARIO.data_config(Profile.FULL), seed=0)


@pytest.fixture(scope="module")
def eeg_build(tmp_path_factory):
    """The tiny profile: every real recording, training windows every 1 s, three epochs (about 30 s)."""
    from tests.pipeline.conftest import tiny_build

    root = tmp_path_factory.mktemp("eeg-artifact")
    return root, tiny_build("eeg-artifact", root)


def test_registered_not_shipped_and_three_classes():
    """Registered, built only when named: it fails the evidence rule (test_evidence.py)."""
    assert "eeg-artifact" not in default_scenario_names() and SCENARIO.class_names == CLASS_NAMES
    assert CLASS_NAMES == ("clean", "movement", "electromagnetic")
    assert EegModelConfig().cell is RecurrentCell.LSTM  # the comparison's winner is the default


def test_every_recording_is_checked_against_its_sha256():
    for item in RECORDINGS:
        assert recording_path(item).name == item.file_name
    with pytest.raises(IntegrityError, match="sha256"):
        recording_path(replace(RECORDINGS[0], sha256="0" * 64))


def test_the_p_file_is_a_copy_of_closed_open_eyes_and_never_used():
    folder = recording_path(recording("eeg_sample_o")).parent
    duplicate = read_signal(folder / "eeg_sample_p.h5", channel=1).samples
    original = read_signal(folder / "eeg_sample_closed_open_eyes.h5", channel=1).samples
    assert np.array_equal(duplicate, original[: duplicate.size])
    assert all(part.stem != "eeg_sample_p" for part in SCENARIO.data_config(Profile.FULL).parts)


def test_splits_count_shape_and_normalisation(full_splits):
    assert full_splits.class_balance() == BALANCE
    for name in SPLIT_NAMES:
        inputs = np.asarray(full_splits.split(name).inputs)
        assert inputs.shape[1:] == (500, 1) and inputs.dtype == np.float32
        np.testing.assert_allclose(inputs.mean(axis=1), 0.0, atol=1e-4)  # z-scored per window, as the device does
        np.testing.assert_allclose(inputs.std(axis=1), 1.0, atol=1e-3)
    provenance = full_splits.provenance
    parts = provenance["parts"]
    for name in SPLIT_NAMES:  # the split is its parts' kept windows, nothing else
        assert len(full_splits.split(name)) == sum(part["kept"] for part in parts if part["split"] == name)
    assert all(part["windows"] == part["kept"] + part["ambiguous"] + part["quality_flagged"] for part in parts)
    # 21 windows at the amplifier's rail (movement files) are flagged clipped: the device reports them, never a class
    assert provenance["excluded_windows"] == {"quality_flagged": 21, "ambiguous": 602}
    assert provenance["synthetic"] is False and "per file (coarse)" in provenance["labels"]
    assert "MIT" in provenance["licence"] and "eeg_sample_p.h5" in provenance["excluded_files"]
    # the bootstrap resamples a recording's 10-s blocks: every test group is one recording's, never two
    test = full_splits.test
    assert full_splits.group_unit.startswith("recording × 10-s block")
    stems = {group.rsplit(":", 1)[0] for group in test.groups.tolist()}
    assert stems == {"eeg_sample_o", "eeg_sample_1cm_h", "eeg_sample_0cm_v", "eeg_sample_artefacts_seg2",
                     "eeg_sample_artefacts_seg3"}
    assert len(set(test.groups.tolist())) < len(test) / 5  # about ten windows a group at the 1-s hop


def test_no_window_spans_two_splits_and_test_recordings_are_held_out():
    config = SCENARIO.data_config(Profile.FULL)
    for stem in {part.stem for part in config.parts}:
        blocks = sorted((part for part in config.parts if part.stem == stem), key=lambda part: part.start_s)
        for before, after in itertools.pairwise(blocks):
            assert after.start_s - before.end_s >= config.window_s  # a whole window between blocks
    test_files = {part.stem for part in config.parts if part.split == "test" and part.label != "electromagnetic"}
    elsewhere = {part.stem for part in config.parts if part.split != "test"}
    assert test_files == {"eeg_sample_o", "eeg_sample_1cm_h", "eeg_sample_0cm_v", "eeg_sample_artefacts_seg2"}
    assert not test_files & elsewhere  # clean and movement are tested on recordings nothing else uses


def test_blocks_closer_than_a_window_and_missing_classes_are_refused():
    parts = SCENARIO.data_config(Profile.FULL).parts
    touching = (*parts[:-1], RecordingPart("eeg_sample_artefacts_seg3", "electromagnetic", "test", 69.0))
    with pytest.raises(DataError, match="closer than one window"):
        EegDataConfig(parts=touching)
    without_movement_test = tuple(part for part in parts if part.stem != "eeg_sample_artefacts_seg2")
    with pytest.raises(DataError, match="the test split has parts of"):
        EegDataConfig(parts=without_movement_test)
    with pytest.raises(DataError, match="label"):
        RecordingPart("eeg_sample_o", "noise", "test")


def test_the_amplitude_screen_on_raw_counts():
    time = np.arange(500) / 250.0
    eeg = 5_000.0 * np.sin(2 * np.pi * 10 * time)  # 10 Hz, 10 000 counts peak to peak
    excursion = eeg + 25_000.0 * np.sin(2 * np.pi * 0.5 * time)  # a slow swing across most of the range
    noise_floor = 300.0 * np.sin(2 * np.pi * 90 * time)
    windows = np.stack([eeg, excursion, noise_floor])[:, :, None] + 32_768.0
    assert list(window_evidence(windows, 250.0, EvidenceConfig())) == [
        "EEG-like", "movement-like", "no EEG-sized signal"]


def test_the_split_windows_are_the_device_windows(full_splits):
    """The test windows of seg2 are exactly what ``model_windows`` cuts from the resampled recording (kept ones)."""
    config = SCENARIO.data_config(Profile.FULL)
    signal = at_model_rate(recording("eeg_sample_artefacts_seg2"), config.model_rate_hz)
    device = model_windows(signal, SCENARIO.input_spec(config)).inputs
    parts = [part for part in full_splits.provenance["parts"] if part["split"] == "test"]
    position = [part["file"] for part in parts].index("eeg_sample_artefacts_seg2.h5")
    start = sum(part["kept"] for part in parts[:position])
    split = np.asarray(full_splits.test.inputs)[start: start + 8]
    matches = [int(np.flatnonzero(np.all(device == window, axis=(1, 2)))[0]) for window in split]
    assert len(matches) == 8 and matches == sorted(matches)


@pytest.mark.parametrize(("cell", "parameters", "macs"), [("gru", 2419, 116_048), ("lstm", 2899, 141_648)])
def test_both_cells_are_small(cell, parameters, macs):
    size = footprint(build_eeg_model(EegModelConfig(cell=cell), 500, 3))
    assert size == {"parameters": parameters, "macs_per_window": macs, "recurrent_steps": 50,
                    "fp32_weight_bytes": 4 * parameters}


def test_gru_exports_as_a_loop_and_lstm_as_one_fused_op(tmp_path):
    from exporters.census import op_census
    from exporters.keras_to_onnx import ExportConfig, export_keras_to_onnx

    for cell, expected, absent in (("gru", "Loop", "LSTM"), ("lstm", "LSTM", "Loop")):
        path = tmp_path / f"{cell}.onnx"
        export_keras_to_onnx(build_eeg_model(EegModelConfig(cell=cell), 500, 3), path, ExportConfig())
        counts = op_census(path).counts
        assert counts.get(expected) == 1 and absent not in counts, (cell, counts)


def test_tiny_build_writes_the_windowed_contract(eeg_build):
    _, outcome = eeg_build
    assert list(outcome.artifacts) == ["data", "train", "export", "variants", "evaluate", "bundle"]
    manifest = BundleManifest.from_dict(json.loads((outcome.bundle_directory / "manifest.json").read_text()))
    (spec,) = manifest.inputs
    assert spec.stream_feature is StreamFeature.SIGNAL_WINDOW and spec.shape == (None, 500, 1)
    assert spec.sample_rate_hz == 250.0 and spec.hop_samples == 250
    assert spec.derived.window.normalization is WindowNormalization.ZSCORE
    assert manifest.output.labels == CLASS_NAMES and manifest.data.synthetic is False
    assert set(manifest.variants) == {"fp32", "fp16", "int8-dynamic", "int8-static"}
    assert manifest.variants[manifest.variant]["gate"]["passed"]
    export = outcome.artifacts["export"].metrics
    assert export["parity"]["passed"] and export["op_census"].get("LSTM") == 1 and "Loop" not in export["op_census"]
    report = (outcome.bundle_directory / "report.md").read_text()
    assert "per file (coarse)" in report and "within-recording" in report and "Synthetic data" not in report


def test_the_device_stream_decides_seg2_as_the_build_did(eeg_build):
    """batch == stream: the bundle through ``runtime.runner`` on the real movement test recording gives the build's
    test probabilities of the variant it ships (the fastest passing one on the machine that built it) for its 8 kept
    windows."""
    from pipeline.build.stages.variants import load_predictions

    _, outcome = eeg_build
    path = recording_path(recording("eeg_sample_artefacts_seg2"))
    events = list(run(outcome.bundle_directory, path, RunOptions(channel=2, trust=TrustPolicy.development())))
    windows = [event for event in events if isinstance(event, WindowEvent)]
    assert len(windows) == 108
    clipped = [event.index for event in windows if not event.judged]
    assert clipped and all(windows[index].flags == ("clipped",) and windows[index].result is None for index in clipped)
    config = SCENARIO.data_config(Profile.TINY)
    signal = at_model_rate(recording("eeg_sample_artefacts_seg2"), config.model_rate_hz)
    evidence = window_evidence(cut_windows(signal, 500, 250), 250.0, config.evidence)
    kept = np.array([index for index in np.flatnonzero(evidence == "movement-like") if windows[index].judged])
    parts = [part for part in outcome.artifacts["data"].metrics["provenance"]["parts"] if part["split"] == "test"]
    position = [part["file"] for part in parts].index("eeg_sample_artefacts_seg2.h5")
    start = sum(part["kept"] for part in parts[:position])  # the test split keeps its parts' order
    shipped = json.loads((outcome.bundle_directory / "manifest.json").read_text())["variant"]
    built = load_predictions(outcome.artifacts["variants"])[shipped][start: start + kept.size]
    streamed = np.array([[windows[index].result.probabilities[name] for name in CLASS_NAMES] for index in kept])
    assert kept.size == 8
    np.testing.assert_allclose(streamed, built, atol=1e-5)


def test_the_comparison_reads_a_build(eeg_build):
    root, outcome = eeg_build
    model = SCENARIO.build_config(Profile.TINY).model
    entry = read_cell(RecurrentCell.LSTM, outcome.bundle_directory, root / "artifacts", model)
    assert entry["variants"]["fp32"]["recurrent_core"] == "fused LSTM op, float"
    assert entry["variants"]["int8-dynamic"]["recurrent_core"].startswith("DynamicQuantizeLSTM")
    assert entry["footprint"]["parameters"] == 2899
    recordings = entry["test_recordings"]["fp32"]
    assert sum(sum(counts.values()) for counts in recordings.values()) == 217
    assert sum(recordings["eeg_sample_artefacts_seg2.h5 (movement)"].values()) == 8
    latency = SimpleNamespace(median_of_windows_us=lambda name: 30.0 if name.startswith("lstm") else 600.0,
                              percentile_us=lambda name, percentile: 40.0,
                              ratio=lambda name, reference: 1.0 if name.startswith("lstm") else 20.0)
    from pipeline.scenarios.eeg_artifact.cells import joint_latency

    cells = {"gru": entry, "lstm": entry}
    timing = joint_latency(cells, latency, "lstm/fp32")
    document = {"scenario": "eeg-artifact", "profile": "tiny", "seed": 0, "cells": cells,
                "joint_latency": {"reference": "lstm/fp32", "sample": "one window", "variants": timing},
                "decision": choose_cell(cells, timing)}
    page = render(document)
    assert "**Ships: LSTM**" in page and "| lstm | int8-dynamic |" in page


def _entry(parameters: int, f1: tuple[float, float, float]) -> dict:
    variant = {"gate": {"passed": True}, "macro_f1": dict(zip(("value", "low", "high"), f1))}
    return {"export": {"parity": {"passed": True}}, "footprint": {"parameters": parameters},
            "variants": {name: variant for name in ("fp32", "fp16", "int8-dynamic", "int8-static")}}


def _latency(gru: float, lstm: float) -> dict:
    return {f"{cell}/{variant}": {"ratio_to_reference": value} for cell, value in (("gru", gru), ("lstm", lstm))
            for variant in ("fp32", "fp16", "int8-dynamic", "int8-static")}


def test_the_rule_puts_accuracy_before_latency_and_size_last():
    overlapping = {"gru": _entry(2419, (0.90, 0.82, 0.96)), "lstm": _entry(2899, (0.87, 0.80, 0.93))}
    assert choose_cell(overlapping, _latency(24.0, 1.0))["winner"] == "lstm"  # faster, accuracy not different
    apart = {"gru": _entry(2419, (0.97, 0.95, 0.99)), "lstm": _entry(2899, (0.80, 0.75, 0.85))}
    assert choose_cell(apart, _latency(24.0, 1.0))["winner"] == "gru"  # better beyond its interval wins
    close = 1.0 - MARGIN / 2
    assert choose_cell(overlapping, _latency(close, 1.0))["winner"] == "gru"  # within the margin: fewer parameters
    broken = {**overlapping, "lstm": {**overlapping["lstm"], "export": {"parity": {"passed": False}}}}
    assert choose_cell(broken, _latency(24.0, 1.0))["winner"] == "gru"  # a failed export cannot win
    both_broken = {name: {**entry, "export": {"parity": {"passed": False}}} for name, entry in overlapping.items()}
    with pytest.raises(DataError, match="parity"):
        choose_cell(both_broken, _latency(24.0, 1.0))
