"""The fleet simulator end to end: real runtime per device, real collector, scripted problems visible."""

from __future__ import annotations

import json
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from dashboard.collector.app import build_server, create_app
from dashboard.collector.store import SqliteStore
from pipeline.fleet import EventKind, ScenarioError, ScriptedEvent, SimulationConfig, default_script, simulate
from pipeline.fleet.scenario import validate_script

DEVICES = 4
MINUTES = 3.0
LEAD_OFF = ScriptedEvent(EventKind.LEAD_OFF, 1, 1.0, 1.5)
GAIN_DRIFT = ScriptedEvent(EventKind.GAIN_DRIFT, 2, 0.5, 2.5, 12.0)
LATENCY = ScriptedEvent(EventKind.LATENCY_REGRESSION, 3, 1.5, 3.0, 5.0)
SCRIPT = (LEAD_OFF, GAIN_DRIFT, LATENCY)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def collector(tmp_path_factory) -> Iterator[tuple[str, SqliteStore]]:
    store = SqliteStore(tmp_path_factory.mktemp("collector") / "telemetry.sqlite3")
    port = _free_port()
    server = build_server(create_app(store), "127.0.0.1", port, log_level="warning")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "the collector did not start"
    try:
        yield f"http://127.0.0.1:{port}/v1/telemetry", store
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        store.close()


@pytest.fixture(scope="module")
def fleet(ecg_build, collector, tmp_path_factory) -> tuple[dict, dict[str, list[dict]], datetime]:
    _, outcome = ecg_build
    url, store = collector
    end = datetime.now(UTC)
    config = SimulationConfig(
        collector_url=url,
        devices=DEVICES,
        minutes=MINUTES,
        bundle_path=outcome.bundle_directory,
        seed=3,
        outbox_dir=tmp_path_factory.mktemp("outboxes"),
        script=SCRIPT,
        end_time=end,
    )
    summary = simulate(config)
    records = {device_id: store.records(device_id) for device_id in summary["device_summaries"]}
    return summary, records, end - timedelta(minutes=MINUTES)


def _device_id(summary: dict, index: int) -> str:
    return next(key for key, value in summary["device_summaries"].items() if value["index"] == index)


def _minute(record: dict, start: datetime) -> float:
    return (datetime.fromisoformat(record["time"]) - start).total_seconds() / 60.0


def _in_window(records: list[dict], start: datetime, first: float, last: float) -> list[dict]:
    return [record for record in records if first <= _minute(record, start) < last]


def test_every_device_delivers_each_sequence_exactly_once(fleet):
    summary, records, _ = fleet
    assert len(records) == DEVICES
    for device_id, rows in records.items():
        sequences = [row["sequence"] for row in rows]
        device = summary["device_summaries"][device_id]
        assert device["records"] > 100  # ~70 beats a minute for 3 minutes
        assert sorted(sequences) == list(range(1, device["records"] + 1))
        assert device["uploaded"] == device["records"] and device["pending"] == 0


def test_telemetry_times_are_simulated_and_in_the_past(fleet):
    _, records, start = fleet
    for rows in records.values():
        minutes = [_minute(row, start) for row in rows]
        assert min(minutes) >= 0 and max(minutes) <= MINUTES + 1e-6
        assert max(minutes) - min(minutes) > MINUTES - 0.2  # the timeline spans the simulated minutes
    assert max(row["time"] for rows in records.values() for row in rows) <= datetime.now(UTC).isoformat()


def test_lead_off_shows_as_flat_line_and_no_beats(fleet):
    summary, records, start = fleet
    lead_off = _device_id(summary, LEAD_OFF.device_index)
    device = summary["device_summaries"][lead_off]
    assert device["quality_events"].get("flat_line", 0) >= 1
    episode_s = 60 * (LEAD_OFF.end_minute - LEAD_OFF.start_minute)
    assert device["quality_seconds"]["flat_line"] == pytest.approx(episode_s, abs=3)
    inside = _in_window(records[lead_off], start, LEAD_OFF.start_minute + 0.05, LEAD_OFF.end_minute - 0.05)
    assert all("flat_line" in record["quality_flags"] for record in inside)  # no beats, or flagged ones
    assert len(inside) <= 2
    for device_id, device in summary["device_summaries"].items():
        if device_id != lead_off:
            assert "flat_line" not in device["quality_events"]
            assert not any("flat_line" in record["quality_flags"] for record in records[device_id])
            window = _in_window(records[device_id], start, LEAD_OFF.start_minute, LEAD_OFF.end_minute)
            assert len(window) > 20  # the others kept beating


def test_gain_drift_clips(fleet):
    summary, records, start = fleet
    drifting = _device_id(summary, GAIN_DRIFT.device_index)
    clipped = [record for record in records[drifting] if "clipped" in record["quality_flags"]]
    assert len(clipped) > 20
    assert all(GAIN_DRIFT.start_minute <= _minute(record, start) <= GAIN_DRIFT.end_minute + 0.2 for record in clipped)
    for device_id, rows in records.items():
        if device_id != drifting:
            assert not any("clipped" in record["quality_flags"] for record in rows)


def test_latency_regression_raises_latency(fleet):
    summary, records, start = fleet
    slowed = records[_device_id(summary, LATENCY.device_index)]
    baseline = statistics.median(row["latency_us"] for row in _in_window(slowed, start, 0.0, LATENCY.start_minute))
    regressed = _in_window(slowed, start, LATENCY.start_minute + 0.2, LATENCY.end_minute)
    assert statistics.median(row["latency_us"] for row in regressed) > 2 * baseline


def test_records_carry_no_waveform(fleet):
    _, records, _ = fleet
    for rows in records.values():
        for row in rows:
            for value in row.values():
                assert not (isinstance(value, list) and any(isinstance(item, int | float) for item in value))
            assert len(row["features"]) <= 8 and all(isinstance(value, float) for value in row["features"].values())


def test_summary_lists_the_applied_events(fleet):
    summary, _, _ = fleet
    assert [event["kind"] for event in summary["script"]] == [event.kind.value for event in SCRIPT]
    drifting = summary["device_summaries"][_device_id(summary, GAIN_DRIFT.device_index)]
    assert [event["kind"] for event in drifting["events_applied"]] == ["gain_drift"]
    assert drifting["events_applied"][0]["began_at_minute"] == pytest.approx(GAIN_DRIFT.start_minute)
    assert summary["device_summaries"][_device_id(summary, 0)]["events_applied"] == []


def test_default_script_gives_each_problem_its_own_device():
    script = default_script(8, 30.0)
    validate_script(script, 8, 30.0)
    kinds = {event.kind for event in script}
    assert kinds == set(EventKind)
    problem_devices = {event.device_index for event in script if event.kind is not EventKind.ROLLOUT}
    assert 0 not in problem_devices  # the healthy control
    assert {event.device_index for event in script if event.kind is EventKind.ROLLOUT} == {6, 7}
    assert {event.device_index for event in default_script(4, 10.0)} == {1, 2, 3}


def test_script_validation_names_the_problem():
    with pytest.raises(ScenarioError, match="device 9"):
        validate_script((ScriptedEvent(EventKind.LEAD_OFF, 9, 1.0, 2.0),), 4, 5.0)
    with pytest.raises(ScenarioError, match="empty window"):
        validate_script((ScriptedEvent(EventKind.LEAD_OFF, 1, 2.0, 2.0),), 4, 5.0)


def test_cli_writes_the_summary(ecg_build, collector, tmp_path):
    from pipeline.cli.simulate import simulate_command

    _, outcome = ecg_build
    url, _ = collector
    summary_path = tmp_path / "fleet.json"
    result = CliRunner().invoke(
        simulate_command,
        [
            "--devices",
            "2",
            "--minutes",
            "0.5",
            "--collector",
            url,
            "--bundle",
            str(outcome.bundle_directory),
            "--seed",
            "11",
            "--salt",
            "cli-test-fleet",
            "--summary",
            str(summary_path),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(Path(summary_path).read_text())
    assert len(summary["device_summaries"]) == 2
    assert [event["kind"] for event in summary["script"]] == ["gain_drift"]  # the default script, cut to 2 devices
    for device_id, device in summary["device_summaries"].items():
        assert device["uploaded"] == device["records"] > 0
        assert f"{device['records']} records" in result.output and device_id in result.output


def test_synthetic_signal_when_no_recordings(monkeypatch):
    from pipeline.fleet import signals

    monkeypatch.setattr(signals, "real_recordings", lambda minimum_s: ())
    signal = signals.device_signal(2, seed=5, config=signals.SignalConfig(synthetic_duration_s=10.0))
    assert signal.recording.name == "neurokit2:ecgsyn"
    samples = signal.read(start_s=25.0, count=5000, rate_hz=500.0)  # loops past the 10-s trace
    assert samples.shape == (5000,) and signals.ADC_RANGE[0] < samples.min() < samples.max() < signals.ADC_RANGE[1]
    assert samples.max() - samples.min() > 500  # a real ECG amplitude in ADC counts, not a flat line
