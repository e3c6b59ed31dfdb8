"""The upload envelope (telemetry schema version 1) and its checks, before anything is stored.

A batch is accepted or refused whole: ``parse_batch`` checks the envelope and every record
(through ``runtime.telemetry.records.validate_record``) and raises ``BatchError`` with the HTTP
status, the record index and the field at the first problem. Reasons name fields, never values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from runtime.telemetry.records import SCHEMA_VERSION, TelemetryError, is_pseudonymous_device_id, validate_record

ENVELOPE_FIELDS = ("schema_version", "device_id", "dropped", "records")


@dataclass(frozen=True)
class CollectorLimits:
    """What one upload may hold; larger requests get HTTP 413."""

    max_body_bytes: int = 5 * 1024 * 1024  # 5 MiB: the device's uploader splits batches at 4 MiB
    max_records: int = 5_000  # ten default device batches (500); bounds one transaction's time


@dataclass(frozen=True)
class Batch:
    """A checked upload: every record validated, normalised and belonging to ``device_id``."""

    device_id: str
    dropped: int  # the device's cumulative count of records dropped because its outbox was full
    records: tuple[dict[str, Any], ...]


class BatchError(TelemetryError):
    """The upload is refused; ``status`` is the HTTP status to answer with, nothing is written."""

    def __init__(self, status: int, what: str, *, index: int | None = None, field: str | None = None) -> None:
        super().__init__(what, field=field)
        self.status = status
        self.index = index


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def parse_batch(body: bytes, limits: CollectorLimits | None = None) -> Batch:
    """The checked batch in ``body``, or ``BatchError`` (400 bad JSON, 413 too large, 422 invalid)."""
    limits = limits or CollectorLimits()
    if len(body) > limits.max_body_bytes:
        raise BatchError(413, f"the body is {len(body)} bytes, over the {limits.max_body_bytes}-byte limit")
    try:
        envelope = json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError) as error:
        raise BatchError(400, f"the body is not valid UTF-8 JSON ({type(error).__name__})") from None
    if not isinstance(envelope, dict):
        raise BatchError(400, f"the body is a JSON {type(envelope).__name__}, not an object")
    unknown = sorted(set(envelope) - set(ENVELOPE_FIELDS))
    if unknown:
        raise BatchError(422, f"envelope field '{unknown[0]}' is not part of the protocol", field=unknown[0])
    missing = [field for field in ENVELOPE_FIELDS if field not in envelope]
    if missing:
        raise BatchError(422, f"envelope field '{missing[0]}' is missing", field=missing[0])
    version = envelope["schema_version"]
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise BatchError(
            422, f"schema_version is not supported; this collector accepts {SCHEMA_VERSION}", field="schema_version"
        )
    device_id = envelope["device_id"]
    if not is_pseudonymous_device_id(device_id):
        raise BatchError(422, "device_id is not a pseudonymous id (16-64 lowercase hex)", field="device_id")
    dropped = envelope["dropped"]
    if isinstance(dropped, bool) or not isinstance(dropped, int) or dropped < 0:
        raise BatchError(422, "dropped is not an integer ≥ 0", field="dropped")
    records = envelope["records"]
    if not isinstance(records, list):
        raise BatchError(422, "records is not a list", field="records")
    if len(records) > limits.max_records:
        raise BatchError(413, f"the batch has {len(records)} records, over the {limits.max_records}-record limit")
    return Batch(device_id, dropped, _checked_records(records, device_id))


def _checked_records(records: list[Any], device_id: str) -> tuple[dict[str, Any], ...]:
    checked: list[dict[str, Any]] = []
    seen: set[int] = set()
    for index, record in enumerate(records):
        try:
            valid = validate_record(record, sequence_required=True)
        except TelemetryError as error:
            raise BatchError(422, f"record {index}: {error}", index=index, field=error.field) from None
        if valid["device_id"] != device_id:
            raise BatchError(422, f"record {index}: device_id differs from the batch's", index=index, field="device_id")
        if valid["sequence"] in seen:
            raise BatchError(422, f"record {index}: sequence repeats within the batch", index=index, field="sequence")
        seen.add(valid["sequence"])
        checked.append(valid)
    return tuple(checked)
