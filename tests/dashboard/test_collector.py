"""The collector service: idempotent storage, whole-batch refusal with reasons, concurrent use."""

from __future__ import annotations

import json
import sqlite3
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
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
from dashboard.collector.vocabulary import BundleVocabularies
from runtime.telemetry import TelemetryError, pseudonymous_device_id
from tests.runtime.test_telemetry_records import DEVICE_ID, RESULTS, sample_record


def batch(count: int, *, first: int = 1, device_id: str = DEVICE_ID, dropped: int = 0) -> dict[str, Any]:
    records = [sample_record(sequence=first + index, device_id=device_id) for index in range(count)]
    return {"schema_version": 2, "device_id": device_id, "dropped": dropped, "records": records}


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
    ready = client.get("/v1/ready")
    assert ready.status_code == 200 and ready.json() == {"status": "ready", "rollups_pending": 0}


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


def test_an_upload_marked_simulated_marks_its_device_once_stored(client, store):
    """``X-Edgemed-Simulated: 1`` (what a simulator's uploader sends) marks the device simulated once its batch is
    stored; an upload without it, or one refused, marks nothing."""
    from runtime.telemetry.records import SIMULATED_HEADER

    assert client.post("/v1/telemetry", json=batch(2)).status_code == 200
    assert store.simulated_devices() == []
    refused = client.post("/v1/telemetry", json={"schema_version": 2}, headers={SIMULATED_HEADER: "1"})
    assert refused.status_code >= 400 and store.simulated_devices() == []
    for first in (3, 4):
        answer = client.post("/v1/telemetry", json=batch(1, first=first), headers={SIMULATED_HEADER: "1"})
        assert answer.status_code == 200
    assert store.simulated_devices() == [DEVICE_ID] and store.count() == 4


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


@pytest.mark.parametrize("version", [4, 0, True, "2"])
def test_wrong_schema_version_is_422_naming_both_versions(client, store, version):
    response = client.post("/v1/telemetry", json={**batch(2), "schema_version": version})
    assert response.status_code == 422 and response.json()["field"] == "schema_version"
    detail = response.json()["detail"]
    assert f"schema_version {json.dumps(version)} is not supported" in detail
    assert "accepts 1, 2, 3 (newest 3)" in detail
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


def test_records_of_every_task_kind_made_by_the_runtime_are_accepted(store, tmp_path):
    """Hand-built bundles of every kind run on rows (one of them non-finite); their outbox goes to a collector that
    knows the bundles (their labels and feature names are its allow-list)."""
    from runtime.bundle import TrustPolicy
    from runtime.contract import TaskKind
    from runtime.runner import RunOptions, TelemetryMode, run
    from runtime.telemetry import Outbox
    from tests.runtime.hand_built import build_bundle

    rows = np.array([[2.0, 0.0, -1.0], [-0.5, 3.0, 0.0], [np.nan, 1.0, 1.0], [1.0, -2.0, 0.4]])
    np.save(tmp_path / "rows.npy", rows)
    for index, kind in enumerate(TaskKind):
        device_id = pseudonymous_device_id(f"SN-{kind.value}", "collector-tests")
        outbox = tmp_path / f"{kind.value}.sqlite3"
        bundle = build_bundle(tmp_path / kind.value, kind)
        options = RunOptions(telemetry_outbox=outbox, device_id=device_id, trust=TrustPolicy.development(),
                             telemetry_mode=TelemetryMode.RECORDS)
        list(run(bundle, tmp_path / "rows.npy", options))
        with Outbox(outbox, device_id) as opened:
            records = opened.pending(100)
        body = {"schema_version": 2, "device_id": device_id, "dropped": 0, "records": records}
        client = TestClient(create_app(store, vocabularies=BundleVocabularies(tmp_path)))
        response = client.post("/v1/telemetry", json=body)
        assert response.status_code == 200, response.json()
        assert response.json()["acknowledged"] == [1, 2, 3, 4]
        stored = store.records(device_id)
        assert [record["task"] for record in stored] == [kind.value] * 4 and stored[2]["result"] is None
        assert stored[2]["quality_flags"] == ["input_not_finite"] and stored[0]["result"] is not None
        assert store.count() == 4 * (index + 1)


def test_schema_1_batches_of_older_devices_are_accepted_and_stored_as_sent(client, store):
    records = [{key: value for key, value in record.items() if key not in ("task", "result")}
               | {"predicted_class": "N", "confidence": 0.9} for record in batch(3)["records"]]
    response = client.post("/v1/telemetry", json={**batch(3), "schema_version": 1, "records": records})
    assert response.status_code == 200 and store.count() == 3
    assert store.records()[0]["predicted_class"] == "N" and "task" not in store.records()[0]
    mixed = {**batch(2, first=10), "schema_version": 1}  # schema-2 records in a schema-1 envelope
    assert client.post("/v1/telemetry", json=mixed).status_code == 422 and store.count() == 3


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda record: record.update(task="regression", result=RESULTS["anomaly"]), "result.alarm"),
        (lambda record: record.update(task="anomaly", result={**RESULTS["anomaly"], "alarm": False}), "result.alarm"),
        (lambda record: record.update(task="multilabel", result={"labels": ["x"], "scores": {"af": 0.2}}),
         "result.labels"),
        (lambda record: record.update(task="regression", result={"values": {"qt": [400.0]}, "units": {"qt": "ms"}}),
         "result.values.qt"),
        (lambda record: record.update(task="segmentation"), "task"),
        (lambda record: record.update(result=None), "result"),
        (lambda record: record.update(quality_flags=["input_not_finite"]), "result"),
    ],
)
def test_malformed_results_refuse_the_whole_batch(client, store, change, field):
    body = batch(3)
    change(body["records"][2])
    response = client.post("/v1/telemetry", json=body)
    assert response.status_code == 422, response.json()
    assert (response.json()["record_index"], response.json()["field"]) == (2, field)
    assert store.count() == 0


# -- malformed bodies are 4xx, never 5xx (a 5xx tells the device to retry forever) ----------------------------


def _raw_post(client: TestClient, body: bytes) -> int:
    return client.post("/v1/telemetry", content=body, headers={"content-type": "application/json"}).status_code


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"[" * 100_000 + b"]" * 100_000, 400),  # beyond the parser's recursion limit
        (json.dumps({**batch(1), "records": [[[[[[[[[[1]]]]]]]]]]}).encode(), 400),  # beyond max_depth
        (json.dumps(batch(1)).replace('"dropped": 0', '"dropped": 9223372036854775808').encode(), 422),
        (json.dumps(batch(1)).replace('"sequence": 1', '"sequence": 18446744073709551616').encode(), 422),
        (json.dumps(batch(1)).replace('"latency_us": 412', '"latency_us": 1e400').encode(), 422),
        (json.dumps(batch(1)).replace('"latency_us": 412', '"latency_us": ' + "9" * 5000).encode(), 422),  # as
        # protocol.md says of integers beyond ±(2⁶³−1), though Python's parser stops at 4 300 digits
        (json.dumps(batch(1)).replace('"std": 1.0', '"std": -1e999').encode(), 422),
    ],
)
def test_deep_nesting_and_huge_numbers_are_4xx_and_store_nothing(client, store, body, status):
    assert _raw_post(client, body) == status
    assert store.count() == 0


def test_a_huge_declared_length_is_413(client, store):
    response = client.post("/v1/telemetry", content=b"{}", headers={
        "content-type": "application/json", "content-length": "9" * 5000})
    assert response.status_code in (400, 413) and store.count() == 0


def test_randomly_damaged_bodies_are_never_5xx(client, store):
    rng = np.random.default_rng(12)
    good = json.dumps(batch(3)).encode()
    pieces = [b"[", b"{", b"]", b"}", b'"', b"\\", b"1e999", b"99999999999999999999999", b"-", b"\xff", b"null",
              b"NaN", b"Infinity", b",", b":", b"\x00", b'"a,b"', b"1,2,3"]
    statuses = set()
    for _ in range(300):
        body = bytearray(good)
        for _ in range(int(rng.integers(1, 6))):
            spot = int(rng.integers(0, len(body)))
            if rng.random() < 0.5:
                body[spot:spot] = pieces[int(rng.integers(0, len(pieces)))]
            else:
                del body[spot : spot + int(rng.integers(1, 20))]
        statuses.add(_raw_post(client, bytes(body)))
    assert all(status < 500 for status in statuses), statuses
    assert max(statuses) >= 400


# -- privacy as an allow-list ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda record: record.update(features={f"s{index}": 0.1 for index in range(128)}), "features.s0"),
        (lambda record: record.update(quality_flags=["noisy", "0.12,0.13,0.15"]), "quality_flags[1]"),
        (lambda record: record.update(quality_flags=["lead_off", "my_own_flag"]), "quality_flags"),
        (lambda record: record.update(bundle_id="ecg-0.1;0.2;0.3"), "bundle_id"),
        (lambda record: record.update(variant="0.12 0.13 0.14 0.15 0.16"), "variant"),
        (lambda record: record.update(bundle_id="John Smith"), "bundle_id"),
        (lambda record: record["result"].update({"class": "John Smith 1970-01-01"}), "result.class"),
    ],
)
def test_privacy_allow_list_refuses_what_is_not_a_summary(client, store, change, field):
    body = batch(2)
    change(body["records"][1])
    response = client.post("/v1/telemetry", json=body)
    assert response.status_code == 422, response.json()
    assert (response.json()["record_index"], response.json()["field"]) == (1, field)
    assert store.count() == 0


def test_free_text_in_a_schema_1_class_is_refused(client, store):
    records = [{key: value for key, value in record.items() if key not in ("task", "result")}
               | {"predicted_class": "Jane Doe DOB 1980-02-03", "confidence": 0.9} for record in batch(1)["records"]]
    response = client.post("/v1/telemetry", json={**batch(1), "schema_version": 1, "records": records})
    assert response.status_code == 422 and response.json()["field"] == "predicted_class"


def test_a_known_bundle_closes_labels_and_feature_names(store, tmp_path):
    from runtime.contract import TaskKind
    from tests.runtime.hand_built import FEATURES, build_bundle

    bundle = build_bundle(tmp_path / "bundles" / "multiclass", TaskKind.MULTICLASS)
    vocabularies = BundleVocabularies(tmp_path / "bundles")
    client = TestClient(create_app(store, vocabularies=vocabularies))
    sha256 = next(iter(vocabularies.by_sha256))
    labels = sorted(next(iter(vocabularies.by_sha256.values())).labels)
    assert (bundle / "manifest.json").is_file() and labels

    def body(**changes: Any) -> dict[str, Any]:
        record = sample_record(sequence=1, bundle_sha256=sha256, features={FEATURES[0]: 1.0})
        record["result"]["class"] = labels[0]
        record.update(changes)
        return {"schema_version": 2, "device_id": DEVICE_ID, "dropped": 0, "records": [record]}

    assert client.post("/v1/telemetry", json=body()).status_code == 200
    unknown_label = body()
    unknown_label["records"][0]["result"]["class"] = "not-a-label"
    response = client.post("/v1/telemetry", json=unknown_label)
    assert response.status_code == 422 and response.json()["field"] == "result.class"
    response = client.post("/v1/telemetry", json=body(features={"heart_rate_x": 1.0}))
    assert response.status_code == 422 and response.json()["field"] == "features.heart_rate_x"


def test_sequences_reused_for_other_records_are_409_with_where_to_resume(client, store, caplog):
    """A reset outbox (numbering from 1 again) is not a resend: 409, nothing stored, one WARNING, and the answer
    says the highest sequence held so the device can renumber above it."""
    assert client.post("/v1/telemetry", json=batch(50)).status_code == 200
    changed = batch(52)
    for record in changed["records"]:
        record["latency_us"] = 999
    with caplog.at_level("WARNING", logger="dashboard.collector.app"):
        response = client.post("/v1/telemetry", json=changed)
    assert response.status_code == 409
    answer = response.json()
    assert answer["resume_after"] == 50 and answer["field"] == "sequence"
    assert "Expected: sequences above 50" in answer["detail"] and "from 51" in answer["detail"]
    assert store.count() == 50 and {record["latency_us"] for record in store.records()} != {999}
    warnings_logged = [entry for entry in caplog.records if entry.levelname == "WARNING"]
    assert len(warnings_logged) == 1 and "50 stored sequence(s) (1–50)" in warnings_logged[0].getMessage()


def test_a_body_that_stops_arriving_is_answered_408_not_waited_for():
    import asyncio

    from dashboard.collector.app import _read_body
    from dashboard.collector.schema import BatchError

    class Stalled:  # sends 18 bytes of a declared 1000, then nothing
        def __init__(self) -> None:
            self.headers = {"content-length": "1000"}

        async def stream(self):
            yield b'{"schema_version":'
            await asyncio.sleep(3600)

    with pytest.raises(BatchError) as refused:
        asyncio.run(_read_body(Stalled(), 5_000_000, timeout_s=0.2))
    assert refused.value.status == 408 and "18 bytes came" in str(refused.value)


def test_a_database_file_removed_while_running_is_503_never_acknowledged_nor_recreated(store, tmp_path):
    import threading

    client = TestClient(create_app(store))
    assert client.post("/v1/telemetry", json=batch(2)).status_code == 200
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"collector.sqlite3{suffix}").unlink(missing_ok=True)
    answers = [client.post("/v1/telemetry", json=batch(1, first=3 + attempt)) for attempt in range(3)]
    found: list[int] = []
    worker = threading.Thread(target=lambda: found.append(  # a thread without a connection yet
        client.post("/v1/telemetry", json=batch(1, first=9)).status_code))
    worker.start()
    worker.join()
    assert [answer.status_code for answer in answers] == [503, 503, 503] and found == [503]
    assert all("removed or replaced" in answer.json()["detail"] or "unable to open" in answer.json()["detail"]
               for answer in answers)
    assert not (tmp_path / "collector.sqlite3").exists()  # not silently recreated empty
    ready = client.get("/v1/ready")  # ready means an upload would be stored: it would not
    assert ready.status_code == 503 and ready.json()["retry"] is True
    assert not (tmp_path / "collector.sqlite3").exists()


def test_a_connection_that_fell_back_to_read_only_is_reopened_once_the_file_can_be_written(store, tmp_path):
    """SQLite opens a write-protected file read-only and keeps that connection: every later upload got 503 until a
    restart, while /v1/ready said ready. The read-only connection now answers 503 once, is dropped, and the next
    upload (or readiness probe) opens a connection that writes."""
    import sqlite3

    client = TestClient(create_app(store))
    assert client.post("/v1/telemetry", json=batch(1)).status_code == 200
    path = (tmp_path / "collector.sqlite3").resolve()

    def read_only_connections() -> None:
        for connection in list(store._pool._connections):
            connection.close()
        store._pool._connections.clear()
        store._pool._local = __import__("threading").local()
        original = store._pool.connection

        def read_only() -> sqlite3.Connection:
            if getattr(store._pool._local, "connection", None) is None:
                fallback = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, isolation_level=None,
                                           check_same_thread=False)
                store._pool._local.connection = fallback
                store._pool._connections.append(fallback)
                store._pool.connection = original  # only the first connection falls back, as the file did
            return original()

        store._pool.connection = read_only

    read_only_connections()
    assert client.get("/v1/ready").status_code == 503
    assert client.get("/v1/ready").json() == {"status": "ready", "rollups_pending": 0}
    read_only_connections()
    refused = client.post("/v1/telemetry", json=batch(1, first=2))
    assert refused.status_code == 503 and "readonly" in refused.json()["detail"]
    assert client.post("/v1/telemetry", json=batch(1, first=2)).status_code == 200
    assert store.count() == 2


def test_a_non_finite_literal_is_named_in_the_refusal(client, store):
    nan = post_raw(client, json.dumps(batch(1)).replace('"latency_us": ', '"latency_us": NaN, "x": ', 1).encode())
    assert nan.status_code == 400 and "NaN" in nan.json()["detail"] and store.count() == 0


ENVELOPE_REFUSALS = {  # body (or dict, sent as JSON), HTTP status
    "not JSON": (b"{not json", 400),
    "a list": (b"[1, 2]", 400),
    "NaN": (b'{"schema_version": 2, "device_id": "x", "dropped": NaN, "records": []}', 400),
    "nested too deep": (b'{"records": ' + b"[" * 40 + b"]" * 40 + b"}", 400),
    "an unknown field": ({**batch(1), "patient": 1}, 422),
    "a missing field": ({key: value for key, value in batch(1).items() if key != "dropped"}, 422),
    "a name as device id": ({**batch(1), "device_id": "John Smith"}, 422),
    "a negative dropped": ({**batch(1), "dropped": -1}, 422),
    "records not a list": ({**batch(1), "records": {}}, 422),
    "a huge integer": ({**batch(1), "dropped": 10**30}, 422),
    "two devices": ({**batch(2), "records": [batch(1)["records"][0],
                                            {**batch(1, first=2)["records"][0], "device_id": "ab" * 16}]}, 422),
    "a sequence twice": ({**batch(2), "records": batch(1)["records"] * 2}, 422),
}


@pytest.mark.parametrize("case", list(ENVELOPE_REFUSALS))
def test_every_envelope_refusal_says_what_was_expected_and_how_to_fix_it(client, store, case):
    body, status = ENVELOPE_REFUSALS[case]
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = client.post("/v1/telemetry", content=content, headers={"Content-Type": "application/json"})
    detail = response.json()["detail"]
    assert response.status_code == status and ". Expected: " in detail and ". Fix: " in detail, detail
    assert "John Smith" not in detail and store.count() == 0


def test_transport_refusals_say_what_was_expected_and_how_to_fix_it(store):
    client = TestClient(create_app(store, CollectorLimits(max_body_bytes=1000, max_records=1)))
    for response, status in ((client.post("/v1/telemetry", content=b"{}", headers={"Content-Type": "text/plain"}),
                              415),
                             (client.post("/v1/telemetry", json=batch(40)), 413),
                             (client.post("/v1/telemetry", content=json.dumps(batch(2)).encode()[:990] + b" " * 20,
                                          headers={"Content-Type": "application/json"}), 413)):
        detail = response.json()["detail"]
        assert response.status_code == status and ". Expected: " in detail and ". Fix: " in detail, detail
