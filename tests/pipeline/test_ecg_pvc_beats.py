"""PVC training data as the device sees it: detected peaks, windows, RR features, labels from matching."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.scenarios.ecg_pvc.beats import (
    FALSE_DETECTION,
    NON_V,
    PRE_TO_LOCAL,
    BeatDataConfig,
    V,
    cut_windows,
    detect_beats,
    record_beats,
    window_geometry,
    with_template,
)
from pipeline.scenarios.ecg_pvc.mitdb import load_records
from pipeline.validation import ec57
from runtime.ecg.rr_features import rr_features
from runtime.ecg.template import TemplateConfig, template_residuals


@pytest.fixture(scope="module")
def loaded():
    return {record.record_id: record for record in load_records(["105", "119"])}


@pytest.fixture(scope="module")
def beats_119(loaded):
    return record_beats(loaded["119"])


def test_window_geometry_is_the_runtimes():
    assert window_geometry(360.0, BeatDataConfig()) == (90, 162)


def test_windows_are_cut_around_the_detected_peaks(loaded, beats_119):
    signal = loaded["119"].signal_mv
    assert beats_119.windows.shape == (beats_119.peaks.size, 252) and beats_119.windows.dtype == np.float32
    np.testing.assert_array_equal(beats_119.windows[:, 90], signal[beats_119.peaks])
    np.testing.assert_array_equal(beats_119.windows[5], signal[beats_119.peaks[5] - 90 : beats_119.peaks[5] + 162])
    edge = cut_windows(signal, np.array([3]), 90, 162)
    assert np.all(edge[0, :88] == signal[0])  # clamped at the start, like EcgStream


def test_rr_features_and_residuals_come_from_the_detected_sequence(beats_119):
    np.testing.assert_array_equal(beats_119.rr, rr_features(beats_119.peaks, 360.0))
    expected = template_residuals(beats_119.windows, beats_119.rr[:, PRE_TO_LOCAL], TemplateConfig())
    np.testing.assert_array_equal(beats_119.residuals, expected)
    gated = with_template(beats_119, TemplateConfig(minimum_pre_to_local=0.9))
    assert not np.array_equal(gated.residuals, beats_119.residuals)
    np.testing.assert_array_equal(gated.windows, beats_119.windows)


def test_labels_follow_the_ec57_match(loaded, beats_119):
    record = loaded["119"]
    assert int(np.sum(beats_119.labels == V)) == 444 and beats_119.missed_v == 0
    assert beats_119.false_detections == 0
    matched = beats_119.matched_reference
    np.testing.assert_array_equal(beats_119.labels == V, record.is_pvc[matched])
    counts = ec57.score_record("119", record.beat_indices / 360.0, beats_119.peaks / 360.0)
    detection = beats_119.detection()
    assert detection["true_positives"] == counts.qrs_true_positives
    assert detection["false_negatives"] == counts.qrs_false_negatives
    assert detection["sensitivity"] >= 0.995 and detection["positive_predictivity"] >= 0.995


def test_false_detections_are_kept_and_labelled_separately(loaded):
    beats = record_beats(loaded["105"])  # very noisy: the detector finds some beats that are not there
    record = loaded["105"]
    false = beats.labels == FALSE_DETECTION
    assert false.sum() == beats.false_detections > 0
    assert np.all(beats.matched_reference[false] == -1)
    assert set(np.unique(beats.labels).tolist()) == {FALSE_DETECTION, NON_V, V}
    match = ec57.match_beats(record.beat_indices, beats.peaks, 54)
    assert match.unmatched_detected.size == beats.false_detections
    assert match.unmatched_reference.size == beats.missed_beats


def test_detected_peaks_respect_the_streams_minimum_spacing(loaded):
    peaks = detect_beats(loaded["105"].signal_mv, 360.0)
    assert np.all(np.diff(peaks) >= 0.1 * 360)
    assert peaks.dtype == np.int64
