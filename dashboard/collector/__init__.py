"""The telemetry collector: receives device batches over HTTP and stores each record exactly once.

``app`` is the FastAPI service (``create_app``, ``serve``), ``schema`` checks an upload before
anything is written (a schema-3 upload first on ``compiled``'s fast path: decoded and checked in C).
``interface`` is the storage interface (``TelemetryStore``) that the collector and the
dashboard use; ``store`` implements it on SQLite (WAL, the embedded default) and ``postgres_store`` on
PostgreSQL, both with the schema of ``migrations``; ``backends.open_store`` picks one from a path or a
``postgresql://`` URL. ``aggregates`` defines per-minute aggregates and their hourly rollups (folded in the insert's
transaction, or queued and folded by the collector's ``RollupJob``: ``RollupMode``);
``postgres_server`` runs the project's own PostgreSQL for development and tests.
The protocol is described in ``runtime/telemetry/protocol.md``.
"""

from dashboard.collector.app import create_app, serve
from dashboard.collector.backends import open_store
from dashboard.collector.interface import (
    AggregateReceipt,
    Receipt,
    RollupMode,
    StoreRefusedError,
    StoreSchemaError,
    StoreUnavailableError,
    TelemetryStore,
)
from dashboard.collector.postgres_store import PostgresStore
from dashboard.collector.schema import Batch, BatchError, CollectorLimits, parse_batch
from dashboard.collector.store import SqliteStore

__all__ = [
    "AggregateReceipt",
    "Batch",
    "BatchError",
    "CollectorLimits",
    "PostgresStore",
    "Receipt",
    "RollupMode",
    "SqliteStore",
    "StoreRefusedError",
    "StoreSchemaError",
    "StoreUnavailableError",
    "TelemetryStore",
    "create_app",
    "open_store",
    "parse_batch",
    "serve",
]
