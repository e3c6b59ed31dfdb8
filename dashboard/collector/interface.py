"""What every telemetry store implements (``TelemetryStore``), its receipts and errors, and the pieces its
backends share.

Two backends implement it with the same results: ``SqliteStore`` (``store.py``, one file, the embedded default)
and ``PostgresStore`` (``postgres_store.py``, a fleet's server); ``backends.open_store`` picks one from a
location. Both keep the schema of ``migrations.py`` and refuse a store newer than it (``StoreSchemaError``); both
turn "the database cannot be reached or written now" into ``StoreUnavailableError``, which the collector answers
with HTTP 503 so devices keep their outbox and retry.

Both read aggregate and rollup payloads as their stored JSON text, decoded in C (``decode_payload``); a reader that
draws no drift asks for them without ``features`` (the feature histograms, most of every payload): never decoded,
and for rollups (migration 5: ``without_features`` / ``with_features``) never read from the table either.
"""

from __future__ import annotations

import json
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

import msgspec

from dashboard.collector.days import DayRollups
from dashboard.collector.migrations import HEAD
from runtime.telemetry.aggregates import IDENTITY_KEYS, SUMMARY_KEYS
from runtime.telemetry.records import TelemetryError, utc_timestamp

# The columns of ``TelemetryStore.record_rows``, in order. Schema-2 records carry ``task`` and ``result``;
# schema-1 records (older devices) ``predicted_class`` and ``confidence``: both read into the same columns.
RECORD_COLUMNS = (
    "device_id", "sequence", "time", "bundle_id", "bundle_sha256", "variant", "provider", "latency_us", "task",
    "predicted_class", "confidence", "quality_flags", "result",
)
DEVICE_COLUMNS = (  # the keys of each ``TelemetryStore.devices`` row, in order
    "device_id", "dropped", "first_received_at", "last_received_at", "records", "last_sequence", "first_time",
    "last_time",
)


class RollupMode(StrEnum):
    """When a store folds new aggregates into their hourly rollups."""

    INLINE = "inline"  # in the insert's own transaction: rollups are current when insert_aggregates returns
    DEFERRED = "deferred"  # queued in the insert's transaction, folded by roll_up_pending (the collector's job)


DEFAULT_ROLLUP_BATCH = 2_000  # aggregates one roll_up_pending call folds in one transaction


class StoreUnavailableError(TelemetryError):
    """The store cannot be reached, opened or written now (server down, file missing, disk or lock trouble);
    nothing was stored. A collector answers 503: the device keeps its records and retries."""


class StoreRefusedError(TelemetryError):
    """The store cannot keep this batch as it is (a value outside what the database holds); nothing was stored.
    A collector answers 422, as for any invalid batch."""


class SequenceConflictError(TelemetryError):
    """A batch reuses sequences the device already has stored with other content: its outbox was reset (a new file
    under the same device id) and numbers from 1 again. Nothing was stored; the collector answers 409 with
    ``resume_after``, the highest sequence it holds for the device, and the device renumbers its pending records
    above it (``Outbox.renumber_after``) and sends them again, so none is taken for a duplicate and lost."""

    def __init__(self, device_id: str, conflicting: Sequence[int], resume_after: int) -> None:
        super().__init__(
            f"device {device_id} sent {len(conflicting)} record(s) under sequences it already used for other records "
            f"(sequences {min(conflicting)}–{max(conflicting)}; its outbox was reset?); nothing was stored",
            expected=f"sequences above {resume_after}, the highest this collector holds for the device, or a resend "
                     "with the same content",
            fix=f"renumber the pending records from {resume_after + 1} (the edgemed uploader does this on HTTP 409)",
            field="sequence",
        )
        self.resume_after = resume_after
        self.conflicting = sorted(conflicting)


def highest_sequence_query(placeholder: str) -> str:
    """The highest sequence a store holds for a device (records or aggregates; 0 for none): a
    ``SequenceConflictError``'s ``resume_after``. Two ``placeholder`` parameters, both the device id."""
    return ("SELECT coalesce(max(sequence), 0) FROM (SELECT last_sequence AS sequence FROM devices WHERE device_id = "
            f"{placeholder} UNION ALL SELECT max(sequence) FROM telemetry WHERE device_id = {placeholder}) AS known")


class StoreSchemaError(TelemetryError):
    """The store's schema version is not the one this code reads and writes."""

    def __init__(self, location: str, found: int, supported: int, *, read_only: bool = False) -> None:
        if found > supported:
            what = (f"the telemetry store {location} is at schema version {found}, newer than version {supported}, "
                    "the newest this edgemed knows")
            fix = "upgrade edgemed here (the store was migrated by a newer one), or point it at another store"
        else:  # only a read-only opener (the dashboard) can meet an older store: it never migrates
            what = (f"the telemetry store {location} is at schema version {found}; this edgemed reads version "
                    f"{supported}")
            fix = "start the collector (edgemed collector) on it once: it migrates the store"
        super().__init__(what, expected=f"schema version {supported}" if read_only else
                         f"schema version {supported} or older", fix=fix)
        self.location = location
        self.found = found
        self.supported = supported


@dataclass(frozen=True)
class Receipt:
    """What ``insert_batch`` did with one batch."""

    acknowledged: list[int]  # every sequence of the batch that is now stored (new or already there)
    duplicates: int  # how many of those were already stored (a resend)


@dataclass(frozen=True)
class AggregateReceipt:
    """What ``insert_aggregates`` did with one batch of aggregates."""

    acknowledged: list[str]  # every record_id of the batch, now stored (new or already there), sorted
    duplicates: int  # how many of those were already stored (a resend)


class TelemetryStore(Protocol):
    """Idempotent telemetry storage: records keyed by (device_id, sequence), aggregates by (device_id, minute,
    bundle_id, record_id). Times are aware datetimes or ISO-8601 text with an offset; ranges include both ends."""

    location: str  # where the store is, for messages (a URL without its password)

    def insert_batch(self, device_id: str, records: Sequence[Mapping[str, Any]], dropped: int = 0) -> Receipt:
        """Store a validated batch in one transaction; rows already present are left as they are."""
        ...

    def records(self, device_id: str | None = None, since: datetime | str | None = None) -> list[dict[str, Any]]:
        """Stored records (optionally one device's, with ``time`` ≥ ``since``), oldest first."""
        ...

    def record_rows(self, device_id: str | None = None, since: datetime | str | None = None,
                    until: datetime | str | None = None, with_features: bool = False) -> list[tuple[Any, ...]]:
        """``RECORD_COLUMNS`` (plus ``features``) per record, oldest first, for the dashboard's tables."""
        ...

    def devices(self) -> list[dict[str, Any]]:
        """One summary per device that ever uploaded (``DEVICE_COLUMNS``), by device id."""
        ...

    def mark_simulated(self, device_id: str) -> None:
        """Record that ``device_id``'s uploads come from a simulator (idempotent)."""
        ...

    def simulated_devices(self) -> list[str]:
        """The device ids marked simulated, sorted."""
        ...

    def count(self) -> int:
        """How many records are stored."""
        ...

    def insert_aggregates(self, aggregates: Sequence[Mapping[str, Any]], *, device_id: str | None = None,
                          dropped: int | None = None) -> AggregateReceipt:
        """Store aggregates (``aggregates.check_aggregate``) in one transaction, once per (device, minute, bundle,
        record_id), and fold the new ones into their hourly rollups in the same transaction (``RollupMode.INLINE``)
        or queue them for ``roll_up_pending`` (``DEFERRED``). With ``device_id`` (a
        device's upload, every aggregate its own) the device's row in ``devices`` is kept as for records in the
        same transaction: ``dropped`` (the largest seen), received times, the last sequence (a payload's
        ``sequence``) and first/last time (the start and end of its minutes); ``records`` counts per-event records
        only."""
        ...

    def roll_up_pending(self, limit: int = DEFAULT_ROLLUP_BATCH) -> int:
        """Deferred rollups: fold up to ``limit`` queued aggregates into their rollups, removing them from the queue
        in the same transaction (each folded exactly once); how many were taken (0: nothing pending)."""
        ...

    def pending_rollups(self) -> int:
        """How many stored aggregates wait for their rollup (0 for an inline store)."""
        ...

    def check_writable(self) -> None:
        """``StoreUnavailableError`` unless a write would be accepted now (the readiness probe: a database that
        went read-only, was removed or replaced, or a server out of reach)."""
        ...

    def roll_up_days(self, limit: int = ..., now: datetime | None = None) -> int:
        """Fold up to ``limit`` queued days that ended ``days.DAY_SETTLE`` before ``now`` from their hourly rollups
        (``days.py``), removing them from the queue in the same transaction; how many days were taken."""
        ...

    def pending_days(self) -> int:
        """How many (device, day, bundle) wait to be folded (every day with rollups until it has ended)."""
        ...

    def day_rollups(self, since: datetime | str | None = None, until: datetime | str | None = None,
                    device_id: str | None = None, *, features: bool = True) -> DayRollups:
        """Daily rollups with ``since`` ≤ day start ≤ ``until`` that are current, by day, device and bundle (a row per
        identity the day's hours carry: ``days.fold_day_parts``), and the keys of that range's days still pending,
        read together; ``features`` as for ``aggregates``."""
        ...

    def aggregates(self, since: datetime | str | None = None, until: datetime | str | None = None,
                   device_id: str | None = None, *, features: bool = True,
                   received_after: datetime | str | None = None,
                   known: Container[tuple[str, str, str, str]] = ()) -> list[dict[str, Any]]:
        """Stored aggregates with ``since`` ≤ minute ≤ ``until``, by minute, device and bundle; without ``features``
        each payload lacks its ``features`` key (the feature histograms, ~80 % of it: never decoded). With
        ``received_after``, only those the collector stored after it, each row with its ``received_at`` (canonical
        UTC text), less those whose (device_id, minute, bundle_id, record_id) is ``known`` (never decoded): what a
        reader that already holds a block's rows needs to bring it up to date."""
        ...

    def rollups(self, since: datetime | str | None = None, until: datetime | str | None = None,
                device_id: str | None = None, *, features: bool = True) -> list[dict[str, Any]]:
        """Hourly rollups with ``since`` ≤ hour start ≤ ``until``, by hour, device and bundle; ``features`` as for
        ``aggregates``."""
        ...

    def rebuild_rollups(self, since: datetime | str | None = None, until: datetime | str | None = None) -> int:
        """Recompute the rollups of the hours from ``since``'s through ``until``'s from the stored aggregates
        (after a change of merge rule); how many rollups were written."""
        ...

    def prune_aggregates(self, before: datetime | str) -> int:
        """Delete aggregates older than ``before`` (rollups stay); how many were deleted."""
        ...

    def schema_version(self) -> int:
        """The store's schema version (``migrations.HEAD`` once migrated)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def canonical_json(value: Mapping[str, Any]) -> str:
    return json.dumps(dict(value), sort_keys=True, separators=(",", ":"), allow_nan=False)


_ANY_JSON = msgspec.json.Decoder()
_RAW_MEMBERS = msgspec.json.Decoder(dict[str, msgspec.Raw])
# The members of a device aggregate (runtime.telemetry.aggregates.assemble, plus the outbox's sequence): a payload
# with only these decodes in one call, its features kept as an unparsed slice; any other member, a fallback below.
_AGGREGATE_MEMBERS = ("kind", "record_id", *IDENTITY_KEYS, "minute", "seconds", "session", "bins_id", "filter",
                      "sequence", *(key for key in SUMMARY_KEYS if key != "features"))
_KnownMembers = msgspec.defstruct("_KnownMembers", [(name, Any, msgspec.UNSET) for name in _AGGREGATE_MEMBERS]
                                  + [("features", msgspec.Raw, msgspec.UNSET)], forbid_unknown_fields=True)
_KNOWN_MEMBERS = msgspec.json.Decoder(_KnownMembers)
_UNSET = msgspec.UNSET


def decode_payload(text: str | bytes, features: bool = True) -> Any:
    """A stored aggregate or rollup payload (JSON text) as ``json.loads`` gives it, decoded in C (msgspec); without
    ``features``, less its ``features`` member, which is only scanned, never built (~10× faster than ``json.loads``
    for a rollup, 80 % of whose text is feature histograms). Every other member is kept as stored, known or not."""
    if features:
        return _ANY_JSON.decode(text)
    try:  # the device's format: one call
        known = _KNOWN_MEMBERS.decode(text)
        return {name: value for name, value in zip(_AGGREGATE_MEMBERS, msgspec.structs.astuple(known), strict=False)
                if value is not _UNSET}
    except msgspec.ValidationError:  # another member, or not an object
        pass
    try:
        members = _RAW_MEMBERS.decode(text)  # each member's value as a slice of the text, unparsed
    except msgspec.ValidationError:  # not an object: not an aggregate, returned as it is (readers skip it)
        return _ANY_JSON.decode(text)
    return {name: _ANY_JSON.decode(value) for name, value in members.items() if name != "features"}


def without_features(payload: Any) -> tuple[Any, Mapping[str, Any] | None]:
    """(``payload`` less its ``features``, those features) of a rollup about to be stored (migration 5: features in a
    column of their own); (``payload``, None) when it has no features object (then they stay where they are)."""
    if isinstance(payload, Mapping) and isinstance(payload.get("features"), Mapping):
        return {key: value for key, value in payload.items() if key != "features"}, payload["features"]
    return payload, None


def with_features(payload_text: str | bytes, features_text: str | bytes | None, features: bool = True) -> Any:
    """A stored rollup's payload from its two columns (``without_features`` undone; features None: a row written
    before migration 5, whose payload holds them): the payload as stored whole, less ``features`` without them."""
    if not features or features_text is None:
        return decode_payload(payload_text, features)
    payload = decode_payload(payload_text)
    payload["features"] = _ANY_JSON.decode(features_text)
    return payload


def day_rollups_of(rows: Iterable[tuple[Any, ...]], features: bool) -> DayRollups:
    """``DayRollups`` of a store's one-statement read: (pending, device_id, bundle_id, day, hours, aggregates, payload
    text, features text) per row; pending rows carry only their key."""
    result = DayRollups()
    for waiting, device, bundle, day, hours, merged, payload, apart in rows:
        if waiting:
            result.pending.append((device, day, bundle))
        else:
            result.rows.append({"device_id": device, "bundle_id": bundle, "day": day, "hours": hours,
                                "aggregates": merged, "payload": with_features(payload, apart, features)})
    result.pending.sort()
    return result


def checked_rows(device_id: str, records: Sequence[Mapping[str, Any]]) -> list[tuple[int, str, str]]:
    """(sequence, canonical UTC time, canonical payload) per record, or ``TelemetryError`` when a record does not
    belong to the batch (records are checked by ``schema.parse_batch`` before they reach a store)."""
    rows = []
    for record in records:
        sequence = record.get("sequence")
        if record.get("device_id") != device_id or isinstance(sequence, bool) or not isinstance(sequence, int):
            raise StoreRefusedError(
                "a record's device_id or sequence does not fit its batch",
                expected="records checked by dashboard.collector.schema.parse_batch",
                fix="validate the batch before storing it",
            )
        try:
            time = utc_timestamp(aware(record["time"], "time"))  # canonical: sorts and compares the same everywhere
            rows.append((sequence, time, canonical_json(record)))
        except (KeyError, TypeError, ValueError):
            raise StoreRefusedError("a record has no ISO-8601 UTC time or is not finite JSON",
                                 expected="records checked by parse_batch",
                                 fix="validate the batch before storing it") from None
    return rows


def aggregate_device_row(device_id: str, aggregates: Sequence[Mapping[str, Any]], dropped: int | None
                         ) -> tuple[int, int | None, datetime | None, datetime | None]:
    """(dropped, last sequence, first minute start, last minute end) of a device's newly stored aggregates (checked
    by ``check_aggregate``), for its ``devices`` row; ``StoreRefusedError`` when one belongs to another device."""
    if any(aggregate["device_id"] != device_id for aggregate in aggregates):
        raise StoreRefusedError("an aggregate's device_id differs from the device's upload",
                                expected="aggregates checked by dashboard.collector.schema.parse_batch",
                                fix="send each device's aggregates under its own id")
    sequences = [aggregate["payload"].get("sequence") for aggregate in aggregates]
    sequences = [sequence for sequence in sequences if type(sequence) is int]
    starts = [datetime.fromisoformat(aggregate["minute"]) for aggregate in aggregates]
    spans = [aggregate["payload"].get("seconds") for aggregate in aggregates]
    ends = [start + timedelta(seconds=span if type(span) is int and span > 0 else 60)
            for start, span in zip(starts, spans, strict=True)]
    return (dropped or 0, max(sequences, default=None), min(starts, default=None), max(ends, default=None))


def aware(moment: datetime | str, name: str = "since") -> datetime:
    """``moment`` as an aware datetime; ``TelemetryError`` when it has no time zone."""
    value = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    if value.tzinfo is None:
        raise TelemetryError(f"'{name}' has no time zone", expected="an aware datetime or ISO-8601 with offset")
    return value


def check_version(location: str, found: int, *, read_only: bool = False) -> None:
    """``StoreSchemaError`` when a store at ``found`` cannot be used by this code (newer than ``HEAD``; for a
    read-only opener, also older, since it cannot migrate)."""
    if found > HEAD or (read_only and found != HEAD):
        raise StoreSchemaError(location, found, HEAD, read_only=read_only)


def conditions(columns: Iterable[tuple[str, Any]], placeholder: str) -> tuple[str, list[Any]]:
    """`` WHERE …`` (or nothing) and parameters for (``column operator``, value) pairs whose value is not None."""
    used = [(clause, value) for clause, value in columns if value is not None]
    where = f" WHERE {' AND '.join(f'{clause} {placeholder}' for clause, _ in used)}" if used else ""
    return where, [value for _, value in used]
