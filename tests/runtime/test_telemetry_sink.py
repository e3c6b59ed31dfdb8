"""The runner's telemetry in aggregates mode (schema 3): what reaches the outbox, that telemetry never changes the
stream's events, exactly-once delivery of aggregates across kill -9 and a lost acknowledgement, one schema version
per envelope, and the privacy scan's number-list pattern in linear time."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from runtime.events import BeatEvent, QualityEvent
from runtime.runner import RunOptions, TelemetryMode, TelemetrySink, TelemetryUnavailableError, run, telemetry_record
from runtime.telemetry import (
    AGGREGATE_SCHEMA_VERSION,
    Outbox,
    TelemetryError,
    Uploader,
    record_schema_version,
    validate_aggregate,
    validate_record,
    version_groups,
)
from runtime.telemetry.aggregates import minute_text
from runtime.telemetry.records import _NUMBER_LIST, _no_number_list
from tests.runtime.conftest import synthetic_ecg
from tests.runtime.pvc_bundle import RATE, TWO_INPUTS, UNSIGNED, build_pvc_bundle
from tests.runtime.test_outbox import _lines
from tests.runtime.test_telemetry_records import DEVICE_ID, sample_record
from tests.runtime.test_uploader import free_port, running_collector, scripted_collector

REPOSITORY = Path(__file__).resolve().parents[2]
START = datetime(2026, 3, 2, 8, 0, 20, tzinfo=UTC).timestamp()  # 20 s into a minute: the first one is partial


@pytest.fixture(scope="module")
def pvc_bundle(tmp_path_factory) -> Path:
    """A two-input bundle the ECG stream derives its inputs for (template residual + RR features, like ecg-pvc)."""
    return build_pvc_bundle(tmp_path_factory.mktemp("pvc") / "bundle", TWO_INPUTS)


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    """Three minutes of ECG with ten seconds of lead-off (a flat line) in the second minute."""
    signal_values, _ = synthetic_ecg(180, RATE, heart_rate=70, seed=12)
    signal_values[round(75 * RATE):round(85 * RATE)] = signal_values[0]
    path = tmp_path_factory.mktemp("ecg") / "ecg.npy"
    np.save(path, signal_values)
    return path


def _options(tmp_path: Path, mode: TelemetryMode | None, **changes) -> RunOptions:
    telemetry = {} if mode is None else {"device_id": DEVICE_ID, "telemetry_outbox": tmp_path / f"{mode}.sqlite3",
                                         "telemetry_mode": mode, "stream_start_s": START}
    return RunOptions(sample_rate_hz=RATE, trust=UNSIGNED, **telemetry, **changes)


def _outbox_rows(path: Path) -> list[dict]:
    with Outbox(path, DEVICE_ID) as outbox:
        return outbox.pending(10**6)


def test_telemetry_never_changes_the_stream_events(pvc_bundle, recording, tmp_path):
    """The same events in aggregates mode, records mode and without telemetry (then without summary features);
    only the measured inference latency differs from run to run."""

    def events(mode: TelemetryMode | None, left_out: tuple[str, ...]) -> list[dict]:
        return [{key: value for key, value in event.to_dict().items() if key not in left_out}
                for event in run(pvc_bundle, recording, _options(tmp_path, mode))]

    assert events(TelemetryMode.AGGREGATES, ("latency_us",)) == events(TelemetryMode.RECORDS, ("latency_us",))
    without = events(None, ("latency_us", "features"))
    assert without == events(TelemetryMode.RECORDS, ("latency_us", "features"))
    assert len(without) > 150 and any(event["type"] == "quality" for event in without)


def test_aggregates_mode_counts_every_event_once_and_sends_the_kept_ones(pvc_bundle, recording, tmp_path):
    options = _options(tmp_path, TelemetryMode.AGGREGATES, event_filter_rules=("positive",),
                       positive_labels=("non-V", "V"))  # every classified beat is also sent on its own
    events = list(run(pvc_bundle, recording, options))
    beats = [event for event in events if isinstance(event, BeatEvent)]
    classified = [beat for beat in beats if beat.classified]
    stretches = [event for event in events if isinstance(event, QualityEvent)]
    rows = _outbox_rows(options.telemetry_outbox)
    aggregates = [row for row in rows if record_schema_version(row) == AGGREGATE_SCHEMA_VERSION]
    records = [row for row in rows if record_schema_version(row) == 2]
    assert [row["sequence"] for row in rows] == list(range(1, len(rows) + 1))
    assert [item["minute"] for item in aggregates] == [minute_text(START + 60 * index) for index in range(4)]
    assert sum(item["records"] for item in aggregates) == len(classified) == len(records)
    assert sum(item["no_result"]["count"] for item in aggregates) == len(beats) - len(classified) > 0
    flat = sum(item["quality_events"].get("flat_line", {}).get("seconds", 0.0) for item in aggregates)
    assert flat == pytest.approx(sum(event.duration_s for event in stretches if event.flag == "flat_line"))
    assert sum(item["sent_individually"] for item in aggregates) == len(records)
    assert [record["time"] for record in records] == [
        datetime.fromtimestamp(START + beat.time_s, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        for beat in classified]  # stamped on the stream's clock
    for item in aggregates:
        assert validate_aggregate(item, sequence_required=True) == item
    # each minute's records are committed before its aggregate, in the same transaction: none after it
    ends = {item["sequence"]: datetime.fromisoformat(item["minute"]).timestamp() + 60 for item in aggregates}
    for record in records:
        closing = min(sequence for sequence in ends if sequence > record["sequence"])
        assert datetime.fromisoformat(record["time"]).timestamp() < ends[closing]


def test_records_mode_stamps_each_record_on_the_streams_clock(pvc_bundle, recording, tmp_path):
    """A recording processed in seconds is three minutes of ECG: each record carries its beat's moment (the stream's
    start plus the beat's time), as aggregates mode does, not the moment the device processed it."""
    options = _options(tmp_path, TelemetryMode.RECORDS)
    classified = [event for event in run(pvc_bundle, recording, options)
                  if isinstance(event, BeatEvent) and event.classified]
    records = _outbox_rows(options.telemetry_outbox)
    assert len(records) == len(classified) > 150
    assert [record["time"] for record in records] == [
        datetime.fromtimestamp(START + beat.time_s, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        for beat in classified]


def test_the_default_filter_sends_only_the_events_that_matter(pvc_bundle, recording, tmp_path):
    options = _options(tmp_path, TelemetryMode.AGGREGATES)
    events = list(run(pvc_bundle, recording, options))
    rows = _outbox_rows(options.telemetry_outbox)
    records = [row for row in rows if "kind" not in row]
    classified = [event for event in events if isinstance(event, BeatEvent) and event.classified]
    assert len(records) < len(classified) / 5  # positives (V), low confidence and quality changes only
    assert all(record["result"]["class"] == "V" or record["result"]["low_confidence"] for record in records)
    assert {row["filter"]["version"] for row in rows if "kind" in row} == {1}


_STREAM_FOREVER = """
import sys, time
import numpy as np
from pathlib import Path
from runtime.bundle import load_bundle
from runtime.ecg.stream import EcgStream, StreamConfig
from runtime.runner import TelemetrySink
from runtime.trust import TrustPolicy
bundle = load_bundle(Path(sys.argv[1]), provider="cpu", threads=1, trust=TrustPolicy.development())
signal = np.load(sys.argv[3])
sink = TelemetrySink(bundle, Path(sys.argv[2]), sys.argv[4], None, mode="aggregates",
                     event_filter_rules=("positive",), positive_labels=("non-V", "V"))
sink.begin(float(sys.argv[5]))
stream = EcgStream(bundle, 360.0, config=StreamConfig(summary_features=True))
committed = 0
for start in range(0, len(signal), 3600):  # ten seconds a chunk, at ~100x real time
    sink.add_many(stream.feed(signal[start:start + 3600]))
    sink.commit()
    if sink.aggregates != committed:
        committed = sink.aggregates
        print(committed, flush=True)
    time.sleep(0.1)
sink.add_many(stream.flush())
sink.finish()
print("finished", flush=True)
"""


def _stream(bundle: Path, outbox: Path, signal_path: Path, origin_s: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _STREAM_FOREVER, str(bundle), str(outbox), str(signal_path),
                             DEVICE_ID, str(origin_s)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPOSITORY)


def _check_complete(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """Every row a valid record or aggregate, sequences without a gap, each record inside a committed minute."""
    assert [row["sequence"] for row in rows] == list(range(1, len(rows) + 1))
    aggregates = [validate_aggregate(row, sequence_required=True) for row in rows if "kind" in row]
    records = [validate_record(row) for row in rows if "kind" not in row]
    closed = max(datetime.fromisoformat(item["minute"]).timestamp() + 60 for item in aggregates)
    assert all(datetime.fromisoformat(record["time"]).timestamp() < closed for record in records)
    assert all(sum(item["classes"].values()) == item["records"] for item in aggregates)
    return aggregates, records


def test_aggregates_are_exactly_once_across_kill_9_a_restart_and_a_lost_acknowledgement(pvc_bundle, tmp_path):
    pytest.importorskip("fastapi")
    from dashboard.collector.aggregates import merge_device_aggregates
    from dashboard.collector.store import SqliteStore

    signal_values, _ = synthetic_ecg(1200, RATE, heart_rate=75, seed=4)
    signal_path = tmp_path / "long.npy"
    np.save(signal_path, signal_values)
    outbox_path = tmp_path / "outbox.sqlite3"

    # A device streaming in (accelerated) real time is killed after its third minute was committed.
    process = _stream(pvc_bundle, outbox_path, signal_path, START)
    lines = _lines(process)
    try:
        while (line := lines.get(timeout=60)) != "3":
            assert line is not None, process.stderr.read()
        time.sleep(0.25)  # into the fourth minute: its events are in memory only
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL
    rows = _outbox_rows(outbox_path)
    aggregates, records = _check_complete(rows)
    assert len(aggregates) >= 3 and records  # whole minutes with their records; the open one is lost, nothing torn

    # The restarted stream (a new session) appends after the survivors, under the same sequence counter.
    restarted = tmp_path / "short.npy"
    np.save(restarted, signal_values[: round(130 * RATE)])
    process = _stream(pvc_bundle, outbox_path, restarted, START + 200.0)
    output, errors = process.communicate(timeout=120)
    assert process.returncode == 0 and output.strip().endswith("finished"), errors
    rows = _outbox_rows(outbox_path)
    aggregates, records = _check_complete(rows)
    assert len({item["session"] for item in aggregates}) == 2
    assert len({item["record_id"] for item in aggregates}) == len(aggregates)

    # Upload: the collector stores the first batch, the device dies before deleting it, and sends it again.
    store = SqliteStore(tmp_path / "collector.sqlite3", merge=merge_device_aggregates)
    port = free_port()
    with running_collector(store, port) as url, Outbox(outbox_path, DEVICE_ID) as outbox:

        def crash(sequences: list[int]) -> None:
            raise RuntimeError("killed between the collector's commit and the outbox's delete")

        with pytest.raises(RuntimeError, match="killed"):
            Uploader(outbox, url, batch_size=len(rows), before_acknowledge=crash).upload_pending()
        assert outbox.count() == len(rows)  # nothing deleted
        assert Uploader(outbox, url).upload_pending() == len(rows)
        assert outbox.count() == 0
    stored = [item["payload"] for item in store.aggregates(device_id=DEVICE_ID)]
    assert sorted(item["record_id"] for item in stored) == sorted(item["record_id"] for item in aggregates)
    assert sorted(record["sequence"] for record in store.records(DEVICE_ID)) == [
        record["sequence"] for record in records]
    rollups = store.rollups(device_id=DEVICE_ID)
    assert sum(item["aggregates"] for item in rollups) == len(aggregates)
    assert sum(item["payload"]["records"] for item in rollups) == sum(item["records"] for item in aggregates)
    store.close()


def test_a_sink_in_records_mode_refuses_an_event_filter(tmp_path, pvc_bundle):
    """The API refuses what the command lines refuse: a filter in records mode (which sends every event) would be
    ignored; nothing is created."""
    from runtime.bundle import load_bundle

    bundle = load_bundle(pvc_bundle, provider="cpu", threads=1, trust=UNSIGNED)
    for options, named in (({"event_filter_rules": ("positive",)}, "--event-filter"),
                           ({"positive_labels": ("V",)}, "--positive-labels")):
        with pytest.raises(TelemetryUnavailableError, match=f"{named} was given with --telemetry-mode records"):
            TelemetrySink(bundle, tmp_path / "outbox.sqlite3", DEVICE_ID, None, mode="records", **options)
    assert not (tmp_path / "outbox.sqlite3").exists()


def test_envelopes_never_mix_schema_versions(tmp_path, pvc_bundle):
    from runtime.bundle import load_bundle

    bundle = load_bundle(pvc_bundle, provider="cpu", threads=1, trust=UNSIGNED)
    sink = TelemetrySink(bundle, tmp_path / "outbox.sqlite3", DEVICE_ID, None, mode=TelemetryMode.AGGREGATES,
                         event_filter_rules=("positive",), positive_labels=("non-V", "V"))
    sink.begin(START)
    signal_values, _ = synthetic_ecg(150, RATE, seed=8)
    from runtime.ecg.stream import EcgStream, StreamConfig

    stream = EcgStream(bundle, RATE, config=StreamConfig(summary_features=True))
    sink.add_many([*stream.feed(signal_values), *stream.flush()])
    sink.finish()
    rows = sink.outbox.pending(1000)
    assert [len(group) for group in version_groups(rows)] == [sink.count - sink.aggregates, sink.aggregates]
    with scripted_collector() as collector:
        assert Uploader(sink.outbox, collector.url, batch_size=100).upload_pending() == len(rows)
    for _, body in collector.requests:
        assert {record_schema_version(record) for record in body["records"]} == {body["schema_version"]}
    assert {body["schema_version"] for _, body in collector.requests} == {2, 3}
    assert len(collector.requests) <= 2 * (len(rows) // 100 + 1)  # two envelopes per window, not one per switch
    sink.close()


def test_telemetry_record_takes_the_event_time():
    from types import SimpleNamespace

    from runtime.contract import TaskKind

    bundle = SimpleNamespace(bundle_id="b-1", manifest_sha256="5" * 64, variant="fp32", provider="cpu",
                             output=SimpleNamespace(task=TaskKind.BINARY))
    beat = BeatEvent(1.0, "V", 0.99, {}, 60.0, None, (), False, 12.0, {"peak_to_peak": 1.0})
    record = telemetry_record(bundle, beat, time_s=START + 1.5)
    assert record["time"] == "2026-03-02T08:00:21.500000+00:00"
    assert validate_record({**record, "device_id": DEVICE_ID}, sequence_required=False)["time"].endswith("21.500000Z")


# -- the privacy scan's number-list pattern ----------------------------------------------------------------------

_BACKTRACKING = re.compile(r"\d\s*[,;]\s*[-+.]?\d|(?:[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?\s+){3,}[-+]?\.?\d")


def test_the_number_list_pattern_finds_what_the_backtracking_one_found():
    rng = np.random.default_rng(7)
    alphabet = list("0123456789 ,;.-+eEa\t")
    for _ in range(4000):
        text = "".join(rng.choice(alphabet, size=int(rng.integers(1, 24))))
        assert bool(_NUMBER_LIST.search(text)) == bool(_BACKTRACKING.search(text)), text
    for text in ("1 2 3 4", "0.1,0.2", "x.5 2 3 4", "1e5 -2 +3 .4", "a1 2 3 4"):
        assert _NUMBER_LIST.search(text)
    for text in ("ab" * 32, "1" * 200, "7" * 2_000 + " x", "ecg-pvc 2", json.dumps(sample_record())[:200]):
        _no_number_list(text, "field")  # a hex digest, a digit run, a label: not lists of numbers


# The scan on a million digits, with and without separators, in a child process: the possessive pattern reads them
# once; a backtracking one (``_BACKTRACKING``) would not come back for hours. The timeout only stops a hang: it is
# a thousand times what a linear scan needs, not a speed target (speed is the benchmarks').
_LONG_TEXTS = """
from runtime.telemetry.records import _NUMBER_LIST, _no_number_list
digits = "7" * 1_000_000
_no_number_list(digits, "field")
assert _NUMBER_LIST.search(digits + " x") is None
assert _NUMBER_LIST.search(digits + " 1 2 3") is not None
print("scanned")
"""


def test_a_million_digit_text_is_scanned_without_backtracking():
    finished = subprocess.run([sys.executable, "-c", _LONG_TEXTS], capture_output=True, text=True, timeout=120,
                              cwd=Path(__file__).resolve().parents[2])
    assert finished.returncode == 0 and finished.stdout.strip() == "scanned", finished.stderr


def test_run_and_its_command_line_take_the_telemetry_mode(pvc_bundle, recording, tmp_path):
    command = [sys.executable, "-m", "runtime", str(pvc_bundle), "--input", str(recording), "--sample-rate", "360",
               "--allow-unsigned", "--device-id", DEVICE_ID, "--telemetry-outbox", str(tmp_path / "cli.sqlite3"),
               "--output", str(tmp_path / "events.jsonl")]
    refused = subprocess.run([*command, "--event-filter", "positive,loud"], capture_output=True, text=True,
                             cwd=REPOSITORY, timeout=120)
    assert refused.returncode == 2 and "positive, low_confidence, alarm, unjudged, quality_change" in refused.stderr
    done = subprocess.run([*command, "--telemetry-mode", "records"], capture_output=True, text=True, cwd=REPOSITORY,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    rows = _outbox_rows(tmp_path / "cli.sqlite3")
    assert rows and all("kind" not in row for row in rows)  # one record per classified beat
    done = subprocess.run([*command, "--telemetry-outbox", str(tmp_path / "cli-2.sqlite3")], capture_output=True,
                          text=True, cwd=REPOSITORY, timeout=120)
    assert done.returncode == 0, done.stderr
    assert any(row.get("kind") == "aggregate" for row in _outbox_rows(tmp_path / "cli-2.sqlite3"))  # the default
    assert RunOptions().telemetry_mode is None  # not chosen: the sink runs aggregates, as the run above shows
    alone = subprocess.run([*command[:command.index("--device-id")], "--telemetry-mode", "records"],
                           capture_output=True, text=True, cwd=REPOSITORY, timeout=120)
    assert alone.returncode == 1 and "--telemetry-mode was given without telemetry" in alone.stderr


# -- refusals before anything is written --------------------------------------------------------------------------


def _command(bundle: Path, recording: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "runtime", str(bundle), "--input", str(recording), "--sample-rate", "360",
            "--allow-unsigned", *options]


def test_a_device_id_that_is_not_pseudonymous_is_refused_before_the_run_and_never_stored(pvc_bundle, recording,
                                                                                          tmp_path):
    outbox, output = tmp_path / "outbox.sqlite3", tmp_path / "events.jsonl"
    refused = subprocess.run(_command(pvc_bundle, recording, "--device-id", "John Smith MRN 12345",
                                      "--telemetry-outbox", str(outbox), "--output", str(output)),
                             capture_output=True, text=True, cwd=REPOSITORY, timeout=120)
    assert refused.returncode == 1 and "not a pseudonymous id" in refused.stderr
    assert "John" not in refused.stderr and "12345" not in refused.stderr  # the refusal never echoes it
    assert not outbox.exists() and not output.exists()  # refused before the bundle was opened
    with pytest.raises(TelemetryError, match="not a pseudonymous id"):
        Outbox(tmp_path / "direct.sqlite3", "John Smith MRN 12345")
    for serial in ("1987061512345678", "00112233445566778899"):  # hex-shaped, but a serial number
        with pytest.raises(TelemetryError, match="not all digits"):
            Outbox(tmp_path / "direct.sqlite3", serial)
    assert not (tmp_path / "direct.sqlite3").exists()
    url = subprocess.run(_command(pvc_bundle, recording, "--device-id", DEVICE_ID, "--telemetry-url",
                                  "file:///etc/passwd", "--telemetry-outbox", str(outbox), "--output", str(output)),
                         capture_output=True, text=True, cwd=REPOSITORY, timeout=120)
    assert url.returncode == 1 and "not http(s)" in url.stderr and not output.exists()
    bracket = subprocess.run(_command(pvc_bundle, recording, "--device-id", DEVICE_ID, "--telemetry-url",
                                      "http://[::1", "--telemetry-outbox", str(outbox), "--output", str(output)),
                             capture_output=True, text=True, cwd=REPOSITORY, timeout=120)
    assert bracket.returncode == 1 and "Traceback" not in bracket.stderr, bracket.stderr
    assert "not a valid URL" in bracket.stderr and not output.exists() and not outbox.exists()


@pytest.mark.parametrize(("url", "problem"), [
    ("http://[::1", "not a valid URL"), ("http://collector:99999/v1/telemetry", "not a valid URL"),
    ("http://collector:port/v1/telemetry", "not a valid URL"), ("ftp://collector/v1/telemetry", r"not http\(s\)"),
    ("http:///v1/telemetry", "names no host"), ("https://nurse:secret@collector/v1/telemetry", "user name or password"),
    ("https://collector:0/v1/telemetry", "port 0"),
    ("http://collector/v1/telemetry", "unencrypted"), ("http://10.0.0.7:8787/v1/telemetry", "unencrypted"),
    ("http://[2001:db8::1]/v1/telemetry", "unencrypted"),
])
def test_a_collector_url_that_cannot_be_used_is_refused_by_the_check_and_the_uploader(url, problem, tmp_path):
    from runtime.runner import check_telemetry_identity

    with pytest.raises(TelemetryUnavailableError, match=problem) as refused:
        check_telemetry_identity(DEVICE_ID, url)
    assert "secret" not in str(refused.value)  # credentials are never echoed
    with Outbox(tmp_path / "outbox.sqlite3", DEVICE_ID) as outbox, pytest.raises(TelemetryError, match=problem):
        Uploader(outbox, url)
    for good in ("http://127.0.0.1:8765/v1/telemetry", "https://[::1]:443/v1/telemetry", "https://collector/v1",
                 "http://localhost:8787/v1/telemetry", "http://127.0.0.2/v1/telemetry"):
        check_telemetry_identity(DEVICE_ID, good)


def test_a_failing_outbox_at_the_end_of_a_run_costs_no_event(caplog):
    """The last minute cannot be stored (disk full): every event was still given, and the log says telemetry is
    incomplete — telemetry never costs the clinical output."""
    import sqlite3

    from runtime.runner import _with_telemetry

    class FullDisk:
        def add(self, event):
            pass

        def upload(self):
            raise sqlite3.OperationalError("database or disk is full")

    events = [QualityEvent(float(second), 1.0, "flat_line") for second in range(3)]
    assert list(_with_telemetry(iter(events), FullDisk())) == events
    assert "telemetry NOT complete" in caplog.text and "disk is full" in caplog.text


def test_positive_labels_the_bundle_lacks_are_refused_before_the_run(pvc_bundle, recording, tmp_path):
    refused = subprocess.run(_command(pvc_bundle, recording, "--device-id", DEVICE_ID, "--telemetry-outbox",
                                      str(tmp_path / "outbox.sqlite3"), "--positive-labels", "v",
                                      "--output", str(tmp_path / "events.jsonl")),
                             capture_output=True, text=True, cwd=REPOSITORY, timeout=120)
    assert refused.returncode == 1 and "positive label 'v' is not one of the bundle's labels" in refused.stderr
    assert not (tmp_path / "events.jsonl").exists()


def test_output_never_overwrites_the_trust_store_or_the_rollback_state(pvc_bundle, recording, tmp_path):
    from runtime.__main__ import OutputPathError, check_output_clashes
    from runtime.trust import TrustPolicy

    store, state = tmp_path / "trust-store", tmp_path / "state" / "versions.json"
    store.mkdir()
    trust = TrustPolicy(store=store, version_state=state)
    for output, what in ((store / "bundle-versions.json", "inside the trust store"), (store / "0123.pem",
                         "inside the trust store"), (state, "is the bundle version state"),
                         (state.with_name("versions.json.lock"), "is the bundle version state")):
        with pytest.raises(OutputPathError, match=what):
            check_output_clashes(output, pvc_bundle, recording, None, trust)
    check_output_clashes(tmp_path / "events.jsonl", pvc_bundle, recording, None, trust)  # beside them: fine


def test_output_never_overwrites_the_input_the_outbox_or_the_bundle_and_survives_a_failed_run(pvc_bundle, recording,
                                                                                               tmp_path):
    copied = tmp_path / "ecg.npy"
    copied.write_bytes(recording.read_bytes())
    outbox = tmp_path / "outbox.sqlite3"
    for output, what in ((copied, "is the input"), (outbox, "is the telemetry outbox"),
                         (pvc_bundle / "events.jsonl", "is inside the bundle")):
        refused = subprocess.run(_command(pvc_bundle, copied, "--device-id", DEVICE_ID, "--telemetry-outbox",
                                          str(outbox), "--output", str(output)),
                                 capture_output=True, text=True, cwd=REPOSITORY, timeout=120)
        assert refused.returncode == 1 and what in refused.stderr, refused.stderr
    assert copied.read_bytes() == recording.read_bytes() and not (pvc_bundle / "events.jsonl").exists()
    earlier = tmp_path / "events.jsonl"
    earlier.write_text('{"earlier": "results"}\n')
    broken = tmp_path / "broken.npy"
    broken.write_bytes(recording.read_bytes()[:200])  # a truncated file: refused while reading
    failed = subprocess.run(_command(pvc_bundle, broken, "--output", str(earlier)), capture_output=True, text=True,
                            cwd=REPOSITORY, timeout=120)
    assert failed.returncode == 1 and earlier.read_text() == '{"earlier": "results"}\n'
    assert sorted(path.name for path in tmp_path.iterdir()) == ["broken.npy", "ecg.npy", "events.jsonl"]
    done = subprocess.run(_command(pvc_bundle, copied, "--output", str(earlier)), capture_output=True, text=True,
                          cwd=REPOSITORY, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(earlier.read_text().splitlines()[0])["type"] in ("beat", "quality")  # replaced whole


def test_an_output_link_is_written_through_and_a_device_or_pipe_is_written_to_not_replaced(pvc_bundle, recording,
                                                                                          tmp_path):
    """``--output`` a symbolic link: its target gets the events and the link stays a link; ``--output`` a FIFO (as
    /dev/stdout or /dev/null would be): the events are written into it, and it is never replaced by a file."""
    import os
    import threading

    results = tmp_path / "results"
    results.mkdir()
    (results / "events.jsonl").write_text("earlier\n")
    link = tmp_path / "latest.jsonl"
    link.symlink_to(results / "events.jsonl")
    done = subprocess.run(_command(pvc_bundle, recording, "--output", str(link)), capture_output=True, text=True,
                          cwd=REPOSITORY, timeout=120)
    assert done.returncode == 0, done.stderr
    assert link.is_symlink() and json.loads((results / "events.jsonl").read_text().splitlines()[0])["type"]
    assert sorted(path.name for path in results.iterdir()) == ["events.jsonl"]  # no temporary file left
    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()), daemon=True)
    reader.start()
    piped = subprocess.run(_command(pvc_bundle, recording, "--output", str(fifo)), capture_output=True, text=True,
                           cwd=REPOSITORY, timeout=120)
    reader.join(timeout=60)
    assert piped.returncode == 0, piped.stderr
    assert not fifo.is_file() and fifo.exists() and received and json.loads(received[0].splitlines()[0])["type"]
    assert not list(tmp_path.glob(".events.fifo.*"))


def test_a_collector_that_refuses_the_upload_never_costs_the_runs_results(pvc_bundle, recording, tmp_path):
    """A 4xx from the collector (here a wrong --telemetry-url path: 404) is said loudly, the telemetry stays in the
    outbox for a later upload, and the run's events are written and the exit status is 0 — the clinical output is
    complete whatever the telemetry endpoint answers."""
    import http.server
    import threading

    class NotHere(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"detail": "Not Found"}')

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotHere)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    outbox, output = tmp_path / "outbox.sqlite3", tmp_path / "events.jsonl"
    try:
        done = subprocess.run(_command(pvc_bundle, recording, "--device-id", DEVICE_ID, "--telemetry-outbox",
                                       str(outbox), "--telemetry-url",
                                       f"http://127.0.0.1:{server.server_address[1]}/v1/telemetr",
                                       "--output", str(output)),
                              capture_output=True, text=True, cwd=REPOSITORY, timeout=120)
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 0, done.stderr
    assert "telemetry NOT delivered" in done.stderr and "HTTP 404" in done.stderr
    assert "check --telemetry-url" in done.stderr
    assert output.is_file() and json.loads(output.read_text().splitlines()[0])["type"] in ("beat", "quality")
    with Outbox(outbox, DEVICE_ID) as kept:
        assert kept.count() > 0
