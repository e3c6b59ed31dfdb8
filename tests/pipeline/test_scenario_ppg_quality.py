"""The registered real-data scenario ``ppg-quality``: the catalogue and its labels, block splits that cannot leak, the
synthetic artefacts, the model's footprint, a tiny end-to-end build, and the bundle through the device's windowed
stream on the real motion-artefact file (the stream cuts exactly the windows training cut)."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace

import numpy as np
import pytest

from pipeline.build.stages.data import load_data
from pipeline.config import Profile
from pipeline.errors import DataError
from pipeline.scenarios import get_scenario
from pipeline.scenarios.ppg_quality import catalogue, data
from pipeline.scenarios.ppg_quality.artefacts import ArtefactConfig, VariationConfig, inject_artefacts, vary_clean
from pipeline.scenarios.ppg_quality.catalogue import Segment, SegmentKind
from pipeline.scenarios.ppg_quality.data import ARTEFACT, CLEAN, EXCLUDED, Block
from pipeline.scenarios.ppg_quality.scenario import TINY_BLOCKS, BlockSplits
from pipeline.splits import SPLIT_NAMES
from runtime.contract import BundleManifest, TaskKind
from runtime.contract.derived import StreamFeature
from runtime.events import WindowEvent
from runtime.runner import RunOptions, run
from runtime.trust import TrustPolicy

pytest.importorskip("h5py")
SCENARIO = get_scenario("ppg-quality")
RATE = 50.0
MOTION_FILE_WINDOWS = 52  # (29.85 s − 4 s) / 0.5 s + 1 whole windows


def _needs_data() -> None:
    for package in (catalogue.BSN, catalogue.HEARTPY):
        try:
            data.package_folder(package)
        except DataError:
            pytest.skip(f"{package} is not installed (the scenario's data)")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny build: 40 s of one rest file with two synthetic copies; the real validation and test motion blocks."""
    _needs_data()
    from tests.pipeline.conftest import tiny_build

    root = tmp_path_factory.mktemp("ppg-quality")
    return tiny_build("ppg-quality", root)


@pytest.mark.parametrize("item", catalogue.RECORDINGS + catalogue.UNLABELLED, ids=lambda item: item.key)
def test_every_catalogued_recording_loads_checked_at_the_model_rate(item):
    _needs_data()
    recording = data.load_recording(item, RATE)
    expected_s = {"motion": 29.85, "bvp_rest": 105.75, "bvp_2017": 27.3, "hspo2_ch9": 61.2, "fspo2_ch10": 91.2,
                  "heartpy_data": 24.84, "heartpy_data2": 128.2, "heartpy_data3": 681.9}
    assert recording.signal.ndim == 1 and np.isfinite(recording.signal).all()
    if item.key in expected_s:
        assert recording.duration_s == pytest.approx(expected_s[item.key], abs=0.1)
    if item.key == "heartpy_data2":  # its rate comes from its millisecond timer
        assert recording.file_rate_hz == pytest.approx(116.99, abs=0.01)


def test_the_duplicate_rest_file_is_the_same_recording_and_unused():
    _needs_data()
    (name, key), = catalogue.DUPLICATES.items()
    duplicate = catalogue.RecordingSource(key, catalogue.BSN, f"{catalogue.SIGNAL_SAMPLES}/{name}",
                                          catalogue.source(key).sha256, "", "", "", SegmentKind.CLEAN)
    assert data.recording_path(duplicate).name == name  # the same sha256: byte-identical
    assert all(name not in item.path for item in catalogue.RECORDINGS + catalogue.UNLABELLED)


def test_window_labels_follow_the_marked_segments():
    segments = data.fill_segments((Segment(4.0, 8.6, SegmentKind.ARTEFACT), Segment(12.0, 20.0, SegmentKind.CLEAN)),
                                  20.0, SegmentKind.UNCERTAIN)
    starts = np.array([0.0, 1.0, 2.0, 8.0, 12.0, 16.0])
    labels = data.window_labels(starts, 4.0, segments, minimum_overlap_s=1.0)
    # [0,4): uncertain only; [1,5) 1 s of artefact; [2,6) 2 s; [8,12) 0.6 s of artefact + uncertain; clean; clean
    assert labels.tolist() == [EXCLUDED, ARTEFACT, ARTEFACT, EXCLUDED, CLEAN, CLEAN]


def test_blocks_of_one_file_in_two_splits_must_be_a_window_apart():
    data.check_blocks({name: BlockSplits().of(name) for name in SPLIT_NAMES}, 4.0)
    data.check_blocks({name: TINY_BLOCKS.of(name) for name in SPLIT_NAMES}, 4.0)
    with pytest.raises(DataError, match="3 s apart"):
        data.check_blocks({"validation": (Block("motion", 0.0, 10.0),), "test": (Block("motion", 13.0),)}, 4.0)
    with pytest.raises(DataError, match="apart"):  # another channel of the same file is the same session
        data.check_blocks({"train": (Block("fspo2_ch9"),), "test": (Block("fspo2_ch10"),)}, 4.0)
    with pytest.raises(DataError, match="no labels"):
        data.check_blocks({"test": (Block("heartpy_data3"),)}, 4.0)


def test_synthetic_artefacts_are_marked_where_they_were_added():
    rng = np.random.default_rng(3)
    time = np.arange(int(60 * RATE)) / RATE
    clean = 1000.0 + 50.0 * np.sin(2 * np.pi * 1.2 * time)
    varied = vary_clean(clean, RATE, VariationConfig(), rng)
    assert abs(varied.size - clean.size) <= 0.35 * clean.size and np.isfinite(varied).all()
    spoilt, segments = inject_artefacts(clean, RATE, replace(ArtefactConfig(), shape_probabilities=(1, 0, 0, 0)), rng)
    assert segments and all(0 <= s.start_s < s.end_s <= 60.0 and s.kind is SegmentKind.ARTEFACT for s in segments)
    assert all(later.start_s >= earlier.end_s for earlier, later in itertools.pairwise(segments))
    inside = np.zeros(clean.size, dtype=bool)
    for segment in segments:
        inside[round(segment.start_s * RATE): round(segment.end_s * RATE)] = True
    assert np.array_equal(spoilt[~inside], clean[~inside])  # transients only: nothing changes outside an episode


def test_tiny_data_splits_have_the_device_shape_and_never_share_a_window():
    _needs_data()
    config = SCENARIO.data_config(Profile.TINY)
    splits = SCENARIO.make_data(config, seed=0)
    rows = {}
    for name in SPLIT_NAMES:
        split = splits.split(name)
        assert split.inputs.shape[1:] == (200, 1) and split.inputs.dtype == np.float32
        assert set(np.unique(split.labels)) <= {0, 1} and split.labels.dtype == np.int64
        np.testing.assert_allclose(split.inputs.mean(axis=1), 0.0, atol=1e-4)  # z-scored, as the device does
        rows[name] = {row.tobytes() for row in split.inputs}
        counts = splits.provenance["windows_per_block"][name]
        used = sum(item["real"]["artefact"] + item["real"]["acceptable"] + item.get("synthetic_copies", {}).get(
            "artefact", 0) + item.get("synthetic_copies", {}).get("acceptable", 0) for item in counts)
        assert used == len(split)
    for index, first in enumerate(SPLIT_NAMES):
        for second in SPLIT_NAMES[index + 1:]:
            assert not rows[first] & rows[second], f"a window is in both {first} and {second}"
    balance = splits.class_balance()
    assert balance["validation"]["motion_artefact"] == 9 and balance["test"]["motion_artefact"] == 6  # real
    test_counts = {item["block"]: item["real"] for item in splits.provenance["windows_per_block"]["test"]}
    assert test_counts["motion 13–29.86 s"] == {"artefact": 6, "acceptable": 12, "excluded_uncertain": 8}
    train = splits.provenance["windows_per_block"]["train"]
    assert all(item["real"]["artefact"] == 0 for item in train)  # every trained artefact is synthetic
    assert splits.provenance["synthetic"] is False and "SYNTHETIC" in splits.provenance["synthetic_training_data"]
    # the bootstrap's groups: a recording's 10-s block; the one real artefact episode is a single group, so the
    # artefact class's intervals are reported undefined rather than drawn from its overlapping windows
    test = splits.test
    assert splits.group_unit.startswith("recording × 10-s block")
    artefact_groups = set(test.groups[test.labels == 1].tolist())
    assert artefact_groups == {"motion:1"}
    assert {group.split(":")[0] for group in test.groups.tolist()} == {"bvp_2017", "motion"}


def test_the_description_states_the_models_measured_footprint():
    pytest.importorskip("keras")
    from pipeline.scenarios.ppg_quality.model import PpgModelConfig, build_ppg_model, footprint

    counted = footprint(build_ppg_model(PpgModelConfig(), 200))
    assert counted["parameters"] == 1289 and counted["macs_per_window"] == 30_160
    assert counted["weight_bytes_fp32"] == 5156 and counted["weight_bytes_int8"] == 1960
    assert "1,289 parameters, 30,160 MACs a window" in SCENARIO.description


def test_tiny_build_ships_a_windowed_binary_bundle_with_its_provenance(tiny):
    assert list(tiny.artifacts) == ["data", "train", "export", "variants", "evaluate", "bundle"]
    manifest = BundleManifest.from_dict(json.loads((tiny.bundle_directory / "manifest.json").read_text()))
    (spec,) = manifest.inputs
    assert spec.stream_feature is StreamFeature.SIGNAL_WINDOW and spec.shape == (None, 200, 1)
    assert spec.sample_rate_hz == RATE and spec.derived.window.hop_s == 0.5
    assert manifest.output.task is TaskKind.BINARY and manifest.output.labels == ("acceptable", "motion_artefact")
    assert "specificity ≥ 0.95" in manifest.output.decision.chosen_by
    assert manifest.data.synthetic is False
    provenance = load_data(tiny.artifacts["data"]).provenance
    assert provenance["record_splits"] == TINY_BLOCKS.describe()
    report = (tiny.bundle_directory / "report.md").read_text()
    assert "Trained on: real rest PPG windows (bvp_rest 0–40 s)" in report and "SYNTHETIC" in report
    assert "GPL-3" in report and "Synthetic: no" in report


def test_the_bundle_judges_the_real_motion_file_on_the_training_windows(tiny):
    """The device stream (chunks, streaming resampler) cuts the windows training cut: same starts, same outputs."""
    import onnxruntime

    item = catalogue.source("motion")
    path = data.recording_path(item)
    options = RunOptions(channel=item.channel, trust=TrustPolicy.development())
    events = [event for event in run(tiny.bundle_directory, path, options) if isinstance(event, WindowEvent)]
    assert len(events) == MOTION_FILE_WINDOWS and all(event.judged for event in events)
    assert {event.result.label for event in events} <= {"acceptable", "motion_artefact"}
    recording = data.load_recording(item, RATE)
    spec = SCENARIO.device_contract(SCENARIO.data_config(Profile.TINY)).input
    windows = data.block_windows(recording.signal, RATE, 0.0, recording.duration_s, spec, [], 1.0)
    np.testing.assert_allclose([event.start_s for event in events], windows.starts_s)
    session = onnxruntime.InferenceSession(str(tiny.bundle_directory / "model.onnx"))
    expected = session.run(None, {session.get_inputs()[0].name: windows.inputs})[0][:, 0]
    streamed = [event.result.probabilities["motion_artefact"] for event in events]
    np.testing.assert_allclose(streamed, expected, atol=1e-5)
