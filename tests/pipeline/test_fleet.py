"""The fleet simulator end to end: real runtime per device, real collector, scripted problems visible."""

from __future__ import annotations

import json
import logging
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from dashboard.collector.aggregates import merge_device_aggregates
from dashboard.collector.app import build_server, create_app
from dashboard.collector.store import SqliteStore
from pipeline.fleet import EventKind, ScenarioError, ScriptedEvent, SimulationConfig, default_script, simulate
from pipeline.fleet.scenario import validate_script
from runtime.telemetry.aggregate_schema import validate_aggregate
from runtime.telemetry.histogram import dense_counts, latency_edges, quantile

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
    store = SqliteStore(tmp_path_factory.mktemp("collector") / "telemetry.sqlite3", merge=merge_device_aggregates)
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
def fleet(ecg_build, collector, tmp_path_factory) -> tuple[dict, dict[str, dict], datetime]:
    """The scripted fleet with the device default (aggregates): per device id its aggregates and records."""
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
    stored = {device_id: {"aggregates": [item["payload"] for item in store.aggregates(device_id=device_id)],
                          "records": store.records(device_id)} for device_id in summary["device_summaries"]}
    return summary, stored, end - timedelta(minutes=MINUTES)


def _device_id(summary: dict, index: int) -> str:
    return next(key for key, value in summary["device_summaries"].items() if value["index"] == index)


def _minute(text: str, start: datetime) -> float:
    return (datetime.fromisoformat(text) - start).total_seconds() / 60.0


def _minutes_in(aggregates: list[dict], start: datetime, first: float, last: float) -> list[dict]:
    """The aggregates whose minute overlaps [first, last) simulated minutes."""
    return [item for item in aggregates if _minute(item["minute"], start) < last and
            _minute(item["minute"], start) + 1 > first]


def test_every_device_delivers_each_sequence_exactly_once(fleet):
    summary, stored, _ = fleet
    assert len(stored) == DEVICES
    for device_id, rows in stored.items():
        device = summary["device_summaries"][device_id]
        sequences = [row["sequence"] for row in rows["records"]] + [item["sequence"] for item in rows["aggregates"]]
        assert sorted(sequences) == list(range(1, device["appended"] + 1))  # records and aggregates share them
        assert len(rows["aggregates"]) == device["aggregates"] >= MINUTES  # a minute each, the partial ends too
        assert len({item["record_id"] for item in rows["aggregates"]}) == device["aggregates"]
        assert device["uploaded"] == device["appended"] and device["pending"] == 0
        # every beat is counted once: classified beats are records of the aggregates, the others no_result
        assert sum(item["records"] for item in rows["aggregates"]) == device["classified"] > 100
        assert sum(item["no_result"]["count"] for item in rows["aggregates"]) == device["beats"] - device["classified"]
        assert sum(item["sent_individually"] for item in rows["aggregates"]) == device["records"]
    assert summary["totals"]["aggregated_events"] >= summary["totals"]["beats"]  # beats and quality stretches


def test_telemetry_times_are_simulated_and_in_the_past(fleet):
    _, stored, start = fleet
    for rows in stored.values():
        minutes = [_minute(item["minute"], start) for item in rows["aggregates"]]
        assert min(minutes) > -1 and max(minutes) <= MINUTES + 1e-6  # minutes that hold the simulated time
        assert max(minutes) - min(minutes) >= MINUTES - 1
        assert all(0 <= _minute(record["time"], start) <= MINUTES + 1e-6 for record in rows["records"])
    latest = max(item["minute"] for rows in stored.values() for item in rows["aggregates"])
    assert datetime.fromisoformat(latest) <= datetime.now(UTC)


def test_lead_off_shows_as_flat_line_and_no_beats(fleet):
    summary, stored, start = fleet
    lead_off = _device_id(summary, LEAD_OFF.device_index)
    device = summary["device_summaries"][lead_off]
    assert device["quality_events"].get("flat_line", 0) >= 1
    episode_s = 60 * (LEAD_OFF.end_minute - LEAD_OFF.start_minute)
    assert device["quality_seconds"]["flat_line"] == pytest.approx(episode_s, abs=3)
    aggregates = stored[lead_off]["aggregates"]
    flat = sum(item["quality_events"].get("flat_line", {}).get("seconds", 0.0) for item in aggregates)
    assert flat == pytest.approx(device["quality_seconds"]["flat_line"], abs=0.01)  # the stretch is in the minutes
    for device_id, rows in stored.items():
        if device_id != lead_off:
            assert "flat_line" not in summary["device_summaries"][device_id]["quality_events"]
            assert not any("flat_line" in item["quality_events"] or "flat_line" in item["quality_flags"]
                           for item in rows["aggregates"])
    # the minutes around the lead-off hold fewer beats on that device than on the healthy control
    control = stored[_device_id(summary, 0)]["aggregates"]
    window = (LEAD_OFF.start_minute, LEAD_OFF.end_minute)
    beats = [sum(item["records"] for item in _minutes_in(rows, start, *window)) for rows in (aggregates, control)]
    assert beats[0] < beats[1] - 15  # half a minute without beats


def test_gain_drift_clips(fleet):
    summary, stored, start = fleet
    drifting = _device_id(summary, GAIN_DRIFT.device_index)
    clipped = [item for item in stored[drifting]["aggregates"]
               if item["quality_flags"].get("clipped") or item["no_result"]["quality_flags"].get("clipped")]
    assert sum(item["quality_flags"].get("clipped", 0) + item["no_result"]["quality_flags"].get("clipped", 0)
               for item in clipped) > 20
    assert all(GAIN_DRIFT.start_minute - 1 <= _minute(item["minute"], start) <= GAIN_DRIFT.end_minute + 0.2
               for item in clipped)
    for device_id, rows in stored.items():
        if device_id != drifting:
            assert not any("clipped" in item["quality_flags"] for item in rows["aggregates"])


def _latency_p50(item: dict) -> float:
    histogram = item["latency_us"]
    counts = dense_counts(histogram["bins"], len(latency_edges()) + 1)
    return quantile(latency_edges(), counts, 0.5, histogram["min"], histogram["max"])


def test_latency_regression_raises_latency(fleet):
    summary, stored, start = fleet
    slowed = stored[_device_id(summary, LATENCY.device_index)]["aggregates"]
    minutes = [(_minute(item["minute"], start), item) for item in slowed if item["records"]]
    before = [_latency_p50(item) for moment, item in minutes if moment + 1 <= LATENCY.start_minute]
    during = [_latency_p50(item) for moment, item in minutes if moment >= LATENCY.start_minute]
    assert before and during and statistics.median(during) > 2 * statistics.median(before)


def test_telemetry_carries_no_waveform(fleet):
    _, stored, _ = fleet
    for rows in stored.values():
        for item in rows["aggregates"]:
            validate_aggregate(item, sequence_required=True)  # no list of numbers, no identifier, bins by index
        for record in rows["records"]:
            features = record["features"]
            assert len(features) <= 8 and all(isinstance(value, float) for value in features.values())


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
    assert {event.device_index for event in script if event.kind is EventKind.ROLLOUT} == {7}
    assert {event.device_index for event in default_script(7, 30.0) if event.kind is EventKind.ROLLOUT} == {0}
    assert {event.device_index for event in default_script(4, 10.0)} == {1, 2, 3}


def test_script_validation_names_the_problem():
    with pytest.raises(ScenarioError, match="device 9"):
        validate_script((ScriptedEvent(EventKind.LEAD_OFF, 9, 1.0, 2.0),), 4, 5.0)
    with pytest.raises(ScenarioError, match="empty window"):
        validate_script((ScriptedEvent(EventKind.LEAD_OFF, 1, 2.0, 2.0),), 4, 5.0)
    with pytest.raises(ScenarioError, match="pace in"):
        validate_script((ScriptedEvent(EventKind.SLOW_RHYTHM, 1, 1.0, 2.0, 1.5),), 4, 5.0)


def test_a_slow_rhythm_leaves_the_input_domain_and_the_dashboard_names_the_device(ecg_pvc_build, collector,
                                                                                   tmp_path):
    """The PVC scenario's tiny build (real MIT-BIH beats, RR inputs) on a real PLUX recording played at 45 % of its
    pace (the slowing is synthetic): beats at ~34 bpm are outside
    the RR values the model was developed on, so the device refuses them (``out_of_domain``, no class), its minute
    aggregates count them, and the dashboard's input-domain rule on what the collector stored names that device —
    not the control, which plays the same kind of recording at its own pace."""
    from dashboard.monitoring.aggregate_checks import domain_alerts
    from dashboard.monitoring.aggregate_window import aggregate_frame

    _, outcome = ecg_pvc_build
    url, store = collector
    slow = ScriptedEvent(EventKind.SLOW_RHYTHM, 1, 1.0, 3.0, 0.45)
    end = datetime(2026, 2, 1, 12, 3, tzinfo=UTC)
    summary = simulate(SimulationConfig(collector_url=url, devices=2, minutes=3.0, bundle_path=outcome.bundle_directory,
                                        seed=7, salt="slow-rhythm-fleet", script=(slow,),
                                        outbox_dir=tmp_path / "outboxes", end_time=end))
    refused = {}
    for index in (0, 1):
        device_id = _device_id(summary, index)
        aggregates = [item["payload"] for item in store.aggregates(device_id=device_id)]
        assert summary["device_summaries"][device_id]["pending"] == 0
        refused[index] = sum(item["no_result"]["quality_flags"].get("out_of_domain", 0) for item in aggregates)
    assert refused[1] >= 20 and refused[1] > 5 * refused[0]
    payloads = [item["payload"] for item in store.aggregates(since=end - timedelta(minutes=5))
                if item["device_id"] in {_device_id(summary, 0), _device_id(summary, 1)}]
    alerts = domain_alerts(aggregate_frame(payloads), end)
    assert [(alert.kind, alert.device_id) for alert in alerts] == [("input domain", _device_id(summary, 1))]


def test_cli_writes_the_summary(ecg_build, collector, tmp_path):
    from pipeline.cli.simulate import simulate_command

    _, outcome = ecg_build
    url, store = collector
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
            "--telemetry-mode",
            "records",
            "--processes",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(Path(summary_path).read_text())
    assert len(summary["device_summaries"]) == 2 and summary["processes"] == 2
    assert [event["kind"] for event in summary["script"]] == ["gain_drift"]  # the default script, cut to 2 devices
    assert summary["telemetry_mode"] == "records"
    for device_id, device in summary["device_summaries"].items():
        assert device["uploaded"] == device["records"] == device["classified"] > 0  # one record per classified beat
        assert device["aggregates"] == 0
        assert f"{device['records']} records" in result.output and device_id in result.output
    assert f"{summary['totals']['records']} records sent on their own" in result.output
    # labelled simulated end to end: the summary, the output, and the store the dashboard reads
    assert summary["simulated"] is True and sum(summary["signals"].values()) == 2
    assert "SIMULATED fleet" in result.output
    assert set(summary["device_summaries"]) <= set(store.simulated_devices())
    # the summary and the output say which bundle ran and that it was NOT validated on real data (a synthetic model)
    identity = summary["bundles"][str(outcome.bundle_directory)]
    assert identity["real_data"] == "NOT validated on real data" and "synthetic" in identity["real_data_reason"]
    assert identity["bundle_id"] and len(identity["manifest_sha256"]) == 64
    assert f"{identity['bundle_id']} ({identity['variant']}), NOT validated on real data" in result.output


def test_synthetic_signal_when_no_recordings(monkeypatch, caplog):
    from pipeline.fleet import signals

    monkeypatch.setattr(signals, "real_recordings", lambda minimum_s: ())
    signals._warn_no_real_signal.cache_clear()
    with caplog.at_level("WARNING", logger="pipeline.fleet.signals"):
        signal = signals.device_signal(2, seed=5, config=signals.SignalConfig(synthetic_duration_s=10.0))
    assert signal.recording.name == "neurokit2:ecgsyn" and signal.recording.synthetic
    assert "SYNTHETIC ECGSYN" in caplog.text  # said, not silent
    samples = signal.read(start_s=25.0, count=5000, rate_hz=500.0)  # loops past the 10-s trace
    assert samples.shape == (5000,) and signals.ADC_RANGE[0] < samples.min() < samples.max() < signals.ADC_RANGE[1]
    assert samples.max() - samples.min() > 500  # a real ECG amplitude in ADC counts, not a flat line


def test_a_two_input_bundle_simulates_through_unjudged_beats_and_empty_minutes(collector, tmp_path):
    """A bundle whose inputs the stream derives (template residual + RR features, like ecg-pvc) gives every beat
    with a quality flag, and the warm-up beats, no class: a lead-off minute then holds no record at all. The
    minute is still sent (its quality stretch and unjudged beats), and every beat is counted once."""
    from tests.runtime.pvc_bundle import TWO_INPUTS, build_pvc_bundle

    url, store = collector
    bundle = build_pvc_bundle(tmp_path / "pvc", TWO_INPUTS)
    lead_off = ScriptedEvent(EventKind.LEAD_OFF, 1, 0.5, 1.9)  # from 12:00:30 to 12:01:54
    end = datetime(2026, 1, 1, 12, 2, 30, tzinfo=UTC)  # the simulated time starts on a minute
    summary = simulate(SimulationConfig(collector_url=url, devices=2, minutes=2.5, bundle_path=bundle, seed=5,
                                        salt="two-input-fleet", script=(lead_off,), outbox_dir=tmp_path / "outboxes",
                                        end_time=end))
    for device_id, device in summary["device_summaries"].items():
        aggregates = [item["payload"] for item in store.aggregates(device_id=device_id)]
        assert device["pending"] == 0 and device["upload_failures"] == 0 and len(aggregates) == device["aggregates"]
        assert device["beats"] > device["classified"] > 0  # the warm-up beats (and flagged ones) stay unjudged
        assert sum(item["records"] for item in aggregates) == device["classified"]
        assert sum(item["no_result"]["count"] for item in aggregates) == device["beats"] - device["classified"]
    flat = {item["minute"]: item["payload"] for item in store.aggregates(device_id=_device_id(summary, 1))}
    after = flat["2026-01-01T12:01:00.000000Z"]  # the lead-off, then beats warming up again: none judged
    assert after["records"] == 0 and after["no_result"]["count"] > 0 and after["latency_us"]["count"] == 0
    # the flat stretch is reported when it ends: late for the minute it began in, counted in the open one
    assert after["quality_events"]["flat_line"]["seconds"] == pytest.approx(84.0, abs=1.0) and after["late"] >= 1


def test_with_a_trust_store_devices_run_signed_bundles_and_refuse_unsigned_ones(ecg_build, collector, tmp_path,
                                                                               caplog):
    """``--trust-store``: every simulated device verifies its bundle as a real one does; an unsigned bundle stops the
    run with the runtime's own refusal (what, expected, fix), nothing sent. The bundle here is the synthetic ECG
    scenario's: verified, it is refused as NOT validated on real data, as on a device, unless the development
    allowance ``--allow-unvalidated`` is given."""
    import shutil

    from pipeline.build.signing import SigningKey, generate_keys, stamp_release
    from pipeline.cli.simulate import simulate_command
    from runtime.contract import KeyPurpose

    _, outcome = ecg_build
    url, _ = collector
    keys = generate_keys(tmp_path / "keys", KeyPurpose.DEVELOPMENT)
    signed = tmp_path / "signed"
    shutil.copytree(outcome.bundle_directory, signed)
    stamp_release(signed, 1, SigningKey.load(keys.private_key))
    arguments = ["--devices", "1", "--minutes", "0.5", "--collector", url, "--salt", "trusted-fleet", "--no-progress",
                 "--trust-store", str(keys.public_key.parent)]
    runner = CliRunner()
    unvalidated = runner.invoke(simulate_command, [*arguments, "--bundle", str(signed)])
    assert unvalidated.exit_code == 1
    assert "NOT validated on real data" in unvalidated.output and "--allow-unvalidated" in unvalidated.output
    with caplog.at_level(logging.WARNING):
        accepted = runner.invoke(simulate_command, [*arguments, "--bundle", str(signed), "--allow-unvalidated"])
    assert accepted.exit_code == 0, accepted.output
    assert "NOT VERIFIED" not in caplog.text and "(--allow-unsigned)" not in caplog.text
    assert "NOT VALIDATED ON REAL DATA" in caplog.text
    unsigned = tmp_path / "unsigned"
    shutil.copytree(outcome.bundle_directory, unsigned)
    (unsigned / "manifest.sig").unlink(missing_ok=True)
    refused = runner.invoke(simulate_command, [*arguments, "--bundle", str(unsigned)])
    assert refused.exit_code == 1
    assert "unsigned" in refused.output.lower() and "Fix:" in refused.output, refused.output


def test_telemetry_the_collector_never_took_is_kept_and_the_run_fails(tmp_path, monkeypatch):
    """Nothing answers at --collector: the devices' outboxes (in a temporary folder by default) are kept, not
    removed with the undelivered rows in them, and the command exits 1 saying how many rows and where they are."""
    from pipeline.cli.simulate import simulate_command
    from tests.runtime.pvc_bundle import TWO_INPUTS, build_pvc_bundle

    bundle = build_pvc_bundle(tmp_path / "pvc", TWO_INPUTS)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # the default outbox folder lands in tmp_path
    url = f"http://127.0.0.1:{_free_port()}/v1/telemetry"  # nothing listens there
    result = CliRunner().invoke(simulate_command, ["--devices", "1", "--minutes", "1", "--collector", url, "--bundle",
                                                   str(bundle), "--allow-unvalidated", "--no-progress"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    kept = [path for path in tmp_path.iterdir() if path.name.startswith("edgemed-fleet-")]
    assert len(kept) == 1 and list(kept[0].glob("*")), "the outbox folder was removed with the undelivered rows"
    pending = int(result.output.split("outbox rows uploaded, ")[1].split(" pending")[0])
    assert pending > 0 and f"{pending} of {pending} outbox rows were not delivered to {url}" in result.output
    assert f"kept in the devices' outboxes in {kept[0]}" in result.output


def test_a_delivered_run_leaves_no_temporary_outbox(collector, tmp_path, monkeypatch):
    from tests.runtime.pvc_bundle import TWO_INPUTS, build_pvc_bundle

    url, _ = collector
    bundle = build_pvc_bundle(tmp_path / "pvc", TWO_INPUTS)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "temporary"))
    (tmp_path / "temporary").mkdir()
    summary = simulate(SimulationConfig(collector_url=url, devices=1, minutes=1.0, bundle_path=bundle, seed=3,
                                        salt="delivered-fleet"))
    assert summary["totals"]["pending"] == 0 and summary["totals"]["uploaded"] > 0
    assert summary["outbox_dir"] is None and list((tmp_path / "temporary").iterdir()) == []
