"""The ECG stream flags what is not a readable ECG and never classes a beat there (runtime.ecg.noise).

Real signals throughout: MIT-BIH records (vendored), PLUX EMG / EEG / electrodermal recordings and healthy PLUX ECG
(biosignalsnotebooks 0.6.14). Before this check the stream classed ~48 beats a minute in a real EMG recording, ~88
in a real EEG one (12 of them PVCs), and in MIT-BIH 119 with real EMG added at 6 dB it classed every beat while
missing most PVCs. Figures over all ten records: ``edgemed noise-stress`` (benchmarks/recorded/…/noise_stress.json).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pipeline.benchmark.noise_mixtures import NOISE_SOURCES, mixed, noise_signal
from pipeline.scenarios.ecg_pvc.mitdb import SAMPLE_RATE_HZ, load_records
from pipeline.validation.real_ecg import signal_samples_folder
from runtime.ecg.noise import NoiseConfig, NoiseDetector
from runtime.ecg.quality import QualityFlag
from runtime.ecg.stream import EcgStream, StreamConfig
from runtime.events import BeatEvent, QualityEvent
from runtime.readers import read_signal
from tests.runtime.pvc_bundle import TWO_INPUTS, load_pvc_bundle

RATE = int(SAMPLE_RATE_HZ)
NOISY = (QualityFlag.NOISY.value, QualityFlag.NO_QRS.value)


def _events(bundle, signal: np.ndarray, rate: float, check: bool = True, block_s: float = 2.0) -> list:
    stream = EcgStream(bundle, rate, config=StreamConfig(block_s=block_s, noise=NoiseConfig(enabled=check)))
    chunk = int(7.3 * rate)  # not a whole number of segments or blocks
    events = []
    for start in range(0, len(signal), chunk):
        events += stream.feed(signal[start : start + chunk])
    return events + stream.flush()


def _beats(events: list) -> list[BeatEvent]:
    return [event for event in events if isinstance(event, BeatEvent)]


def _plux(name: str, channel: int | None = None):
    folder = signal_samples_folder()
    if folder is None:
        pytest.skip("biosignalsnotebooks is not installed (make setup installs it)")
    recording = read_signal(folder / name, None, channel, sensor=None)
    return np.asarray(recording.samples, dtype=np.float64), recording.sample_rate_hz


@pytest.fixture(scope="module")
def pvc_bundle(tmp_path_factory):
    return load_pvc_bundle(tmp_path_factory.mktemp("bundle"), TWO_INPUTS)


@pytest.fixture(scope="module")
def record_with_muscle_noise():
    """Real MIT-BIH 119 (first 20 min) with real EMG at 6 dB from 5 min on, 2 min on / 2 min off."""
    record = load_records(("119",))[0]
    record = dataclasses.replace(record, signal_mv=record.signal_mv[: 20 * 60 * RATE])
    return record, *mixed(record, noise_signal(NOISE_SOURCES[0]), 6.0)


def test_decisions_do_not_depend_on_how_the_segments_arrive(record_with_muscle_noise):
    _, signal, _ = record_with_muscle_noise
    segments = signal[: (len(signal) // RATE) * RATE].reshape(-1, RATE)
    flat = [False] * len(segments)
    whole = NoiseDetector(SAMPLE_RATE_HZ, RATE)
    whole.push(segments, flat)
    reference = whole.decide(final=True)
    assert {flag for flag, _, _ in reference} == {QualityFlag.NOISY}  # the EMG stretches, and only as noise
    for step in (1, 2, 3, 61):
        detector, found = NoiseDetector(SAMPLE_RATE_HZ, RATE), []
        for first in range(0, len(segments), step):
            detector.push(segments[first : first + step], flat[first : first + step])
            found += detector.decide(final=False)
            arrived = min(first + step, len(segments))
            assert detector.decided_until == max(0, arrived - 2) * RATE  # a segment waits for the 2 after it
        assert found + detector.decide(final=True) == reference, step


def test_muscle_noise_is_flagged_and_its_beats_are_not_classed(pvc_bundle, record_with_muscle_noise):
    _, signal, mask = record_with_muscle_noise
    beats = _beats(_events(pvc_bundle, signal, SAMPLE_RATE_HZ))
    inside = [beat for beat in beats if mask[min(round(beat.time_s * RATE), mask.size - 1)]]
    outside = [beat for beat in beats if not mask[min(round(beat.time_s * RATE), mask.size - 1)]]
    assert len(inside) > 500 and len(outside) > 700
    flagged = [beat for beat in inside if set(NOISY) & set(beat.quality_flags)]
    assert len(flagged) >= 0.9 * len(inside)
    assert all(beat.beat_class is None for beat in flagged)  # flagged: never a class
    assert sum(beat.beat_class is not None for beat in outside) >= 0.9 * len(outside)  # the clean stretches stay
    without = _beats(_events(pvc_bundle, signal, SAMPLE_RATE_HZ, check=False))
    assert sum(beat.beat_class is not None for beat in without) > sum(beat.beat_class is not None for beat in beats)


def test_blocks_and_chunks_do_not_change_the_noise_decisions(pvc_bundle, record_with_muscle_noise):
    _, signal, _ = record_with_muscle_noise
    short = signal[: 9 * 60 * RATE]  # the first noisy stretch and the quiet one after it

    def comparable(events):
        return [(event.time_s, event.beat_class, event.quality_flags) if isinstance(event, BeatEvent)
                else (event.time_s, event.duration_s, event.flag) for event in events]

    reference = sorted(comparable(_events(pvc_bundle, short, SAMPLE_RATE_HZ, block_s=2.0)), key=str)
    assert any(isinstance(item[-1], str) and item[-1] == "noisy" for item in reference)
    assert sorted(comparable(_events(pvc_bundle, short, SAMPLE_RATE_HZ, block_s=60.0)), key=str) == reference


@pytest.mark.parametrize("record_id", ["100", "119", "123", "200"])
def test_clean_real_ecg_is_left_alone(record_id):
    signal = load_records((record_id,))[0].signal_mv
    segments = signal[: (len(signal) // RATE) * RATE].reshape(-1, RATE)
    detector = NoiseDetector(SAMPLE_RATE_HZ, RATE)
    detector.push(segments, [False] * len(segments))
    assert detector.decide(final=True) == []  # 30 min of each: not one segment flagged


@pytest.mark.parametrize("name", ["ecg_5_min.h5", "ecg_20_sec_1000_Hz.h5"])
def test_healthy_plux_ecg_is_left_alone(pvc_bundle, name):
    signal, rate = _plux(name)
    events = _events(pvc_bundle, signal, rate)
    assert not [event for event in events if isinstance(event, QualityEvent) and event.flag in NOISY]


@pytest.mark.parametrize(("name", "channel"), [("emg_fatigue.h5", None), ("eeg_sample_artefacts_seg3.h5", None),
                                               ("eda_slow_signal.h5", None), ("eeg_sample_closed_open_eyes.h5", 1)])
def test_real_signals_that_are_not_ecg_get_no_class(pvc_bundle, ecg_bundle, name, channel):
    signal, rate = _plux(name, channel)
    for bundle in (pvc_bundle, ecg_bundle):  # derived inputs, and a bundle fed the beat window alone
        beats = _beats(_events(bundle, signal, rate))
        classed = [beat for beat in beats if beat.beat_class is not None]
        assert len(beats) > 10  # the detector still finds "beats" in them …
        assert len(classed) <= 1, (name, bundle.bundle_id, len(classed))  # … and the stream classes (almost) none
    unchecked = _beats(_events(pvc_bundle, signal, rate, check=False))
    assert sum(beat.beat_class is not None for beat in unchecked) > 10  # what the check prevents


@pytest.mark.parametrize("kind", ["lead_off_noise", "mains_hum"])
def test_synthetic_lead_off_noise_and_mains_hum_get_no_class(pvc_bundle, kind):
    """SYNTHETIC disturbances on real MIT-BIH 119 (the cases a device audit found classed): 60 s of 10 µV white
    noise in place of the ECG (an electrode off, the amplifier's own noise), or 0.3 mV of 60 Hz hum added."""
    signal = load_records(("119",))[0].signal_mv[: 180 * RATE].astype(np.float64)
    stretch = slice(60 * RATE, 120 * RATE)
    random = np.random.default_rng(7)
    if kind == "lead_off_noise":
        signal[stretch] = random.normal(0.0, 0.010, 60 * RATE)
    else:
        signal[stretch] += 0.3 * np.sin(2 * np.pi * 60.0 * np.arange(60 * RATE) / RATE)
    beats = _beats(_events(pvc_bundle, signal.astype(np.float32), SAMPLE_RATE_HZ))
    inside = [beat for beat in beats if 62.0 <= beat.time_s <= 118.0]
    assert inside  # "beats" are still found there …
    assert all(beat.beat_class is None and set(NOISY) & set(beat.quality_flags) for beat in inside)
    after = [beat for beat in beats if beat.time_s > 140.0]
    assert after and sum(beat.beat_class is not None for beat in after) >= 0.9 * len(after)  # … and the ECG after
