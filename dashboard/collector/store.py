"""Where the collector keeps telemetry by default: ``TelemetryStore`` in one SQLite file (WAL).

Why SQLite in WAL mode by default: the collector is one process on one machine, the data is
append-mostly, and the dashboard reads while the collector writes. In WAL mode readers never
block the writer and the writer never blocks readers, each batch is one ACID transaction (so a
batch is stored whole or not at all), ``synchronous=FULL`` makes a batch durable before it is
acknowledged (the device deletes what we acknowledge), and there is no server to run or secure.
Its limit is one writer at a time: writes are serialised (here by a lock plus SQLite's busy
timeout), which is ample for thousands of records a second. A fleet that outgrows that uses
``PostgresStore`` (``postgres_store.py``): the same interface, schema versions and results.

Idempotency: ``INSERT … ON CONFLICT (device_id, sequence) DO NOTHING`` inside one transaction per
batch, ``max`` for the dropped counter. The schema comes from ``migrations.py``, applied on open;
``read_only=True`` (the dashboard) opens with ``mode=ro``, never creates or migrates, and refuses a
store at another schema version.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from dashboard.collector.aggregates import (
    Merge,
    checked_with_text,
    fold_rollups,
    hour_of,
    hour_window,
    iter_rollups,
    merge_payloads,
    warn_changed,
)
from dashboard.collector.days import (
    DEFAULT_DAY_BATCH,
    DayRollups,
    closed_before,
    day_keys,
    day_rollups_query,
    fold_day_parts,
)
from dashboard.collector.interface import (
    DEFAULT_ROLLUP_BATCH,
    DEVICE_COLUMNS,
    RECORD_COLUMNS,
    AggregateReceipt,
    Receipt,
    RollupMode,
    SequenceConflictError,
    StoreRefusedError,
    StoreSchemaError,
    StoreUnavailableError,
    TelemetryStore,
    aggregate_device_row,
    aware,
    canonical_json,
    check_version,
    checked_rows,
    conditions,
    day_rollups_of,
    decode_payload,
    highest_sequence_query,
    with_features,
    without_features,
)
from dashboard.collector.migrations import HEAD, VERSION_TABLE, Dialect, pending
from runtime.telemetry.records import utc_timestamp
from runtime.telemetry.sqlite_pool import ConnectionPool, Leases
from runtime.version import EDGEMED_VERSION

__all__ = ["DEVICE_COLUMNS", "RECORD_COLUMNS", "AggregateReceipt", "Receipt", "SqliteStore", "StoreRefusedError",
           "StoreSchemaError", "StoreUnavailableError", "TelemetryStore"]

logger = logging.getLogger(__name__)

READ_TIMEOUT_S = 5.0  # a read-only connection waits this long for a checkpoint before giving up
_DEVICES_QUERY = f"SELECT {', '.join(DEVICE_COLUMNS)} FROM devices ORDER BY device_id"
_RECORD_EXPRESSIONS = (  # RECORD_COLUMNS after device_id, sequence, time; objects as JSON text (decoded below)
    "payload ->> '$.bundle_id'", "payload ->> '$.bundle_sha256'", "payload ->> '$.variant'",
    "payload ->> '$.provider'", "payload ->> '$.latency_us'", "payload ->> '$.task'",
    "COALESCE(payload ->> '$.result.class', payload ->> '$.predicted_class')",
    "COALESCE(payload ->> '$.result.confidence', payload ->> '$.confidence')",
    "payload -> '$.quality_flags'", "payload -> '$.result'",
)
_HIGHEST_SEQUENCE = highest_sequence_query("?")
_DEVICE_UPSERT = (
    "INSERT INTO devices (device_id, dropped, first_received_at, last_received_at, records, last_sequence, "
    "first_time, last_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device_id) DO UPDATE SET "
    "dropped = max(devices.dropped, excluded.dropped), last_received_at = excluded.last_received_at, "
    "records = devices.records + excluded.records, "
    # max/min of two values either of which may be NULL (a device's first batch may be empty or all resends)
    "last_sequence = max(coalesce(devices.last_sequence, excluded.last_sequence), "
    "coalesce(excluded.last_sequence, devices.last_sequence)), "
    "first_time = min(coalesce(devices.first_time, excluded.first_time), "
    "coalesce(excluded.first_time, devices.first_time)), "
    "last_time = max(coalesce(devices.last_time, excluded.last_time), coalesce(excluded.last_time, devices.last_time))"
)
_AGGREGATE_KEY = ("device_id", "minute", "bundle_id", "record_id")
_ROLLUP_UPSERT = (  # payload and features apart (migration 5: ``without_features``)
    "INSERT INTO aggregate_rollups (device_id, hour, bundle_id, aggregates, payload, features, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device_id, hour, bundle_id) DO UPDATE SET "
    "aggregates = excluded.aggregates, payload = excluded.payload, features = excluded.features, "
    "updated_at = excluded.updated_at"
)

_DAY_INSERT = (  # after the day's rows are deleted: its parts afresh
    "INSERT INTO day_rollups (device_id, day, bundle_id, part, hours, aggregates, payload, features, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_QUEUE_DAYS = "INSERT INTO day_queue (device_id, day, bundle_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"


def _text(moment: datetime | str | None, name: str) -> str | None:
    return None if moment is None else utc_timestamp(aware(moment, name))


def _decoded(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _rollup_row(key: tuple[str, str, str], count: int, payload: Any, now: str) -> tuple[Any, ...]:
    """``_ROLLUP_UPSERT``'s parameters: the payload and its features as canonical JSON, apart."""
    lean, features = without_features(payload)
    return (*key, count, canonical_json(lean), None if features is None else canonical_json(features), now)


class _ReadOnlyConnections:
    """One ``mode=ro`` connection per thread to an existing file: it can never create or write the store. ``close``
    waits for the reads other threads are running (``Leases``), as ``ConnectionPool.close`` does."""

    def __init__(self, path: Path) -> None:
        self.uri = f"{path.resolve().as_uri()}?mode=ro"
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._leases = Leases(StoreUnavailableError, f"telemetry store {path}")

    @contextmanager
    def lease(self) -> Iterator[sqlite3.Connection]:
        with self._leases.hold():
            yield self._connection()

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.uri, uri=True, timeout=READ_TIMEOUT_S, isolation_level=None,
                                         check_same_thread=False)
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    def close(self) -> None:
        idle = self._leases.close()
        with self._lock:
            connections, self._connections = self._connections, []
        if not idle:  # a read still running after CLOSE_WAIT_S: its connection is left to close with its thread
            own = getattr(self._local, "connection", None)
            connections = [connection for connection in connections if connection is own]
        for connection in connections:
            connection.close()


def _differs(stored: str, payload: str) -> bool:
    """Whether a stored record is another record than ``payload`` (canonical text): by value, as PostgreSQL's jsonb
    compares, since a store from before migrations holds payloads in another key order."""
    return stored != payload and json.loads(stored) != json.loads(payload)


class _RollbackRequestedError(Exception):
    """Raised inside a write to roll it back on purpose (``check_writable``, a batch reusing sequences)."""


class SqliteStore:
    """``TelemetryStore`` in one SQLite file (WAL); safe to share between threads and processes."""

    def __init__(self, path: Path | str, *, read_only: bool = False, merge: Merge = merge_payloads,
                 rollups: RollupMode | str = RollupMode.INLINE) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self.read_only = read_only
        self._merge = merge  # how aggregates fold into rollups
        self.rollup_mode = RollupMode(rollups)  # inline: in the insert's transaction; deferred: roll_up_pending
        self._write_lock = threading.Lock()  # one writer per process; other processes wait in SQLite
        if read_only and not self.path.is_file():
            raise StoreUnavailableError(f"no telemetry database at {self.path}",
                                        fix="start the collector (edgemed collector) or pass --database")
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._pool: ConnectionPool | _ReadOnlyConnections = (
            _ReadOnlyConnections(self.path) if read_only else ConnectionPool(self.path, "telemetry store"))
        try:
            if read_only:
                self._check_readable()
            else:
                self.migrate()
        except BaseException:
            self._pool.close()
            raise

    # -- connections, errors, schema ---------------------------------------------------------------------------

    @contextmanager
    def _database(self, action: str) -> Iterator[None]:
        """SQLite's errors as ``StoreUnavailableError`` (locked past the busy timeout, disk full or read-only,
        not a database)."""
        try:
            yield
        except sqlite3.DatabaseError as error:
            if type(error) not in (sqlite3.OperationalError, sqlite3.DatabaseError):
                raise  # IntegrityError, ProgrammingError, …: a bug, not an outage
            raise StoreUnavailableError(f"the telemetry database {self.path} cannot be {action} ({error})",
                                        fix="check the file, its folder and the disk") from error

    def _read(self, query: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._database("read"), self._pool.lease() as connection:
            return connection.execute(query, parameters).fetchall()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it commits, or none of it (the exception propagates)."""
        if self.read_only:
            raise StoreUnavailableError(f"the telemetry store {self.path} is open read-only",
                                        fix="open it without read_only to write")
        with contextlib.suppress(_RollbackRequestedError), self._database("written"), self._write_lock, \
                self._pool.transaction() as connection:
            yield connection

    @staticmethod
    def _tables(connection: sqlite3.Connection) -> set[str]:
        return {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def _version_of(self, connection: sqlite3.Connection, tables: set[str] | None = None) -> int:
        if "schema_version" not in (self._tables(connection) if tables is None else tables):
            return 0
        return int(connection.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0])

    def _check_readable(self) -> None:
        with self._database("read"), self._pool.lease() as connection:
            tables = self._tables(connection)
            found = self._version_of(connection, tables)
        if found == 0 and "telemetry" not in tables:
            raise StoreUnavailableError(f"the telemetry database {self.path} has no telemetry tables yet",
                                        fix="start the collector (edgemed collector) on it")
        check_version(self.location, found, read_only=True)

    def migrate(self) -> int:
        """Apply the pending migrations in one transaction; the schema version afterwards (``HEAD``)."""
        with self._write() as connection:
            connection.execute(VERSION_TABLE[Dialect.SQLITE])
            found = self._version_of(connection)
            check_version(self.location, found)
            for migration in pending(found):
                for statement in migration.sqlite:
                    connection.execute(statement)
                connection.execute("INSERT INTO schema_version VALUES (?, ?, ?, ?)",
                                   (migration.version, migration.description, utc_timestamp(), EDGEMED_VERSION))
                logger.info("telemetry store %s: migrated to schema version %d (%s)", self.path, migration.version,
                            migration.description)
        return HEAD

    def schema_version(self) -> int:
        with self._database("read"), self._pool.lease() as connection:
            return self._version_of(connection)

    # -- records -----------------------------------------------------------------------------------------------

    def insert_batch(self, device_id: str, records: Sequence[Mapping[str, Any]], dropped: int = 0) -> Receipt:
        rows = checked_rows(device_id, records)
        received_at = utc_timestamp()
        inserted: list[tuple[int, str]] = []
        changed: list[int] = []  # sequences stored with other content: a reset outbox (the batch is refused)
        with self._write() as connection:
            for sequence, time, payload in rows:
                if connection.execute(
                    "INSERT INTO telemetry (device_id, sequence, time, received_at, payload) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (device_id, sequence) DO NOTHING",
                    (device_id, sequence, time, received_at, payload),
                ).rowcount:
                    inserted.append((sequence, time))
                elif _differs(connection.execute("SELECT payload FROM telemetry WHERE device_id = ? AND sequence = ?",
                                                 (device_id, sequence)).fetchone()[0], payload):
                    changed.append(sequence)
            if changed:  # a reset outbox: nothing of the batch is stored (rolled back), then refused below
                raise _RollbackRequestedError
            connection.execute(_DEVICE_UPSERT, (
                device_id, dropped, received_at, received_at, len(inserted),
                max((sequence for sequence, _ in inserted), default=None),
                min((time for _, time in inserted), default=None), max((time for _, time in inserted), default=None),
            ))
        if changed:
            resume_after = self._read(_HIGHEST_SEQUENCE, (device_id, device_id))[0][0]
            raise SequenceConflictError(device_id, changed, int(resume_after))
        return Receipt(sorted(sequence for sequence, _, _ in rows), len(rows) - len(inserted))

    def _record_where(self, device_id: str | None, since: datetime | str | None,
                      until: datetime | str | None) -> tuple[str, list[Any]]:
        return conditions((("device_id =", device_id), ("time >=", _text(since, "since")),
                           ("time <=", _text(until, "until"))), "?")

    def records(self, device_id: str | None = None, since: datetime | str | None = None) -> list[dict[str, Any]]:
        where, parameters = self._record_where(device_id, since, None)
        rows = self._read(f"SELECT payload FROM telemetry{where} ORDER BY time, device_id, sequence", parameters)
        return [json.loads(payload) for (payload,) in rows]

    def record_rows(self, device_id: str | None = None, since: datetime | str | None = None,
                    until: datetime | str | None = None, with_features: bool = False) -> list[tuple[Any, ...]]:
        where, parameters = self._record_where(device_id, since, until)
        features = ", payload -> '$.features'" if with_features else ""
        rows = self._read(f"SELECT device_id, sequence, time, {', '.join(_RECORD_EXPRESSIONS)}{features} "
                          f"FROM telemetry{where} ORDER BY time, device_id, sequence", parameters)
        objects = len(RECORD_COLUMNS) - 2  # quality_flags, result (and features) are JSON text
        return [(*row[:objects], *map(_decoded, row[objects:])) for row in rows]

    def devices(self) -> list[dict[str, Any]]:
        return [dict(zip(DEVICE_COLUMNS, row, strict=True)) for row in self._read(_DEVICES_QUERY)]

    def count(self) -> int:
        return int(self._read("SELECT COALESCE(SUM(records), 0) FROM devices")[0][0])  # O(devices): kept on insert

    def mark_simulated(self, device_id: str) -> None:
        with self._write() as connection:
            connection.execute("INSERT OR IGNORE INTO simulated_devices (device_id, marked_at) VALUES (?, ?)",
                               (device_id, utc_timestamp()))

    def simulated_devices(self) -> list[str]:
        return [device_id for (device_id,) in self._read("SELECT device_id FROM simulated_devices ORDER BY 1")]

    # -- aggregates --------------------------------------------------------------------------------------------

    def insert_aggregates(self, aggregates: Sequence[Mapping[str, Any]], *, device_id: str | None = None,
                          dropped: int | None = None) -> AggregateReceipt:
        encoded = [checked_with_text(aggregate) for aggregate in aggregates]
        checked = [aggregate for aggregate, _ in encoded]
        if device_id is not None:
            aggregate_device_row(device_id, checked, dropped)  # every aggregate the device's
        received_at = utc_timestamp()
        new: list[dict[str, Any]] = []
        changed: list[str] = []  # resent record_ids whose payload differs: one WARNING per batch
        with self._write() as connection:
            for aggregate, payload in encoded:
                key = (aggregate["device_id"], aggregate["minute"], aggregate["bundle_id"], aggregate["record_id"])
                if connection.execute(
                    "INSERT INTO aggregates (device_id, minute, bundle_id, record_id, received_at, payload) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (device_id, minute, bundle_id, record_id) DO NOTHING",
                    (*key, received_at, payload),
                ).rowcount:
                    new.append(aggregate)
                elif connection.execute("SELECT payload FROM aggregates WHERE device_id = ? AND minute = ? AND "
                                        "bundle_id = ? AND record_id = ?", key).fetchone()[0] != payload:
                    changed.append(aggregate["record_id"])
            if self.rollup_mode is RollupMode.DEFERRED:
                connection.executemany("INSERT INTO rollup_queue (device_id, minute, bundle_id, record_id) "
                                       "VALUES (?, ?, ?, ?)", [tuple(item[key] for key in _AGGREGATE_KEY)
                                                               for item in new])
            else:
                self._roll_up(connection, new, received_at)
            if device_id is not None:
                dropped_count, last_sequence, first, last = aggregate_device_row(device_id, new, dropped)
                last = None if last is None else min(utc_timestamp(last), received_at)  # a minute flushed early
                connection.execute(_DEVICE_UPSERT, (device_id, dropped_count, received_at, received_at, 0,
                                                    last_sequence, None if first is None else utc_timestamp(first),
                                                    last))
        warn_changed(logger, changed)
        return AggregateReceipt(sorted(aggregate["record_id"] for aggregate in checked), len(checked) - len(new))

    def _roll_up(self, connection: sqlite3.Connection, new: list[dict[str, Any]], now: str,
                 decode: Callable[[Any], Mapping[str, Any]] | None = None) -> None:
        """Fold ``new`` aggregates (payloads as ``decode`` reads them; default: already objects) into their rollups
        in this transaction, a rollup at a time (``iter_rollups``)."""
        keys = sorted({(item["device_id"], hour_of(item["minute"]), item["bundle_id"]) for item in new})
        stored = {}
        for key in keys:
            row = connection.execute("SELECT aggregates, payload, features FROM aggregate_rollups WHERE "
                                     "device_id = ? AND hour = ? AND bundle_id = ?", key).fetchone()
            if row is not None:
                stored[key] = (row[0], (row[1], row[2]))
        for key, (count, payload) in iter_rollups(new, self._merge, stored, decode=decode,
                                                  decode_stored=lambda columns: with_features(*columns)):
            connection.execute(_ROLLUP_UPSERT, _rollup_row(key, count, payload, now))
        connection.executemany(_QUEUE_DAYS, day_keys(keys))

    def roll_up_pending(self, limit: int = DEFAULT_ROLLUP_BATCH) -> int:
        """Fold up to ``limit`` queued aggregates (deferred rollups) into their rollups, oldest minutes first, in one
        transaction with their removal from the queue (each is folded exactly once); how many were folded."""
        with self._write() as connection:
            keys = connection.execute("SELECT device_id, minute, bundle_id, record_id FROM rollup_queue "
                                      "ORDER BY minute, device_id, bundle_id, record_id LIMIT ?", (limit,)).fetchall()
            new = []
            for key in keys:
                row = connection.execute("SELECT payload FROM aggregates WHERE device_id = ? AND minute = ? AND "
                                         "bundle_id = ? AND record_id = ?", key).fetchone()
                if row is not None:  # else pruned meanwhile
                    new.append({**dict(zip(_AGGREGATE_KEY, key, strict=True)), "payload": row[0]})
            connection.executemany("DELETE FROM rollup_queue WHERE device_id = ? AND minute = ? AND bundle_id = ? "
                                   "AND record_id = ?", keys)
            self._roll_up(connection, new, utc_timestamp(), json.loads)  # decoded as each rollup is folded
        return len(keys)

    def pending_rollups(self) -> int:
        """Aggregates stored but not yet in their rollups (deferred mode)."""
        return int(self._read("SELECT COUNT(*) FROM rollup_queue")[0][0])

    def check_writable(self) -> None:
        """A write that changes nothing, rolled back: refused as an upload's would be (read-only file, the file
        removed or replaced, a full disk)."""
        with self._write() as connection:
            connection.execute("UPDATE schema_version SET version = version WHERE 0")
            self._pool.check_identity()  # the rollback below skips the commit's own check
            raise _RollbackRequestedError

    def roll_up_days(self, limit: int = DEFAULT_DAY_BATCH, now: datetime | None = None) -> int:
        """Fold up to ``limit`` queued days that have ended (``days.closed_before``) from their hourly rollups, in one
        transaction with their removal from the queue; how many days were taken (0: none ready)."""
        with self._write() as connection:
            keys = connection.execute("SELECT device_id, day, bundle_id FROM day_queue WHERE day < ? "
                                      "ORDER BY device_id, bundle_id, day LIMIT ?",
                                      (utc_timestamp(closed_before(now)), limit)).fetchall()
            written = utc_timestamp()
            for device, day, bundle in keys:
                following = utc_timestamp(datetime.fromisoformat(day) + timedelta(days=1))
                hours = [(count, with_features(payload, features)) for count, payload, features in connection.execute(
                    "SELECT aggregates, payload, features FROM aggregate_rollups WHERE device_id = ? AND bundle_id = ? "
                    "AND hour >= ? AND hour < ? ORDER BY hour", (device, bundle, day, following))]
                connection.execute("DELETE FROM day_rollups WHERE device_id = ? AND day = ? AND bundle_id = ?",
                                   (device, day, bundle))  # none left when its hours are gone (rebuilt away)
                for part, (count, merged, payload) in enumerate(fold_day_parts(hours, self._merge)):
                    row = _rollup_row((device, day, bundle), merged, payload, written)  # key, aggregates, texts, time
                    connection.execute(_DAY_INSERT, (*row[:3], part, count, *row[3:]))
            connection.executemany("DELETE FROM day_queue WHERE device_id = ? AND day = ? AND bundle_id = ?", keys)
        return len(keys)

    def pending_days(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM day_queue")[0][0])

    def day_rollups(self, since: datetime | str | None = None, until: datetime | str | None = None,
                    device_id: str | None = None, *, features: bool = True) -> DayRollups:
        """Daily rollups with ``since`` ≤ day start ≤ ``until`` that are current, and the keys of the days in that
        range still queued (read from their hours instead), in one statement: one snapshot of both."""
        where, parameters = conditions((("device_id =", device_id), ("day >=", _text(since, "since")),
                                        ("day <=", _text(until, "until"))), "?")
        rows = self._read(day_rollups_query(where, "day", features), [*parameters, *parameters])
        return day_rollups_of(rows, features)

    def aggregates(self, since: datetime | str | None = None, until: datetime | str | None = None,
                   device_id: str | None = None, *, features: bool = True,
                   received_after: datetime | str | None = None,
                   known: Container[tuple[str, str, str, str]] = ()) -> list[dict[str, Any]]:
        where, parameters = conditions((("device_id =", device_id), ("minute >=", _text(since, "since")),
                                        ("minute <=", _text(until, "until")),
                                        ("received_at >", _text(received_after, "received_after"))), "?")
        received = ", received_at" if received_after is not None else ", NULL"
        rows = self._read(f"SELECT device_id, bundle_id, minute, record_id, payload{received} FROM aggregates"
                          f"{where} ORDER BY minute, device_id, bundle_id", parameters)
        return [{"device_id": device, "bundle_id": bundle, "minute": minute, "record_id": record_id,
                 "payload": decode_payload(payload, features)} | ({} if at is None else {"received_at": at})
                for device, bundle, minute, record_id, payload, at in rows
                if not known or (device, minute, bundle, record_id) not in known]

    def rollups(self, since: datetime | str | None = None, until: datetime | str | None = None,
                device_id: str | None = None, *, features: bool = True) -> list[dict[str, Any]]:
        where, parameters = conditions((("device_id =", device_id), ("hour >=", _text(since, "since")),
                                        ("hour <=", _text(until, "until"))), "?")
        apart = "features" if features else "NULL"  # migration 5: the features column, read only when wanted
        rows = self._read(f"SELECT device_id, bundle_id, hour, aggregates, payload, {apart} FROM aggregate_rollups"
                          f"{where} ORDER BY hour, device_id, bundle_id", parameters)
        return [{"device_id": device, "bundle_id": bundle, "hour": hour, "aggregates": count,
                 "payload": with_features(payload, apart, features)}
                for device, bundle, hour, count, payload, apart in rows]

    def rebuild_rollups(self, since: datetime | str | None = None, until: datetime | str | None = None) -> int:
        start, end = hour_window(None if since is None else aware(since, "since"),
                                 None if until is None else aware(until, "until"))
        if start is None or end is None:
            first, last = self._read("SELECT MIN(minute), MAX(minute) FROM aggregates")[0]
            if first is None:
                return 0
            start = start or datetime.fromisoformat(hour_of(first))
            end = end or datetime.fromisoformat(hour_of(last)) + timedelta(hours=1)
        written = 0
        hour = start
        while hour < end:  # one transaction per hour: bounded memory, and the collector keeps writing meanwhile
            with self._write() as connection:
                written += self._rebuild_hour(connection, hour)
            hour += timedelta(hours=1)
        return written

    def _rebuild_hour(self, connection: sqlite3.Connection, hour: datetime) -> int:
        bounds = (utc_timestamp(hour), utc_timestamp(hour + timedelta(hours=1)))
        connection.executemany(_QUEUE_DAYS, day_keys(connection.execute(  # some may not come back
            "SELECT device_id, hour, bundle_id FROM aggregate_rollups WHERE hour >= ? AND hour < ?", bounds)))
        connection.execute("DELETE FROM aggregate_rollups WHERE hour >= ? AND hour < ?", bounds)
        connection.execute("DELETE FROM rollup_queue WHERE minute >= ? AND minute < ?", bounds)  # folded below
        rows = connection.execute("SELECT device_id, bundle_id, minute, record_id, payload FROM aggregates "
                                  "WHERE minute >= ? AND minute < ?", bounds)
        fields = ("device_id", "bundle_id", "minute", "record_id", "payload")
        rollups = fold_rollups(({**dict(zip(fields, row)), "payload": json.loads(row[-1])} for row in rows),
                               self._merge)
        now = utc_timestamp()
        for key, (count, payload) in sorted(rollups.items()):
            connection.execute(_ROLLUP_UPSERT, _rollup_row(key, count, payload, now))
        connection.executemany(_QUEUE_DAYS, day_keys(rollups))
        return len(rollups)

    def prune_aggregates(self, before: datetime | str) -> int:
        with self._write() as connection:
            connection.execute("DELETE FROM rollup_queue WHERE minute < ?", (_text(before, "before"),))
            return connection.execute("DELETE FROM aggregates WHERE minute < ?", (_text(before, "before"),)).rowcount

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exception: object) -> None:
        self.close()
