"""Per-thread SQLite connections in WAL mode with full fsync, shared by the outbox and the collector store.

Each thread gets its own connection (sqlite3 connections must not be used concurrently); ``close``
closes every one of them once no other thread is using one (``Leases``: closing a connection under another
thread's running statement can crash the process). Writes run in ``BEGIN IMMEDIATE`` transactions that roll back
on any error.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from runtime.telemetry.records import TelemetryError

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 30_000  # how long a write waits for another connection's transaction before failing
CLOSE_WAIT_S = BUSY_TIMEOUT_MS / 1000 + 5  # how long close waits for the statements running in other threads


class Leases:
    """Which connections are in use, so that ``close`` waits for them instead of closing them under a statement.

    ``hold()`` around every use of a connection; ``close()`` refuses new holds, then waits (at most ``timeout_s``)
    until no other thread holds one; a thread's own holds never make its ``close`` wait."""

    def __init__(self, refusal: type[Exception], what: str) -> None:
        self._condition = threading.Condition()
        self._active = 0
        self._own = threading.local()
        self._refusal = refusal
        self._what = what
        self.closed = False

    @contextmanager
    def hold(self) -> Iterator[None]:
        with self._condition:
            if self.closed:
                raise self._refusal(f"the {self._what} is closed", fix=f"open a new {self._what}")
            self._active += 1
        self._own.count = getattr(self._own, "count", 0) + 1
        try:
            yield
        finally:
            self._own.count -= 1
            with self._condition:
                self._active -= 1
                self._condition.notify_all()

    def close(self, timeout_s: float | None = None) -> bool:
        """Refuse new holds; whether every other thread let go of its connection within ``timeout_s`` (default
        ``CLOSE_WAIT_S``)."""
        own = getattr(self._own, "count", 0)
        with self._condition:
            self.closed = True
            return self._condition.wait_for(lambda: self._active <= own,
                                            timeout=CLOSE_WAIT_S if timeout_s is None else timeout_s)


class ConnectionPool:
    """One WAL, ``synchronous=FULL`` connection per thread to the SQLite file at ``path``.

    The first connection may create the file; later ones open it only if it is still there, and every commit
    first checks that ``path`` still names the file the pool opened: a database removed or replaced while the
    process runs fails its writes (``sqlite3.OperationalError``) instead of committing into a deleted file, whose
    rows would be acknowledged and lost."""

    def __init__(self, path: Path, name: str) -> None:
        self.path = Path(path)
        self.name = name  # what the file is, for messages ("outbox", "telemetry store")
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._identity: tuple[int, int] | None = None  # (device, inode) of the file the first connection opened
        self._leases = Leases(TelemetryError, f"{name} at {self.path}")

    @property
    def closed(self) -> bool:
        return self._leases.closed

    @contextmanager
    def lease(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection, held for the body: ``close`` waits until it is let go."""
        with self._leases.hold():
            yield self.connection()

    def connection(self) -> sqlite3.Connection:
        """This thread's connection, for use inside ``lease`` (or ``transaction``)."""
        if self.closed:
            raise TelemetryError(f"the {self.name} at {self.path} is closed", fix=f"open a new {self.name}")
        connection = getattr(self._local, "connection", None)
        if connection is None:
            target = self.path if self._identity is None else f"{self.path.resolve().as_uri()}?mode=rw"
            connection = sqlite3.connect(target, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                         check_same_thread=False, uri=self._identity is not None)
            mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                logger.warning(
                    "%s %s: journal_mode is %s, not WAL (no shared memory here?)", self.name, self.path, mode
                )
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            if self._identity is None:
                self._identity = self._file_identity()
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    @contextmanager
    def transaction(self, connection: sqlite3.Connection | None = None) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``; ``ROLLBACK`` when the body or the commit fails."""
        with self._leases.hold():
            connection = connection or self.connection()
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
                self.check_identity()
                connection.execute("COMMIT")
            except BaseException as error:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                if isinstance(error, sqlite3.OperationalError) and str(
                        getattr(error, "sqlite_errorname", "")).startswith(("SQLITE_READONLY", "SQLITE_IOERR")):
                    self._discard(connection)  # SQLite fell back to read-only (or lost the file): reopen when next
                raise

    def check_identity(self) -> None:
        """``sqlite3.OperationalError`` when ``path`` no longer names the file the pool opened (removed or replaced
        while open): a commit there would go into a deleted file. Every transaction checks it before committing."""
        if self._file_identity() != self._identity:
            raise sqlite3.OperationalError(f"the {self.name} file {self.path} was removed or replaced while open")

    def _discard(self, connection: sqlite3.Connection) -> None:
        """Forget this thread's connection (closed): the next ``connection()`` opens a new one, which can write
        again once the file can be written."""
        if getattr(self._local, "connection", None) is connection:
            self._local.connection = None
        with self._lock:
            if connection in self._connections:
                self._connections.remove(connection)
        connection.close()

    def _file_identity(self) -> tuple[int, int] | None:
        try:
            status = os.stat(self.path)
        except OSError:
            return None
        return status.st_dev, status.st_ino

    def run_script(self, script: str) -> sqlite3.Connection:
        """Run a schema script on this thread's connection, rolling back a half-applied one."""
        with self.lease() as connection:
            try:
                connection.executescript(script)
            except sqlite3.Error:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
        return connection

    def close(self) -> None:
        """Close every connection, after the statements other threads are running (``Leases``); a connection still
        in use after ``CLOSE_WAIT_S`` is left open, never closed under its statement."""
        idle = self._leases.close()
        with self._lock:
            connections, self._connections = self._connections, []
        if not idle:
            logger.warning("%s %s: closed while other threads still used it after %.0f s; their connections are left "
                           "to close with them", self.name, self.path, CLOSE_WAIT_S)
            own = getattr(self._local, "connection", None)
            connections = [connection for connection in connections if connection is own]
        for connection in connections:
            connection.close()
