"""The collector's connections against misbehaving clients, on a real uvicorn server over loopback: headers late or
endless, a request the parser cannot read, a body cut off, an unknown path — each answered in JSON with what, what was
expected and the fix, without a traceback, while other clients are served. And what the answers leave out: where the
store lives, a refused value that could be a patient's."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from dashboard.collector import http_guard
from dashboard.collector.app import build_server
from dashboard.collector.schema import MAX_UPLOAD_SEQUENCE, BatchError, CollectorLimits, parse_batch
from dashboard.collector.store import SqliteStore
from runtime.telemetry.records import pseudonymous_device_id
from tests.runtime.test_uploader import running_collector

WAIT_S = 30  # how long a test waits for an answer that must come (a hang guard, not a speed target)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def _collector(store: SqliteStore) -> Iterator[int]:
    """The real collector (uvicorn, its guarded protocol) on a free loopback port."""
    port = _free_port()
    with running_collector(store, port):
        yield port


@pytest.fixture
def store(tmp_path) -> Iterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "telemetry.sqlite3")
    yield opened
    opened.close()


def _answer(connection: socket.socket) -> tuple[int, dict]:
    """Read one response to the end (every guarded answer closes the connection)."""
    connection.settimeout(WAIT_S)
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), head
    return int(head.split()[1]), json.loads(body)


def _refusal_is_whole(answer: dict) -> None:
    assert answer["detail"] and answer["expected"] and answer["fix"], answer


def test_headers_that_do_not_arrive_in_time_are_answered_408_and_others_are_served(store, monkeypatch, caplog):
    monkeypatch.setattr(http_guard, "HEADER_TIMEOUT_S", 0.5)
    with _collector(store) as port:
        silent = socket.create_connection(("127.0.0.1", port))
        trickling = socket.create_connection(("127.0.0.1", port))
        trickling.sendall(b"POST /v1/telemetry HTTP/1.1\r\nHo")
        # while both wait, a device is served
        assert httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=WAIT_S).status_code == 200
        for connection in (silent, trickling):
            status, answer = _answer(connection)
            assert status == 408 and "did not arrive within 0.5 s" in answer["detail"], answer
            _refusal_is_whole(answer)
            connection.close()
        # a kept-alive connection's next request gets the same deadline from its first byte
        kept = socket.create_connection(("127.0.0.1", port))
        kept.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        kept.settimeout(WAIT_S)
        assert b"200 OK" in kept.recv(65536)
        kept.sendall(b"GET /v1/health HTTP/1.1\r\nHo")
        status, answer = _answer(kept)
        assert status == 408, answer
        kept.close()
    assert "Traceback" not in caplog.text


def test_endless_headers_are_answered_431_before_they_fill_memory(store):
    with _collector(store) as port:
        connection = socket.create_connection(("127.0.0.1", port))
        connection.sendall(b"POST /v1/telemetry HTTP/1.1\r\nX-Filler: " + b"a" * (20 * 1024))  # and no end
        status, answer = _answer(connection)
        assert status == 431 and f"passed {http_guard.MAX_HEADER_BYTES} bytes" in answer["detail"], answer
        _refusal_is_whole(answer)
        connection.close()
        assert httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=WAIT_S).status_code == 200


@pytest.mark.parametrize("request_bytes", [
    b"POST /v1/telemetry HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    b"POST /v1/telemetry HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    b"FOO\x01 /v1/telemetry HTTP/1.1\r\nHost: x\r\n\r\n",
], ids=["negative-length", "two-lengths", "bad-method"])
def test_a_request_the_parser_cannot_read_gets_a_json_refusal(store, request_bytes):
    with _collector(store) as port:
        connection = socket.create_connection(("127.0.0.1", port))
        connection.sendall(request_bytes)
        status, answer = _answer(connection)
        connection.close()
    assert status == 400 and "not valid HTTP/1.1" in answer["detail"], answer
    _refusal_is_whole(answer)


def test_a_body_cut_off_by_the_client_leaves_no_traceback_and_nothing_stored(store, caplog):
    with caplog.at_level(logging.INFO), _collector(store) as port:
        connection = socket.create_connection(("127.0.0.1", port))
        connection.sendall(b"POST /v1/telemetry HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Content-Length: 1000\r\n\r\n{\"schema_version\": 2")
        connection.close()
        deadline = time.monotonic() + WAIT_S  # the server notices the close on its own time
        while "closed before the body was complete" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        assert httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=WAIT_S).status_code == 200
    assert "closed before the body was complete (20 bytes came)" in caplog.text
    assert "Traceback" not in caplog.text and "ClientDisconnect" not in caplog.text
    assert store.count() == 0


def test_unknown_paths_and_methods_are_refused_in_json_and_no_api_browser_is_served(store):
    with _collector(store) as port:
        base = f"http://127.0.0.1:{port}"
        missing = httpx.get(f"{base}/v1/patient-jane-doe", timeout=WAIT_S)
        wrong = httpx.get(f"{base}/v1/telemetry", timeout=WAIT_S)
        pages = [httpx.get(f"{base}{path}", timeout=WAIT_S).status_code for path in ("/docs", "/redoc",
                                                                                        "/openapi.json")]
    assert missing.status_code == 404 and "POST /v1/telemetry" in missing.json()["expected"]
    assert "jane" not in missing.text.lower()  # the path a client asked for is not echoed
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    _refusal_is_whole(wrong.json())
    assert pages == [404, 404, 404]


def test_the_liveness_answer_does_not_wait_for_a_locked_store(tmp_path):
    """Health is answered on the event loop: uploads queued on a store another process holds locked do not hold it."""
    store = SqliteStore(tmp_path / "locked.sqlite3")
    import sqlite3

    holder = sqlite3.connect(tmp_path / "locked.sqlite3", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    device = pseudonymous_device_id("device", "salt")
    body = json.dumps({"schema_version": 2, "device_id": device, "dropped": 0, "records": []})
    try:
        with _collector(store) as port:
            base = f"http://127.0.0.1:{port}"
            uploads = [threading.Thread(target=httpx.post, args=(f"{base}/v1/telemetry",),
                                        kwargs={"content": body, "headers": {"content-type": "application/json"},
                                                "timeout": 120}, daemon=True) for _ in range(48)]
            for upload in uploads:
                upload.start()
            time.sleep(0.5)  # the uploads now fill the worker threads, each waiting on the lock
            try:
                health = httpx.get(f"{base}/v1/health", timeout=WAIT_S)
            finally:  # the uploads finish before the server stops and the store closes, whatever health did
                holder.execute("ROLLBACK")
                for upload in uploads:
                    upload.join(timeout=120)
        assert health.status_code == 200 and health.json()["status"] == "ok"
    finally:
        holder.close()
        store.close()


def test_readiness_is_refused_when_the_store_file_was_replaced_and_the_path_is_not_told(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    store = SqliteStore(folder / "telemetry.sqlite3")
    try:
        with _collector(store) as port:
            base = f"http://127.0.0.1:{port}"
            assert httpx.get(f"{base}/v1/ready", timeout=WAIT_S).status_code == 200
            moved = tmp_path / "moved"
            moved.mkdir()
            for path in folder.iterdir():
                shutil.move(path, moved / path.name)
            ready = httpx.get(f"{base}/v1/ready", timeout=WAIT_S)
    finally:
        store.close()
    assert ready.status_code == 503 and ready.json()["retry"] is True, ready.text
    assert "removed or replaced" in ready.json()["detail"]
    assert str(folder) not in ready.text and "the collector's database" in ready.text


def test_a_long_schema_version_is_not_echoed_and_a_short_one_is():
    device = pseudonymous_device_id("device", "salt")
    answers = {}
    for version in (19700101, "1970-01-01", 7):
        body = json.dumps({"schema_version": version, "device_id": device, "dropped": 0, "records": []}).encode()
        with pytest.raises(BatchError) as refused:
            parse_batch(body)
        answers[version] = str(refused.value)
    assert "19700101" not in answers[19700101] and "a number that is not a version number" in answers[19700101]
    assert "1970" not in answers["1970-01-01"] and "a string" in answers["1970-01-01"]
    assert "schema_version 7 is not supported" in answers[7]


def test_a_sequence_no_outbox_could_renumber_above_is_refused():
    record = _record(sequence=MAX_UPLOAD_SEQUENCE + 1)
    body = json.dumps({"schema_version": 2, "device_id": record["device_id"], "dropped": 0, "records": [record]})
    with pytest.raises(BatchError) as refused:
        parse_batch(body.encode())
    assert refused.value.status == 422 and refused.value.field == "sequence" and refused.value.index == 0
    record["sequence"] = MAX_UPLOAD_SEQUENCE
    body = json.dumps({"schema_version": 2, "device_id": record["device_id"], "dropped": 0, "records": [record]})
    assert parse_batch(body.encode()).records[0]["sequence"] == MAX_UPLOAD_SEQUENCE


def test_a_body_of_millions_of_empty_arrays_is_refused_before_it_is_parsed():
    limits = CollectorLimits()
    body = b'{"records": [' + b",".join([b"[]"] * 1_000_000) + b"]}"
    assert len(body) < limits.max_body_bytes
    with pytest.raises(BatchError) as refused:
        parse_batch(body, limits)
    assert refused.value.status == 413 and "JSON objects and arrays" in str(refused.value)


def test_the_guard_is_what_uvicorn_runs():
    from fastapi import FastAPI

    server = build_server(FastAPI(), port=_free_port())
    assert server.config.http == http_guard.PROTOCOL
    server.config.load()
    assert server.config.http_protocol_class is http_guard.GuardedHttpProtocol


def _record(**changes) -> dict:
    record = {"sequence": 1, "time": "2026-12-07T12:00:00Z", "device_id": pseudonymous_device_id("device", "salt"),
              "bundle_id": "abc123", "bundle_sha256": "0" * 64, "variant": "fp32", "provider": "CPUExecutionProvider",
              "latency_us": 10.0, "task": "binary", "quality_flags": [], "features": {},
              "result": {"class": "V", "confidence": 0.9, "low_confidence": False}}
    return {**record, **changes}


@pytest.mark.parametrize("changes, field", [
    ({"variant": "SSN:078-05-1120"}, "variant"),
    ({"bundle_id": "Jane.Doe.DOB.1970-01-01"}, "bundle_id"),
    ({"result": {"class": "DOB 01/31/1970", "confidence": 0.9, "low_confidence": False}}, "result.class"),
    ({"task": "regression", "result": {"values": {"glucose": 5.0}, "units": {"glucose": "patient a"}}},
     "result.units.glucose"),
    ({"task": "regression", "result": {"values": {"glucose": 5.0}, "units": {"glucose": "mmol\u202e/L"}}},
     "result.units.glucose"),
])
def test_identifiers_in_the_codes_and_labels_of_an_unknown_bundle_are_refused_unechoed(changes, field):
    record = _record(**changes)
    body = json.dumps({"schema_version": 2, "device_id": record["device_id"], "dropped": 0, "records": [record]})
    with pytest.raises(BatchError) as refused:
        parse_batch(body.encode())
    assert refused.value.status == 422 and refused.value.field == field, str(refused.value)
    assert "1970" not in str(refused.value) and "078-05" not in str(refused.value)
    plain = _record(task="regression", result={"values": {"glucose": 5.0}, "units": {"glucose": "mmol/L"}})
    body = json.dumps({"schema_version": 2, "device_id": plain["device_id"], "dropped": 0, "records": [plain]})
    assert parse_batch(body.encode()).records[0]["result"]["units"] == {"glucose": "mmol/L"}
