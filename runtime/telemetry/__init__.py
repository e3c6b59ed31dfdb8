"""Device telemetry: one pseudonymous summary record per inference, stored durably and forwarded.

``records`` defines and checks the schema, ``outbox`` is the on-device SQLite queue that survives
``kill -9`` and power loss, ``uploader`` forwards it to the collector (``protocol.md``).

Dependency rule: standard library only (``sqlite3``, ``urllib``), like the rest of ``runtime``.
"""

from runtime.telemetry.outbox import Outbox
from runtime.telemetry.records import (
    SCHEMA_VERSION,
    SUPPORTED_SCHEMA_VERSIONS,
    TelemetryError,
    pseudonymous_device_id,
    record_schema_version,
    utc_timestamp,
    validate_record,
)
from runtime.telemetry.uploader import Backoff, CollectorRejectedError, Uploader

__all__ = [
    "SCHEMA_VERSION",
    "SUPPORTED_SCHEMA_VERSIONS",
    "Backoff",
    "CollectorRejectedError",
    "Outbox",
    "TelemetryError",
    "Uploader",
    "pseudonymous_device_id",
    "record_schema_version",
    "utc_timestamp",
    "validate_record",
]
