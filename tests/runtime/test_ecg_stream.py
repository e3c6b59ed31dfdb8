"""ECG streaming: chunk-size invariance (one input, and inputs derived per beat), R-peak accuracy, and every
bad-sample kind flagged without a crash."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from runtime.ecg import (
    EcgStream,
    QualityFlag,
    SignalError,
    StreamClosedError,
    StreamConfig,
    StreamingResampler,
    detect_r_peaks,
)
from runtime.events import BeatEvent, QualityEvent
from runtime.features import WAVEFORM_FEATURES
from tests.runtime.conftest import matched_fraction, synthetic_ecg
from tests.runtime.pvc_bundle import TWO_INPUTS, load_pvc_bundle


def _run(bundle, signal, rate, chunk, **options):
    stream = EcgStream(bundle, rate, **options)
    events = []
    for start in range(0, signal.size, chunk):
        events += stream.feed(signal[start : start + chunk])
    return events + stream.flush()


def _comparable(events):
    """Events without the measured inference time, which differs run to run."""
    return [dataclasses.replace(e, latency_us=0.0) if isinstance(e, BeatEvent) else e for e in events]


def _beats(events):
    return [event for event in events if isinstance(event, BeatEvent)]


def _quality(events, flag):
    return [event for event in events if isinstance(event, QualityEvent) and event.flag == flag.value]


@pytest.mark.parametrize("rate", [360.0, 500.0])
def test_events_do_not_depend_on_chunk_size(ecg_bundle, rate):
    signal, _ = synthetic_ecg(20, rate=rate, heart_rate=80, seed=1)
    reference = _comparable(_run(ecg_bundle, signal, rate, chunk=int(10 * rate)))
    assert len(_beats(reference)) >= 24
    assert _comparable(_run(ecg_bundle, signal, rate, chunk=1)) == reference
    assert _comparable(_run(ecg_bundle, signal, rate, chunk=997)) == reference


@pytest.fixture(scope="module")
def residual_rr_bundle(tmp_path_factory):
    """Two inputs the stream derives: the template residual and the RR features (decided one beat late)."""
    return load_pvc_bundle(tmp_path_factory.mktemp("residual-rr") / "bundle", TWO_INPUTS)


@pytest.mark.parametrize("rate", [360.0, 500.0])
def test_two_input_events_do_not_depend_on_chunk_size(residual_rr_bundle, rate):
    signal, _ = synthetic_ecg(40, rate=rate, heart_rate=80, seed=13)
    signal[int(12 * rate) : int(16 * rate)] = signal[int(12 * rate)]  # lead off: RR history and template restart
    signal[int(30 * rate) : int(30.1 * rate)] = np.nan
    reference = _comparable(_run(residual_rr_bundle, signal, rate, chunk=int(10 * rate)))
    beats = _beats(reference)
    warming = [beat for beat in beats if QualityFlag.WARMING_UP.value in beat.quality_flags]
    assert len(beats) >= 45 and sum(beat.classified for beat in beats) >= 20 and len(warming) >= 22
    assert all(beat.pre_rr_ms is not None or beat.post_rr_ms is not None for beat in beats)
    assert _comparable(_run(residual_rr_bundle, signal, rate, chunk=1)) == reference
    assert _comparable(_run(residual_rr_bundle, signal, rate, chunk=997)) == reference


def test_chunk_invariance_holds_with_bad_samples(ecg_bundle):
    signal, _ = synthetic_ecg(20, seed=2)
    signal[1000:1100] = np.nan
    signal[3000:3500] = signal[3000]
    reference = _comparable(_run(ecg_bundle, signal, 360.0, chunk=3600))
    assert _comparable(_run(ecg_bundle, signal, 360.0, chunk=7)) == reference


@pytest.mark.parametrize(("heart_rate", "noise", "seed"), [(45, 0.05, 0), (72, 0.02, 1), (150, 0.05, 2), (95, 0.15, 3)])
def test_detector_finds_at_least_99_percent_of_synthetic_peaks(heart_rate, noise, seed):
    signal, r_times = synthetic_ecg(120, heart_rate=heart_rate, noise=noise, seed=seed)
    detected = detect_r_peaks(signal, 360.0) / 360.0
    assert matched_fraction(r_times, detected) >= 0.99
    assert matched_fraction(detected, r_times) >= 0.99  # and almost nothing else


def test_detector_on_neurokit_ecgsyn():
    neurokit2 = pytest.importorskip("neurokit2")
    clean = neurokit2.ecg_simulate(duration=60, sampling_rate=360, heart_rate=70, noise=0.0, random_state=4)
    noisy = clean + np.random.default_rng(4).normal(0.0, 0.02, clean.size)
    _, info = neurokit2.ecg_peaks(clean, sampling_rate=360)
    reference = np.asarray(info["ECG_R_Peaks"]) / 360.0
    detected = detect_r_peaks(noisy, 360.0) / 360.0
    detected = detected[detected > 0.5]  # ECGSYN starts on an R peak at t = 0 that the reference cannot see
    assert matched_fraction(reference, detected) >= 0.99 and matched_fraction(detected, reference) >= 0.99


def test_stream_beats_match_true_peaks_with_resampling(ecg_bundle):
    signal, r_times = synthetic_ecg(30, rate=1000.0, heart_rate=66, seed=5)
    beats = _beats(_run(ecg_bundle, signal, 1000.0, chunk=10_000))
    times = np.asarray([beat.time_s for beat in beats])
    assert matched_fraction(r_times, times, tolerance_s=0.02) >= 0.99
    assert set(beats[0].probabilities) == {"N", "S", "V", "F"} and beats[0].beat_class in beats[0].probabilities


def test_heart_rates(ecg_bundle):
    signal, r_times = synthetic_ecg(70, heart_rate=75, seed=6)
    beats = _beats(_run(ecg_bundle, signal, 360.0, chunk=3600))
    assert beats[0].heart_rate_bpm is None
    rates = np.asarray([beat.heart_rate_bpm for beat in beats[1:]])
    assert abs(np.median(rates) - 75) < 4
    late = [beat for beat in beats if beat.time_s >= 60]
    assert late and all(beat.heart_rate_1min_bpm is not None for beat in late)
    expected = np.sum((r_times > late[-1].time_s - 60) & (r_times <= late[-1].time_s + 0.02))
    assert abs(late[-1].heart_rate_1min_bpm - expected) <= 1
    assert all(beat.heart_rate_1min_bpm is None for beat in beats if beat.time_s < 60)


def test_non_finite_samples_are_flagged_repaired_and_the_stream_continues(ecg_bundle):
    signal, r_times = synthetic_ecg(30, seed=7)
    signal[3600:3700] = np.nan
    signal[5400] = np.inf
    signal[6000] = -np.inf
    events = _run(ecg_bundle, signal, 360.0, chunk=360)
    flagged = _quality(events, QualityFlag.NON_FINITE)
    assert flagged and abs(flagged[0].time_s - 10.0) < 0.1
    assert any(QualityFlag.NON_FINITE.value in beat.quality_flags for beat in _beats(events))
    after = np.asarray([beat.time_s for beat in _beats(events) if beat.time_s > 17.5])
    assert matched_fraction(r_times[r_times > 18], after) >= 0.99


def test_flat_line_is_flagged_and_yields_no_beats(ecg_bundle):
    signal, r_times = synthetic_ecg(30, seed=8)
    signal[3600 : 3600 + 5 * 360] = signal[3600]  # 10 s to 15 s: lead off, value held
    events = _run(ecg_bundle, signal, 360.0, chunk=500)
    flat = _quality(events, QualityFlag.FLAT_LINE)
    assert len(flat) == 1 and flat[0].time_s == pytest.approx(10.0, abs=1.0) and flat[0].duration_s >= 3.9
    times = np.asarray([beat.time_s for beat in _beats(events)])
    assert not np.any((times > 10.3) & (times < 14.7))
    assert matched_fraction(r_times[r_times > 18], times) >= 0.99


def test_clipping_is_flagged(ecg_bundle):
    signal, r_times = synthetic_ecg(30, seed=9, noise=0.01)
    signal = np.minimum(signal, 2000 + 0.55 * 500)  # the amplifier saturates at 55 % of the R wave
    events = _run(ecg_bundle, signal, 360.0, chunk=360)
    beats = _beats(events)
    assert _quality(events, QualityFlag.CLIPPED)
    assert sum(QualityFlag.CLIPPED.value in beat.quality_flags for beat in beats) >= len(beats) // 2
    assert matched_fraction(r_times, [beat.time_s for beat in beats]) >= 0.95


def test_declared_gap_resets_and_shifts_time(ecg_bundle):
    signal, r_times = synthetic_ecg(30, seed=10)
    stream = EcgStream(ecg_bundle, 360.0)
    events = stream.feed(signal[:3600]) + stream.gap(4.0) + stream.feed(signal[3600:]) + stream.flush()
    gaps = _quality(events, QualityFlag.GAP)
    assert len(gaps) == 1 and gaps[0].time_s == pytest.approx(10.0, abs=0.01) and gaps[0].duration_s == 4.0
    after = [beat for beat in _beats(events) if beat.time_s > 14.0]
    assert after[0].heart_rate_bpm is None
    assert matched_fraction(r_times[r_times > 12.5] + 4.0, [beat.time_s for beat in after]) >= 0.95


def test_a_gap_or_timestamp_jump_beyond_a_year_is_refused_not_overflowed(ecg_bundle):
    signal, _ = synthetic_ecg(12, seed=10)
    stream = EcgStream(ecg_bundle, 360.0)
    stream.feed(signal[:1800])
    for seconds in (1e20, 2 * 365 * 86_400.0):
        with pytest.raises(SignalError, match="a finite duration from 0 to"):
            stream.gap(seconds)
    timed = EcgStream(ecg_bundle, 360.0)
    events = timed.feed(signal[:1800], timestamp_s=0.0)
    with pytest.raises(SignalError, match=r"jumps .* past the stream's clock"):
        timed.feed(signal[1800:], timestamp_s=1e20)
    for bad in (math.inf, math.nan):
        with pytest.raises(SignalError, match="Expected: a finite number of seconds"):
            timed.feed(signal[1800:], timestamp_s=bad)
    assert stream.feed(signal[1800:]) is not None and stream.flush() is not None  # still usable after a refusal
    # the refused chunks never reached the clock: the next one, on time, is neither a gap nor a rate mismatch
    events += timed.feed(signal[1800:], timestamp_s=5.0) + timed.flush()
    assert not [event for event in events if getattr(event, "flag", None) in ("gap", "rate_mismatch")]
    assert _beats(events)


def test_a_recording_too_short_to_judge_says_so(ecg_bundle):
    signal, _ = synthetic_ecg(12, seed=10)
    stream = EcgStream(ecg_bundle, 360.0)
    events = stream.feed(signal[:72]) + stream.flush()  # 0.2 s: no beat can be found
    assert [(event.flag, event.time_s, event.duration_s) for event in events] == [("too_short", 0.0, 0.2)]
    whole = EcgStream(ecg_bundle, 360.0)
    events = whole.feed(signal) + whole.flush()
    assert _beats(events) and not [event for event in events if getattr(event, "flag", "") == "too_short"]


def test_timestamps_reveal_gaps_and_rate_mismatch(ecg_bundle):
    signal, _ = synthetic_ecg(30, seed=11)
    stream = EcgStream(ecg_bundle, 360.0)
    events = []
    for index, start in enumerate(range(0, signal.size, 360)):
        events += stream.feed(signal[start : start + 360], timestamp_s=index + (3.0 if start >= 3600 else 0.0))
    events += stream.flush()
    assert [round(event.duration_s, 2) for event in _quality(events, QualityFlag.GAP)] == [3.0]

    stream = EcgStream(ecg_bundle, 360.0)  # the device really samples at ~327 Hz
    events = []
    for index, start in enumerate(range(0, signal.size, 360)):
        events += stream.feed(signal[start : start + 360], timestamp_s=1.1 * index)
    events += stream.flush()
    assert _quality(events, QualityFlag.RATE_MISMATCH) and not _quality(events, QualityFlag.GAP)
    assert any(QualityFlag.RATE_MISMATCH.value in beat.quality_flags for beat in _beats(events))


def test_events_are_json_and_carry_no_waveform(ecg_bundle):
    signal, _ = synthetic_ecg(15, seed=12)
    signal[2000:2100] = np.nan
    stream = EcgStream(ecg_bundle, 360.0, config=StreamConfig(summary_features=True))
    events = stream.feed(signal) + stream.flush()
    for event in events:
        text = json.dumps(event.to_dict(), allow_nan=False)
        assert len(text) < 1000
    beat = _beats(events)[0].to_dict()
    assert set(beat["features"]) == set(WAVEFORM_FEATURES)


def test_misuse_gives_typed_errors(ecg_bundle, breast_bundle):
    with pytest.raises(SignalError, match="too low"):
        EcgStream(ecg_bundle, 50.0)
    with pytest.raises(SignalError, match="waveform"):
        EcgStream(breast_bundle, 360.0)
    stream = EcgStream(ecg_bundle, 360.0)
    with pytest.raises(SignalError):
        stream.feed(np.array(["a", "b"]))
    with pytest.raises(SignalError):
        stream.feed(np.zeros((10, 2)))
    stream.flush()
    with pytest.raises(StreamClosedError):
        stream.feed(np.zeros(10))


def test_resampler_is_exact_under_any_chunking_and_accurate():
    rate_in, rate_out = 1000.0, 360.0
    t = np.arange(5000) / rate_in
    signal = np.sin(2 * np.pi * 7 * t) + 0.3 * np.sin(2 * np.pi * 40 * t)
    whole = StreamingResampler(rate_in, rate_out)
    reference = np.concatenate([whole.process(signal), whole.flush()])
    pieces = StreamingResampler(rate_in, rate_out)
    chunks = [pieces.process(signal[i : i + 13]) for i in range(0, signal.size, 13)]
    assert np.array_equal(np.concatenate([*chunks, pieces.flush()]), reference)
    times = np.arange(reference.size) / rate_out
    expected = np.sin(2 * np.pi * 7 * times) + 0.3 * np.sin(2 * np.pi * 40 * times)
    assert reference.size == 1800 and np.abs(reference - expected)[50:-50].max() < 1e-3


def test_telemetry_features_of_a_two_input_bundle_are_the_reference_profiles_own(residual_rr_bundle):
    """Drift compares like with like: the device's features are those of the arrays the model was fed, named as
    the build's reference profile names them (``<input>/<feature>``), and only judged beats carry them."""
    from runtime.ecg.stream import StreamConfig
    from runtime.input_features import input_features

    signal, _ = synthetic_ecg(40, rate=360.0, heart_rate=80, seed=13)
    beats = _beats(_run(residual_rr_bundle, signal, 360.0, chunk=3600, config=StreamConfig(summary_features=True)))
    judged = [beat for beat in beats if beat.classified]
    expected = set(input_features({spec.name: np.zeros((1, *spec.sample_shape)) for spec in TWO_INPUTS}, TWO_INPUTS))
    assert {"residual/kurtosis", "rr/pre_rr_s"} <= expected
    assert judged and all(set(beat.features) == expected for beat in judged)
    assert all(beat.features is None for beat in beats if not beat.classified)
    assert all(beat.features["rr/pre_rr_s"] == pytest.approx(beat.pre_rr_ms / 1000, abs=1e-3) for beat in judged)
