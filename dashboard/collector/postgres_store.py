"""``TelemetryStore`` on PostgreSQL (psycopg 3): a fleet's store, with the same results as ``SqliteStore``.

Connections come from a small bounded pool (``DEFAULT_POOL_SIZE``; a request waits ``POOL_WAIT_S`` for one, then
the store is "unavailable"), each in autocommit with explicit transactions, times in UTC and a statement timeout.
A batch is one transaction: ``INSERT … SELECT FROM jsonb_to_recordset(…) ON CONFLICT DO NOTHING RETURNING`` (the
whole batch in one parameter and one round trip) and the per-device counters; aggregates as one statement over binary
arrays (``unnest``: one text whatever the batch size, planned once) that also queues them for their rollups and keeps
the device's row (deferred rollups: one statement, one round trip), or with their hourly rollups in one transaction
(inline; rollup rows are locked in key order, so concurrent batches cannot deadlock). A connection the server
dropped (a restart) is replaced once, transparently: every write is idempotent, so a retry cannot store anything
twice. Anything else that keeps the server out of reach is ``StoreUnavailableError`` (the collector answers 503).

Migrations run under ``pg_advisory_xact_lock``, so collectors starting together apply them once. ``read_only``
(the dashboard) sets ``default_transaction_read_only`` and never migrates.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import msgspec

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
    AggregateReceipt,
    Receipt,
    RollupMode,
    SequenceConflictError,
    StoreRefusedError,
    StoreUnavailableError,
    aggregate_device_row,
    aware,
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
from dashboard.data.settings import DatabaseUrl
from runtime.telemetry.records import TelemetryError
from runtime.version import EDGEMED_VERSION

try:  # the `fleet` extra; SQLite needs nothing
    import psycopg
    from psycopg.conninfo import conninfo_to_dict
except ImportError:  # pragma: no cover - exercised only without the extra
    psycopg = None

logger = logging.getLogger(__name__)

DEFAULT_POOL_SIZE = 8  # connections per store: the collector's 40 worker threads share them
# A request waits this long for a free connection, then the store is unavailable (503); and a new connection this
# long for the server: both below the device uploader's 5 s request timeout, so a device hears 503, not silence.
POOL_WAIT_S = 3.0
CONNECT_TIMEOUT_S = 3  # libpq's connect_timeout, unless the URL sets one
STATEMENT_TIMEOUT_MS = 30_000  # one statement may run this long (a batch is a handful of statements)
MIGRATION_LOCK = 0x6564_6D65_6401  # pg_advisory_xact_lock key ("edmed" + 1): one migrator at a time

Result = TypeVar("Result")
_AGGREGATE_KEY = ("device_id", "minute", "bundle_id", "record_id")


def _utc(column: str) -> str:
    """SQL that renders a timestamptz as ``utc_timestamp`` does (``2025-01-31T12:00:00.000000Z``)."""
    return f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"


_DEVICES_QUERY = (
    f"SELECT device_id, dropped, {_utc('first_received_at')}, {_utc('last_received_at')}, records, last_sequence, "
    f"{_utc('first_time')}, {_utc('last_time')} FROM devices ORDER BY device_id"
)
_RECORD_TEXTS = (  # the text columns of RECORD_COLUMNS: device_id, sequence, time, bundle_id … provider, task, class
    "device_id", "sequence", _utc("time"), "payload ->> 'bundle_id'", "payload ->> 'bundle_sha256'",
    "payload ->> 'variant'", "payload ->> 'provider'", "payload ->> 'task'",
    "COALESCE(payload #>> '{result,class}', payload ->> 'predicted_class')",
)
_RECORD_VALUES = (  # its JSON values (latency_us, confidence, quality_flags, result): one array per row, as text
    "NULLIF(payload -> 'latency_us', 'null')",
    "COALESCE(NULLIF(payload #> '{result,confidence}', 'null'), NULLIF(payload -> 'confidence', 'null'))",
    "payload -> 'quality_flags'", "NULLIF(payload -> 'result', 'null')",
)
_RECORD_VALUE_ROWS = msgspec.json.Decoder(list[Any])
# Batches travel as one JSON array parameter, expanded by jsonb_to_recordset on the server: one round trip and
# no per-element array quoting on the client (psycopg escapes text[] elements in Python, slow for JSON payloads).
_RECORD_ROWS = "jsonb_to_recordset(%s::jsonb) AS s(sequence bigint, time timestamptz, payload jsonb)"
_INSERT_RECORDS = (
    "INSERT INTO telemetry (device_id, sequence, time, received_at, payload) "
    f"SELECT %s, s.sequence, s.time, %s, s.payload FROM {_RECORD_ROWS} "
    "ORDER BY s.sequence ON CONFLICT (device_id, sequence) DO NOTHING RETURNING sequence"
)
_CHANGED_RECORDS = (  # a primary-key lookup per resent record, however many the device has stored
    f"SELECT t.sequence FROM telemetry AS t JOIN {_RECORD_ROWS} ON (t.device_id, t.sequence) = (%s, s.sequence) "
    "WHERE t.payload <> s.payload ORDER BY t.sequence"
)
_HIGHEST_SEQUENCE = highest_sequence_query("%s")
_DEVICE_UPSERT = (
    "INSERT INTO devices (device_id, dropped, first_received_at, last_received_at, records, last_sequence, "
    "first_time, last_time) VALUES (%s, %s, %s, %s, %s, %s, %s::timestamptz, %s::timestamptz) "
    "ON CONFLICT (device_id) DO UPDATE SET dropped = GREATEST(devices.dropped, excluded.dropped), "
    "last_received_at = excluded.last_received_at, records = devices.records + excluded.records, "
    "last_sequence = GREATEST(devices.last_sequence, excluded.last_sequence), "
    "first_time = LEAST(devices.first_time, excluded.first_time), "
    "last_time = GREATEST(devices.last_time, excluded.last_time)"
)
_KEYS = "jsonb_to_recordset(%s::jsonb) AS k(device_id text, moment timestamptz, bundle_id text)"
# Aggregate and rollup payloads are JSON ``text`` (migration 6): the canonical text the collector checked and encoded,
# stored as it is (neither jsonb's tree nor json's validation, a second parse of every ~7-kB aggregate).
_AGGREGATE_ROWS = (
    "json_to_recordset(%s::json) AS s(device_id text, minute timestamptz, bundle_id text, record_id text, "
    "payload json)"
)
@functools.lru_cache(maxsize=8)
def _insert_values(deferred: bool, device: bool) -> str:
    """The insert of a batch of aggregates as one statement (so, in autocommit, one transaction and one round trip).

    Parameters: seven arrays, one element per row (device_id, minute, bundle_id, record_id, payload JSON text,
    sequence, seconds), sent in binary (no quoting of the payloads in Python), then received_at, then with
    ``device`` (device_id, dropped, received_at × 3). The payloads travel as the text they are stored as; with
    ``deferred`` the new rows' keys go to the rollup queue, and with ``device`` the device's row is kept from the new
    rows (``_DEVICE_UPSERT``'s rule) in the same statement. One text whatever the batch size: psycopg converts it
    once and the server plans it once (prepared after a few uses)."""
    parts = [
        "WITH s (device_id, minute, bundle_id, record_id, payload, sequence, seconds) AS (SELECT d, m::timestamptz, "
        "b, r, p, q, n FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], "
        "%b::bigint[], %b::integer[]) AS u (d, m, b, r, p, q, n)), "
        "inserted AS (INSERT INTO aggregates (device_id, minute, bundle_id, record_id, received_at, payload) "
        "SELECT device_id, minute, bundle_id, record_id, %s, payload FROM s ORDER BY 1, 2, 3, 4 "
        "ON CONFLICT (device_id, minute, bundle_id, record_id) DO NOTHING "
        "RETURNING device_id, minute, bundle_id, record_id)"]
    if deferred:
        parts.append(", queued AS (INSERT INTO rollup_queue SELECT * FROM inserted)")
    if device:
        parts.append(
            ", device AS (INSERT INTO devices (device_id, dropped, first_received_at, last_received_at, records, "
            "last_sequence, first_time, last_time) SELECT %s, %s, %s, %s, 0, max(s.sequence), min(s.minute), "
            "max(least(s.minute + s.seconds * interval '1 second', %s)) "  # a minute flushed before its end
            "FROM inserted JOIN s USING (device_id, minute, bundle_id, record_id) "
            + _DEVICE_UPSERT[_DEVICE_UPSERT.index("ON CONFLICT"):] + ")")
    parts.append(f" SELECT device_id, {_utc('minute')}, bundle_id, record_id FROM inserted")
    return "".join(parts)


# Take queued keys a device at a time (rows another worker holds are skipped) and their payloads (as text): a rollup's
# queued minutes come together, in minute order, so each rollup is read, folded and written once per batch.
_TAKE_QUEUED = (
    "WITH taken AS (DELETE FROM rollup_queue WHERE (device_id, minute, bundle_id, record_id) IN (SELECT device_id, "
    "minute, bundle_id, record_id FROM rollup_queue ORDER BY device_id, bundle_id, minute, record_id LIMIT %s "
    "FOR UPDATE SKIP LOCKED) RETURNING device_id, minute, bundle_id, record_id) "
    f"SELECT t.device_id, {_utc('t.minute')}, t.bundle_id, t.record_id, a.payload::text FROM taken AS t LEFT JOIN "
    "aggregates AS a USING (device_id, minute, bundle_id, record_id)"
)
_CHANGED_AGGREGATES = (
    f"SELECT a.record_id FROM aggregates AS a JOIN {_AGGREGATE_ROWS} ON (a.device_id, a.minute, a.bundle_id, "
    "a.record_id) = (s.device_id, s.minute, s.bundle_id, s.record_id) WHERE a.payload::jsonb <> s.payload::jsonb "
    "ORDER BY a.record_id"
)
_CLAIM_ROLLUPS = (
    "INSERT INTO aggregate_rollups (device_id, hour, bundle_id, aggregates, payload, updated_at) "
    f"SELECT k.device_id, k.moment, k.bundle_id, 0, '{{}}', %s FROM {_KEYS} ORDER BY 1, 2, 3 "
    "ON CONFLICT (device_id, hour, bundle_id) DO NOTHING"
)
_LOCK_ROLLUPS = (
    f"SELECT r.device_id, {_utc('r.hour')}, r.bundle_id, r.aggregates, r.payload::text, r.features::text "
    "FROM aggregate_rollups AS r "
    f"JOIN {_KEYS} ON (r.device_id, r.hour, r.bundle_id) = (k.device_id, k.moment, k.bundle_id) "
    "ORDER BY 1, 2, 3 FOR UPDATE OF r"
)
_WRITE_ROLLUPS = (  # payload and features apart (migration 5: ``without_features``; no features key: NULL)
    "INSERT INTO aggregate_rollups (device_id, hour, bundle_id, aggregates, payload, features, updated_at) "
    "SELECT s.device_id, s.hour, s.bundle_id, s.aggregates, s.payload, s.features, %s FROM json_to_recordset(%s::json) "
    "AS s(device_id text, hour timestamptz, bundle_id text, aggregates integer, payload text, features text) "
    "ORDER BY 1, 2, 3 ON CONFLICT (device_id, hour, bundle_id) DO UPDATE SET aggregates = excluded.aggregates, "
    "payload = excluded.payload, features = excluded.features, updated_at = excluded.updated_at"
)

# Days (``days.py``): every rollup write queues its days; the job takes ended days a device at a time with their
# hourly rollups, in hour order, and writes each day's fold (or deletes it when its hours are gone).
_QUEUE_DAYS = (
    "INSERT INTO day_queue (device_id, day, bundle_id) SELECT d, y::timestamptz, b FROM unnest(%b::text[], "
    "%b::text[], %b::text[]) AS u (d, y, b) ORDER BY 1, 2, 3 ON CONFLICT DO NOTHING"
)
_QUEUE_STORED_DAYS = (  # the days of the rollups about to be rebuilt (some may not come back)
    "INSERT INTO day_queue (device_id, day, bundle_id) SELECT DISTINCT device_id, date_trunc('day', hour, 'UTC'), "
    "bundle_id FROM aggregate_rollups WHERE hour >= %s AND hour < %s ORDER BY 1, 2, 3 ON CONFLICT DO NOTHING"
)
_TAKE_DAYS = (
    "WITH taken AS (DELETE FROM day_queue WHERE (device_id, day, bundle_id) IN (SELECT device_id, day, bundle_id "
    "FROM day_queue WHERE day < %s ORDER BY device_id, bundle_id, day LIMIT %s FOR UPDATE SKIP LOCKED) "
    f"RETURNING device_id, day, bundle_id) SELECT t.device_id, {_utc('t.day')}, t.bundle_id, r.aggregates, "
    "r.payload, r.features FROM taken AS t LEFT JOIN aggregate_rollups AS r ON r.device_id = t.device_id AND "
    "r.bundle_id = t.bundle_id AND r.hour >= t.day AND r.hour < t.day + interval '1 day' ORDER BY 1, 3, 2, r.hour"
)
_WRITE_DAYS = (  # after the days' rows are deleted (``_DELETE_DAYS``): their parts afresh
    "INSERT INTO day_rollups (device_id, day, bundle_id, part, hours, aggregates, payload, features, updated_at) "
    "SELECT s.device_id, s.day, s.bundle_id, s.part, s.hours, s.aggregates, s.payload, s.features, %s FROM "
    "json_to_recordset(%s::json) AS s(device_id text, day timestamptz, bundle_id text, part integer, hours integer, "
    "aggregates integer, payload text, features text) ORDER BY 1, 2, 3, 4"
)
_DELETE_DAYS = (
    "DELETE FROM day_rollups AS r USING unnest(%b::text[], %b::text[], %b::text[]) AS u (d, y, b) "
    "WHERE (r.device_id, r.day, r.bundle_id) = (u.d, u.y::timestamptz, u.b)"
)


def _record_rows(rows: Sequence[tuple[int, str, str]]) -> str:
    """``checked_rows`` as the JSON array ``_RECORD_ROWS`` expands (the payloads are already canonical JSON)."""
    return "[" + ",".join(f'{{"sequence":{sequence},"time":"{time}","payload":{payload}}}'
                          for sequence, time, payload in rows) + "]"


def _aggregate_rows(rows: Iterable[tuple[Mapping[str, Any], str]]) -> str:
    """Checked aggregates and their payloads' JSON text as the array ``_AGGREGATE_ROWS`` expands (each payload
    encoded once, by ``checked_with_text``)."""
    keys = ("device_id", "minute", "bundle_id", "record_id")
    return "[" + ",".join(
        "{" + "".join(f'"{key}":{json.dumps(aggregate[key])},' for key in keys) + f'"payload":{text}}}'
        for aggregate, text in rows) + "]"


def _json_rows(rows: Iterable[Mapping[str, Any]]) -> str:
    return json.dumps(list(rows), separators=(",", ":"), allow_nan=False)


def _rollup_rows(rows: Iterable[Mapping[str, Any]]) -> str:
    """Rollup rows (payloads of hundreds of bins) as the JSON array ``_WRITE_ROLLUPS`` expands, encoded in C a row
    at a time (a lazy ``rows`` is folded, encoded and let go one rollup after another)."""
    encode = msgspec.json.encode
    return (b"[" + b",".join(encode(row) for row in rows) + b"]").decode()


class _Pool:
    """At most ``size`` connections; idle ones are reused, a broken or mid-transaction one is closed."""

    def __init__(self, connect: Callable[[], Any], size: int, wait_s: float, location: str) -> None:
        self._connect = connect
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self._wait_s = wait_s
        self._location = location
        self.size = size
        self.closed = False

    @contextmanager
    def connection(self) -> Iterator[tuple[Any, bool]]:
        """(connection, whether it was reused from the idle list)."""
        if self.closed:
            raise TelemetryError(f"the telemetry store {self._location} is closed", fix="open a new store")
        if not self._slots.acquire(timeout=self._wait_s):
            raise StoreUnavailableError(
                f"all {self.size} connections to the telemetry store {self._location} stayed busy for "
                f"{self._wait_s:g} s", fix="retry later; raise the pool size or the server's capacity")
        try:
            with self._lock:
                connection = self._idle.pop() if self._idle else None
            reused = connection is not None
            connection = connection or self._connect()
            healthy = False
            try:
                yield connection, reused
                healthy = True
            finally:
                idle = connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
                if healthy and idle and not connection.broken and not self.closed:
                    with self._lock:
                        self._idle.append(connection)
                else:
                    connection.close()
        finally:
            self._slots.release()

    def close(self) -> None:
        self.closed = True
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


class _SequencesReusedError(Exception):  # rolls a write back; never leaves the store
    """Raised inside ``insert_batch``'s transaction to roll it back: ``sequences`` hold other records."""

    def __init__(self, sequences: list[int]) -> None:
        super().__init__(sequences)
        self.sequences = sequences


class PostgresStore:
    """``TelemetryStore`` on a PostgreSQL database named by a ``postgresql://`` URL; safe to share between
    threads and processes."""

    def __init__(self, url: DatabaseUrl | str, *, read_only: bool = False, merge: Merge = merge_payloads,
                 pool_size: int = DEFAULT_POOL_SIZE, pool_wait_s: float = POOL_WAIT_S,
                 rollups: RollupMode | str = RollupMode.INLINE) -> None:
        self.url = url if isinstance(url, DatabaseUrl) else DatabaseUrl(url)
        self.location = self.url.redacted
        self.read_only = read_only
        self._merge = merge
        self.rollup_mode = RollupMode(rollups)  # inline: in the insert's transaction; deferred: roll_up_pending
        if psycopg is None:
            raise StoreUnavailableError("psycopg (PostgreSQL's client) is not installed",
                                        expected="the fleet extra", fix="pip install -e '.[fleet]'")
        self._pool = _Pool(self._connect, pool_size, pool_wait_s, self.location)
        try:
            if read_only:
                self._check_readable()
            else:
                self.migrate()
        except BaseException:
            self._pool.close()
            raise

    # -- connections, errors, schema ---------------------------------------------------------------------------

    def _connect(self) -> Any:
        settings = conninfo_to_dict(self.url.url)
        options = [settings.get("options") or "", "-c TimeZone=UTC", f"-c statement_timeout={STATEMENT_TIMEOUT_MS}"]
        if self.read_only:
            options.append("-c default_transaction_read_only=on")
        extra: dict[str, Any] = {"options": " ".join(filter(None, options))}
        if "application_name" not in settings:
            extra["application_name"] = "edgemed telemetry store"
        if "connect_timeout" not in settings:
            extra["connect_timeout"] = CONNECT_TIMEOUT_S
        return psycopg.connect(self.url.url, autocommit=True, **extra)

    def _run(self, work: Callable[[Any], Result], action: str) -> Result:
        """``work(connection)`` with database errors as ``StoreUnavailableError``; once more on a fresh
        connection when a reused one turns out to be dead (the server restarted since it was opened)."""
        for attempt in (1, 2):
            used: dict[str, Any] = {}
            try:
                with self._pool.connection() as (connection, reused):
                    used.update(connection=connection, reused=reused)
                    return work(connection)
            except psycopg.DataError as error:
                raise StoreRefusedError(
                    f"the telemetry store {self.location} cannot store this ({error.sqlstate}: {type(error).__name__})",
                    fix="check the values against the protocol") from error
            except (psycopg.OperationalError, psycopg.InterfaceError) as error:
                stale = used.get("reused") and used["connection"].broken
                if attempt == 1 and stale:
                    logger.info("telemetry store %s: a pooled connection was dropped (%s); retrying on a new one",
                                self.location, type(error).__name__)
                    continue
                raise StoreUnavailableError(
                    f"the telemetry store {self.location} cannot be {action} ({type(error).__name__}: "
                    f"{str(error).strip().splitlines()[0] if str(error).strip() else 'no detail'})",
                    fix="check that the PostgreSQL server is running and reachable; devices keep their records",
                ) from error
        raise AssertionError("unreachable")  # pragma: no cover

    def _read(self, query: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._run(lambda connection: connection.execute(query, parameters).fetchall(), "read")

    def _write(self, work: Callable[[Any], Result]) -> Result:
        if self.read_only:
            raise StoreUnavailableError(f"the telemetry store {self.location} is open read-only",
                                        fix="open it without read_only to write")

        def transaction(connection: Any) -> Result:
            with connection.transaction():
                return work(connection)

        return self._run(transaction, "written")

    @staticmethod
    def _version_of(connection: Any) -> tuple[int, bool]:
        """(schema version, whether a telemetry table exists)."""
        versioned, telemetry = connection.execute(
            "SELECT to_regclass('schema_version') IS NOT NULL, to_regclass('telemetry') IS NOT NULL").fetchone()
        if not versioned:
            return 0, telemetry
        return int(connection.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]), telemetry

    def _check_readable(self) -> None:
        found, telemetry = self._run(self._version_of, "read")
        if found == 0 and not telemetry:
            raise StoreUnavailableError(f"the telemetry database {self.location} has no telemetry tables yet",
                                        fix="start the collector (edgemed collector --database-url …) on it")
        check_version(self.location, found, read_only=True)

    def migrate(self) -> int:
        """Apply the pending migrations in one transaction under an advisory lock; the version afterwards."""

        def work(connection: Any) -> None:
            connection.execute("SET LOCAL statement_timeout = 0")  # an index on a large table may take a while
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            connection.execute(VERSION_TABLE[Dialect.POSTGRES])
            found, _ = self._version_of(connection)
            check_version(self.location, found)
            for migration in pending(found):
                for statement in migration.postgres:
                    connection.execute(statement)
                connection.execute("INSERT INTO schema_version VALUES (%s, %s, now(), %s)",
                                   (migration.version, migration.description, EDGEMED_VERSION))
                logger.info("telemetry store %s: migrated to schema version %d (%s)", self.location,
                            migration.version, migration.description)

        self._write(work)
        return HEAD

    def schema_version(self) -> int:
        return self._run(self._version_of, "read")[0]

    # -- records -----------------------------------------------------------------------------------------------

    def insert_batch(self, device_id: str, records: Sequence[Mapping[str, Any]], dropped: int = 0) -> Receipt:
        rows = checked_rows(device_id, records)
        received_at = datetime.now(UTC)

        def work(connection: Any) -> set[int]:
            inserted = {sequence for (sequence,) in connection.execute(
                _INSERT_RECORDS, (device_id, received_at, _record_rows(rows)))} if rows else set()
            resent = [row for row in rows if row[0] not in inserted]
            changed = [sequence for (sequence,) in connection.execute(
                _CHANGED_RECORDS, (_record_rows(resent), device_id))] if resent else []
            if changed:  # a reset outbox: nothing of the batch is stored (rolled back), then refused below
                raise _SequencesReusedError(changed)
            new_times = [time for sequence, time, _ in rows if sequence in inserted]
            connection.execute(_DEVICE_UPSERT, (
                device_id, dropped, received_at, received_at, len(inserted), max(inserted, default=None),
                min(new_times, default=None), max(new_times, default=None)))
            return inserted

        try:
            inserted = self._write(work)
        except _SequencesReusedError as reused:
            resume_after = self._read(_HIGHEST_SEQUENCE, (device_id, device_id))[0][0]
            raise SequenceConflictError(device_id, reused.sequences, int(resume_after)) from None
        return Receipt(sorted(row[0] for row in rows), len(rows) - len(inserted))

    def _record_where(self, device_id: str | None, since: datetime | str | None,
                      until: datetime | str | None) -> tuple[str, list[Any]]:
        return conditions((("device_id =", device_id), ("time >=", _moment(since, "since")),
                           ("time <=", _moment(until, "until"))), "%s")

    def records(self, device_id: str | None = None, since: datetime | str | None = None) -> list[dict[str, Any]]:
        where, parameters = self._record_where(device_id, since, None)
        rows = self._read(f"SELECT payload FROM telemetry{where} ORDER BY time, device_id, sequence", parameters)
        return [payload for (payload,) in rows]

    def record_rows(self, device_id: str | None = None, since: datetime | str | None = None,
                    until: datetime | str | None = None, with_features: bool = False) -> list[tuple[Any, ...]]:
        where, parameters = self._record_where(device_id, since, until)
        values = ", ".join((*_RECORD_VALUES, "payload -> 'features'") if with_features else _RECORD_VALUES)
        # The JSON values travel as one array's text per record, decoded in C: psycopg's jsonb loader runs the
        # stdlib's json.loads once per value (~5 a record), most of a wide read's time.
        rows = self._read(f"SELECT {', '.join(_RECORD_TEXTS)}, jsonb_build_array({values})::text FROM telemetry"
                          f"{where} ORDER BY time, device_id, sequence", parameters)
        decode = _RECORD_VALUE_ROWS.decode
        return [(device, sequence, time, bundle, sha256, variant, provider, latency, task, label, confidence, *rest)
                for (device, sequence, time, bundle, sha256, variant, provider, task, label, json_values) in rows
                for latency, confidence, *rest in (decode(json_values),)]

    def devices(self) -> list[dict[str, Any]]:
        return [dict(zip(DEVICE_COLUMNS, row, strict=True)) for row in self._read(_DEVICES_QUERY)]

    def count(self) -> int:
        return int(self._read("SELECT COALESCE(SUM(records), 0) FROM devices")[0][0])

    def mark_simulated(self, device_id: str) -> None:
        self._write(lambda connection: connection.execute(
            "INSERT INTO simulated_devices (device_id, marked_at) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (device_id, datetime.now(UTC))))

    def simulated_devices(self) -> list[str]:
        return [device_id for (device_id,) in self._read("SELECT device_id FROM simulated_devices ORDER BY 1")]

    # -- aggregates --------------------------------------------------------------------------------------------

    def insert_aggregates(self, aggregates: Sequence[Mapping[str, Any]], *, device_id: str | None = None,
                          dropped: int | None = None) -> AggregateReceipt:
        encoded = [checked_with_text(aggregate) for aggregate in aggregates]
        checked = [aggregate for aggregate, _ in encoded]
        if device_id is not None:
            aggregate_device_row(device_id, checked, dropped)  # every aggregate the device's
        unique: dict[tuple[str, ...], tuple[dict[str, Any], str]] = {}  # a key repeated in the batch: stored once
        for aggregate, text in encoded:
            unique.setdefault(tuple(aggregate[field] for field in _AGGREGATE_KEY), (aggregate, text))
        received_at = datetime.now(UTC)

        def row(aggregate: Mapping[str, Any], text: str) -> tuple[Any, ...]:
            sequence, seconds = aggregate["payload"].get("sequence"), aggregate["payload"].get("seconds")
            return (aggregate["device_id"], aggregate["minute"], aggregate["bundle_id"], aggregate["record_id"], text,
                    sequence if type(sequence) is int else None,
                    seconds if type(seconds) is int and seconds > 0 else 60)  # as aggregate_device_row

        parameters = [list(column) for column in zip(*(row(aggregate, text) for aggregate, text in unique.values()),
                                                      strict=True)]

        def insert(connection: Any, deferred: bool, device: bool) -> list[dict[str, Any]]:
            keep = (device_id, dropped or 0, received_at, received_at, received_at) if device else ()
            inserted = set(map(tuple, connection.execute(_insert_values(deferred, device),
                                                         (*parameters, received_at, *keep))))
            return [aggregate for key, (aggregate, _) in unique.items() if key in inserted]

        def inline(connection: Any) -> list[dict[str, Any]]:
            new = insert(connection, False, False) if unique else []
            self._roll_up(connection, new, received_at)
            if device_id is not None:
                dropped_count, last_sequence, first, last = aggregate_device_row(device_id, new, dropped)
                last = None if last is None else min(last, received_at)  # a minute flushed before its end
                connection.execute(_DEVICE_UPSERT, (device_id, dropped_count, received_at, received_at, 0,
                                                    last_sequence, first, last))
            return new

        if not unique and device_id is None:
            new = []
        elif self.rollup_mode is RollupMode.DEFERRED and unique and not self.read_only:  # one statement: atomic
            new = self._run(lambda connection: insert(connection, True, device_id is not None), "written")
        else:  # inline rollups (several statements in one transaction), or refused by _write when read-only
            new = self._write(inline)
        changed = self._read(_CHANGED_AGGREGATES, (_aggregate_rows(unique.values()),)) if len(new) < len(checked) \
            else []
        warn_changed(logger, [record_id for (record_id,) in changed])
        return AggregateReceipt(sorted(aggregate["record_id"] for aggregate in checked), len(checked) - len(new))

    def _roll_up(self, connection: Any, new: list[dict[str, Any]], now: datetime,
                 decode: Callable[[Any], Mapping[str, Any]] | None = None) -> None:
        """Fold ``new`` aggregates (payloads as ``decode`` reads them; default: already objects) into their rollups,
        locked, read and written in this transaction, a rollup at a time (``iter_rollups``)."""
        keys = sorted({(item["device_id"], hour_of(item["minute"]), item["bundle_id"]) for item in new})
        if not keys:
            return
        key_rows = _json_rows({"device_id": device, "moment": hour, "bundle_id": bundle}
                              for device, hour, bundle in keys)
        connection.execute(_CLAIM_ROLLUPS, (now, key_rows))
        stored = {(device, hour, bundle): (count, (payload, features))
                  for device, hour, bundle, count, payload, features in connection.execute(_LOCK_ROLLUPS, (key_rows,))
                  if count}  # 0: the row was just claimed, nothing rolled up yet
        self._write_rollups(connection, iter_rollups(new, self._merge, stored, decode=decode,
                                                     decode_stored=lambda columns: with_features(*columns)), now)

    @staticmethod
    def _write_rollups(connection: Any, rollups: Iterable[tuple[tuple[str, str, str], tuple[int, dict[str, Any]]]],
                       now: datetime) -> None:
        """Store ``rollups`` (key, (aggregates, payload)) in key order, each encoded as it comes, and queue their
        days."""
        keys: list[tuple[str, str, str]] = []

        def rows() -> Iterator[dict[str, Any]]:
            for (device, hour, bundle), (count, payload) in rollups:
                keys.append((device, hour, bundle))
                lean, features = without_features(payload)
                yield ({"device_id": device, "hour": hour, "bundle_id": bundle, "aggregates": count, "payload": lean}
                       | ({} if features is None else {"features": features}))

        encoded = _rollup_rows(rows())
        if keys:
            connection.execute(_WRITE_ROLLUPS, (now, encoded))
            connection.execute(_QUEUE_DAYS, [list(column) for column in zip(*day_keys(keys), strict=True)])

    def roll_up_days(self, limit: int = DEFAULT_DAY_BATCH, now: datetime | None = None) -> int:
        """Fold up to ``limit`` queued days that have ended (``days.closed_before``) from their hourly rollups, a
        device's days together, in one transaction with their removal from the queue; concurrent callers take
        disjoint days (``SKIP LOCKED``). How many days were taken (0: none ready)."""

        def work(connection: Any) -> int:
            rows = connection.execute(_TAKE_DAYS, (closed_before(now), limit)).fetchall()
            hours: dict[tuple[str, str, str], list[tuple[int, str, str | None]]] = {}
            for device, day, bundle, count, payload, features in rows:
                parts = hours.setdefault((device, day, bundle), [])
                if payload is not None:  # LEFT JOIN: a day whose hours are gone (rebuilt without minutes)
                    parts.append((count, payload, features))
            if hours:  # every taken day's rows: refolded below, or gone with their hours (rebuilt without minutes)
                connection.execute(_DELETE_DAYS, [list(column) for column in zip(*hours, strict=True)])
            # decoded, folded and encoded a day at a time: a day's 24 rollups are a few MB of objects
            rows = _rollup_rows({"device_id": device, "day": day, "bundle_id": bundle, "part": part, "hours": count,
                                 "aggregates": merged, "payload": lean} | ({} if features is None else
                                                                          {"features": features})
                                for (device, day, bundle), parts in sorted(hours.items()) if parts
                                for part, (count, merged, payload) in enumerate(fold_day_parts(
                                    [(count, with_features(payload, features)) for count, payload, features in parts],
                                    self._merge))
                                for lean, features in (without_features(payload),))
            if rows != "[]":
                connection.execute(_WRITE_DAYS, (datetime.now(UTC), rows))
            return len(hours)

        return self._write(work)

    def pending_days(self) -> int:
        return int(self._read("SELECT count(*) FROM day_queue")[0][0])

    def day_rollups(self, since: datetime | str | None = None, until: datetime | str | None = None,
                    device_id: str | None = None, *, features: bool = True) -> DayRollups:
        where, parameters = conditions((("device_id =", device_id), ("day >=", _moment(since, "since")),
                                        ("day <=", _moment(until, "until"))), "%s")
        rows = self._read(day_rollups_query(where, _utc("day"), features), [*parameters, *parameters])
        return day_rollups_of(rows, features)

    def aggregates(self, since: datetime | str | None = None, until: datetime | str | None = None,
                   device_id: str | None = None, *, features: bool = True,
                   received_after: datetime | str | None = None,
                   known: Container[tuple[str, str, str, str]] = ()) -> list[dict[str, Any]]:
        where, parameters = conditions((("device_id =", device_id), ("minute >=", _moment(since, "since")),
                                        ("minute <=", _moment(until, "until")),
                                        ("received_at >", _moment(received_after, "received_after"))), "%s")
        received = f", {_utc('received_at')}" if received_after is not None else ", NULL"
        # payload as text, decoded in C (psycopg's json loader is the stdlib's, ~10× slower without features)
        rows = self._read(f"SELECT device_id, bundle_id, {_utc('minute')}, record_id, payload::text{received} FROM "
                          f"aggregates{where} ORDER BY minute, device_id, bundle_id", parameters)
        return [{"device_id": device, "bundle_id": bundle, "minute": minute, "record_id": record_id,
                 "payload": decode_payload(payload, features)} | ({} if at is None else {"received_at": at})
                for device, bundle, minute, record_id, payload, at in rows
                if not known or (device, minute, bundle, record_id) not in known]

    def rollups(self, since: datetime | str | None = None, until: datetime | str | None = None,
                device_id: str | None = None, *, features: bool = True) -> list[dict[str, Any]]:
        where, parameters = conditions((("device_id =", device_id), ("hour >=", _moment(since, "since")),
                                        ("hour <=", _moment(until, "until"))), "%s")
        # without features, their column is not even read (nor detoasted, nor sent): ~15 % of a rollup's bytes
        rows = self._read(f"SELECT device_id, bundle_id, {_utc('hour')}, aggregates, payload::text, "
                          f"{'features::text' if features else 'NULL'} FROM aggregate_rollups{where} "
                          "ORDER BY hour, device_id, bundle_id", parameters)
        return [{"device_id": device, "bundle_id": bundle, "hour": hour, "aggregates": count,
                 "payload": with_features(payload, apart, features)}
                for device, bundle, hour, count, payload, apart in rows]

    def rebuild_rollups(self, since: datetime | str | None = None, until: datetime | str | None = None) -> int:
        start, end = hour_window(_moment(since, "since"), _moment(until, "until"))
        if start is None or end is None:
            first, last = self._read("SELECT MIN(minute), MAX(minute) FROM aggregates")[0]
            if first is None:
                return 0
            start = start or first.replace(minute=0)
            end = end or last.replace(minute=0) + timedelta(hours=1)
        written = 0
        hour = start
        while hour < end:  # one transaction per hour: bounded memory, and the collector keeps writing meanwhile
            written += self._write(lambda connection, hour=hour: self._rebuild_hour(connection, hour))
            hour += timedelta(hours=1)
        return written

    def roll_up_pending(self, limit: int = DEFAULT_ROLLUP_BATCH) -> int:
        """Fold up to ``limit`` queued aggregates (deferred rollups), a device's minutes together and in minute
        order (each rollup read and written once per call), in one transaction with their removal from the queue;
        concurrent callers (collector workers) take disjoint rows (``SKIP LOCKED``). How many were taken."""

        def work(connection: Any) -> int:
            rows = connection.execute(_TAKE_QUEUED, (limit,)).fetchall()
            new = [{"device_id": device, "minute": minute, "bundle_id": bundle, "record_id": record_id,
                    "payload": payload} for device, minute, bundle, record_id, payload in rows
                   if payload is not None]
            # the payloads' text, decoded in C (psycopg's json loader is the stdlib's) as each rollup is folded
            self._roll_up(connection, new, datetime.now(UTC), msgspec.json.decode)
            return len(rows)

        return self._write(work)

    def pending_rollups(self) -> int:
        return int(self._read("SELECT count(*) FROM rollup_queue")[0][0])

    def check_writable(self) -> None:
        """A write transaction that changes nothing: refused (``StoreUnavailableError``) as an upload's would be —
        the server out of reach, or in recovery / read-only."""
        self._write(lambda connection: connection.execute("UPDATE schema_version SET version = version WHERE false"))

    def _rebuild_hour(self, connection: Any, hour: datetime) -> int:
        following = hour + timedelta(hours=1)
        connection.execute(_QUEUE_STORED_DAYS, (hour, following))
        connection.execute("DELETE FROM aggregate_rollups WHERE hour >= %s AND hour < %s", (hour, following))
        connection.execute("DELETE FROM rollup_queue WHERE minute >= %s AND minute < %s", (hour, following))
        rows = connection.execute(f"SELECT device_id, bundle_id, {_utc('minute')}, record_id, payload FROM aggregates "
                                  "WHERE minute >= %s AND minute < %s", (hour, following))
        rollups = fold_rollups(({"device_id": device, "bundle_id": bundle, "minute": minute, "record_id": record_id,
                                 "payload": msgspec.json.decode(payload)}
                                for device, bundle, minute, record_id, payload in rows),
                               self._merge)
        self._write_rollups(connection, sorted(rollups.items()), datetime.now(UTC))
        return len(rollups)

    def prune_aggregates(self, before: datetime | str) -> int:
        def work(connection: Any) -> int:
            connection.execute("DELETE FROM rollup_queue WHERE minute < %s", (_moment(before, "before"),))
            return connection.execute("DELETE FROM aggregates WHERE minute < %s", (_moment(before, "before"),)).rowcount

        return self._write(work)

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exception: object) -> None:
        self.close()


def _moment(value: datetime | str | None, name: str) -> datetime | None:
    return None if value is None else aware(value, name)
