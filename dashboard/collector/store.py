"""Where the collector keeps telemetry: a small storage interface and its SQLite implementation.

Why SQLite in WAL mode by default: the collector is one process on one machine, the data is
append-mostly, and the dashboard reads while the collector writes. In WAL mode readers never
block the writer and the writer never blocks readers, each batch is one ACID transaction (so a
batch is stored whole or not at all), ``synchronous=FULL`` makes a batch durable before it is
acknowledged (the device deletes what we acknowledge), and there is no server to run or secure.
Its limit is one writer at a time: writes are serialised (here by a lock plus SQLite's busy
timeout), which is ample for thousands of records a second. A fleet that outgrows that can
implement ``TelemetryStore`` on PostgreSQL with the same semantics: a UNIQUE (device_id,
sequence) constraint, ``INSERT … ON CONFLICT DO NOTHING`` inside one transaction per batch, and
``GREATEST`` for the dropped counter.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from runtime.telemetry.records import TelemetryError, utc_timestamp
from runtime.telemetry.sqlite_pool import ConnectionPool

logger = logging.getLogger(__name__)


_SCHEMA = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS telemetry (
    device_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    time TEXT NOT NULL,
    received_at TEXT NOT NULL,
    payload TEXT NOT NULL,
    UNIQUE (device_id, sequence)
);
CREATE INDEX IF NOT EXISTS telemetry_by_time ON telemetry (time);
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY,
    dropped INTEGER NOT NULL,
    first_received_at TEXT NOT NULL,
    last_received_at TEXT NOT NULL
);
COMMIT;
"""

# One summary row per device that ever uploaded; the collector and the dashboard's reader both run this.
DEVICES_QUERY = (
    "SELECT d.device_id, d.dropped, d.first_received_at, d.last_received_at, "
    "COUNT(t.sequence), MAX(t.sequence), MIN(t.time), MAX(t.time) "
    "FROM devices AS d LEFT JOIN telemetry AS t ON t.device_id = d.device_id "
    "GROUP BY d.device_id ORDER BY d.device_id"
)
DEVICE_COLUMNS = (  # the names of DEVICES_QUERY's columns, in order
    "device_id", "dropped", "first_received_at", "last_received_at", "records", "last_sequence", "first_time",
    "last_time",
)


@dataclass(frozen=True)
class Receipt:
    """What ``insert_batch`` did with one batch."""

    acknowledged: list[int]  # every sequence of the batch that is now stored (new or already there)
    duplicates: int  # how many of those were already stored (a resend)


class TelemetryStore(Protocol):
    """Idempotent telemetry storage keyed by (device_id, sequence)."""

    def insert_batch(self, device_id: str, records: Sequence[Mapping[str, Any]], dropped: int = 0) -> Receipt:
        """Store a validated batch in one transaction; rows already present are left as they are."""
        ...

    def records(self, device_id: str | None = None, since: datetime | str | None = None) -> list[dict[str, Any]]:
        """Stored records (optionally one device's, with ``time`` ≥ ``since``), oldest first."""
        ...

    def devices(self) -> list[dict[str, Any]]:
        """One summary per device that ever uploaded."""
        ...

    def count(self) -> int:
        """How many records are stored."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def _canonical(record: Mapping[str, Any]) -> str:
    return json.dumps(dict(record), sort_keys=True, separators=(",", ":"), allow_nan=False)


def _since(since: datetime | str) -> str:
    moment = datetime.fromisoformat(since) if isinstance(since, str) else since
    if moment.tzinfo is None:
        raise TelemetryError("'since' has no time zone", expected="an aware datetime or ISO-8601 with offset")
    return utc_timestamp(moment)


def record_filter(device_id: str | None, since: str | None, until: str | None = None) -> tuple[str, list[Any]]:
    """``WHERE`` clause and parameters selecting telemetry rows (times already UTC timestamp text)."""
    conditions = [(clause, value) for clause, value in (("device_id = ?", device_id), ("time >= ?", since),
                                                         ("time <= ?", until)) if value is not None]
    where = f" WHERE {' AND '.join(clause for clause, _ in conditions)}" if conditions else ""
    return where, [value for _, value in conditions]


class SqliteStore:
    """``TelemetryStore`` in one SQLite file (WAL); safe to share between threads and processes."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._pool = ConnectionPool(self.path, "telemetry store")
        self._write_lock = threading.Lock()  # one writer per process; other processes wait in SQLite
        self._pool.run_script(_SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        return self._pool.connection()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it commits, or none of it (the exception propagates)."""
        with self._write_lock, self._pool.transaction() as connection:
            yield connection

    def insert_batch(self, device_id: str, records: Sequence[Mapping[str, Any]], dropped: int = 0) -> Receipt:
        received_at = utc_timestamp()
        acknowledged: list[int] = []
        duplicates = 0
        changed: list[int] = []  # resent sequences whose content differs: one WARNING per batch, not per record
        with self._write() as connection:
            for record in records:
                sequence = record["sequence"]
                if record["device_id"] != device_id or isinstance(sequence, bool) or not isinstance(sequence, int):
                    raise TelemetryError(
                        "a record's device_id or sequence does not fit its batch",
                        expected="records checked by dashboard.collector.schema.parse_batch",
                        fix="validate the batch before storing it",
                    )
                payload = _canonical(record)
                inserted = connection.execute(
                    "INSERT OR IGNORE INTO telemetry (device_id, sequence, time, received_at, payload) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (device_id, sequence, record["time"], received_at, payload),
                ).rowcount
                if not inserted:
                    duplicates += 1
                    if self._differs(connection, device_id, sequence, payload):
                        changed.append(sequence)
                acknowledged.append(sequence)
            connection.execute(
                "INSERT INTO devices (device_id, dropped, first_received_at, last_received_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (device_id) DO UPDATE SET dropped = max(dropped, excluded.dropped), "
                "last_received_at = excluded.last_received_at",
                (device_id, dropped, received_at, received_at),
            )
        if changed:
            logger.warning(
                "device %s resent %d record(s) with different content (sequences %d–%d; outbox reset?); kept the "
                "first of each", device_id, len(changed), min(changed), max(changed),
            )
        return Receipt(sorted(acknowledged), duplicates)

    @staticmethod
    def _differs(connection: sqlite3.Connection, device_id: str, sequence: int, payload: str) -> bool:
        """Whether a resend differs from the stored record (the device reused sequences)."""
        (stored,) = connection.execute(
            "SELECT payload FROM telemetry WHERE device_id = ? AND sequence = ?", (device_id, sequence)
        ).fetchone()
        return stored != payload

    def records(self, device_id: str | None = None, since: datetime | str | None = None) -> list[dict[str, Any]]:
        where, parameters = record_filter(device_id, None if since is None else _since(since))
        rows = self._connection().execute(
            f"SELECT payload FROM telemetry{where} ORDER BY time, device_id, sequence", parameters
        )
        return [json.loads(payload) for (payload,) in rows]

    def devices(self) -> list[dict[str, Any]]:
        rows = self._connection().execute(DEVICES_QUERY)
        return [dict(zip(DEVICE_COLUMNS, row, strict=True)) for row in rows]

    def count(self) -> int:
        return int(self._connection().execute("SELECT COUNT(*) FROM telemetry").fetchone()[0])

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exception: object) -> None:
        self.close()
