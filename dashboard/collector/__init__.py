"""The telemetry collector: receives device batches over HTTP and stores each record exactly once.

``app`` is the FastAPI service (``create_app``, ``serve``), ``schema`` checks an upload before
anything is written, ``store`` is the storage interface and its SQLite (WAL) implementation.
The protocol is described in ``runtime/telemetry/protocol.md``.
"""

from dashboard.collector.app import create_app, serve
from dashboard.collector.schema import Batch, BatchError, CollectorLimits, parse_batch
from dashboard.collector.store import Receipt, SqliteStore, TelemetryStore

__all__ = [
    "Batch",
    "BatchError",
    "CollectorLimits",
    "Receipt",
    "SqliteStore",
    "TelemetryStore",
    "create_app",
    "parse_batch",
    "serve",
]
