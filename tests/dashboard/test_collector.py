"""The collector service: idempotent storage, whole-batch refusal with reasons, concurrent use."""

from __future__ import annotations

import json
import sqlite3
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

with warnings.catch_warnings():
    # Starlette ≥ 1.x asks for the httpx2 package; httpx still works and is what the extra installs.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from fastapi.testclient import TestClient

from dashboard.collector.app import create_app
from dashboard.collector.schema import CollectorLimits
from dashboard.collector.store import SqliteStore
from runtime.telemetry import TelemetryError, pseudonymous_device_id
from tests.runtime.test_telemetry_records import DEVICE_ID, sample_record


def batch(count: int, *, first: int = 1, device_id: str = DEVICE_ID, dropped: int = 0) -> dict[str, Any]:
    records = [sample_record(sequence=first + index, device_id=device_id) for index in range(count)]
    return {"schema_version": 1, "device_id": device_id, "dropped": dropped, "records": records}


@pytest.fixture
def store(tmp_path) -> Iterator[SqliteStore]:
    with SqliteStore(tmp_path / "collector.sqlite3") as opened:
        yield opened


@pytest.fixture
def client(store) -> TestClient:
    return TestClient(create_app(store))


def test_health(client):
    response = client.get("/v1/health")
    assert response.status_code == 200 and response.json()["status"] == "ok"


def test_a_batch_sent_twice_is_stored_once(client, store):
    first = client.post("/v1/telemetry", json=batch(10))
    assert first.status_code == 200
    assert first.json() == {"acknowledged": list(range(1, 11)), "duplicates": 0}
    second = client.post("/v1/telemetry", json=batch(12))  # a resend plus two new records
    assert second.json() == {"acknowledged": list(range(1, 13)), "duplicates": 10}
    assert store.count() == 12
    stored = store.records(device_id=DEVICE_ID)
    assert [record["sequence"] for record in stored] == list(range(1, 13))
    assert stored[0]["features"] == sample_record()["features"]


def test_devices_summary_keeps_the_largest_dropped_count(client, store):
    client.post("/v1/telemetry", json=batch(3, dropped=7))
    client.post("/v1/telemetry", json=batch(2, first=4, dropped=5))  # an older report arriving late
    (device,) = store.devices()
    assert (device["device_id"], device["records"], device["last_sequence"], device["dropped"]) == (DEVICE_ID, 5, 5, 7)


def test_records_since_filters_by_record_time(client, store):
    body = batch(2)
    body["records"][1]["time"] = "2025-04-01T00:00:00Z"
    client.post("/v1/telemetry", json=body)
    assert [record["sequence"] for record in store.records(since="2025-03-15T00:00:00+00:00")] == [2]
    assert store.records(device_id=pseudonymous_device_id("other", "salt")) == []


def post_raw(client: TestClient, content: bytes, content_type: str = "application/json"):
    return client.post("/v1/telemetry", content=content, headers={"Content-Type": content_type})


def test_bad_json_is_400(client, store):
    response = post_raw(client, b'{"schema_version": 1, "records": [')
    assert response.status_code == 400 and "JSON" in response.json()["detail"]
    assert post_raw(client, b"[1, 2]").status_code == 400
    assert store.count() == 0


def test_wrong_schema_version_is_422(client, store):
    response = client.post("/v1/telemetry", json={**batch(2), "schema_version": 2})
    assert response.status_code == 422 and response.json()["field"] == "schema_version"
    assert store.count() == 0


def test_a_patient_identifier_in_record_3_refuses_the_whole_batch(client, store):
    body = batch(5)
    body["records"][3]["features"]["patient_age"] = 54.0
    response = client.post("/v1/telemetry", json=body)
    assert response.status_code == 422
    answer = response.json()
    assert answer["record_index"] == 3 and answer["field"] == "features.patient_age"
    assert "record 3" in answer["detail"] and "features.patient_age" in answer["detail"]
    assert store.count() == 0 and store.devices() == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda body: body["records"][1].update(waveform=[0.1, 0.2]), "waveform"),
        (lambda body: body["records"][1].update(device_id=pseudonymous_device_id("x", "y")), "device_id"),
        (lambda body: body["records"][1].update(sequence=1), "sequence"),
        (lambda body: body.update(device_id="SN-0001"), "device_id"),
        (lambda body: body.update(extra=True), "extra"),
    ],
)
def test_invalid_batches_name_the_field_and_write_nothing(client, store, change, field):
    body = batch(3)
    change(body)
    response = client.post("/v1/telemetry", json=body)
    assert response.status_code == 422 and response.json()["field"] == field
    assert store.count() == 0


def test_oversized_batches_are_413(store):
    client = TestClient(create_app(store, CollectorLimits(max_body_bytes=20_000, max_records=10)))
    assert client.post("/v1/telemetry", json=batch(11)).status_code == 413
    padded = json.dumps(batch(5)).encode() + b" " * 20_000
    assert post_raw(client, padded).status_code == 413
    assert store.count() == 0
    assert client.post("/v1/telemetry", json=batch(10)).status_code == 200


def test_wrong_content_type_is_415(client, store):
    assert post_raw(client, json.dumps(batch(1)).encode(), "text/plain").status_code == 415
    assert store.count() == 0


def test_store_writes_a_failing_batch_not_at_all(store):
    records = [sample_record(sequence=1), sample_record(sequence=2), {"sequence": 3, "device_id": "other"}]
    with pytest.raises(TelemetryError):
        store.insert_batch(DEVICE_ID, records)
    assert store.count() == 0


def test_concurrent_posts_while_another_connection_reads(store, tmp_path):
    writers, batches, size = 6, 8, 40
    devices = [pseudonymous_device_id(f"SN-{index}", "fleet-salt") for index in range(writers)]
    app = create_app(store)
    errors: list[BaseException] = []
    statuses: list[int] = []
    reads: list[int] = []
    done = threading.Event()

    def post(device_id: str) -> None:
        with TestClient(app) as client:
            for number in range(batches):
                body = batch(size, first=1 + number * size, device_id=device_id)
                statuses.append(client.post("/v1/telemetry", json=body).status_code)
                statuses.append(client.post("/v1/telemetry", json=body).status_code)  # and a resend

    def read() -> None:
        with SqliteStore(tmp_path / "collector.sqlite3") as reader:
            try:
                while not done.is_set():
                    reads.append(reader.count())
                    reader.records(device_id=devices[0])
                    reader.devices()
            except (sqlite3.Error, TelemetryError) as error:
                errors.append(error)

    reader_thread = threading.Thread(target=read)
    reader_thread.start()
    threads = [threading.Thread(target=post, args=(device_id,)) for device_id in devices]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    done.set()
    reader_thread.join(timeout=10)

    assert not errors and statuses == [200] * (writers * batches * 2)
    assert reads == sorted(reads) and len(reads) > 1  # readers saw progress, never a locked database
    assert store.count() == writers * batches * size
    assert {device["device_id"]: device["records"] for device in store.devices()} == dict.fromkeys(
        devices, batches * size
    )
