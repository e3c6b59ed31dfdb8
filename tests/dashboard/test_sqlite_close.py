"""Closing a store or an outbox while another thread is running a statement waits for it, and never closes a
connection under its statement (sqlite3 with ``check_same_thread=False`` can crash the process then: seen as a
segfault when a collector test closed its store with upload threads still inside SQLite)."""

from __future__ import annotations

import logging
import sqlite3
import threading

import pytest

from dashboard.collector.interface import StoreUnavailableError
from dashboard.collector.store import SqliteStore
from runtime.telemetry import sqlite_pool
from runtime.telemetry.records import TelemetryError
from runtime.telemetry.sqlite_pool import ConnectionPool

WAIT_S = 30  # a bound on every wait below, so that a broken close fails the test instead of hanging it


class HeldStatement:
    """A thread whose statement is inside SQLite (a user function waiting on an event) until ``release``."""

    def __init__(self, connection_of, run) -> None:
        self.entered, self.released = threading.Event(), threading.Event()
        self.result: list | None = None
        self.error: BaseException | None = None

        def hold() -> int:
            self.entered.set()
            self.released.wait(WAIT_S)
            return 1

        def body() -> None:
            try:
                connection_of().create_function("hold", 0, hold)
                self.result = run("SELECT hold()")
            except BaseException as error:  # noqa: BLE001 - the test reports it
                self.error = error

        self.thread = threading.Thread(target=body, daemon=True)
        self.thread.start()
        assert self.entered.wait(WAIT_S), "the statement never started"

    def release(self) -> None:
        self.released.set()
        self.thread.join(WAIT_S)


def _closing(close) -> threading.Thread:
    thread = threading.Thread(target=close, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("read_only", [False, True])
def test_a_store_closed_during_a_read_waits_for_it_then_refuses_new_reads(tmp_path, read_only):
    SqliteStore(tmp_path / "telemetry.sqlite3").close()
    store = SqliteStore(tmp_path / "telemetry.sqlite3", read_only=read_only)
    connection_of = store._pool._connection if read_only else store._pool.connection
    held = HeldStatement(connection_of, store._read)
    closing = _closing(store.close)
    closing.join(0.2)
    assert closing.is_alive(), "close did not wait for the running read"
    held.release()
    closing.join(WAIT_S)
    assert not closing.is_alive() and held.error is None and held.result == [(1,)]
    with pytest.raises(StoreUnavailableError if read_only else TelemetryError, match="is closed"):
        store.schema_version()


def test_a_statement_that_outlasts_the_wait_keeps_its_connection_open(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(sqlite_pool, "CLOSE_WAIT_S", 0.1)
    pool = ConnectionPool(tmp_path / "outbox.sqlite3", "outbox")

    def read(query: str) -> list:
        with pool.lease() as connection:
            return connection.execute(query).fetchall()

    held = HeldStatement(pool.connection, read)
    with caplog.at_level(logging.WARNING, logger="runtime.telemetry.sqlite_pool"):
        pool.close()  # gives up waiting: closes what is idle, leaves the busy connection alone
    assert "still used it" in caplog.text
    held.release()
    assert held.error is None and held.result == [(1,)]  # its statement finished on its open connection


def test_a_thread_closing_inside_its_own_transaction_does_not_wait_for_itself(tmp_path):
    pool = ConnectionPool(tmp_path / "outbox.sqlite3", "outbox")
    pool.run_script("CREATE TABLE t (x INTEGER)")
    finished = threading.Event()

    def close_inside() -> None:
        with pytest.raises(sqlite3.ProgrammingError, match="closed database"), pool.transaction() as connection:
            connection.execute("INSERT INTO t VALUES (1)")
            pool.close()
        finished.set()

    thread = threading.Thread(target=close_inside, daemon=True)
    thread.start()
    thread.join(WAIT_S)
    assert finished.is_set() and pool.closed
