"""Every telemetry store behaviour on both backends: a SQLite file and a real PostgreSQL server started here.

The server is Debian's PostgreSQL, ``initdb``-ed into a temporary folder once per session (installed first when
missing and root); the PostgreSQL cases are skipped only when no binaries can be found or installed. Each test
gets a fresh, empty schema (the only one on its store's search path), so "migrations from empty" is literal.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dashboard.collector.backends import open_store
from dashboard.collector.interface import (
    SequenceConflictError,
    StoreRefusedError,
    StoreSchemaError,
    StoreUnavailableError,
)
from dashboard.collector.migrations import HEAD, MIGRATIONS, VERSION_TABLE, Dialect
from dashboard.collector.postgres_server import free_port
from dashboard.collector.schema import parse_batch
from dashboard.collector.store import SqliteStore
from dashboard.data.files import DataUnavailableError
from dashboard.data.settings import DashboardSettings, DatabaseUrl, parse_database
from dashboard.data.telemetry import TelemetryReader
from runtime.telemetry import TelemetryError, aggregate_schema, pseudonymous_device_id
from tests.dashboard.store_locations import BACKENDS, fresh_location
from tests.runtime import test_telemetry_aggregates as device_aggregates
from tests.runtime.test_telemetry_records import RESULTS, sample_record

psycopg = pytest.importorskip("psycopg")

DEVICES = [pseudonymous_device_id(f"SN-store-{index}", "store-tests") for index in range(3)]
START = datetime(2025, 4, 1, 9, 0, tzinfo=UTC)


# -- the servers and stores ----------------------------------------------------------------------------------


@pytest.fixture
def both(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[Any]]:
    """A SQLite and a PostgreSQL store, both empty."""
    stores = [open_store(fresh_location(backend, request, tmp_path)) for backend in BACKENDS]
    yield stores
    for store in stores:
        store.close()


def raw(location: Path | DatabaseUrl, query: str, parameters: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on the store's database directly (``?`` placeholders, as SQLite)."""
    if isinstance(location, DatabaseUrl):
        with psycopg.connect(location.url, autocommit=True) as connection:
            cursor = connection.execute(query.replace("?", "%s"), parameters)
            return cursor.fetchall() if cursor.description else []
    with sqlite3.connect(location) as connection:
        return connection.execute(query, parameters).fetchall()


def schema_at(location: Path | DatabaseUrl, version: int) -> Dialect:
    """An empty store made as the code of schema ``version`` left it (migrations 1 … ``version``); its dialect."""
    dialect = Dialect.POSTGRES if isinstance(location, DatabaseUrl) else Dialect.SQLITE
    for statement in (VERSION_TABLE[dialect], *(text for migration in MIGRATIONS[:version]
                                                for text in migration.statements(dialect))):
        raw(location, statement)
    for number in range(1, version + 1):
        raw(location, "INSERT INTO schema_version VALUES (?, 'before', ?, 'old')", (number, "2025-01-01T00:00:00Z"))
    return dialect


# -- records -------------------------------------------------------------------------------------------------


def records_of(device_id: str, sequences: range, *, minutes: int = 0) -> list[dict[str, Any]]:
    """Validated records as the collector stores them (one a minute, several task kinds, one unjudged)."""
    kinds = list(RESULTS)
    records = []
    for sequence in sequences:
        kind = kinds[sequence % len(kinds)]
        time = START + timedelta(minutes=minutes + sequence, seconds=sequence % 7, microseconds=sequence)
        record = sample_record(sequence=sequence, device_id=device_id, time=time.isoformat(), task=kind,
                               result=RESULTS[kind], latency_us=300 + sequence * 1.5)
        if sequence % 11 == 0:
            record.update(result=None, quality_flags=["input_not_finite"])
        records.append(record)
    return list(batch_of(device_id, records).records)


def batch_of(device_id: str, records: list[dict[str, Any]], schema_version: int = 2, dropped: int = 0) -> Any:
    envelope = {"schema_version": schema_version, "device_id": device_id, "dropped": dropped, "records": records}
    return parse_batch(json.dumps(envelope).encode())


def fill(store: Any) -> None:
    """Three devices, out-of-order and repeated batches, a schema-1 device and growing dropped counters."""
    store.insert_batch(DEVICES[0], records_of(DEVICES[0], range(1, 41)), dropped=2)
    store.insert_batch(DEVICES[1], records_of(DEVICES[1], range(21, 31)), dropped=0)
    store.insert_batch(DEVICES[1], records_of(DEVICES[1], range(1, 21)), dropped=5)  # an older backlog, later
    store.insert_batch(DEVICES[0], records_of(DEVICES[0], range(35, 51)), dropped=1)  # overlapping resend
    legacy = [{key: value for key, value in record.items() if key not in ("task", "result")}
              | {"predicted_class": "V", "confidence": 0.75} for record in records_of(DEVICES[2], range(1, 6))]
    store.insert_batch(DEVICES[2], list(batch_of(DEVICES[2], legacy, schema_version=1).records))
    store.insert_batch(DEVICES[2], [])  # an empty batch still registers the device


def test_migrations_run_from_an_empty_database_to_the_head(location):
    with open_store(location) as store:
        assert store.schema_version() == HEAD
        versions = raw(location, "SELECT version, description, edgemed_version FROM schema_version ORDER BY version")
        assert [row[0] for row in versions] == [migration.version for migration in MIGRATIONS] == list(
            range(1, HEAD + 1))
        assert [row[1] for row in versions] == [migration.description for migration in MIGRATIONS]
        assert store.count() == 0 and store.devices() == [] and store.aggregates() == [] and store.rollups() == []


def test_running_the_migrations_again_changes_nothing(location):
    with open_store(location) as store:
        fill(store)
        before = raw(location, "SELECT version, applied_at FROM schema_version ORDER BY version")
        devices, count = store.devices(), store.count()
        assert store.migrate() == HEAD
    with open_store(location) as reopened:  # opening migrates again: a no-op at the head
        assert reopened.migrate() == HEAD and reopened.schema_version() == HEAD
        assert raw(location, "SELECT version, applied_at FROM schema_version ORDER BY version") == before
        assert reopened.devices() == devices and reopened.count() == count == 85


def test_a_store_newer_than_the_code_is_refused_with_both_versions(location):
    open_store(location).close()
    raw(location, "INSERT INTO schema_version VALUES (?, 'from the future', ?, '99.0')",
        (HEAD + 4, "2030-01-01T00:00:00Z"))
    for read_only in (False, True):
        with pytest.raises(StoreSchemaError) as refused:
            open_store(location, read_only=read_only)
        assert (refused.value.found, refused.value.supported) == (HEAD + 4, HEAD)
        assert f"schema version {HEAD + 4}" in str(refused.value) and f"version {HEAD}" in str(refused.value)
    with pytest.raises(DataUnavailableError, match=f"schema version {HEAD + 4}"):
        TelemetryReader(location).count()


def test_a_store_at_version_1_is_refused_read_only_and_migrated_by_a_writer(location):
    dialect = Dialect.POSTGRES if isinstance(location, DatabaseUrl) else Dialect.SQLITE
    for statement in (VERSION_TABLE[dialect], *MIGRATIONS[0].statements(dialect)):  # what edgemed wrote at version 1
        raw(location, statement)
    raw(location, "INSERT INTO schema_version VALUES (1, 'records', ?, 'old')", ("2025-01-01T00:00:00Z",))
    time = "2025-04-01T09:00:00.000000Z"
    raw(location, "INSERT INTO telemetry VALUES (?, 1, ?, ?, ?)", (DEVICES[0], time, time, json.dumps({"a": 1})))
    raw(location, "INSERT INTO devices VALUES (?, 3, ?, ?)", (DEVICES[0], time, time))
    with pytest.raises(StoreSchemaError, match=f"schema version 1; this edgemed reads version {HEAD}") as refused:
        open_store(location, read_only=True)  # the dashboard never migrates
    assert "start the collector" in str(refused.value)
    with open_store(location) as writer:  # what the message says: the collector migrates it, 1 → HEAD
        assert writer.schema_version() == HEAD and writer.count() == 1
        (device,) = writer.devices()
        assert (device["records"], device["last_sequence"], device["dropped"], device["last_time"]) == (1, 1, 3, time)
    with open_store(location, read_only=True) as reader:
        assert reader.records() == [{"a": 1}]


def test_a_batch_sent_twice_is_stored_once(location):
    records = records_of(DEVICES[0], range(1, 26))
    with open_store(location) as store:
        first = store.insert_batch(DEVICES[0], records, dropped=3)
        again = store.insert_batch(DEVICES[0], records, dropped=1)
        resent = store.insert_batch(DEVICES[0], records[:5])
        assert first.acknowledged == again.acknowledged == list(range(1, 26))
        assert (first.duplicates, again.duplicates, resent.duplicates) == (0, 25, 5)
        assert store.count() == 25 and [record["sequence"] for record in store.records()] == list(range(1, 26))
        (device,) = store.devices()
        assert (device["records"], device["last_sequence"], device["dropped"]) == (25, 25, 3)
        assert (device["first_time"], device["last_time"]) == (records[0]["time"], records[-1]["time"])


def test_sequences_reused_for_other_records_are_refused_whole_with_where_to_resume(location):
    """A reset outbox numbers from 1 again: its records are not duplicates (they were lost that way). The batch
    is refused whole, nothing of it stored (not even its new sequences), with the highest sequence held."""
    records = records_of(DEVICES[0], range(1, 26))
    with open_store(location) as store:
        store.insert_batch(DEVICES[0], records, dropped=3)
        reset = [dict(record, latency_us=1.0) for record in records[20:]] + records_of(DEVICES[0], [26, 27])
        with pytest.raises(SequenceConflictError) as refused:
            store.insert_batch(DEVICES[0], reset)
        assert refused.value.resume_after == 25 and refused.value.conflicting == [21, 22, 23, 24, 25]
        assert "sequences 21–25" in str(refused.value) and "from 26" in str(refused.value)
        assert store.count() == 25 and store.records()[20]["latency_us"] == records[20]["latency_us"]
        (device,) = store.devices()
        assert (device["records"], device["last_sequence"]) == (25, 25)
        assert store.insert_batch(DEVICES[0], [dict(record, sequence=record["sequence"] + 25)
                                               for record in reset]).acknowledged == list(range(46, 53))


def test_a_batch_that_does_not_fit_is_refused_whole(location):
    records = records_of(DEVICES[0], range(1, 4))
    with open_store(location) as store:
        with pytest.raises(StoreRefusedError):
            store.insert_batch(DEVICES[0], [*records, {"sequence": 4, "device_id": DEVICES[1]}])
        assert store.count() == 0 and store.devices() == []


def test_records_devices_and_counts_are_the_same_on_both_backends(both):
    for store in both:
        fill(store)
    sqlite, postgres = both
    assert sqlite.count() == postgres.count() == 85
    assert sqlite.records() == postgres.records() and len(sqlite.records()) == 85
    since = (START + timedelta(minutes=30)).isoformat()
    assert sqlite.records(DEVICES[0], since=since) == postgres.records(DEVICES[0], since=since) != []
    for options in ({}, {"with_features": True}, {"device_id": DEVICES[1], "until": START + timedelta(minutes=9)},
                    {"since": START + timedelta(minutes=12), "until": START + timedelta(minutes=15)}):
        rows = sqlite.record_rows(**options)
        assert rows == postgres.record_rows(**options) and rows
    clock = ("first_received_at", "last_received_at")  # each collector's own clock
    devices = [{key: value for key, value in device.items() if key not in clock} for device in sqlite.devices()]
    assert devices == [{key: value for key, value in device.items() if key not in clock}
                       for device in postgres.devices()]
    assert [device["device_id"] for device in devices] == sorted(DEVICES)
    by_id = {device["device_id"]: device for device in devices}
    assert (by_id[DEVICES[0]]["records"], by_id[DEVICES[0]]["last_sequence"], by_id[DEVICES[0]]["dropped"]) == (
        50, 50, 2)
    assert (by_id[DEVICES[1]]["records"], by_id[DEVICES[1]]["dropped"]) == (30, 5)
    assert (by_id[DEVICES[2]]["records"], by_id[DEVICES[2]]["last_sequence"]) == (5, 5)
    unjudged = [row for row in sqlite.record_rows() if row[11] == ["input_not_finite"]]
    assert unjudged and all(row[12] is None for row in unjudged)
    schema_1 = sqlite.record_rows(DEVICES[2])
    assert {(row[8], row[9], row[10]) for row in schema_1} == {(None, "V", 0.75)}


def test_the_dashboard_reads_both_backends_alike(both):
    for store in both:
        fill(store)
    sqlite_reader, postgres_reader = (TelemetryReader(store.path if isinstance(store, SqliteStore) else store.url)
                                      for store in both)
    frames = [reader.records(with_features=True) for reader in (sqlite_reader, postgres_reader)]
    assert frames[0].equals(frames[1]) and len(frames[0]) == 85
    assert str(frames[0]["time"].dt.tz) == "UTC" and frames[0]["features"].iloc[0] == {
        "mean": 0.01, "std": 1.0, "peak_to_peak": 3.2}
    devices = [reader.devices().drop(columns=["first_received_at", "last_received_at"])
               for reader in (sqlite_reader, postgres_reader)]
    assert devices[0].equals(devices[1]) and sqlite_reader.count() == postgres_reader.count() == 85
    settings = DashboardSettings.from_environment(DashboardSettings(database=both[1].url).to_environment())
    assert settings.database == both[1].url and TelemetryReader(settings.database).count() == 85


# -- aggregates ----------------------------------------------------------------------------------------------


def aggregate(device: int, minute: int, bundle: str = "ecg-pvc", record_id: str | None = None,
              **payload: Any) -> dict[str, Any]:
    moment = START + timedelta(minutes=minute)
    body = {"count": 60, "latency_sum_us": 18_000.5 + minute, "latency_max_us": 400 + minute,
            "latency_min_us": 250 - minute, "classes": {"N": 55, "V": 5}, "histogram": [1, 2, minute],
            "lead_off": minute == 3, "model": "int8-static"} | payload
    return {"device_id": DEVICES[device], "bundle_id": bundle, "minute": moment.isoformat().replace("+00:00", "Z"),
            "record_id": record_id or f"{device}-{bundle}-{minute}", "payload": body}


AGGREGATES = [aggregate(0, minute) for minute in range(0, 90, 10)] + [
    aggregate(1, 5), aggregate(1, 5, bundle="breast-cancer"), aggregate(1, 65, classes={"N": 58, "V": 1, "F": 1}),
]


def test_aggregates_are_stored_once_and_roll_up_by_hour(location, caplog):
    with open_store(location) as store:
        first = store.insert_aggregates(AGGREGATES)
        assert first.duplicates == 0 and len(first.acknowledged) == len(AGGREGATES) == 12
        again = store.insert_aggregates(AGGREGATES[:5])
        assert (again.duplicates, again.acknowledged) == (5, sorted(item["record_id"] for item in AGGREGATES[:5]))
        with caplog.at_level("WARNING"):
            changed = store.insert_aggregates([{**AGGREGATES[1], "payload": {"count": 1}}])
        assert changed.duplicates == 1 and "different payload" in caplog.text
        restarted = aggregate(0, 10, record_id="0-ecg-pvc-10-restarted", count=7, latency_max_us=999)
        assert store.insert_aggregates([restarted, restarted]).duplicates == 1  # a partial minute, kept beside
        stored = store.aggregates()
        assert len(stored) == 13 and stored[0]["minute"] == "2025-04-01T09:00:00.000000Z"
        assert next(item for item in stored if item["record_id"] == "0-ecg-pvc-10")["payload"]["count"] == 60
        window = store.aggregates(since=START + timedelta(minutes=10), until=START + timedelta(minutes=30),
                                  device_id=DEVICES[0])
        assert [item["record_id"] for item in window] == [
            "0-ecg-pvc-10", "0-ecg-pvc-10-restarted", "0-ecg-pvc-20", "0-ecg-pvc-30"]

        rollups = {(item["device_id"], item["hour"], item["bundle_id"]): item for item in store.rollups()}
        assert len(rollups) == 5
        nine = rollups[(DEVICES[0], "2025-04-01T09:00:00.000000Z", "ecg-pvc")]
        assert nine["aggregates"] == 7  # minutes 0, 10, …, 50 and the restarted stream's part of minute 10
        assert nine["payload"] == {
            "count": 367, "latency_sum_us": 7 * 18_000.5 + 160, "latency_max_us": 999, "latency_min_us": 200,
            "classes": {"N": 385, "V": 35}, "histogram": [7, 14, 160], "lead_off": False, "model": "int8-static"}
        assert rollups[(DEVICES[1], "2025-04-01T10:00:00.000000Z", "ecg-pvc")]["payload"]["classes"] == {
            "N": 58, "V": 1, "F": 1}
        assert [item["hour"] for item in store.rollups(device_id=DEVICES[0], since=START + timedelta(minutes=59))
                ] == ["2025-04-01T10:00:00.000000Z"]

        incremental = store.rollups()
        assert store.rebuild_rollups() == 5 and store.rollups() == incremental
        assert store.rebuild_rollups(since=START, until=START) == 3  # only the 09:00 hour's three rollups
        assert store.prune_aggregates(START + timedelta(hours=1)) == 9
        assert len(store.aggregates()) == 4 and store.rollups() == incremental  # rollups outlive their minutes


def test_concurrent_writers_lose_nothing_and_store_nothing_twice(location):
    """Six threads sharing one store: records of two devices (every batch sent twice) and aggregates that all
    land in the same few rollup rows, in different orders; the counters and rollups come out exact."""
    parts = [[aggregate(device, minute, record_id=f"{device}-{minute}-{part}", count=1)
              for device in (0, 1) for minute in range(part, 120, 6)] for part in range(6)]
    errors: list[BaseException] = []

    def write(part: int) -> None:
        try:
            for number in range(5):
                device = DEVICES[part % 2]
                first = 1 + (part // 2) * 50 + number * 10
                records = records_of(device, range(first, first + 10))
                for _ in range(2):
                    store.insert_batch(device, records)
                chunk = parts[part][number::5]
                store.insert_aggregates(list(reversed(chunk)) if part % 2 else chunk)
        except (TelemetryError, psycopg.Error, sqlite3.Error) as error:  # reported to the main thread
            errors.append(error)

    with open_store(location) as store:
        threads = [threading.Thread(target=write, args=(part,)) for part in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, errors
        assert store.count() == 300 and {device["records"] for device in store.devices()} == {150}
        assert len(store.aggregates()) == 240
        rollups = store.rollups()
        assert sum(item["aggregates"] for item in rollups) == 240
        assert all(item["payload"]["count"] == item["aggregates"] for item in rollups)
        assert store.rebuild_rollups() == len(rollups) == 4 and store.rollups() == rollups


def test_aggregates_and_rollups_are_the_same_on_both_backends(both):
    for store in both:
        store.insert_aggregates(AGGREGATES[::2])
        store.insert_aggregates(AGGREGATES[1::2] + AGGREGATES[:3])
    sqlite, postgres = both
    assert sqlite.aggregates() == postgres.aggregates() and len(sqlite.aggregates()) == 12
    assert sqlite.rollups() == postgres.rollups() and len(sqlite.rollups()) == 5
    readers = [TelemetryReader(store.path if isinstance(store, SqliteStore) else store.url) for store in both]
    assert readers[0].rollups().equals(readers[1].rollups())
    assert readers[0].aggregates(device_id=DEVICES[1]).equals(readers[1].aggregates(device_id=DEVICES[1]))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda item: item.update(minute="2025-04-01T09:00:30Z"), "minute"),
        (lambda item: item.update(minute="2025-04-01T09:00:00"), "minute"),
        (lambda item: item.update(device_id="SN-0001"), "device_id"),
        (lambda item: item.update(record_id=""), "record_id"),
        (lambda item: item.update(payload=[1, 2]), "payload"),
        (lambda item: item.update(payload={"x": float("nan")}), "payload"),
        (lambda item: item.pop("bundle_id"), "bundle_id"),
        (lambda item: item.update(serial="SN-0001"), "serial"),
    ],
)
def test_malformed_aggregates_name_the_field_and_store_nothing(tmp_path, change, field):
    bad = aggregate(0, 1)
    change(bad)
    with SqliteStore(tmp_path / "store.sqlite3") as store:
        with pytest.raises(TelemetryError) as refused:
            store.insert_aggregates([aggregate(0, 0), bad])
        assert refused.value.field == field and store.aggregates() == []


# -- what changes between backends: unreachable servers, legacy files, URLs ----------------------------------


def test_an_unreachable_server_is_unavailable_not_a_crash():
    url = f"postgresql://edgemed@127.0.0.1:{free_port()}/edgemed?connect_timeout=2"
    with pytest.raises(StoreUnavailableError, match="cannot be written") as refused:
        open_store(url)
    assert "PostgreSQL server is running" in str(refused.value)
    with pytest.raises(DataUnavailableError, match="cannot be read"):
        TelemetryReader(url).devices()


def test_a_sqlite_file_from_before_migrations_is_adopted(tmp_path):
    path = tmp_path / "legacy.sqlite3"
    with sqlite3.connect(path) as connection:  # the schema SqliteStore wrote before migrations existed
        connection.executescript("""
            CREATE TABLE telemetry (device_id TEXT NOT NULL, sequence INTEGER NOT NULL, time TEXT NOT NULL,
                received_at TEXT NOT NULL, payload TEXT NOT NULL, UNIQUE (device_id, sequence));
            CREATE INDEX telemetry_by_time ON telemetry (time);
            CREATE TABLE devices (device_id TEXT PRIMARY KEY, dropped INTEGER NOT NULL,
                first_received_at TEXT NOT NULL, last_received_at TEXT NOT NULL);
        """)
        for record in records_of(DEVICES[0], range(1, 8)):
            connection.execute("INSERT INTO telemetry VALUES (?, ?, ?, ?, ?)", (
                DEVICES[0], record["sequence"], record["time"], "2025-04-02T00:00:00.000000Z", json.dumps(record)))
        connection.execute("INSERT INTO devices VALUES (?, 4, ?, ?)", (DEVICES[0], "2025-04-02T00:00:00.000000Z",
                                                                         "2025-04-02T00:00:00.000000Z"))
    with pytest.raises(DataUnavailableError, match="schema version 0"):
        TelemetryReader(path).devices()  # the dashboard never migrates
    with SqliteStore(path) as store:
        (device,) = store.devices()
        assert (device["records"], device["last_sequence"], device["dropped"]) == (7, 7, 4)
        assert device["first_time"] == records_of(DEVICES[0], range(1, 2))[0]["time"] and store.count() == 7
        store.insert_batch(DEVICES[0], records_of(DEVICES[0], range(5, 10)))
        assert store.count() == 9 and store.devices()[0]["last_sequence"] == 9


def test_database_urls_are_told_apart_and_print_without_their_password(tmp_path):
    url = DatabaseUrl("postgresql://fleet:s3cret@db.example:5432/edgemed?password=s3cret&sslmode=require")
    assert "s3cret" not in str(url) and "s3cret" not in repr(url) and "s3cret" not in f"{url}"
    assert str(url) == "postgresql://fleet:***@db.example:5432/edgemed?password=***&sslmode=require"
    assert parse_database("telemetry.sqlite3") == Path("telemetry.sqlite3")
    assert parse_database(url.url) == url and isinstance(parse_database("postgres://x/y"), DatabaseUrl)
    assert DashboardSettings(database=url).to_environment()["EDGEMED_DASHBOARD_DATABASE"] == url.url
    with pytest.raises(ValueError, match="postgresql://"):
        DatabaseUrl("mysql://x/y")


def test_the_runtime_aggregates_roll_up_as_the_runtime_merges_them(location):
    """The device format (schema 3, runtime/telemetry/aggregates.py) stored whole as the payload: the generic rule
    gives the runtime's ``merge_aggregates`` in every count and histogram, and that function plugs in as is."""
    schema = aggregate_schema
    device_minutes = device_aggregates.minutes()
    theirs = schema.merge_aggregates(schema.merge_aggregates(device_minutes[0], device_minutes[1]), device_minutes[2])
    stored = [{key: record[key] for key in ("device_id", "bundle_id", "minute", "record_id")} | {"payload": record}
              for record in device_minutes]
    with open_store(location) as store:
        assert store.insert_aggregates(stored).duplicates == 0 and store.insert_aggregates(stored).duplicates == 3
        (hour,) = store.rollups()
        assert hour["aggregates"] == 3 and hour["payload"]["records"] == theirs["records"] == 200
        assert {key for key in theirs if hour["payload"].get(key) != theirs[key]} == {"record_id", "minute"}
    with open_store(location, merge=schema.merge_aggregates) as store:
        assert store.rebuild_rollups() == 1 and store.rollups()[0]["payload"] == theirs


def test_deferred_rollups_queue_in_the_insert_and_fold_once_on_both_backends(location):
    """A store with deferred rollups (the collector's) queues each new aggregate in the insert's transaction and
    folds the queue later (``roll_up_pending``): the same rollups as inline, each aggregate folded once; a resend
    queues nothing; pruning and rebuilding clear what they cover; the device's row is kept as for records."""
    from dashboard.collector.aggregates import merge_device_aggregates
    from dashboard.collector.interface import RollupMode

    device_minutes = device_aggregates.minutes()
    device = device_minutes[0]["device_id"]
    stored = [{key: record[key] for key in ("device_id", "bundle_id", "minute", "record_id")} | {"payload": record}
              for record in device_minutes]
    with open_store(location, merge=merge_device_aggregates, rollups=RollupMode.DEFERRED) as store:
        assert store.insert_aggregates(stored[:2], device_id=device, dropped=3).duplicates == 0
        assert store.insert_aggregates(stored, device_id=device, dropped=1).duplicates == 2
        assert store.rollups() == [] and store.pending_rollups() == 3
        assert store.roll_up_pending(limit=2) == 2 and store.roll_up_pending() == 1 and store.roll_up_pending() == 0
        (hour,) = store.rollups()
        from runtime.telemetry.aggregate_schema import fold_aggregates

        assert hour["aggregates"] == 3 and hour["payload"] == fold_aggregates(device_minutes)
        (row,) = store.devices()
        assert (row["device_id"], row["dropped"], row["records"]) == (device, 3, 0)
        assert store.count() == 0  # per-event records only
        store.insert_aggregates([dict(stored[0], record_id="restarted-stream-part", payload=dict(
            device_minutes[0], record_id="f" * 32))])
        assert store.pending_rollups() == 1 and store.rebuild_rollups() == 1 and store.pending_rollups() == 0
        assert store.rollups()[0]["aggregates"] == 4
        store.insert_aggregates([dict(stored[1], record_id="another-part")])
        assert store.prune_aggregates(START + timedelta(days=400)) == 5 and store.pending_rollups() == 0


def plain(value: Any) -> Any:
    """A compact payload's values with ``SparseBins`` as lists, so payloads compare with ``==``."""
    from dashboard.monitoring.aggregate_window import SparseBins

    if isinstance(value, SparseBins):
        return (value.indices.tolist(), value.counts.tolist())
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    return value


def assert_same_frames(found: Any, expected: Any) -> None:
    assert found.drop(columns="payload").equals(expected.drop(columns="payload"))
    assert [plain(payload) for payload in found["payload"]] == [plain(payload) for payload in expected["payload"]]


def test_reads_without_features_give_what_json_loads_gives_less_the_features(location):
    """Payloads are decoded in C (msgspec) from their stored text: with features, exactly ``json.loads``'s value;
    without, the same less its ``features`` member (every other member kept, known to the device format or not); and
    the dashboard's aggregate frames are the ones ``json.loads`` of the stored text gives, on both backends."""
    from dashboard.data.telemetry import aggregate_rows

    device_minutes = device_aggregates.minutes()
    stored = [{key: record[key] for key in ("device_id", "bundle_id", "minute", "record_id")}
              | {"payload": record | {"not_in_the_format": [1, {"features": 2}], "text": "é\\\"\u2028"}}
              for record in device_minutes]
    with open_store(location) as store:
        store.insert_aggregates(stored + AGGREGATES[:2])  # AGGREGATES: objects, not device aggregates
        texts = {(device, record_id): json.loads(text) for device, record_id, text in raw(
            location, "SELECT device_id, record_id, CAST(payload AS TEXT) FROM aggregates")}
        rollup_texts = {(device, bundle): json.loads(text) | ({} if features is None else
                                                             {"features": json.loads(features)})
                        for device, bundle, text, features in raw(
            location, "SELECT device_id, bundle_id, CAST(payload AS TEXT), CAST(features AS TEXT) "
                      "FROM aggregate_rollups")}
        assert all("features" not in json.loads(text) for (text,) in raw(  # migration 5: apart
            location, "SELECT CAST(payload AS TEXT) FROM aggregate_rollups"))
        whole, lean = store.aggregates(), store.aggregates(features=False)
        assert [row["payload"] for row in whole] == [texts[row["device_id"], row["record_id"]] for row in whole]
        assert len(whole) == 5 and [row["payload"] for row in lean] == [
            {key: value for key, value in texts[row["device_id"], row["record_id"]].items() if key != "features"}
            for row in lean]
        assert [{**row, "payload": None} for row in lean] == [{**row, "payload": None} for row in whole]
        device_rows = [row["payload"] for row in lean if "kind" in row["payload"]]
        assert len(device_rows) == 3 and all("features" not in payload for payload in device_rows)
        assert device_rows[0]["not_in_the_format"] == [1, {"features": 2}]  # only the top-level member goes
        hours, lean_hours = store.rollups(), store.rollups(features=False)
        assert [row["payload"] for row in hours] == [rollup_texts[row["device_id"], row["bundle_id"]] for row in hours]
        assert [row["payload"] for row in lean_hours] == [{key: value for key, value in row["payload"].items()
                                                            if key != "features"} for row in hours]
    reader = TelemetryReader(location)
    for features in (True, False):
        expected_minutes = aggregate_rows([{**row, "payload": texts[row["device_id"], row["record_id"]]}
                                           for row in whole], "minute", None, features=features)
        assert len(expected_minutes) == 3
        assert_same_frames(reader.aggregate_frame(features=features), expected_minutes)
        expected_hours = aggregate_rows([{**row, "payload": rollup_texts[row["device_id"], row["bundle_id"]]}
                                         for row in hours], "hour", 3600, features=features)
        assert len(expected_hours) == 1
        assert_same_frames(reader.rollup_frame(features=features), expected_hours)
    assert reader.aggregate_frame(features=False)["payload"][0]["features"] == {}


def test_rollups_of_a_version_4_store_read_back_whole_and_fold_on_after_migration_5(location, tmp_path):
    """Migration 5 moves no data: a rollup written at version 4 (features inside its payload) reads back as it was,
    whole or without features; folding more minutes into it stores the features apart, with the same result as a
    store that was at version 5 all along. Migration 6 (PostgreSQL's payloads json → text, a table rewrite) keeps
    every row: the aggregates and the rollup written at version 4 read back the same after it. Migration 7 queues
    the day of every stored rollup for its daily rollup."""
    from dashboard.collector.aggregates import fold_rollups

    dialect = schema_at(location, 4)
    device_minutes = device_aggregates.minutes()
    stored = [{key: record[key] for key in ("device_id", "bundle_id", "minute", "record_id")} | {"payload": record}
              for record in device_minutes]
    ((device, hour, bundle), (count, old_payload)), = fold_rollups(stored[:2]).items()
    for item in stored[:2]:
        raw(location, "INSERT INTO aggregates VALUES (?, ?, ?, ?, ?, ?)", (
            item["device_id"], item["minute"].replace("Z", ".000000Z"), item["bundle_id"], item["record_id"],
            "2025-01-01T00:00:00.000000Z", json.dumps(item["payload"])))
    raw(location, "INSERT INTO aggregate_rollups VALUES (?, ?, ?, ?, ?, ?)",
        (device, hour, bundle, count, json.dumps(old_payload), "2025-01-01T00:00:00Z"))
    with open_store(location) as store:  # migrates 4 → 9
        assert store.schema_version() == HEAD == 9
        assert store.day_rollups().pending == [(device, f"{hour[:10]}T00:00:00.000000Z", bundle)]  # 7 queued it
        assert [row["payload"] for row in store.aggregates()] == [item["payload"] for item in stored[:2]]
        (whole,) = store.rollups()
        assert whole["payload"] == old_payload and "features" in old_payload
        assert store.rollups(features=False)[0]["payload"] == {
            key: value for key, value in old_payload.items() if key != "features"}
        store.insert_aggregates(stored[2:])  # folds into the version-4 row
        (folded,) = store.rollups()
    with open_store(tmp_path / "at-version-5.sqlite3") as reference:
        reference.insert_aggregates(stored)
        (expected,) = reference.rollups()
    assert folded["aggregates"] == expected["aggregates"] == 3 and folded["payload"] == expected["payload"]
    ((text, features),) = raw(location, "SELECT CAST(payload AS TEXT), CAST(features AS TEXT) FROM aggregate_rollups")
    assert "features" not in json.loads(text) and json.loads(features) == expected["payload"]["features"]
    if dialect is Dialect.POSTGRES:  # stored as the collector's own text (migration 6), not re-parsed as json
        types = raw(location, "SELECT table_name, column_name, data_type FROM information_schema.columns WHERE "
                              "table_schema = current_schema() AND table_name IN ('aggregates', 'aggregate_rollups') "
                              "AND column_name IN ('payload', 'features') ORDER BY 1, 2")
        assert [tuple(row) for row in types] == [("aggregate_rollups", "features", "text"),
                                                 ("aggregate_rollups", "payload", "text"),
                                                 ("aggregates", "payload", "text")]


def test_older_devices_records_fold_alike_with_or_without_their_features(location):
    """A page without drift reads older devices' records without their features (``read_block``): the same folded
    minute aggregates, less only the feature histograms it drops anyway — on both backends, whose record rows
    (JSON values decoded in C on PostgreSQL) are the same
    (``test_records_devices_and_counts_are_the_same_on_both_backends``)."""
    from dashboard.data.windows import Block, Resolution, read_block

    with open_store(location) as store:
        fill(store)
    reader = TelemetryReader(location)
    block = Block(Resolution.RECORDS, pd_timestamp(START), pd_timestamp(START + timedelta(hours=2)), True)
    lean, whole = (read_block(reader, block, None, features) for features in (False, True))
    assert len(lean) > 40 and any(payload["features"] for payload in whole["payload"])
    assert_same_frames(lean, whole.assign(payload=[{**payload, "features": {}} for payload in whole["payload"]]))
    with open_store(location, read_only=True) as store:
        rows = store.record_rows(with_features=True)
    assert len(rows) == 85 and rows[0][-1] == {"mean": 0.01, "std": 1.0, "peak_to_peak": 3.2}


def pd_timestamp(moment: datetime) -> Any:
    import pandas as pd

    return pd.Timestamp(moment)


def test_a_payload_decodes_as_json_loads_gives_it_in_the_device_format_or_not():
    """``decode_payload``: the device's format in one call, anything else member by member, never a member lost."""
    from dashboard.collector.interface import decode_payload

    device_minute = device_aggregates.minutes()[0]
    for payload in (device_minute | {"sequence": 7}, device_minute | {"extra": {"features": 1}},
                    {key: value for key, value in device_minute.items() if key != "features"}, {"a": [1.5, None]}):
        text = json.dumps(payload)
        assert decode_payload(text) == json.loads(text) == payload
        assert decode_payload(text, features=False) == {key: value for key, value in payload.items()
                                                        if key != "features"}
    assert decode_payload("[1, 2]", features=False) == [1, 2] and decode_payload('"x"', features=False) == "x"


def test_simulated_devices_are_marked_once_and_read_alike_on_both_backends(both):
    """A simulator's devices (its uploads said so) are kept apart, idempotently, so the dashboard labels them."""
    for store in both:
        assert store.simulated_devices() == []
        for device_id in (DEVICES[2], DEVICES[0], DEVICES[2]):
            store.mark_simulated(device_id)
        assert store.simulated_devices() == sorted([DEVICES[0], DEVICES[2]])
