"""One entry point to a telemetry store: ``open_store(location)`` picks the backend from the location.

A ``Path`` (or any text that is not a URL) is a SQLite file (``SqliteStore``, the embedded default); a
``postgresql://`` URL (``DatabaseUrl``) is a PostgreSQL database (``PostgresStore``). Opening migrates a writable
store to ``migrations.HEAD`` and refuses a newer one (``StoreSchemaError``); ``read_only=True`` (the dashboard)
never creates, writes or migrates.
"""

from __future__ import annotations

from pathlib import Path

from dashboard.collector.aggregates import Merge, merge_payloads
from dashboard.collector.interface import RollupMode, TelemetryStore
from dashboard.collector.postgres_store import PostgresStore
from dashboard.collector.store import SqliteStore
from dashboard.data.settings import DatabaseUrl, parse_database


def open_store(location: Path | str | DatabaseUrl, *, read_only: bool = False, merge: Merge = merge_payloads,
               rollups: RollupMode | str = RollupMode.INLINE) -> TelemetryStore:
    """The store at ``location``, migrated (unless ``read_only``) and ready; ``rollups`` says when it folds new
    aggregates into their hourly rollups (``RollupMode``)."""
    where = parse_database(location)
    if isinstance(where, DatabaseUrl):
        return PostgresStore(where, read_only=read_only, merge=merge, rollups=rollups)
    return SqliteStore(where, read_only=read_only, merge=merge, rollups=rollups)
