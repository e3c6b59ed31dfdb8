"""The windowed stream: chunk-size invariance (with resampling and several channels), the same windows as
training's ``model_windows``, quality flags that withhold a result, every task kind, segments, timestamps, and
typed errors for what it cannot honour."""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pytest

from runtime.contract import TaskKind, UnsupportedBundleError
from runtime.ecg import EcgStream, SignalError
from runtime.events import QualityEvent, WindowEvent
from runtime.features import WAVEFORM_FEATURES
from runtime.resample import ChannelResampler
from runtime.results import OUTPUT_NOT_FINITE, AnomalyResult, ClassResult, LabelsResult, ValuesResult
from runtime.windows import (
    WindowFlag,
    WindowSignalError,
    WindowStream,
    WindowStreamClosedError,
    WindowStreamConfig,
    model_windows,
)
from tests.runtime.hand_built import build_bundle
from tests.runtime.window_bundles import (
    OUTPUTS,
    RATE,
    build_window_bundle,
    expected_outputs,
    load,
    synthetic_signal,
    window_spec,
)

CHUNKS = (1, 7, 1000, None)  # None: the whole signal in one feed


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("window-bundles")
    built = {task: load(build_window_bundle(root / task.value, task)) for task in TaskKind}
    built["stereo"] = load(build_window_bundle(root / "stereo", TaskKind.MULTICLASS, window_spec(channels=2)))
    return built


def run(bundle, signal, rate, chunk, config=None):
    stream = WindowStream(bundle, rate, config)
    size = chunk or len(signal)
    events = []
    for start in range(0, len(signal), size):
        events += stream.feed(signal[start : start + size])
    return events + stream.flush()


def comparable(events):
    """Events without the measured inference time, which differs run to run."""
    return [dataclasses.replace(event, latency_us=0.0) if isinstance(event, WindowEvent) else event
            for event in events]


def windows(events):
    return [event for event in events if isinstance(event, WindowEvent)]


def offline(signal, rate, spec):
    """What training makes of the same recording: resampled whole, then ``model_windows``."""
    channels = 1 if signal.ndim == 1 else signal.shape[1]
    resampler = ChannelResampler(rate, spec.sample_rate_hz, channels)
    with np.errstate(invalid="ignore"):
        resampled = np.concatenate([resampler.process(signal), resampler.flush()])
    return model_windows(resampled if signal.ndim == 2 else resampled[:, 0], spec)


@pytest.mark.parametrize(("key", "rate", "channels"), [
    (TaskKind.MULTICLASS, RATE, 1),  # the model's rate: no resampling
    (TaskKind.MULTICLASS, 100.0, 1),  # resampled 100 → 64 Hz
    (TaskKind.ANOMALY, 48.0, 1),  # resampled up 48 → 64 Hz
    ("stereo", 250.0, 2),  # two channels, resampled
])
def test_events_do_not_depend_on_chunk_size_and_match_training(bundles, key, rate, channels):
    bundle = bundles[key]
    signal = synthetic_signal(12.0, rate, channels, seed=3)
    signal[round(5.0 * rate) : round(5.2 * rate)] = np.nan  # a dropout: flagged windows in every run
    reference = comparable(run(bundle, signal, rate, None))
    for chunk in CHUNKS[:-1]:
        assert comparable(run(bundle, signal, rate, chunk)) == reference, f"chunks of {chunk}"
    expected = offline(signal, rate, bundle.inputs[0])
    events = windows(reference)
    assert [event.flags for event in events] == list(expected.flags)
    assert [event.start_s for event in events] == pytest.approx(expected.starts / RATE, abs=1e-9)
    judged = expected.judged
    assert 30 < judged.sum() < len(events)
    values = expected_outputs(bundle.output.task, bundle.inputs[0], expected.inputs[judged])
    assert [event.judged for event in events] == judged.tolist()
    decided = [event.result for event in events if event.judged]
    if bundle.output.task is TaskKind.ANOMALY:
        assert [result.score for result in decided] == pytest.approx(values[:, 0], abs=1e-4)
    else:
        assert [result.label for result in decided] == [bundle.labels[i] for i in values.argmax(axis=1)]
        assert [result.probability for result in decided] == pytest.approx(values.max(axis=1), abs=1e-5)


def test_channel_resampler_is_exact_under_any_chunking():
    signal = synthetic_signal(5.0, 250.0, 3, seed=4)
    whole = ChannelResampler(250.0, 64.0, 3)
    reference = np.concatenate([whole.process(signal), whole.flush()])
    assert reference.shape == (320, 3)
    for chunk in (1, 7, 1000):
        pieces = ChannelResampler(250.0, 64.0, 3)
        parts = [pieces.process(signal[start : start + chunk]) for start in range(0, len(signal), chunk)]
        assert np.array_equal(np.concatenate([*parts, pieces.flush()]), reference)


def test_windows_and_times_follow_the_manifest(bundles):
    events = run(bundles[TaskKind.MULTICLASS], synthetic_signal(10.0), RATE, 640)
    cut = windows(events)
    assert [event.index for event in cut] == list(range(39))  # (640 - 32) // 16 + 1
    assert [(event.start_s, event.end_s) for event in cut[:3]] == [(0.0, 0.5), (0.25, 0.75), (0.5, 1.0)]
    assert cut[-1].end_s == 10.0 and not [event for event in events if isinstance(event, QualityEvent)]


@pytest.mark.parametrize(("damage", "flag"), [
    (lambda s: s.__setitem__(slice(300, 310), np.nan), WindowFlag.NON_FINITE),
    (lambda s: s.__setitem__(slice(300, 310), np.inf), WindowFlag.NON_FINITE),
    (lambda s: s.__setitem__(slice(256, 384), 2000.0), WindowFlag.FLAT_LINE),
    (lambda s: np.clip(s, None, 2150.0, out=s), WindowFlag.CLIPPING),
])
def test_quality_flags_withhold_the_result(bundles, damage, flag):
    signal = synthetic_signal(10.0, seed=5)
    damage(signal)
    events = windows(run(bundles[TaskKind.MULTICLASS], signal, RATE, 100))
    flagged = [event for event in events if event.flags]
    assert flagged and all(event.flags == (flag.value,) for event in flagged)
    assert all(event.result is None and event.latency_us == 0.0 for event in flagged)
    assert all(event.to_dict()["judged"] is False and "class" not in event.to_dict() for event in flagged)
    if flag is not WindowFlag.CLIPPING:  # a clipped sine clips every window; the other damage is local
        assert all(event.judged for event in events if event.end_s <= 3.5 or event.start_s >= 6.5)


def test_all_nan_flags_every_window_and_never_crashes(bundles):
    events = run(bundles[TaskKind.BINARY], np.full(640, np.nan), RATE, 64)
    assert len(events) == 39 and all(event.flags == ("non_finite",) and event.result is None for event in events)


def test_values_beyond_float32_are_flagged_not_fed(tmp_path):
    bundle = load(build_window_bundle(tmp_path / "raw", TaskKind.ANOMALY, window_spec(normalization="none")))
    signal = synthetic_signal(4.0)
    signal[100] = 1e39  # finite in float64, infinite in float32
    events = windows(run(bundle, signal, RATE, None))
    assert [event.flags for event in events if event.flags] == [("non_finite",)] * 2
    assert all(np.isfinite(event.result.score) for event in events if event.judged)


def test_too_short_gives_a_quality_event_and_a_warning(bundles, caplog):
    with caplog.at_level(logging.INFO):
        events = run(bundles[TaskKind.MULTICLASS], synthetic_signal(0.4), RATE, 7)
    assert events == [QualityEvent(0.0, 26 / RATE, WindowFlag.TOO_SHORT.value)]  # 26 samples, no window of 32
    assert "shorter than one window" in caplog.text


def test_signal_after_the_last_whole_window_is_reported(bundles):
    events = run(bundles[TaskKind.MULTICLASS], synthetic_signal(10.1), RATE, 100)
    tail = events[-1]
    assert isinstance(tail, QualityEvent) and tail.flag == WindowFlag.PARTIAL_WINDOW.value
    assert (tail.time_s, tail.duration_s) == pytest.approx((10.0, 6 / RATE), abs=1e-9)  # 646 samples


@pytest.mark.parametrize("task", list(TaskKind))
def test_every_task_kind_gives_its_result(bundles, task):
    bundle = bundles[task]
    signal = synthetic_signal(3.0, seed=6)
    events = windows(run(bundle, signal, RATE, None))
    expected = model_windows(signal, bundle.inputs[0])
    values = expected_outputs(task, bundle.inputs[0], expected.inputs)
    results = [event.result for event in events]
    kind = {TaskKind.MULTICLASS: ClassResult, TaskKind.BINARY: ClassResult, TaskKind.MULTILABEL: LabelsResult,
            TaskKind.REGRESSION: ValuesResult, TaskKind.ANOMALY: AnomalyResult}[task]
    assert len(results) == 11 and all(isinstance(result, kind) for result in results)
    if task is TaskKind.BINARY:
        assert [result.label == "seizure" for result in results] == (values[:, 0] >= 0.5).tolist()
    elif task is TaskKind.ANOMALY:
        assert [result.alarm for result in results] == (values[:, 0] >= 2.0).tolist()
    elif task is TaskKind.MULTILABEL:
        assert [list(result.labels) for result in results] == [
            [label for label, on in zip(OUTPUTS[task].labels, row, strict=True) if on] for row in values >= 0.0]
    elif task is TaskKind.REGRESSION:
        assert [result.values["rate"] for result in results] == pytest.approx(values[:, 0], abs=1e-4)
    for event in events:
        json.dumps(event.to_dict(), allow_nan=False)


def test_summary_features_are_the_reference_profiles(bundles):
    bundle = bundles["stereo"]
    signal = synthetic_signal(3.0, RATE, 2, seed=7)
    events = windows(run(bundle, signal, RATE, None, WindowStreamConfig(summary_features=True)))
    from runtime.features import summary_features

    expected = summary_features(model_windows(signal, bundle.inputs[0]).inputs, bundle.inputs[0].feature_kind)
    assert set(events[0].features) == set(WAVEFORM_FEATURES)
    for name in WAVEFORM_FEATURES:
        assert [event.features[name] for event in events] == pytest.approx(expected[name], abs=1e-9)


def test_batches_are_bounded_and_fixed(bundles):
    config = WindowStreamConfig(batch_size=4, max_batch_wait_s=10.0)
    stream = WindowStream(bundles[TaskKind.MULTICLASS], RATE, config)
    assert stream.batch_windows == 4
    events = stream.feed(synthetic_signal(2.0))  # 7 windows: one batch of 4 run, 3 waiting
    assert [event.index for event in events] == [0, 1, 2, 3]
    assert [event.index for event in stream.flush()] == [4, 5, 6]
    live = WindowStream(bundles[TaskKind.MULTICLASS], RATE, WindowStreamConfig(batch_size=32, max_batch_wait_s=0.5))
    assert live.batch_windows == 3  # a window waits at most two hops (0.5 s) for its batch


def test_gaps_restart_the_window_grid(bundles):
    signal = synthetic_signal(4.0, seed=8)
    stream = WindowStream(bundles[TaskKind.MULTICLASS], RATE)
    events = stream.feed(signal[:130]) + stream.gap(3.0) + stream.feed(signal[130:]) + stream.flush()
    gap = [event for event in events if isinstance(event, QualityEvent) and event.flag == "gap"]
    assert len(gap) == 1 and gap[0].time_s == pytest.approx(130 / RATE) and gap[0].duration_s == 3.0
    after = [event for event in windows(events) if event.start_s > 2.0]
    assert after[0].start_s == pytest.approx(130 / RATE + 3.0)
    partial = [event for event in events if isinstance(event, QualityEvent) and event.flag == "partial_window"]
    assert partial and partial[0].time_s == pytest.approx(2.0)  # 130 samples: windows end at 128


def test_timestamps_reveal_gaps_and_rate_mismatch(bundles):
    signal = synthetic_signal(30.0, seed=9)
    stream = WindowStream(bundles[TaskKind.MULTICLASS], RATE)
    events = []
    for index, start in enumerate(range(0, len(signal), 64)):
        events += stream.feed(signal[start : start + 64], timestamp_s=index + (3.0 if start >= 640 else 0.0))
    events += stream.flush()
    assert [event.duration_s for event in events if isinstance(event, QualityEvent) and event.flag == "gap"] == [
        pytest.approx(3.0)]

    stream = WindowStream(bundles[TaskKind.MULTICLASS], RATE)  # the device really samples at ~58 Hz
    events = []
    for index, start in enumerate(range(0, len(signal), 64)):
        events += stream.feed(signal[start : start + 64], timestamp_s=1.1 * index)
    events += stream.flush()
    mismatched = [event for event in windows(events) if "rate_mismatch" in event.flags]
    assert mismatched and all(event.result is None for event in mismatched)


def test_what_the_stream_cannot_honour_is_a_typed_error(bundles):
    bundle, stereo = bundles[TaskKind.MULTICLASS], bundles["stereo"]
    with pytest.raises(WindowSignalError, match="too low"):
        WindowStream(bundle, 20.0)  # below half the model's 64 Hz
    for rate in (0.0, float("nan"), 1e6, True):
        with pytest.raises(WindowSignalError):
            WindowStream(bundle, rate)
    with pytest.raises(WindowSignalError, match="2 channel"):
        WindowStream(stereo, RATE).feed(np.zeros((100, 3)))
    with pytest.raises(WindowSignalError, match="2 channel"):
        WindowStream(stereo, RATE).feed(np.zeros(100))
    with pytest.raises(WindowSignalError, match="numbers"):
        WindowStream(bundle, RATE).feed(np.array(["a"]))
    stream = WindowStream(bundle, RATE)
    stream.flush()
    with pytest.raises(WindowStreamClosedError):
        stream.feed(np.zeros(10))
    assert stream.flush() == []


def test_the_ecg_stream_and_the_windowed_stream_refuse_each_others_bundles(bundles, tmp_path):
    with pytest.raises(SignalError, match="without a beat window"):
        EcgStream(bundles[TaskKind.MULTICLASS], 360.0)
    beat_bundle = load(build_bundle(tmp_path / "beat-and-rr"))  # a beat window and an RR row
    with pytest.raises(UnsupportedBundleError, match="signal_window"):
        WindowStream(beat_bundle, 360.0)


def test_a_non_finite_model_output_is_flagged_not_decided(tmp_path):
    bundle = load(build_window_bundle(tmp_path / "raw", TaskKind.ANOMALY, window_spec(normalization="none")))
    signal = synthetic_signal(2.0, seed=12)
    signal[40:72] = np.linspace(2e38, 3.4e38, 32)  # finite in float32, but their weighted sum is not
    events = windows(run(bundle, signal, RATE, None))
    unanswered = [event for event in events if event.flags == (OUTPUT_NOT_FINITE,)]
    assert unanswered and all(event.result is None for event in unanswered)
    assert all(event.judged for event in events if not event.flags)
