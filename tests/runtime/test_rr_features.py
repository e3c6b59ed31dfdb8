"""RR features: the device's streaming class equals the training batch function, bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from runtime.ecg.rpeaks import detect_r_peaks
from runtime.ecg.rr_features import (
    DEFAULT_RR_FEATURES,
    RR_FEATURE_NAMES,
    RrFeatureConfig,
    RrFeatureError,
    RrFeatureStream,
    rr_features,
)

RATE = 360.0
DATA = Path(__file__).parents[2] / "pipeline" / "scenarios" / "ecg_pvc" / "data" / "mitdb_subset.npz"
PRE, POST, LOCAL, PRE_LOCAL, POST_LOCAL, PRE_POST = range(6)


def streamed(peaks: np.ndarray, rate: float = RATE, config: RrFeatureConfig = DEFAULT_RR_FEATURES,
             breaks: tuple[int, ...] = ()) -> tuple[list[int], np.ndarray]:
    """Feed the peaks one at a time (finishing the segment before each index in ``breaks``)."""
    stream = RrFeatureStream(rate, config)
    emitted = []
    for index, peak in enumerate(peaks.tolist()):
        if index in breaks:
            emitted.append(stream.finish())
        emitted.append(stream.push(peak))
    emitted.append(stream.finish())
    beats = [beat for beat in emitted if beat is not None]
    return [beat.peak for beat in beats], np.stack([beat.features for beat in beats])


@pytest.fixture(scope="module")
def record_200_peaks() -> np.ndarray:
    with np.load(DATA, allow_pickle=False) as archive:
        signal = (archive["ecg_200"].astype(np.float32) - 1024) / 200
    return detect_r_peaks(signal, RATE).astype(np.int64)


def test_streaming_equals_batch_exactly_on_a_real_records_detected_peaks(record_200_peaks):
    batch = rr_features(record_200_peaks, RATE)
    order, stream = streamed(record_200_peaks)
    assert order == record_200_peaks.tolist()
    assert batch.dtype == np.float32 and batch.shape == (record_200_peaks.size, len(RR_FEATURE_NAMES))
    np.testing.assert_array_equal(stream, batch)
    # record 200 is bigeminal: premature beats have short pre-RR and long post-RR relative to the local mean
    premature = batch[:, PRE_LOCAL] < 0.85
    assert 0.2 < premature.mean() < 0.5
    assert np.median(batch[premature, PRE_POST]) < 0.7


@pytest.mark.parametrize("history", [0, 1, 10, 40])
def test_streaming_equals_batch_exactly_on_random_intervals(history):
    generator = np.random.default_rng(history)
    intervals = generator.integers(60, 800, size=3000)
    intervals[generator.integers(0, intervals.size, 20)] = generator.integers(1100, 9000, 20)  # pauses
    peaks = np.cumsum(intervals) + 17
    config = RrFeatureConfig(history_beats=history)
    np.testing.assert_array_equal(streamed(peaks, 250.0, config)[1], rr_features(peaks, 250.0, config))


def test_values_on_a_regular_rhythm_with_one_premature_beat():
    peaks = np.array([0, 360, 720, 1080, 1260, 1800, 2160])  # beat 4 comes at half an interval, then a pause
    features = rr_features(peaks, RATE)
    assert features[1].tolist() == pytest.approx([1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    premature = features[4]
    assert premature[PRE] == pytest.approx(0.5) and premature[POST] == pytest.approx(1.5)
    assert premature[LOCAL] == pytest.approx(1.0)  # its own short pre-RR is not in its local mean
    assert premature[PRE_LOCAL] == pytest.approx(0.5) and premature[PRE_POST] == pytest.approx(1 / 3)
    assert features[5][LOCAL] == pytest.approx((1 + 1 + 1 + 0.5) / 4)


def test_segment_starts_and_ends_are_defined():
    peaks = np.array([100, 388, 676, 964])  # 0.8 s intervals
    features = rr_features(peaks, RATE)
    assert np.all(np.isfinite(features))
    assert features[0].tolist() == pytest.approx([0.8, 0.8, 0.8, 1.0, 1.0, 1.0])  # first beat borrows its post-RR
    assert features[-1][POST] == pytest.approx(0.8)  # last beat borrows its pre-RR
    assert features[1][LOCAL] == pytest.approx(0.8)  # no earlier interval: its pre-RR stands in
    single = rr_features(np.array([5]), RATE, RrFeatureConfig(default_rr_s=1.25))
    assert single[0].tolist() == pytest.approx([1.25, 1.25, 1.25, 1.0, 1.0, 1.0])
    assert rr_features(np.array([], dtype=np.int64), RATE).shape == (0, 6)
    assert RrFeatureStream(RATE).finish() is None


def test_a_long_pause_is_clipped_and_kept_out_of_the_local_mean():
    peaks = np.concatenate([np.arange(0, 3600, 360), [3240 + 36_000], 3240 + 36_000 + np.arange(360, 3600, 360)])
    features = rr_features(peaks, RATE, RrFeatureConfig(max_rr_s=3.0))
    after_pause = int(np.flatnonzero(np.diff(peaks) > 3000)[0]) + 1
    assert features[after_pause][PRE] == pytest.approx(3.0)  # 100 s pause clipped
    assert features[after_pause - 1][POST] == pytest.approx(3.0)
    assert np.all(features[after_pause + 1 :, LOCAL] == pytest.approx(1.0))  # the pause never enters the mean
    assert np.all(np.abs(features) < 10)


def test_finish_starts_a_new_segment_like_two_batch_calls():
    peaks = np.cumsum(np.random.default_rng(3).integers(200, 500, 400))
    _, stream = streamed(peaks, breaks=(150,))
    np.testing.assert_array_equal(stream, np.concatenate([rr_features(peaks[:150], RATE),
                                                          rr_features(peaks[150:], RATE)]))


def test_one_beat_of_latency_and_out_of_order_peaks_refused():
    stream = RrFeatureStream(RATE)
    assert stream.push(100) is None
    beat = stream.push(460)
    assert beat is not None and beat.peak == 100
    with pytest.raises(RrFeatureError, match="increasing"):
        stream.push(460)
    with pytest.raises(RrFeatureError, match="integer"):
        stream.push(500.5)
    with pytest.raises(RrFeatureError, match="increasing"):
        rr_features(np.array([10, 5]), RATE)
    with pytest.raises(RrFeatureError, match="positive rate"):
        rr_features(np.array([1, 2]), 0.0)
