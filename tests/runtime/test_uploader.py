"""The uploader: what each collector answer does to the outbox, outages, and crash-safe resends."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from runtime.telemetry import Backoff, CollectorRejectedError, Outbox, Uploader
from tests.runtime.test_outbox import _lines
from tests.runtime.test_telemetry_records import DEVICE_ID, class_result, sample_record

REPOSITORY = Path(__file__).resolve().parents[2]
MARKER = "MARKER-CLASS"  # a record value that must never reach a log


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ScriptedCollector(ThreadingHTTPServer):
    """Answers each POST with the next scripted (status, body); 200 + None acknowledges everything."""

    def __init__(self, answers: list[tuple[int, object]]) -> None:
        super().__init__(("127.0.0.1", 0), _ScriptedHandler)
        self.answers = answers
        self.requests: list[tuple[dict[str, str], dict]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1/telemetry"


class _ScriptedHandler(BaseHTTPRequestHandler):
    server: ScriptedCollector

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append((dict(self.headers), body))
        status, answer = self.server.answers.pop(0) if self.server.answers else (200, None)
        if answer is None:
            answer = {"acknowledged": [record["sequence"] for record in body["records"]], "duplicates": 0}
        payload = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *arguments: object) -> None:
        pass


@contextmanager
def scripted_collector(*answers: tuple[int, object]) -> Iterator[ScriptedCollector]:
    server = ScriptedCollector(list(answers))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def outbox(tmp_path) -> Iterator[Outbox]:
    with Outbox(tmp_path / "outbox.sqlite3", DEVICE_ID, max_rows=1_000) as opened:
        for _ in range(12):
            opened.append(sample_record(result=class_result(MARKER)))
        yield opened


def test_batches_carry_the_envelope_and_acknowledged_rows_are_deleted(outbox):
    with scripted_collector() as collector:
        assert Uploader(outbox, collector.url, batch_size=5).upload_pending() == 12
    assert outbox.count() == 0
    assert [len(body["records"]) for _, body in collector.requests] == [5, 5, 2]
    headers, body = collector.requests[0]
    assert headers["Content-Type"] == "application/json"
    assert (body["schema_version"], body["device_id"], body["dropped"]) == (2, DEVICE_ID, 0)
    assert [record["sequence"] for record in body["records"]] == [1, 2, 3, 4, 5]


def test_only_the_acknowledged_sequences_are_deleted(outbox):
    with scripted_collector((200, {"acknowledged": [1, 3, 777], "duplicates": 0})) as collector:
        assert Uploader(outbox, collector.url).upload_pending() == 2
    assert [record["sequence"] for record in outbox.pending(100)] == [2, *range(4, 13)]


@pytest.mark.parametrize("answer", [(500, {"detail": "disk full"}), (503, b""), (200, b"not json"), (200, {}),
                                    (408, {"detail": "the body did not arrive"}), (429, b"")])
def test_server_errors_keep_everything_and_raise_nothing(outbox, answer):
    with scripted_collector(answer) as collector:
        assert Uploader(outbox, collector.url).upload_pending() == 0
    assert outbox.count() == 12


def test_collector_down_keeps_everything_and_raises_nothing(outbox):
    assert Uploader(outbox, f"http://127.0.0.1:{free_port()}/v1/telemetry", timeout_s=1.0).upload_pending() == 0
    assert outbox.count() == 12


def test_4xx_raises_a_typed_error_and_deletes_nothing_or_logs_records(outbox, caplog):
    caplog.set_level(logging.DEBUG)
    answer = (422, {"detail": "record 3: telemetry field 'features.x' is bad", "record_index": 3})
    with scripted_collector(answer) as collector, pytest.raises(CollectorRejectedError) as error:
        Uploader(outbox, collector.url).upload_pending()
    assert error.value.status == 422 and "record 3" in str(error.value)
    assert outbox.count() == 12
    assert "features.x" in caplog.text and MARKER not in caplog.text


def test_413_halves_the_batch(outbox):
    with scripted_collector((413, {"detail": "too large"})) as collector:
        assert Uploader(outbox, collector.url, batch_size=8).upload_pending() == 12
    assert [len(body["records"]) for _, body in collector.requests] == [8, 4, 4, 4]


def test_bodies_stay_under_the_byte_limit(outbox):
    with scripted_collector() as collector:
        assert Uploader(outbox, collector.url, max_body_bytes=2_000).upload_pending() == 12
    assert all(len(json.dumps(body, separators=(",", ":"))) <= 2_000 for _, body in collector.requests)
    assert len(collector.requests) > 1


def test_dropped_count_is_reported(tmp_path):
    with Outbox(tmp_path / "small.sqlite3", DEVICE_ID, max_rows=3) as small, scripted_collector() as collector:
        for _ in range(5):
            small.append(sample_record())
        assert Uploader(small, collector.url).upload_pending() == 3
        assert collector.requests[0][1]["dropped"] == 2


def test_run_forever_retries_with_backoff_and_stops(outbox):
    stop = threading.Event()
    with scripted_collector((500, b""), (500, b"")) as collector:
        uploader = Uploader(outbox, collector.url, backoff=Backoff(initial_s=0.01, maximum_s=0.05))
        thread = threading.Thread(target=uploader.run_forever, args=(stop, 0.01))
        thread.start()
        try:
            deadline = time.monotonic() + 10
            while outbox.count() and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            stop.set()
            thread.join(timeout=10)
    assert not thread.is_alive() and outbox.count() == 0 and len(collector.requests) >= 3


# -- against the real collector -----------------------------------------------------------------


@contextmanager
def running_collector(store, port: int) -> Iterator[str]:
    """The real FastAPI collector served by uvicorn on 127.0.0.1:port, in a thread."""
    from dashboard.collector.app import build_server, create_app

    server = build_server(create_app(store), port=port, log_level="warning")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    started = threading.Event()
    while not server.started and thread.is_alive():
        started.wait(0.01)
    assert server.started, "the collector did not start"
    try:
        yield f"http://127.0.0.1:{port}/v1/telemetry"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


_UPLOAD_THEN_HANG = """
import sys, time
from pathlib import Path
from runtime.telemetry import Outbox, Uploader

def hang(sequences):
    print("stored", len(sequences), flush=True)
    time.sleep(60)

Uploader(Outbox(Path(sys.argv[1]), sys.argv[2]), sys.argv[3], before_acknowledge=hang).upload_pending()
print("finished", flush=True)
"""


def test_outage_then_crash_between_store_and_delete_is_exactly_once(tmp_path):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    from dashboard.collector.store import SqliteStore

    store = SqliteStore(tmp_path / "collector.sqlite3")
    outbox_path = tmp_path / "outbox.sqlite3"
    outbox = Outbox(outbox_path, DEVICE_ID)
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/telemetry"

    # Collector down: records accumulate, nothing raises.
    for _ in range(30):
        outbox.append(sample_record())
    assert Uploader(outbox, url, timeout_s=1.0).upload_pending() == 0
    assert outbox.count() == 30

    with running_collector(store, port):
        # Collector up: everything arrives.
        assert Uploader(outbox, url, batch_size=7).upload_pending() == 30
        assert outbox.count() == 0 and store.count() == 30

        # An uploader killed after the collector stored a batch, before the outbox deleted it.
        for _ in range(20):
            outbox.append(sample_record())
        process = subprocess.Popen(
            [sys.executable, "-c", _UPLOAD_THEN_HANG, str(outbox_path), DEVICE_ID, url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPOSITORY,
        )
        try:
            line = _lines(process).get(timeout=30)
            assert line == "stored 20", process.stderr.read() if line is None else line
        finally:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        assert store.count() == 50 and outbox.count() == 20  # stored, not yet deleted

        # Restart: the resend is de-duplicated and the outbox empties.
        assert Uploader(outbox, url).upload_pending() == 20
    assert outbox.count() == 0
    keys = [(record["device_id"], record["sequence"]) for record in store.records()]
    assert len(keys) == len(set(keys)) == 50
    assert sorted(sequence for _, sequence in keys) == list(range(1, 51))
    outbox.close()
    store.close()


def test_schema_1_records_left_from_an_older_runtime_go_first_in_their_own_envelope(tmp_path):
    path = tmp_path / "outbox.sqlite3"
    with Outbox(path, DEVICE_ID) as opened:
        opened.append_many([sample_record() for _ in range(3)])
    legacy = {"predicted_class": "N", "confidence": 0.9}
    with sqlite3.connect(path) as connection:  # what an outbox written by schema-1 devices holds
        for sequence in (1, 2):
            payload = json.loads(connection.execute("SELECT payload FROM records WHERE sequence = ?",
                                                    (sequence,)).fetchone()[0])
            payload = {key: value for key, value in payload.items() if key not in ("task", "result")} | legacy
            connection.execute("UPDATE records SET payload = ? WHERE sequence = ?", (json.dumps(payload), sequence))
    with Outbox(path, DEVICE_ID) as opened, scripted_collector() as collector:
        assert Uploader(opened, collector.url).upload_pending() == 3
    assert [(body["schema_version"], [r["sequence"] for r in body["records"]]) for _, body in collector.requests] == [
        (1, [1, 2]), (2, [3])]


def test_a_reset_outbox_is_renumbered_and_every_record_arrives(tmp_path, caplog):
    """An outbox file lost and recreated under the same device id numbers from 1 again: the collector answers 409
    with where to resume (nothing stored), the uploader renumbers and sends again: every record of both outboxes is
    stored once, in order, none taken for a duplicate of another."""
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    from dashboard.collector.store import SqliteStore

    port = free_port()
    with SqliteStore(tmp_path / "collector.sqlite3") as store, running_collector(store, port) as url:
        with Outbox(tmp_path / "first.sqlite3", DEVICE_ID) as first:
            for index in range(30):
                first.append(sample_record(latency_us=1_000.0 + index))
            assert Uploader(first, url).upload_pending() == 30
        with Outbox(tmp_path / "second.sqlite3", DEVICE_ID) as second:  # the reset: a new file, same id
            for index in range(40):
                second.append(sample_record(latency_us=2_000.0 + index))
            assert second.pending(1)[0]["sequence"] == 1
            with caplog.at_level(logging.WARNING):
                assert Uploader(second, url, batch_size=25).upload_pending() == 40
            assert second.count() == 0 and second.last_sequence() == 80  # above 30 and above its own 40
        stored = store.records(DEVICE_ID)
    assert [record["sequence"] for record in stored] == [*range(1, 31), *range(41, 81)]
    assert [record["latency_us"] for record in stored] == [1_000.0 + index for index in range(30)] + [
        2_000.0 + index for index in range(40)]
    assert any("renumbered 40 pending record(s) from 41" in entry.getMessage() for entry in caplog.records)


def test_a_409_without_anything_to_renumber_is_a_refusal_that_deletes_nothing(outbox):
    with scripted_collector((409, {"detail": "reused", "resume_after": 0})) as collector, \
            pytest.raises(CollectorRejectedError) as refused:
        Uploader(outbox, collector.url).upload_pending()
    assert refused.value.status == 409 and outbox.count() == 12 and outbox.pending(1)[0]["sequence"] == 1
    assert len(collector.requests) == 1


@pytest.mark.parametrize("answer", [{"detail": "no resume"}, {"resume_after": -1}, {"resume_after": True},
                                    {"resume_after": 2**63}, b"not json"])
def test_a_409_without_a_usable_resume_after_renumbers_nothing(outbox, answer):
    with scripted_collector((409, answer)) as collector, pytest.raises(CollectorRejectedError):
        Uploader(outbox, collector.url).upload_pending()
    assert outbox.count() == 12 and [record["sequence"] for record in outbox.pending(20)] == list(range(1, 13))
