"""The upload envelope (telemetry schema versions 1, 2 and 3) and its checks, before anything is stored.

A schema-3 envelope is first tried on the compiled fast path (``compiled.decode_aggregates``: decoded and checked
in C, each aggregate re-encoded once for the store); whatever it does not vouch for is decided here, exactly.

A batch is accepted or refused whole: ``parse_batch`` checks the envelope and every record (through
``runtime.telemetry.records.validate_record`` for per-event records, ``aggregate_schema.validate_aggregate`` for
schema-3 aggregates, under the envelope's schema version and the bundle's vocabulary) and raises ``BatchError``
with the HTTP status, the record index and the field at the first problem. Reasons name fields, never values.
Schema 1 batches (older devices: a class and its confidence) are still accepted and stored as sent; schema 2
records carry their task kind and its result; schema 3 envelopes carry per-minute aggregates only. A version
this collector does not know is refused with 422 naming the version sent and the ones accepted.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dashboard.collector.compiled import decode_aggregates
from runtime.telemetry.aggregate_schema import validate_aggregate
from runtime.telemetry.records import (
    AGGREGATE_SCHEMA_VERSION,
    SUPPORTED_SCHEMA_VERSIONS,
    TelemetryError,
    Vocabulary,
    is_pseudonymous_device_id,
    shown_key,
    validate_record,
)

ENVELOPE_FIELDS = ("schema_version", "device_id", "dropped", "records")


MAX_UPLOAD_SEQUENCE = 2**53  # exact in every JSON reader, and leaves 2⁶³ − 2⁵³ numbers to renumber above


@dataclass(frozen=True)
class CollectorLimits:
    """What one upload may hold; larger requests get HTTP 413."""

    max_body_bytes: int = 5 * 1024 * 1024  # 5 MiB: the device's uploader splits batches at 4 MiB
    max_records: int = 5_000  # ten default device batches (500); bounds one transaction's time
    max_depth: int = 8  # JSON nesting: envelope → records → record → result → scores is 5 deep
    max_integer: int = 2**63 - 1  # SQLite's INTEGER; larger integers are refused, not stored as text or floats
    # JSON objects and arrays per record, counted before the body is parsed: a record has about 8, a minute aggregate
    # about 40. A body of millions of empty arrays parsed into ~50 times its size in Python objects before the
    # record count was checked; now it is refused first, so parsing costs at most ~10 times the body.
    max_containers_per_record: int = 64


@dataclass(frozen=True)
class Batch:
    """A checked upload: every record validated, normalised and belonging to ``device_id``."""

    device_id: str
    dropped: int  # the device's cumulative count of records dropped because its outbox was full
    records: tuple[Mapping[str, Any], ...]  # dicts; schema-3 aggregates of the fast path: ``EncodedAggregate``
    schema_version: int = 2  # the envelope's: 1 and 2 per-event records, 3 aggregates

    @property
    def aggregates(self) -> bool:
        """Whether the records are schema-3 minute aggregates (stored by ``insert_aggregates``)."""
        return self.schema_version == AGGREGATE_SCHEMA_VERSION


class BatchError(TelemetryError):
    """The upload is refused; ``status`` is the HTTP status to answer with, nothing is written."""

    def __init__(self, status: int, what: str, *, index: int | None = None, field: str | None = None,
                 expected: str | None = None, fix: str | None = None) -> None:
        super().__init__(what, expected=expected, fix=fix, field=field)
        self.status = status
        self.index = index


_ENVELOPE = "one UTF-8 JSON object {schema_version, device_id, dropped, records} (runtime/telemetry/protocol.md)"


def _json_kind(value: object) -> str:
    """What JSON calls the type of a decoded value (a refusal names it, never the value)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    kinds = ((dict, "object"), (list, "array"), (str, "string"), (int | float, "number"))
    return next((name for kind, name in kinds if isinstance(value, kind)), type(value).__name__)


_SEND_ENVELOPE = "send the envelope protocol.md describes (the device uploader does)"


def body_too_large(limit: int, size: int | str | None = None) -> BatchError:
    """413 for a body over ``limit`` bytes (``size``: its length, when known)."""
    what = f"the body is {size} bytes, over the {limit}-byte limit" if size is not None else (
        f"the body is over the {limit}-byte limit")
    return BatchError(413, what, expected=f"at most {limit} bytes", fix="send fewer records per request")


def _too_deep(max_depth: int) -> BatchError:
    return BatchError(400, f"the body nests JSON deeper than {max_depth} levels",
                      expected=f"at most {max_depth} levels (an envelope of records needs 5)", fix=_SEND_ENVELOPE)


def _integer_beyond(limit: int) -> BatchError:
    return BatchError(422, f"the body holds an integer beyond ±{limit}", expected=f"integers within ±{limit}",
                      fix="send counts and numbers in range")


class _ConstantError(ValueError):
    def __init__(self, constant: str) -> None:
        super().__init__(f"{constant} is not JSON")
        self.constant = constant


def _refuse_constant(name: str) -> float:
    raise _ConstantError(name)


# A number the fast path cannot vouch for: 19+ digits in a row (an integer may pass ±(2⁶³−1); a float may carry
# more digits than a float holds) or an exponent of 3+ digits (a float may overflow to ±inf), each followed by what
# may follow a number in JSON. Text inside strings that looks like that (a hex id) only sends the body down the
# exact path.
_SUSPECT_NUMBER = re.compile(rb"\d{19}(?=[\d.eE,}\]\s])|[eE][-+]?\d{3,}(?=[,}\]\s])")


def _check_values(document: Any, limits: CollectorLimits, body: bytes | None = None) -> None:
    """``BatchError`` for nesting deeper than ``max_depth`` (400), an integer outside SQLite's range or a number
    that overflows to ±inf (422). Iterative: no recursion however the body nests (the JSON parser itself
    refuses nesting beyond Python's recursion limit with ``RecursionError``, answered 400).

    With the raw ``body``, the numbers are checked on it at C speed (``_SUSPECT_NUMBER``): a body without a long
    digit run or a long exponent holds no integer or float out of range, and only the nesting is walked (its
    containers; a leaf costs one type test). Otherwise every value is checked."""
    if body is not None and _SUSPECT_NUMBER.search(body) is None:
        _check_depth(document, limits.max_depth)
        return
    pending = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict | list) and depth > limits.max_depth:
            raise _too_deep(limits.max_depth)
        if isinstance(value, dict):
            pending.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            pending.extend((item, depth + 1) for item in value)
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > limits.max_integer:
            raise _integer_beyond(limits.max_integer)
        elif isinstance(value, float) and not math.isfinite(value):
            raise BatchError(422, "the body holds a number too large for a float", expected="finite numbers",
                             fix="leave a value that is not finite out (the device runtime does)")


def _check_depth(document: Any, max_depth: int) -> None:
    """``BatchError(400)`` when containers nest deeper than ``max_depth`` (the document itself is level 1)."""
    pending = [(document, 1)] if type(document) in (dict, list) else []
    while pending:
        value, depth = pending.pop()
        if depth > max_depth:
            raise _too_deep(max_depth)
        for item in value.values() if type(value) is dict else value:
            if type(item) is dict or type(item) is list:
                pending.append((item, depth + 1))


def parse_batch(body: bytes, limits: CollectorLimits | None = None,
                vocabularies: Callable[[Any], Vocabulary] | None = None) -> Batch:
    """The checked batch in ``body``, or ``BatchError`` (400 bad JSON, 413 too large, 422 invalid).

    ``vocabularies`` gives each record's allow-list (``BundleVocabularies.for_record``); without it every record
    keeps to the fixed ``Vocabulary()``.
    """
    limits = limits or CollectorLimits()
    if len(body) > limits.max_body_bytes:
        raise body_too_large(limits.max_body_bytes, len(body))
    decoded = decode_aggregates(body, vocabularies, max_records=limits.max_records, max_integer=limits.max_integer)
    if decoded is not None:  # a schema-3 envelope checked in C; anything else takes the exact path below
        device_id, dropped, aggregates = decoded
        return _within_sequences(Batch(device_id, dropped, tuple(aggregates), AGGREGATE_SCHEMA_VERSION))
    containers = body.count(b"{") + body.count(b"[")  # an upper bound (a brace inside a string counts too)
    if containers > limits.max_records * limits.max_containers_per_record + 2:
        raise BatchError(413, f"the body holds {containers} JSON objects and arrays, more than {limits.max_records} "
                         "records can", expected=f"at most {limits.max_records} records of about "
                         f"{limits.max_containers_per_record} objects and arrays each", fix="send fewer records per "
                         "request, each as protocol.md describes")
    try:
        envelope = json.loads(body, parse_constant=_refuse_constant)
    except _ConstantError as error:
        raise BatchError(400, f"the body holds {error.constant}, which JSON has no number for",
                         expected="finite JSON numbers", fix="leave a value that is not finite out (the device "
                         "runtime leaves out a feature that is not finite)") from None
    except ValueError as error:
        if "integer string conversion" in str(error):  # an integer of thousands of digits (Python's parse limit)
            raise _integer_beyond(limits.max_integer) from None
        raise BatchError(400, f"the body is not valid UTF-8 JSON ({type(error).__name__})", expected=_ENVELOPE,
                         fix=_SEND_ENVELOPE) from None
    except RecursionError:
        raise BatchError(400, "the body is not valid UTF-8 JSON (nested too deep)", expected=_ENVELOPE,
                         fix=_SEND_ENVELOPE) from None
    aggregates = isinstance(envelope, dict) and type(envelope.get("schema_version")) is int and envelope[
        "schema_version"] == AGGREGATE_SCHEMA_VERSION
    if not aggregates:  # an aggregate bounds its own numbers and shapes (validate_aggregate): no generic walk
        _check_values(envelope, limits, body)
    if not isinstance(envelope, dict):
        raise BatchError(400, f"the body is a JSON {_json_kind(envelope)}, not an object", expected=_ENVELOPE,
                         fix=_SEND_ENVELOPE)
    unknown = sorted(set(envelope) - set(ENVELOPE_FIELDS))
    if unknown:
        shown = shown_key(unknown[0])
        raise BatchError(422, f"envelope field '{shown}' is not part of the protocol", field=shown,
                         expected=f"only the envelope fields {', '.join(ENVELOPE_FIELDS)}", fix="leave it out")
    missing = [field for field in ENVELOPE_FIELDS if field not in envelope]
    if missing:
        raise BatchError(422, f"envelope field '{missing[0]}' is missing", field=missing[0],
                         expected=f"every envelope field: {', '.join(ENVELOPE_FIELDS)}", fix=_SEND_ENVELOPE)
    version = envelope["schema_version"]
    if isinstance(version, bool) or not isinstance(version, int) or version not in SUPPORTED_SCHEMA_VERSIONS:
        accepted = ", ".join(map(str, SUPPORTED_SCHEMA_VERSIONS))
        # echoed as sent only when it is short enough to be a version (4, 2.0, true, "2"): a longer number or any
        # other text could be a date of birth or a record number typed into the wrong field, and is never echoed
        text = json.dumps(version) if isinstance(version, int | float | bool | str) else ""
        version_like = (isinstance(version, int | float | bool) and len(text) <= 4) or (
            isinstance(version, str) and 0 < len(version) <= 4 and set(version) <= set("0123456789."))
        sent = text if version_like else f"(a {_json_kind(version)} that is not a version number)"
        raise BatchError(422, f"schema_version {sent} is not supported; this collector accepts {accepted} "
                         f"(newest {max(SUPPORTED_SCHEMA_VERSIONS)})", field="schema_version",
                         expected="a schema_version this collector accepts",
                         fix="upgrade the collector, or send a version it accepts")
    device_id = envelope["device_id"]
    if not is_pseudonymous_device_id(device_id):
        raise BatchError(422, "device_id is not a pseudonymous id", field="device_id",
                         expected="16-64 lowercase hex characters, not all digits",
                         fix="derive it with runtime.telemetry.records.pseudonymous_device_id (never a serial "
                         "number, a name or a patient identifier)")
    dropped = envelope["dropped"]
    if isinstance(dropped, bool) or not isinstance(dropped, int) or not 0 <= dropped <= limits.max_integer:
        raise BatchError(422, "dropped is not a count", field="dropped",
                         expected=f"an integer from 0 to {limits.max_integer}",
                         fix="send the outbox's count of records dropped when it was full")
    records = envelope["records"]
    if not isinstance(records, list):
        raise BatchError(422, "records is not a list", field="records", expected="a JSON list of records",
                         fix=_SEND_ENVELOPE)
    if len(records) > limits.max_records:
        raise BatchError(413, f"the batch has {len(records)} records", expected=f"at most {limits.max_records}",
                         fix="split the batch (the device uploader sends at most 500 records per request)")
    return _within_sequences(Batch(device_id, dropped, _checked_records(records, device_id, version, vocabularies),
                                   version))


def _within_sequences(batch: Batch) -> Batch:
    """Refuse a sequence above ``MAX_UPLOAD_SEQUENCE``. A device numbers from 1 (a few million a year); one stored
    near 2⁶³ left no number to renumber above after an outbox reset (HTTP 409), so the device could never send
    again under its id."""
    for index, record in enumerate(batch.records):
        if record["sequence"] > MAX_UPLOAD_SEQUENCE:
            raise BatchError(422, f"record {index}'s sequence is above {MAX_UPLOAD_SEQUENCE}", index=index,
                             field="sequence", expected=f"sequences from 1 to {MAX_UPLOAD_SEQUENCE} (the outbox's)",
                             fix="let the outbox number the records; a device past this gets a new pseudonymous id")
    return batch


def _checked_records(records: list[Any], device_id: str, version: int,
                     vocabularies: Callable[[Any], Vocabulary] | None = None) -> tuple[dict[str, Any], ...]:
    checked: list[dict[str, Any]] = []
    seen: set[int] = set()
    for index, record in enumerate(records):
        try:
            vocabulary = vocabularies(record) if vocabularies is not None else Vocabulary()
            if version == AGGREGATE_SCHEMA_VERSION:
                valid = validate_aggregate(record, sequence_required=True, vocabulary=vocabulary)
            else:
                valid = validate_record(record, sequence_required=True, schema_version=version, vocabulary=vocabulary)
        except TelemetryError as error:
            raise BatchError(422, f"record {index}: {error}", index=index, field=error.field) from None
        if valid["device_id"] != device_id:
            raise BatchError(422, f"record {index}: device_id differs from the batch's", index=index, field="device_id",
                             expected="every record of the device that sends the envelope",
                             fix="send each device's records in its own requests")
        if valid["sequence"] in seen:
            raise BatchError(422, f"record {index}: sequence repeats within the batch", index=index, field="sequence",
                             expected="each outbox sequence once per batch", fix="send each outbox row once")
        seen.add(valid["sequence"])
        checked.append(valid)
    return tuple(checked)
