"""The stream's batched arithmetic equals the per-beat reference, number for number: template residuals
(``TemplateMembers`` vs ``RunningTemplate``), RR features (``RrColumnStream`` vs ``RrFeatureStream``), heart rates
(``HeartRate.beats`` vs the per-beat rule), single-label decisions (``decide_single_label`` vs ``decide``), and the
events of a real record with telemetry features however it is chunked."""

from __future__ import annotations

import bisect
import dataclasses
from collections import deque
from itertools import pairwise

import numpy as np
import pytest

from pipeline.scenarios.ecg_pvc.mitdb import load_records
from runtime.contract import BinaryRule, MulticlassRule, OutputSpec, TaskKind
from runtime.contract.derived import RrFeatureConfig, TemplateConfig
from runtime.decide import decide, decide_single_label
from runtime.ecg import RECORDING_CONFIG, EcgStream
from runtime.ecg.beats import HeartRate
from runtime.ecg.rr_columns import NO_INTERVAL, RrColumnStream
from runtime.ecg.rr_features import RrFeatureStream
from runtime.ecg.template import RunningTemplate, zscore_windows
from runtime.ecg.template_members import TemplateMembers
from runtime.events import BeatEvent, beat_event
from tests.runtime.pvc_bundle import TWO_INPUTS, load_pvc_bundle


@pytest.mark.parametrize("history", [1, 2, 7, 30, 33, 64, 70])
def test_batched_template_residuals_equal_the_running_template_bit_for_bit(history):
    random = np.random.default_rng(history)
    config = TemplateConfig(history_beats=history, minimum_std=1e-6, minimum_pre_to_local=0.9)
    count = 300
    windows = random.standard_normal((count, 252)).astype(np.float32)
    windows[random.random(count) < 0.05] = windows[0]  # identical beats: ties in every sample's median
    ratios = random.uniform(0.6, 1.3, count).astype(np.float32)
    ratios[random.random(count) < 0.03] = np.nan  # NaN joins
    restarts = {0, 40, 41, 200}
    reference, expected = RunningTemplate(config), []
    for index in range(count):
        if index in restarts:
            reference.reset()
        expected.append(reference.push(windows[index], float(ratios[index])))
    members, found = TemplateMembers(config), np.zeros((count, 252), dtype=np.float32)
    cuts = sorted(restarts | {7, 12, 90, 91, 150, count})
    for first, end in pairwise(cuts):
        if first in restarts:
            members.restart()
        scored = zscore_windows(windows[first:end], config)
        starts, stops = members.add(scored, ratios[first:end])
        found[first:end] = members.residuals(scored, starts, stops)
        members.forget_before(int(starts.min()))
    np.testing.assert_array_equal(found, np.stack(expected))


@pytest.mark.parametrize("batch", [1, 2, 3, 34, 35, 36, 37, 38, 70])
def test_template_residual_runs_of_every_length_equal_the_running_template(batch):
    """A release's full-history beats go through the rank masks in runs whose members fit 64 bits; a run of one or
    two beats (a release's tail) takes the per-beat partition instead: both give ``RunningTemplate``'s numbers."""
    random = np.random.default_rng(batch)
    config = TemplateConfig(history_beats=30, minimum_std=1e-6, minimum_pre_to_local=0.0)  # every beat joins
    count = 40 + 3 * batch
    windows = random.standard_normal((count, 252)).astype(np.float32)
    windows[random.random(count) < 0.05] = windows[3]  # ties
    reference = RunningTemplate(config)
    expected = np.stack([reference.push(window, 1.0) for window in windows])
    members, found = TemplateMembers(config), np.zeros((count, 252), dtype=np.float32)
    for first in range(0, count, batch):
        end = min(first + batch, count)
        scored = zscore_windows(windows[first:end], config)
        starts, stops = members.add(scored, np.ones(end - first, dtype=np.float32))
        found[first:end] = members.residuals(scored, starts, stops)
        members.forget_before(int(starts.min()))
    np.testing.assert_array_equal(found, expected)


def test_rr_columns_equal_the_per_beat_rr_stream():
    random = np.random.default_rng(1)
    config = RrFeatureConfig(history_beats=10, max_rr_s=1.5, default_rr_s=1.0)
    peaks = np.cumsum(random.integers(60, 700, size=400))  # pauses over max_rr_s included
    finishes = {0, 1, 2, 150, 151, 399}
    reference, expected = RrFeatureStream(360.0, config), []
    for index, peak in enumerate(peaks.tolist()):
        if index in finishes:
            expected.append(reference.finish())
        expected.append(reference.push(peak))
    expected = [beat for beat in [*expected, reference.finish()] if beat is not None]
    columns, found = RrColumnStream(360.0, config), []
    cuts = sorted(finishes | {5, 6, 60, 300, 400})
    for first, end in pairwise(cuts):
        if first in finishes:
            found.append(columns.finish())
        found.append(columns.push(peaks[first:end]))
    found = [part for part in [*found, columns.finish()] if part is not None]

    def stacked(name):
        return np.concatenate([getattr(part, name) for part in found])

    np.testing.assert_array_equal(stacked("features"), np.stack([beat.features for beat in expected]))
    assert [None if value == NO_INTERVAL else value for value in stacked("pre_samples").tolist()] == [
        beat.pre_samples for beat in expected]
    assert [None if value == NO_INTERVAL else value for value in stacked("post_samples").tolist()] == [
        beat.post_samples for beat in expected]
    assert stacked("history_intervals").tolist() == [beat.history_intervals for beat in expected]
    assert stacked("local_intervals").tolist() == [beat.local_intervals for beat in expected]


class PerBeatHeartRate:
    """The stream's heart rate one beat at a time (the rule ``HeartRate.beats`` vectorises)."""

    def __init__(self, rate: float, window_s: float) -> None:
        self.rate, self.window_s, self.times, self.breaks, self.last = rate, window_s, deque(), [], None

    def beat(self, index: int):
        previous, self.last = self.last, index
        instantaneous = None
        if previous is not None:
            if bisect.bisect_right(self.breaks, index) == bisect.bisect_right(self.breaks, previous):
                instantaneous = 60.0 * self.rate / (index - previous)
            del self.breaks[: bisect.bisect_right(self.breaks, previous)]
        now = index / self.rate
        self.times.append(now)
        while self.times[0] <= now - self.window_s:
            self.times.popleft()
        return instantaneous, (len(self.times) if now >= self.window_s else None)


def test_block_heart_rates_equal_the_per_beat_rule():
    random = np.random.default_rng(2)
    peaks = np.cumsum(random.integers(100, 500, size=600))
    batched, reference = HeartRate(360.0, 60.0), PerBeatHeartRate(360.0, 60.0)
    found, expected = [], []
    cuts = [0, 1, 2, 30, 31, 100, 250, 400, 600]
    for first, end in pairwise(cuts):
        if first in (31, 250):  # a flat line or gap between blocks
            batched.interrupt(int(peaks[first]) - 5)
            reference.breaks.append(int(peaks[first]) - 5)
        bpm, per_minute = batched.beats(peaks[first:end])
        found += list(zip(bpm, per_minute, strict=True))
        expected += [reference.beat(peak) for peak in peaks[first:end].tolist()]
    assert found == expected


@pytest.mark.parametrize("task", [TaskKind.BINARY, TaskKind.MULTICLASS])
@pytest.mark.parametrize("logits", [False, True])
def test_single_label_columns_equal_decide(task, logits):
    random = np.random.default_rng(3)
    if task is TaskKind.BINARY:
        spec = OutputSpec(("p",), task, ("N", "V"), BinaryRule(0.7, "test"), graph_outputs_logits=logits)
        values = random.uniform(-4, 4, (50, 1)) if logits else random.uniform(0, 1, (50, 1))
    else:
        spec = OutputSpec(("p",), task, ("N", "S", "V"), MulticlassRule(low_confidence_below=0.6),
                          graph_outputs_logits=logits)
        values = random.uniform(-4, 4, (50, 3)) if logits else random.dirichlet(np.ones(3), 50)
    values = values.astype(np.float32)
    columns = decide_single_label(spec, values)
    for row, decision in enumerate(decide(spec, values)):
        assert columns.labels[columns.chosen[row]] == decision.label
        assert float(columns.confidence[row]) == decision.confidence
        assert dict(zip(columns.labels, columns.scores[row].tolist(), strict=True)) == decision.scores
        assert bool(columns.low_confidence[row]) == decision.low_confidence


def _events(bundle, signal, chunk):
    stream = EcgStream(bundle, 360.0, config=dataclasses.replace(RECORDING_CONFIG, summary_features=True))
    events = []
    for start in range(0, signal.size, chunk):
        events += stream.feed(signal[start : start + chunk])
    return [dataclasses.replace(event, latency_us=0.0) if isinstance(event, BeatEvent) else event
            for event in events + stream.flush()]


def test_a_real_records_events_do_not_depend_on_chunks_or_batches(tmp_path):
    bundle = load_pvc_bundle(tmp_path / "bundle", TWO_INPUTS)
    signal = load_records(["200"])[0].signal_mv[: 360 * 240]
    whole = _events(bundle, signal, signal.size)
    beats = [event for event in whole if isinstance(event, BeatEvent)]
    assert len(beats) > 250 and sum(event.classified for event in beats) > 200
    assert all(event.features for event in beats if event.classified)
    assert _events(bundle, signal, 777) == whole
    assert _events(bundle, signal, 3600) == whole


def test_beat_event_builds_the_same_event_as_the_dataclass():
    values = (12.5, "V", 0.99, {"non-V": 0.01, "V": 0.99}, 71.3, 70, ("warming_up",), False, 41.2,
              {"rr/pre_rr_s": 0.8}, 800.0, None, 812.5)
    fast, slow = beat_event(*values), BeatEvent(*values)
    assert fast == slow and type(fast) is BeatEvent and vars(fast) == vars(slow)
    assert fast.to_dict() == slow.to_dict() and hash(fast.time_s) == hash(slow.time_s)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.time_s = 1.0
    with pytest.raises(ValueError):
        beat_event(*values[:-1])  # every field, in order
