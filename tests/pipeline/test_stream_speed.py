"""The real-time-factor benchmark runs the real stream path with and without telemetry and reports a breakdown (no
speed asserted), on the vendored MIT-BIH records by default; telemetry never changes the stream's events."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from pipeline.benchmark.stream_speed import (
    EventTally,
    StreamSpeedConfig,
    events_digest,
    measure_stream_speed,
    mitdb_recording,
    stream_batches,
    stream_events,
    synthetic_recording,
)
from pipeline.scenarios.ecg_pvc.mitdb import load_records
from runtime.bundle import load_bundle
from runtime.ecg import RECORDING_CONFIG
from runtime.events import BeatEvent
from runtime.trust import TrustPolicy


def test_stream_speed_report_on_a_short_recording(ecg_build):
    _, outcome = ecg_build
    config = StreamSpeedConfig(hours=0.02, profiled_hours=0.01, repeats=3)
    report = measure_stream_speed(outcome.bundle_directory, config)
    assert report["recording_s"] == 0.02 * 3600
    assert datetime.fromisoformat(report["measured_at"]).tzinfo is not None and report["machine"]["cpu"]
    assert not report["synthetic"] and report["signal"].startswith("real: the 10 vendored MIT-BIH")
    assert report["beats"] > 60  # record 100's first 72 s: ~75 bpm
    assert report["real_time_factor"] > 0 and report["wall_s"] > 0 and report["cpu_s"] > 0
    with_telemetry, without = report["runs"]
    assert (with_telemetry["telemetry"], without["telemetry"]) == ("aggregates", "none")
    assert with_telemetry["beats"] == without["beats"] and with_telemetry["events"] == without["events"]
    assert with_telemetry["aggregates"] >= 1 and with_telemetry["outbox_rows"] >= with_telemetry["aggregates"]
    assert report["real_time_factor_without_telemetry"] == without["real_time_factor"]
    assert with_telemetry["events_sha256"] == without["events_sha256"] and report["events_identical_across_runs"]
    for run in report["runs"]:  # each mode's figures are the medians of its repeats, every repeat's factor listed
        factors = run["real_time_factors"]
        assert run["repeats"] == len(factors) == len(run["events_sha256_by_repeat"]) == 3
        assert len(set(run["events_sha256_by_repeat"])) == 1
        assert run["real_time_factor"] == sorted(factors)[1]
    shares = report["time_share_by_stage"]
    assert {"inference", "detection", "telemetry"} <= set(shares)
    assert abs(sum(shares.values()) - 1.0) < 0.01
    assert set(report["microseconds_per_beat_by_stage"]) == set(shares)
    assert report["hotspots"] and report["target_real_time_factor"] == 20_000
    assert report["stream"] == {"block_s": RECORDING_CONFIG.block_s, "batch_size": RECORDING_CONFIG.batch_size,
                                "max_batch_wait_s": RECORDING_CONFIG.max_batch_wait_s}  # what the figures ran with


def test_the_stream_gives_the_same_events_in_every_telemetry_mode(ecg_build, tmp_path):
    from pipeline.benchmark.stream_speed import _sink

    _, outcome = ecg_build
    bundle = load_bundle(outcome.bundle_directory, provider="cpu", threads=1, trust=TrustPolicy.development())
    config = StreamSpeedConfig(hours=0.01)
    signal = synthetic_recording(config.hours, config.sample_rate_hz, seed=3)
    found = {}
    for mode in ("aggregates", "records", "none"):
        events = stream_events(bundle, signal, config, mode, _sink(bundle, tmp_path, mode, mode, 1.7e9))
        found[mode] = [(event.time_s, event.beat_class, event.quality_flags) if isinstance(event, BeatEvent)
                       else (event.time_s, event.flag) for event in events]
    assert found["aggregates"] == found["records"] == found["none"] and len(found["none"]) > 30


def test_a_timed_run_tallies_the_events_batch_by_batch_as_the_whole_list_would(ecg_build):
    """The timed runs keep no events (a device keeps none): the counts and digest taken batch by batch are those of
    the whole list, and a different decision changes the digest."""
    _, outcome = ecg_build
    bundle = load_bundle(outcome.bundle_directory, provider="cpu", threads=1, trust=TrustPolicy.development())
    config = StreamSpeedConfig(hours=0.02)
    signal = mitdb_recording(config.hours, 360.0, ("200",))
    tally, batches = EventTally(), 0
    for events in stream_batches(bundle, signal, config, "none", None):
        tally.add(events)
        batches += 1
    whole = stream_events(bundle, signal, config, "none", None)
    assert batches > 1 and tally.events == len(whole) > 0
    assert tally.beats == sum(isinstance(event, BeatEvent) for event in whole) > 60
    assert tally.digest.hexdigest() == events_digest(whole)
    beat = next(index for index, event in enumerate(whole) if isinstance(event, BeatEvent))
    relabelled = whole[beat].__dict__ | {"beat_class": "V" if whole[beat].beat_class != "V" else "N"}
    changed = [*whole[:beat], BeatEvent(**relabelled), *whole[beat + 1:]]
    assert events_digest(changed) != events_digest(whole)


def test_the_real_recording_is_the_vendored_records_one_after_another_repeated():
    records = load_records()
    joined = np.concatenate([record.signal_mv for record in records])
    hours = 1.2 * joined.size / 360.0 / 3600  # the sequence once and a fifth again
    signal = mitdb_recording(hours, 360.0)
    assert signal.size == int(hours * 3600 * 360.0) and signal.dtype == np.float32
    assert np.array_equal(signal[: joined.size], joined.astype(np.float32))
    assert np.array_equal(signal[joined.size:], joined[: signal.size - joined.size].astype(np.float32))


def test_real_pvcs_reach_the_outbox_as_event_records_beside_the_aggregates(tmp_path):
    """Record 200's PVCs (real) are sent one by one (the event filter) as well as counted in the minute aggregates: the
    real signal drives the per-event path that clean synthetic beats leave idle. The bundle has the shipped ecg-pvc
    inputs (template residual and RR features) and a hand-built linear model that calls a premature beat V, so what
    it calls V does not depend on a training run or the CPU."""
    from pipeline.benchmark.stream_speed import _sink
    from tests.runtime.pvc_bundle import TWO_INPUTS, load_pvc_bundle

    bundle = load_pvc_bundle(tmp_path / "bundle", TWO_INPUTS)
    config = StreamSpeedConfig(hours=0.05)
    sink = _sink(bundle, tmp_path, "real", "aggregates", 1.7e9)
    events = stream_events(bundle, mitdb_recording(config.hours, 360.0, ("200",)), config, "aggregates", sink)
    pvcs = sum(getattr(event, "beat_class", None) == "V" for event in events)
    assert pvcs >= 10 and sink.aggregates >= 3 and sink.count - sink.aggregates >= pvcs
    sink.close()


def test_a_rate_the_records_do_not_have_is_refused_before_any_bundle_is_loaded(tmp_path):
    config = StreamSpeedConfig(hours=0.01, sample_rate_hz=250.0)
    with pytest.raises(ValueError, match="MIT-BIH records are 360 Hz"):
        measure_stream_speed(tmp_path / "no-bundle-here", config)
