"""Per-thread SQLite connections in WAL mode with full fsync, shared by the outbox and the collector store.

Each thread gets its own connection (sqlite3 connections must not be used concurrently); ``close``
closes every one of them. Writes run in ``BEGIN IMMEDIATE`` transactions that roll back on any error.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from runtime.telemetry.records import TelemetryError

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 30_000  # how long a write waits for another connection's transaction before failing


class ConnectionPool:
    """One WAL, ``synchronous=FULL`` connection per thread to the SQLite file at ``path``."""

    def __init__(self, path: Path, name: str) -> None:
        self.path = Path(path)
        self.name = name  # what the file is, for messages ("outbox", "telemetry store")
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self.closed = False

    def connection(self) -> sqlite3.Connection:
        if self.closed:
            raise TelemetryError(f"the {self.name} at {self.path} is closed", fix=f"open a new {self.name}")
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
            mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                logger.warning(
                    "%s %s: journal_mode is %s, not WAL (no shared memory here?)", self.name, self.path, mode
                )
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    @contextmanager
    def transaction(self, connection: sqlite3.Connection | None = None) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``; ``ROLLBACK`` when the body or the commit fails."""
        connection = connection or self.connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise

    def run_script(self, script: str) -> sqlite3.Connection:
        """Run a schema script on this thread's connection, rolling back a half-applied one."""
        connection = self.connection()
        try:
            connection.executescript(script)
        except sqlite3.Error:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        return connection

    def close(self) -> None:
        self.closed = True
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()
