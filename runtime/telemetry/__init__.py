"""Device telemetry: per-minute aggregates and the per-event records that matter, stored durably and forwarded.

``records`` defines and checks the per-event schema (2; 1 from older devices), ``aggregates`` builds the
per-minute aggregates (schema 3, ``MinuteAggregator``) on the bins of ``histogram``, ``aggregate_schema`` checks and
merges them, ``event_filter`` picks the events also sent on their own; ``outbox`` is the on-device SQLite queue
that survives ``kill -9`` and power loss, ``uploader`` forwards it to the collector, one schema version per
envelope (``protocol.md``).

Dependency rule: numpy and the standard library only (``sqlite3``, ``urllib``), like the rest of ``runtime``.
"""

from runtime.telemetry.aggregate_schema import merge_aggregates, validate_aggregate
from runtime.telemetry.aggregates import AggregateIdentity, AggregationPlan, MinuteAggregator
from runtime.telemetry.event_filter import FILTER_VERSION, EventFilter, EventFilterConfig, FilterRule
from runtime.telemetry.outbox import Outbox
from runtime.telemetry.records import (
    AGGREGATE_KIND,
    AGGREGATE_SCHEMA_VERSION,
    SCHEMA_VERSION,
    SUPPORTED_SCHEMA_VERSIONS,
    TelemetryError,
    pseudonymous_device_id,
    record_schema_version,
    utc_timestamp,
    validate_record,
)
from runtime.telemetry.uploader import Backoff, CollectorRejectedError, Uploader, version_groups

__all__ = [
    "AGGREGATE_KIND",
    "AGGREGATE_SCHEMA_VERSION",
    "FILTER_VERSION",
    "SCHEMA_VERSION",
    "SUPPORTED_SCHEMA_VERSIONS",
    "AggregateIdentity",
    "AggregationPlan",
    "Backoff",
    "CollectorRejectedError",
    "EventFilter",
    "EventFilterConfig",
    "FilterRule",
    "MinuteAggregator",
    "Outbox",
    "TelemetryError",
    "Uploader",
    "merge_aggregates",
    "pseudonymous_device_id",
    "record_schema_version",
    "utc_timestamp",
    "validate_aggregate",
    "validate_record",
    "version_groups",
]
