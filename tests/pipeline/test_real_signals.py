"""The device runtime on real PLUX ECG recordings shipped with biosignalsnotebooks."""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import pytest

from pipeline.validation.real_ecg import evaluate_real_ecg, heart_rate_per_window, match_beats, signal_samples_folder
from tests.runtime.conftest import tiny_bundle

needs_recordings = pytest.mark.skipif(
    signal_samples_folder() is None,
    reason="biosignalsnotebooks is not installed (pip install --no-deps biosignalsnotebooks==0.6.14)",
)


def test_matching_is_one_to_one_within_tolerance():
    reference = np.array([1.0, 2.0, 3.0, 4.0])
    detected = np.array([1.05, 1.1, 2.2, 3.14, 5.0])
    true_positives, false_negatives, false_positives, errors = match_beats(reference, detected, 0.15)
    assert (true_positives, false_negatives, false_positives) == (2, 2, 3)
    assert errors == pytest.approx([0.05, 0.14])


def test_heart_rate_per_window():
    peaks = np.arange(0.0, 130.0, 0.8)  # 75 bpm
    assert heart_rate_per_window(peaks, 130.0, 60.0) == [75.0, 75.0]


@needs_recordings
def test_real_ecg_r_peaks_match_the_device_annotations(tmp_path_factory, tmp_path):
    bundle = tiny_bundle("ecg-arrhythmia", tmp_path_factory)  # shared with tests/runtime in one session
    report = evaluate_real_ecg(bundle, tmp_path / "real.json")
    five_minutes = report["files"]["ecg_5_min.h5"]
    print(json.dumps({key: value for key, value in five_minutes.items() if key != "heart_rate_per_minute"}))
    assert five_minutes["reference_beats"] > 350
    assert datetime.fromisoformat(report["measured_at"]).tzinfo is not None and report["machine"]["cpu"]
    assert report["sensitivity"] >= 0.95 and report["positive_predictivity"] >= 0.95
    assert report["heart_rate_mean_abs_difference_bpm"] < 2.0
    assert sum(five_minutes["class_distribution"].values()) == five_minutes["beats"]
    assert "skipped" in report["files"]["ecg_20_sec_10_Hz.h5"]  # 10 Hz cannot show a QRS complex
    assert json.loads((tmp_path / "real.json").read_text())["reference_file"] == "ecg_5_min.h5"


@needs_recordings
def test_a_bitalino_file_reads_its_analogue_channels_adc_range_not_the_counters():
    """OpenSignals lists the sequence counter and digital inputs first in 'resolution' ([4, 1, 1, 1, 1, 10]):
    the 10-bit analogue channel is 0–1023, not 0–15 (which would flag every sample as clipped)."""
    from runtime.readers import read_signal

    recording = read_signal(signal_samples_folder() / "bvp_motion_artifact.h5", None, 2, sensor=None)
    assert recording.adc_range == (0.0, 1023.0)
    assert recording.samples.min() >= 0 and recording.samples.max() <= 1023
    assert read_signal(signal_samples_folder() / "ecg_5_min.h5", None).adc_range == (0.0, 65535.0)
