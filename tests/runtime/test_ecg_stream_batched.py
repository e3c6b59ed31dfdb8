"""The stream's batched arithmetic equals the per-beat reference, number for number: template residuals
(``TemplateMembers`` vs ``RunningTemplate``, segments restarting inside a release, the rank-mask medians vs
``np.median`` with ties), RR features (``RrColumnStream`` and a release's ``RrIntervals`` vs ``RrFeatureStream``), heart
rates (``HeartRate.beats`` vs the per-beat rule), single-label decisions (``decide_single_label`` vs ``decide``), and
the events of a real record with telemetry features however it is chunked."""

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
from runtime.ecg.beat_inputs import BeatInputStream, stream_inputs
from runtime.ecg.beats import BeatBlock, HeartRate
from runtime.ecg.rr_columns import NO_INTERVAL, RrColumnStream, RrIntervals
from runtime.ecg.rr_features import RrFeatureStream
from runtime.ecg.template import RunningTemplate, zscore_windows
from runtime.ecg.template_members import MASK_BITS, TemplateMembers, full_window_medians, member_order
from runtime.events import BeatEvent, beat_event
from tests.runtime.pvc_bundle import THREE_INPUTS, TWO_INPUTS, load_pvc_bundle


def running_template_residuals(config: TemplateConfig, windows: np.ndarray, ratios: np.ndarray,
                               restarts: set[int]) -> list[np.ndarray]:
    """The per-beat reference: ``RunningTemplate``'s residual of each window, reset at each of ``restarts``."""
    reference, expected = RunningTemplate(config), []
    for index in range(len(windows)):
        if index in restarts:
            reference.reset()
        expected.append(reference.push(windows[index], float(ratios[index])))
    return expected


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
    expected = running_template_residuals(config, windows, ratios, restarts)
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


def test_segments_restarting_inside_one_batch_equal_the_running_template():
    """A release computes the template membership of every beat filled since the last one in one ``add``, the
    segments' restarts (lead-off, gaps) at their positions inside it: the residuals of ``RunningTemplate`` reset there.
    Many small releases also move the members through the buffer (forgotten rows, compaction)."""
    random = np.random.default_rng(11)
    config = TemplateConfig(history_beats=30, minimum_std=1e-6, minimum_pre_to_local=0.9)
    count = 1500
    windows = random.standard_normal((count, 252)).astype(np.float32)
    ratios = random.uniform(0.7, 1.2, count).astype(np.float32)
    restarts = {0, 33, 34, 200, 431, 900}
    expected = running_template_residuals(config, windows, ratios, restarts)
    members, found = TemplateMembers(config), np.zeros((count, 252), dtype=np.float32)
    first = 0
    for size in [1, 2, 36, 37, 5, 64, 70, 36, 36, 1, 12] * 40:
        end = min(first + size, count)
        if end <= first:
            break
        inside = [index - first for index in sorted(restarts) if first <= index < end]
        scored = zscore_windows(windows[first:end], config)
        starts, stops = members.add(scored, ratios[first:end], inside)
        found[first:end] = members.residuals(scored, starts, stops)
        members.forget_before(int(starts.min()))
        first = end
    np.testing.assert_array_equal(found, np.stack(expected))


@pytest.mark.parametrize("values", ["distinct", "ties", "near ties", "signs and zeros"])
@pytest.mark.parametrize("length", [1, 2, 7, 29, 30, 31, 64])
def test_rank_mask_medians_equal_the_median_with_ties_and_near_ties(length, values):
    """The members' order comes from one integer sort of keys holding the member's row in their last six bits; equal
    values and values a few units in the last place apart fall back to ``argsort``: every median is ``np.median``'s."""
    random = np.random.default_rng(length)
    members = random.standard_normal((MASK_BITS, 40))
    if values == "ties":
        members[5] = members[9]  # equal rows: ties at every sample
    elif values == "near ties":
        members[20] = np.nextafter(members[21], np.inf)  # one unit in the last place apart
        members[22] = members[23] * (1 + 1e-15)
    elif values == "signs and zeros":
        members[30] = -members[31]
        members[40, :20] = 0.0
        members[41:50, 20:] = np.abs(members[41:50, 20:])
    starts = np.arange(MASK_BITS - length + 1)
    expected = np.stack([np.median(members[start : start + length], axis=0) for start in starts])
    np.testing.assert_array_equal(full_window_medians(members, starts, length), expected)
    if values == "distinct":  # no near tie: the integer sort's own order is the argsort
        np.testing.assert_array_equal(member_order(members), np.argsort(members, axis=0, kind="stable"))


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


def test_a_releases_rr_intervals_assembled_at_once_equal_each_blocks_columns():
    """The stream keeps each block's RR integers (``push_into`` / ``finish_into``) and assembles a release's beats in
    one ``RrIntervals.columns``: the same rows as assembling every block on its own, and as ``RrFeatureStream``."""
    random = np.random.default_rng(4)
    config = RrFeatureConfig(history_beats=10, max_rr_s=1.5, default_rr_s=1.0)
    peaks = np.cumsum(random.integers(60, 700, size=500))
    blocks, finishes = [0, 1, 3, 4, 40, 41, 120, 300, 301, 302, 460, 500], {41, 301}
    per_block, released = RrColumnStream(360.0, config), RrColumnStream(360.0, config)
    separate, together = [], RrIntervals()
    for first, end in pairwise(blocks):
        if first in finishes:
            separate.append(per_block.finish())
            released.finish_into(together)
        separate.append(per_block.push(peaks[first:end]))
        assert released.push_into(peaks[first:end].tolist(), together) == (0 if separate[-1] is None else
                                                                           len(separate[-1]))
    separate.append(per_block.finish())
    assert released.finish_into(together) == 1
    parts = [part for part in separate if part is not None]
    joined = together.columns(360.0)
    for name in ("features", "pre_samples", "post_samples", "history_intervals", "local_intervals"):
        np.testing.assert_array_equal(getattr(joined, name), np.concatenate([getattr(part, name) for part in parts]))
    reference = RrFeatureStream(360.0, config)
    expected = []
    for index, peak in enumerate(peaks.tolist()):
        if index in finishes:
            expected.append(reference.finish())
        expected.append(reference.push(peak))
    expected = [beat for beat in [*expected, reference.finish()] if beat is not None]
    np.testing.assert_array_equal(joined.features, np.stack([beat.features for beat in expected]))


def _blocks(count: int, seed: int) -> list[BeatBlock]:
    random = np.random.default_rng(seed)
    peaks = np.cumsum(random.integers(200, 420, size=count))
    windows = random.standard_normal((count, 252)).astype(np.float32)
    cuts = [0, 1, 13, 14, 30, 44, 45, 70, 90, count]
    return [BeatBlock(peaks[first:end], [("clipped",) if index % 17 == 5 else () for index in range(first, end)],
                      [None] * (end - first), [None] * (end - first), windows[first:end], 360.0)
            for first, end in pairwise(cuts)]


def _filled(inputs: BeatInputStream, blocks: list[BeatBlock]) -> None:
    for number, block in enumerate(blocks):
        if number in (3, 6):  # a flat line or gap before these blocks: the segment ends
            inputs.finish()
        inputs.push(block, 0, len(block))
    inputs.finish()


def test_computed_inputs_taken_in_any_portions_are_the_same_rows():
    """A release takes the inputs of the beats filled so far (all of them, as the stream releases every filled beat);
    taken in smaller portions, or computed in several passes, they are the same rows with the same template members."""
    plan = stream_inputs(THREE_INPUTS)
    whole, parts = BeatInputStream(plan, 10), BeatInputStream(plan, 10)
    _filled(whole, _blocks(100, 8))
    everything = whole.columns(100)
    blocks = _blocks(100, 8)
    pieces = []
    for number, block in enumerate(blocks):  # computed after every block, taken in uneven portions
        if number in (3, 6):
            parts.finish()
        parts.push(block, 0, len(block))
        filled = sum(item.filled for item in blocks) - sum(len(piece) for piece in pieces)
        if filled > 3:
            pieces.append(parts.columns(filled - 3))
    parts.finish()
    pieces.append(parts.columns(100 - sum(len(piece) for piece in pieces)))
    assert [flags for piece in pieces for flags in piece.flags] == everything.flags
    for name in ("judged", "rr_ms", "windows", "rr", "scored", "template_starts", "template_stops"):
        np.testing.assert_array_equal(np.concatenate([getattr(piece, name) for piece in pieces]),
                                      getattr(everything, name))
    assert any("warming_up" in flags for flags in everything.flags) and not everything.judged.all()
    with pytest.raises(RuntimeError):
        parts.columns(1)  # nothing filled is left


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


def _decisions(bundle, signal, config):
    """The events of ``signal`` fed in 10-s chunks, latency apart, in time order (quality stretches before beats at
    the same time): a block or batch size changes only when events are handed over, not what they are."""
    stream = EcgStream(bundle, 360.0, config=config)
    events = []
    for start in range(0, signal.size, 3600):
        events += stream.feed(signal[start : start + 3600])
    events += stream.flush()
    return sorted((dataclasses.replace(event, latency_us=0.0) if isinstance(event, BeatEvent) else event
                   for event in events), key=lambda event: (event.time_s, isinstance(event, BeatEvent)))


def test_a_real_records_decisions_do_not_depend_on_the_block_or_batch(tmp_path):
    bundle = load_pvc_bundle(tmp_path / "bundle", TWO_INPUTS)
    record = load_records(["200"])[0].signal_mv[: 360 * 300]
    lead_off = np.full(360 * 4, float(record[360 * 150]))  # 4 s flat: the segment ends, detection restarts
    signal = np.concatenate([record[: 360 * 150], lead_off, record[360 * 150 :]])
    recording = _decisions(bundle, signal, RECORDING_CONFIG)
    assert sum(isinstance(event, BeatEvent) and event.classified for event in recording) > 300
    assert any(not isinstance(event, BeatEvent) and event.flag == "flat_line" for event in recording)
    for block_s, batch_size, wait_s in ((2.0, 32, 6.0), (10.0, 64, 30.0), (30.0, 7, 30.0)):
        config = dataclasses.replace(RECORDING_CONFIG, block_s=block_s, batch_size=batch_size,
                                     max_batch_wait_s=wait_s)
        _assert_same_decisions(_decisions(bundle, signal, config), recording)


def _assert_same_decisions(found, expected):
    """Equal events, the model's probabilities within 1e-6: another batch size may take another ONNX Runtime kernel
    on another CPU, whose float sums round differently (the model's own numbers, not the stream's decisions)."""
    assert len(found) == len(expected)
    for one, other in zip(found, expected, strict=True):
        if not isinstance(one, BeatEvent) or one.probability is None or other.probability is None:
            assert one == other
            continue
        assert dataclasses.replace(one, probability=0.0, probabilities={}) == dataclasses.replace(
            other, probability=0.0, probabilities={})
        assert one.probability == pytest.approx(other.probability, abs=1e-6)
        assert one.probabilities == pytest.approx(other.probabilities, abs=1e-6)


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
