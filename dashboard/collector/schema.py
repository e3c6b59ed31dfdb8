"""The upload envelope (telemetry schema versions 1 and 2) and its checks, before anything is stored.

A batch is accepted or refused whole: ``parse_batch`` checks the envelope and every record
(through ``runtime.telemetry.records.validate_record``, under the envelope's schema version) and raises
``BatchError`` with the HTTP status, the record index and the field at the first problem. Reasons name
fields, never values. Schema 1 batches (older devices: a class and its confidence) are still accepted
and stored as sent; schema 2 records carry their task kind and its result.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runtime.telemetry.records import (
    SUPPORTED_SCHEMA_VERSIONS,
    TelemetryError,
    Vocabulary,
    is_pseudonymous_device_id,
    validate_record,
)

ENVELOPE_FIELDS = ("schema_version", "device_id", "dropped", "records")


@dataclass(frozen=True)
class CollectorLimits:
    """What one upload may hold; larger requests get HTTP 413."""

    max_body_bytes: int = 5 * 1024 * 1024  # 5 MiB: the device's uploader splits batches at 4 MiB
    max_records: int = 5_000  # ten default device batches (500); bounds one transaction's time
    max_depth: int = 8  # JSON nesting: envelope → records → record → result → scores is 5 deep
    max_integer: int = 2**63 - 1  # SQLite's INTEGER; larger integers are refused, not stored as text or floats


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


def _check_values(document: Any, limits: CollectorLimits) -> None:
    """``BatchError`` for nesting deeper than ``max_depth`` (400), an integer outside SQLite's range or a number
    that overflows to ±inf (422). Iterative: no recursion however the body nests (the JSON parser itself
    refuses nesting beyond Python's recursion limit with ``RecursionError``, answered 400)."""
    pending = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict | list) and depth > limits.max_depth:
            raise BatchError(400, f"the body nests JSON deeper than {limits.max_depth} levels")
        if isinstance(value, dict):
            pending.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            pending.extend((item, depth + 1) for item in value)
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > limits.max_integer:
            raise BatchError(422, f"the body holds an integer beyond ±{limits.max_integer}")
        elif isinstance(value, float) and not math.isfinite(value):
            raise BatchError(422, "the body holds a number too large for a float")


def parse_batch(body: bytes, limits: CollectorLimits | None = None,
                vocabularies: Callable[[Any], Vocabulary] | None = None) -> Batch:
    """The checked batch in ``body``, or ``BatchError`` (400 bad JSON, 413 too large, 422 invalid).

    ``vocabularies`` gives each record's allow-list (``BundleVocabularies.for_record``); without it every record
    keeps to the fixed ``Vocabulary()``.
    """
    limits = limits or CollectorLimits()
    if len(body) > limits.max_body_bytes:
        raise BatchError(413, f"the body is {len(body)} bytes, over the {limits.max_body_bytes}-byte limit")
    try:
        envelope = json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise BatchError(400, f"the body is not valid UTF-8 JSON ({type(error).__name__})") from None
    _check_values(envelope, limits)
    if not isinstance(envelope, dict):
        raise BatchError(400, f"the body is a JSON {type(envelope).__name__}, not an object")
    unknown = sorted(set(envelope) - set(ENVELOPE_FIELDS))
    if unknown:
        raise BatchError(422, f"envelope field '{unknown[0]}' is not part of the protocol", field=unknown[0])
    missing = [field for field in ENVELOPE_FIELDS if field not in envelope]
    if missing:
        raise BatchError(422, f"envelope field '{missing[0]}' is missing", field=missing[0])
    version = envelope["schema_version"]
    if isinstance(version, bool) or not isinstance(version, int) or version not in SUPPORTED_SCHEMA_VERSIONS:
        accepted = ", ".join(map(str, SUPPORTED_SCHEMA_VERSIONS))
        raise BatchError(422, f"schema_version is not supported; this collector accepts {accepted}",
                         field="schema_version")
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
    return Batch(device_id, dropped, _checked_records(records, device_id, version, vocabularies))


def _checked_records(records: list[Any], device_id: str, version: int,
                     vocabularies: Callable[[Any], Vocabulary] | None = None) -> tuple[dict[str, Any], ...]:
    checked: list[dict[str, Any]] = []
    seen: set[int] = set()
    for index, record in enumerate(records):
        try:
            vocabulary = vocabularies(record) if vocabularies is not None else Vocabulary()
            valid = validate_record(record, sequence_required=True, schema_version=version, vocabulary=vocabulary)
        except TelemetryError as error:
            raise BatchError(422, f"record {index}: {error}", index=index, field=error.field) from None
        if valid["device_id"] != device_id:
            raise BatchError(422, f"record {index}: device_id differs from the batch's", index=index, field="device_id")
        if valid["sequence"] in seen:
            raise BatchError(422, f"record {index}: sequence repeats within the batch", index=index, field="sequence")
        seen.add(valid["sequence"])
        checked.append(valid)
    return tuple(checked)
