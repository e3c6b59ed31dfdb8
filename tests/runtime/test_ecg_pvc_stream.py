"""The ECG stream runs a bundle whose inputs it derives per beat (beat window, template residual, RR features):
the inputs equal training's on a real MIT-BIH record, decisions come one beat late by the binary rule, flagged
and warming-up beats get no class, and a gap or lead-off restarts the RR history and the template."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from pipeline.scenarios.ecg_pvc.beats import BeatDataConfig, record_beats
from pipeline.scenarios.ecg_pvc.mitdb import load_records
from runtime.ecg import BeatTrace, EcgStream, QualityFlag, StreamConfig
from runtime.ecg.rr_features import PRE_TO_LOCAL, rr_features
from runtime.ecg.template import template_residuals
from runtime.events import BeatEvent
from runtime.runner import RunOptions, TelemetryMode, run
from runtime.telemetry import Outbox, pseudonymous_device_id
from tests.runtime.conftest import synthetic_ecg
from tests.runtime.pvc_bundle import (
    OUTPUT,
    RATE,
    RR,
    TEMPLATE,
    THREE_INPUTS,
    UNSIGNED,
    build_pvc_bundle,
    expected_probability,
    load_pvc_bundle,
)

WARMING_UP = QualityFlag.WARMING_UP.value
BEFORE, AFTER = 90, 162
EXCERPT_S = 300  # five minutes of each record


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return load_pvc_bundle(tmp_path_factory.mktemp("pvc") / "bundle")


def streamed(bundle, signal, rate=RATE, chunk=3600, config=None):
    """(events, traces) of the whole signal fed in chunks."""
    traces: list[BeatTrace] = []
    stream = EcgStream(bundle, rate, config=config, trace=traces.append)
    events = []
    for start in range(0, signal.size, chunk):
        events += stream.feed(signal[start : start + chunk])
    return events + stream.flush(), traces


def beat_events(events):
    return [event for event in events if isinstance(event, BeatEvent)]


def stacked(traces, name):
    return np.stack([trace.inputs[name] for trace in traces])


def expected_warm_up(rr: np.ndarray) -> np.ndarray:
    """Beats of one segment flagged warming_up, from training's RR features alone: a full RR history (beat index
    ≥ history + 1) and a template of at least min(30, 10) beats that passed the gate before the beat."""
    joined = np.concatenate([[0], np.cumsum(rr[:, PRE_TO_LOCAL] >= TEMPLATE.minimum_pre_to_local)])[:-1]
    return (np.arange(len(rr)) < RR.history_beats + 1) | (joined < min(TEMPLATE.history_beats, 10))


@pytest.fixture(scope="module", params=["119", "200"])
def record_excerpt(request):
    record = load_records([request.param])[0]
    end = int(EXCERPT_S * record.sample_rate_hz)
    keep = record.beat_indices < end
    return dataclasses.replace(record, signal_mv=record.signal_mv[:end], beat_indices=record.beat_indices[keep],
                               pvc_indices=record.pvc_indices[record.pvc_indices < end], is_pvc=record.is_pvc[keep])


def test_stream_inputs_equal_trainings_on_a_real_record(bundle, record_excerpt):
    training = record_beats(record_excerpt, BeatDataConfig(rr=RR, template=TEMPLATE))
    events, traces = streamed(bundle, record_excerpt.signal_mv)
    assert len(traces) == training.peaks.size > 300
    np.testing.assert_array_equal([trace.peak for trace in traces], training.peaks)
    for name, expected in (("window", training.windows), ("residual", training.residuals), ("rr", training.rr)):
        fed = stacked(traces, name)
        assert fed.dtype == np.float32
        np.testing.assert_array_equal(fed.reshape(expected.shape), expected)
    beats = beat_events(events)
    assert [round(beat.time_s * RATE) for beat in beats] == training.peaks.tolist()
    np.testing.assert_array_equal([WARMING_UP in beat.quality_flags for beat in beats], expected_warm_up(training.rr))


def test_decisions_follow_the_binary_rule_on_the_inputs_fed(bundle, record_excerpt):
    events, traces = streamed(bundle, record_excerpt.signal_mv)
    beats = beat_events(events)
    judged = [trace.judged for trace in traces]
    assert [beat.classified for beat in beats] == judged and 0.9 * len(beats) < sum(judged) < len(beats)
    assert all(beat.classified == (not beat.quality_flags) for beat in beats)  # every flagged beat is unclassified
    probability = expected_probability(THREE_INPUTS, {name: stacked(traces, name) for name in ("window", "residual",
                                                                                                 "rr")})
    for beat, p in zip(beats, probability, strict=True):
        if not beat.classified:
            assert beat.probability is None and beat.probabilities == {} and beat.latency_us == 0.0
            continue
        assert beat.beat_class == ("V" if p >= OUTPUT.decision.threshold else "non-V")
        assert beat.probabilities["V"] == pytest.approx(p, abs=1e-6)
        assert beat.probability == pytest.approx(max(p, 1 - p), abs=1e-6)
    assert any(beat.beat_class == "V" for beat in beats) and any(beat.beat_class == "non-V" for beat in beats)


def test_beats_carry_their_rr_context_in_ms(bundle, record_excerpt):
    events, traces = streamed(bundle, record_excerpt.signal_mv)
    beats = beat_events(events)
    peaks = np.asarray([trace.peak for trace in traces])
    intervals_ms = np.diff(peaks) / RATE * 1000
    assert beats[0].pre_rr_ms is None and beats[-1].post_rr_ms is None  # nothing to measure there
    assert [beat.pre_rr_ms for beat in beats[1:]] == pytest.approx(intervals_ms.tolist())
    assert [beat.post_rr_ms for beat in beats[:-1]] == pytest.approx(intervals_ms.tolist())
    local = stacked(traces, "rr")[:, 2] * 1000
    assert [beat.local_rr_ms for beat in beats[2:]] == pytest.approx(local[2:].tolist(), rel=1e-6)
    record = json.loads(json.dumps(beats[20].to_dict()))
    assert record["pre_rr_ms"] == round(beats[20].pre_rr_ms, 1) and "local_rr_ms" in record


def test_each_beat_is_decided_one_beat_late(bundle):
    signal, _ = synthetic_ecg(30, heart_rate=70, seed=21)
    stream = EcgStream(bundle, RATE, config=StreamConfig(batch_size=1))
    released: list[tuple[BeatEvent, int]] = []
    for start in range(0, signal.size, 36):  # 0.1 s chunks
        released += [(event, start + 36) for event in beat_events(stream.feed(signal[start : start + 36]))]
    final = beat_events(stream.flush())
    peaks = [round(event.time_s * RATE) for event, _ in released] + [round(event.time_s * RATE) for event in final]
    assert final and final[-1].post_rr_ms is None  # the last beat waits for the end of the stream
    assert len(released) > 25
    for (_, seen), next_peak in zip(released, peaks[1 : len(released) + 1], strict=True):
        assert seen >= next_peak + AFTER  # the next beat's whole window was in before this one was decided


def _segments(traces, boundary):
    return [trace for trace in traces if trace.peak < boundary], [trace for trace in traces if trace.peak >= boundary]


def _assert_a_fresh_segment(segment):
    """The segment's inputs are the batch functions over the segment alone, and its first beats warm up."""
    peaks = np.asarray([trace.peak for trace in segment])
    rr = rr_features(peaks, RATE, RR)
    np.testing.assert_array_equal(stacked(segment, "rr"), rr)
    residuals = template_residuals(stacked(segment, "window")[..., 0], rr[:, PRE_TO_LOCAL], TEMPLATE)
    np.testing.assert_array_equal(stacked(segment, "residual")[..., 0], residuals)
    np.testing.assert_array_equal([WARMING_UP in trace.quality_flags for trace in segment], expected_warm_up(rr))


def test_a_lead_off_restarts_rr_history_and_template(bundle):
    signal, _ = synthetic_ecg(60, heart_rate=75, seed=22)
    signal[int(20 * RATE) : int(26 * RATE)] = signal[int(20 * RATE)]  # 20 s to 26 s: lead off, value held
    events, traces = streamed(bundle, signal, chunk=500)
    before, after = _segments(traces, int(23 * RATE))
    assert len(before) > 15 and len(after) > 30
    _assert_a_fresh_segment(before)
    _assert_a_fresh_segment(after)
    windows = np.clip(np.asarray([trace.peak for trace in traces])[:, None] + np.arange(-BEFORE, AFTER), 0,
                      signal.size - 1)
    np.testing.assert_array_equal(stacked(traces, "window")[..., 0], signal[windows].astype(np.float32))
    beats = beat_events(events)
    last_before = beats[len(before) - 1]
    assert last_before.post_rr_ms is None and beats[len(before)].pre_rr_ms is None
    assert not any(beat.classified for beat in beats if QualityFlag.FLAT_LINE.value in beat.quality_flags)


def test_the_beat_before_a_lead_off_is_decided_without_waiting_for_the_reconnection(bundle):
    signal, _ = synthetic_ecg(40, heart_rate=75, seed=23)
    signal[int(15 * RATE) :] = signal[int(15 * RATE)]  # the lead comes off at 15 s and stays off
    stream = EcgStream(bundle, RATE, config=StreamConfig(batch_size=1))
    events = beat_events(stream.feed(signal))  # no flush: the stream is still running
    assert events and events[-1].time_s < 15.0 and events[-1].post_rr_ms is None
    assert not beat_events(stream.flush())


def test_a_gap_restarts_rr_history_and_template(bundle):
    signal, _ = synthetic_ecg(50, heart_rate=80, seed=24)
    traces: list[BeatTrace] = []
    stream = EcgStream(bundle, RATE, trace=traces.append)
    split = int(20 * RATE)
    events = stream.feed(signal[:split]) + stream.gap(4.0) + stream.feed(signal[split:]) + stream.flush()
    before, after = _segments(traces, split)
    assert len(before) > 15 and len(after) > 30
    _assert_a_fresh_segment(before)
    _assert_a_fresh_segment(after)
    beats = beat_events(events)
    assert beats[len(before) - 1].post_rr_ms is None and beats[len(before)].pre_rr_ms is None
    assert beats[len(before)].time_s > 24.0


def test_flagged_beats_are_not_classified_but_keep_the_segment_whole(bundle):
    signal, _ = synthetic_ecg(40, heart_rate=72, seed=25)
    signal[int(25 * RATE) : int(25.2 * RATE)] = np.nan
    events, traces = streamed(bundle, signal, chunk=997)
    beats = beat_events(events)
    flagged = [beat for beat in beats if QualityFlag.NON_FINITE.value in beat.quality_flags]
    assert flagged and not any(beat.classified for beat in flagged)
    _assert_a_fresh_segment(traces)  # NaN-repaired beats still join RR history and template: no restart
    assert json.loads(json.dumps(flagged[0].to_dict()))["class"] is None


def test_the_runner_streams_a_derived_input_bundle_and_sends_only_classified_beats(tmp_path):
    folder = build_pvc_bundle(tmp_path / "bundle")
    signal, _ = synthetic_ecg(40, heart_rate=72, seed=26)
    np.save(tmp_path / "signal.npy", signal)
    device = pseudonymous_device_id("SN-PVC", "fleet-salt")
    options = RunOptions(sample_rate_hz=RATE, trust=UNSIGNED, device_id=device,
                         telemetry_outbox=tmp_path / "outbox.sqlite3", telemetry_mode=TelemetryMode.RECORDS)
    beats = beat_events(list(run(folder, tmp_path / "signal.npy", options)))
    classified = [beat for beat in beats if beat.classified]
    assert len(beats) > 40 and len(beats) - len(classified) >= RR.history_beats + 1
    with Outbox(tmp_path / "outbox.sqlite3", device) as outbox:
        records = outbox.pending(500)
    assert [record["result"]["class"] for record in records] == [beat.beat_class for beat in classified]
