"""A durable on-device queue of telemetry records (store-and-forward), in SQLite.

It holds per-event records (schema 2, ``validate_record``) and per-minute aggregates (schema 3,
``kind: "aggregate"``, ``validate_aggregate``) in one sequence: each is checked before it is stored.

Every ``append`` is one committed transaction in WAL mode with ``synchronous=FULL``: once it
returns, the record survives ``kill -9`` and power loss. Each record gets the next value of a
persisted counter, so sequences are strictly increasing and never reused, even after the rows
are acknowledged and deleted (a new outbox file starts again from 1: ``renumber_after`` moves the pending records
above what the collector holds when it says so). When the outbox holds ``max_rows`` records, the oldest are dropped
and counted in a persisted cumulative ``dropped`` counter that the uploader reports, so a long
outage degrades telemetry instead of failing the device.

Threads: each thread gets its own connection (WAL lets a reader run beside the writer); writes
take SQLite's write lock up front (``BEGIN IMMEDIATE``) so concurrent writers queue instead of
failing. Other processes may open the same file.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from runtime.telemetry.aggregate_schema import validate_aggregate
from runtime.telemetry.records import (
    AGGREGATE_KIND,
    TelemetryError,
    is_pseudonymous_device_id,
    utc_timestamp,
    validate_record,
)
from runtime.telemetry.sqlite_pool import ConnectionPool

logger = logging.getLogger(__name__)

DEFAULT_MAX_ROWS = 1_000_000  # ~28 h at 10 inferences/s; at ~1 KB a record, about 1 GB of flash at most
OUTBOX_FORMAT = 1  # version of the on-disk layout below
SQLITE_MAGIC = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file
MAX_SEQUENCE = 2**63 - 1  # a sequence fits a signed 64-bit integer (the collector's stores)
RENUMBER_CHUNK = 1_000  # rows renumber_after rewrites per statement
# A stored payload's text: canonical (sorted keys, no spaces). Checked records are fresh trees of dicts, lists and
# scalars, never cyclic, so the encoder skips its cycle bookkeeping (a third of its time on a minute aggregate).
_PAYLOAD_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), check_circular=False)


def check_outbox_path(path: Path) -> Path:
    """``path`` if an outbox can live there: a SQLite file or nothing yet, in a folder that is one.

    A missing folder is created (a device's first run); a folder given as the outbox, a parent that is
    a file, or an existing file that is not SQLite is a ``TelemetryError`` — checked before any inference.
    """
    path = Path(path)
    expected = "a file path for the SQLite outbox (created on first use), inside a writable folder"
    if path.is_dir():
        raise TelemetryError(f"the telemetry outbox {path} is a folder", expected=expected,
                             fix="pass a file path, e.g. --telemetry-outbox outbox.sqlite")
    if path.exists():
        try:
            with path.open("rb") as handle:
                head = handle.read(len(SQLITE_MAGIC))
        except OSError as error:
            raise TelemetryError(f"the telemetry outbox {path} cannot be read ({error.strerror})",
                                 expected=expected, fix="check its permissions") from None
        if head and head != SQLITE_MAGIC:
            raise TelemetryError(f"the telemetry outbox {path} exists and is not a SQLite database",
                                 expected=expected, fix="pass a new path; never point the outbox at another file")
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise TelemetryError(f"the telemetry outbox's folder {path.parent} cannot be created ({error.strerror})",
                             expected=expected, fix="pass a path inside an existing, writable folder") from None
    return path

OUTBOX_TABLES = frozenset({"records", "counters", "metadata"})
_SCHEMA = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS records (
    sequence INTEGER PRIMARY KEY,
    payload TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS metadata (name TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO counters (name, value) VALUES ('last_sequence', 0), ('dropped', 0), ('rows', 0);
COMMIT;
"""


def _with_sequence(payload: str, sequence: int) -> str:
    """A stored payload with another sequence, in ``append``'s text form."""
    return _PAYLOAD_ENCODER.encode({**json.loads(payload), "sequence": sequence})


class Outbox:
    """Durable FIFO of validated telemetry records for one device."""

    def __init__(self, path: Path, device_id: str, max_rows: int = DEFAULT_MAX_ROWS) -> None:
        if max_rows < 1:
            raise TelemetryError(
                f"outbox max_rows is {max_rows}", expected="at least 1", fix="pass a positive max_rows"
            )
        if not is_pseudonymous_device_id(device_id):  # before anything is stored; never echoed (it may be a name)
            raise TelemetryError(
                "the outbox's device id is not a pseudonymous id",
                expected="16–64 lowercase hex characters (not all digits: that is a serial number) from "
                "pseudonymous_device_id(serial, fleet salt)",
                fix="derive the id with pseudonymous_device_id; never pass a name, record number or serial",
                field="device_id",
            )
        self.path = Path(path)
        self.device_id = device_id
        self.max_rows = max_rows
        check_outbox_path(self.path)
        self._pool = ConnectionPool(self.path, "outbox")
        try:
            self._check_foreign()
            connection = self._pool.run_script(_SCHEMA)
            self._claim_device(connection)
        except sqlite3.DatabaseError as error:
            self._pool.close()
            raise TelemetryError(f"the telemetry outbox {self.path} cannot be used as a SQLite database ({error})",
                                 expected="a SQLite outbox file written by this runtime, or a new path",
                                 fix="pass a new --telemetry-outbox path") from None

    # -- connections ---------------------------------------------------------------------------

    def _transaction(self, connection: sqlite3.Connection | None = None):
        return self._pool.transaction(connection)

    def _check_foreign(self) -> None:
        """Refuse another program's SQLite file (or a damaged one) before a table is added to it: an outbox holds
        exactly OUTBOX_TABLES, and passes SQLite's quick check."""
        with self._pool.lease() as connection:
            tables = {name for (name,) in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")}
            problem = connection.execute("PRAGMA quick_check").fetchone()[0]
            columns = {row[1] for row in connection.execute("PRAGMA table_info(records)")} if "records" in tables \
                else {"sequence"}
        if tables - OUTBOX_TABLES or "sequence" not in columns:
            self._pool.close()
            raise TelemetryError(f"{self.path} is a SQLite database of another program (tables: "
                                 f"{', '.join(sorted(tables))[:200]}), not a telemetry outbox",
                                 expected=f"an outbox this runtime wrote (tables {', '.join(sorted(OUTBOX_TABLES))}), "
                                 "or a new path", fix="pass a new --telemetry-outbox path; leave that file as it is")
        if problem != "ok":
            self._pool.close()
            raise TelemetryError(f"the telemetry outbox {self.path} is damaged (SQLite: {str(problem)[:200]})",
                                 expected="an outbox that passes SQLite's quick check",
                                 fix="move the file aside (keep it for inspection) and pass a new --telemetry-outbox "
                                 "path")

    def _claim_device(self, connection: sqlite3.Connection) -> None:
        with self._transaction(connection):
            connection.execute(
                "INSERT OR IGNORE INTO metadata (name, value) VALUES ('device_id', ?), ('format', ?)",
                (self.device_id, str(OUTBOX_FORMAT)),
            )
            stored = connection.execute("SELECT value FROM metadata WHERE name = 'device_id'").fetchone()[0]
        if stored != self.device_id:
            raise TelemetryError(
                f"the outbox at {self.path} belongs to another device id",
                expected="the device id the outbox was created with",
                fix="open it with that device id, or give this device its own outbox file",
            )

    @staticmethod
    def _counter(connection: sqlite3.Connection, name: str) -> int:
        return int(connection.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()[0])

    @staticmethod
    def _add(connection: sqlite3.Connection, name: str, amount: int) -> None:
        connection.execute("UPDATE counters SET value = value + ? WHERE name = ?", (amount, name))

    # -- queue operations ----------------------------------------------------------------------

    def append(self, record: dict[str, Any]) -> int:
        """Validate, assign the next sequence, commit durably; returns the sequence.

        ``device_id`` is filled in when absent; ``sequence`` must be absent (the outbox owns it).
        """
        return self.append_many([record])[0]

    def append_many(self, records: list[dict[str, Any]]) -> list[int]:
        """``append`` for several records in one durable transaction (one fsync, not one per record).

        All are validated first: one invalid record rejects the whole call and nothing is written.
        """
        checked = [self._checked(record) for record in records]
        if not checked:
            return []
        with self._transaction() as connection:
            first = self._counter(connection, "last_sequence") + 1
            excess = self._counter(connection, "rows") + len(checked) - self.max_rows
            if excess > 0:
                dropped = connection.execute(
                    "DELETE FROM records WHERE sequence IN (SELECT sequence FROM records ORDER BY sequence LIMIT ?)",
                    (excess,),
                ).rowcount
                self._add(connection, "dropped", dropped)
                self._add(connection, "rows", -dropped)
            created = utc_timestamp()
            rows = [
                (
                    first + offset,
                    _PAYLOAD_ENCODER.encode({"sequence": first + offset, **item}),
                    created,
                )
                for offset, item in enumerate(checked)
            ]
            connection.executemany("INSERT INTO records (sequence, payload, created_at) VALUES (?, ?, ?)", rows)
            self._add(connection, "last_sequence", len(rows))
            self._add(connection, "rows", len(rows))
        if excess > 0:
            logger.warning("outbox %s is full (%d rows): dropped the oldest %d", self.path, self.max_rows, excess)
        return [row[0] for row in rows]

    def _checked(self, record: dict[str, Any]) -> dict[str, Any]:
        if "sequence" in record:
            raise TelemetryError(
                "telemetry field 'sequence' was set by the caller",
                expected="no sequence: the outbox assigns it",
                fix="drop the sequence key",
                field="sequence",
            )
        full = {"device_id": self.device_id, **record}
        if record.get("kind") == AGGREGATE_KIND:  # a schema-3 minute aggregate
            checked = validate_aggregate(full, sequence_required=False)
        else:
            checked = validate_record(full, sequence_required=False)
        if checked["device_id"] != self.device_id:
            raise TelemetryError(
                "telemetry field 'device_id' differs from the outbox's device id",
                expected="the outbox's device id",
                fix="leave device_id out and let the outbox fill it in",
                field="device_id",
            )
        return checked

    def pending(self, limit: int = 500) -> list[dict[str, Any]]:
        """Up to ``limit`` of the oldest records, each with its ``sequence``; nothing is removed."""
        with self._pool.lease() as connection:
            rows = connection.execute("SELECT payload FROM records ORDER BY sequence LIMIT ?",
                                      (max(0, int(limit)),)).fetchall()
        return [json.loads(payload) for (payload,) in rows]

    def acknowledge(self, sequences: Iterable[int]) -> int:
        """Delete exactly these sequences (unknown ones are ignored); returns how many were deleted."""
        unique = sorted({int(sequence) for sequence in sequences})
        if not unique:
            return 0
        with self._transaction() as connection:
            before = connection.total_changes
            connection.executemany("DELETE FROM records WHERE sequence = ?", [(sequence,) for sequence in unique])
            deleted = connection.total_changes - before
            self._add(connection, "rows", -deleted)
        return deleted

    def renumber_after(self, resume_after: int) -> int:
        """Give every pending record a new sequence above ``resume_after`` (and above every sequence this outbox
        ever assigned), keeping their order; returns how many were renumbered, 0 when none was at or below it.

        The collector's answer to a reset outbox (HTTP 409, protocol.md): a new outbox file under the same device
        id numbers from 1 again, and sequences the collector already holds for other records would be taken for
        resends of them and lost. The new numbers were never assigned before, so an acknowledgement still in
        flight for an old number deletes nothing. One transaction, a chunk of rows at a time."""
        if isinstance(resume_after, bool) or not isinstance(resume_after, int) or resume_after < 0:
            raise TelemetryError(f"resume_after is {resume_after!r}", expected="a sequence (an integer ≥ 0)",
                                 fix="pass the collector's resume_after from its HTTP 409 answer")
        with self._transaction() as connection:
            lowest, highest = connection.execute("SELECT min(sequence), max(sequence) FROM records").fetchone()
            if lowest is None or lowest > resume_after:
                return 0
            shift = max(resume_after, self._counter(connection, "last_sequence")) + 1 - lowest
            if highest + shift > MAX_SEQUENCE:
                raise TelemetryError(
                    f"renumbering the outbox {self.path} above {resume_after} passes the largest sequence",
                    expected=f"sequences up to {MAX_SEQUENCE}", fix="give the device a new pseudonymous id")
            renumbered = 0
            while chunk := connection.execute(  # rows moved so far are negative: out of this query's range
                    "SELECT sequence, payload FROM records WHERE sequence > 0 ORDER BY sequence LIMIT ?",
                    (RENUMBER_CHUNK,)).fetchall():
                connection.executemany("UPDATE records SET sequence = ?, payload = ? WHERE sequence = ?", [
                    (-(sequence + shift), _with_sequence(payload, sequence + shift), sequence)
                    for sequence, payload in chunk])
                renumbered += len(chunk)
            connection.execute("UPDATE records SET sequence = -sequence WHERE sequence < 0")
            connection.execute("UPDATE counters SET value = ? WHERE name = 'last_sequence'", (highest + shift,))
        logger.warning("outbox %s: the collector holds sequences up to %d for this device (a reset outbox); "
                       "renumbered %d pending record(s) from %d", self.path, resume_after, renumbered,
                       lowest + shift)
        return renumbered

    def count(self) -> int:
        """Records waiting to be acknowledged."""
        with self._pool.lease() as connection:
            return self._counter(connection, "rows")

    def dropped(self) -> int:
        """Records ever dropped because the outbox was full (cumulative, never reset)."""
        with self._pool.lease() as connection:
            return self._counter(connection, "dropped")

    def last_sequence(self) -> int:
        """The highest sequence ever assigned (0 before the first append)."""
        with self._pool.lease() as connection:
            return self._counter(connection, "last_sequence")

    def close(self) -> None:
        """Close every thread's connection; further use raises ``TelemetryError``."""
        self._pool.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exception: object) -> None:
        self.close()
