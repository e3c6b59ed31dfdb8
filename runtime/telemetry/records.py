"""The telemetry record schema (version 1): one record per inference, summaries only.

A record never carries a raw signal or anything that identifies a patient. ``validate_record``
enforces that on the device (before a record is stored) and on the collector (before it is
written): unknown keys, wrong types, lists of numbers anywhere (a raw waveform), keys that look
like patient identifiers and long strings are all refused with a ``TelemetryError`` naming the
field. Messages name fields, never their values, so an error can be logged without leaking data.

Dependency rule: standard library only (this package ships to the device).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import math
import re
from datetime import UTC, datetime
from typing import Any

from runtime.errors import EdgemedError

SCHEMA_VERSION = 1
MAX_STRING_CHARS = 200  # longer strings are free text, which could hold anything; refuse them
MAX_FEATURES = 128  # summary statistics only: a 252-sample ECG window cannot hide in the features
MAX_QUALITY_FLAGS = 32  # flags are short codes; more than this is not a flag list
DEVICE_ID_HEX_CHARS = 32  # 128 bits of HMAC-SHA256: collision-free across any fleet
_DEVICE_ID_PATTERN = re.compile(r"[0-9a-f]{16,64}")
_SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
_CAMEL_CASE = re.compile(r"([a-z0-9])([A-Z])")
_WORD_SEPARATOR = re.compile(r"[^a-z0-9]+")

# Whole words (after splitting on punctuation and camelCase) that mark a patient identifier.
IDENTIFIER_WORDS = frozenset({"name", "mrn", "dob", "ssn", "nhs", "surname", "forename", "initials"})
# Fragments that mark a patient identifier wherever they occur in a key.
IDENTIFIER_FRAGMENTS = ("patient", "birth", "address", "phone", "email", "firstname", "lastname", "postcode", "zipcode")

# field -> (what the value must be, human description)
FIELDS: dict[str, str] = {
    "sequence": "a positive integer assigned by the outbox",
    "time": "an ISO-8601 timestamp in UTC",
    "device_id": "a pseudonymous device id (lowercase hex, see pseudonymous_device_id)",
    "bundle_id": "a non-empty string",
    "bundle_sha256": "64 lowercase hex characters",
    "variant": "a non-empty string",
    "provider": "a non-empty string",
    "latency_us": "a finite number ≥ 0",
    "predicted_class": "a non-empty string",
    "confidence": "a number between 0 and 1",
    "quality_flags": "a list of short strings",
    "features": "an object of summary-statistic names to finite numbers",
}


class TelemetryError(EdgemedError):
    """A telemetry record, batch or upload is not acceptable; ``field`` names the culprit."""

    def __init__(
        self, what: str, *, expected: str | None = None, fix: str | None = None, field: str | None = None
    ) -> None:
        super().__init__(what, expected=expected, fix=fix)
        self.field = field


def utc_timestamp(moment: datetime | None = None) -> str:
    """``moment`` (default now) as canonical ISO-8601 UTC with microseconds: sortable as text."""
    moment = datetime.now(UTC) if moment is None else moment.astimezone(UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def pseudonymous_device_id(secret_or_serial: str, salt: str) -> str:
    """A stable pseudonym for a device: HMAC-SHA256(key=salt, serial), truncated hex.

    The same (serial, salt) always gives the same id; without the salt the serial cannot be
    recovered or confirmed, so devices send this instead of their serial.
    """
    if not secret_or_serial or not salt:
        raise TelemetryError(
            "a pseudonymous device id needs a non-empty serial and salt",
            expected="two non-empty strings",
            fix="pass the device serial and the fleet's secret salt",
            field="device_id",
        )
    digest = hmac.new(salt.encode("utf-8"), secret_or_serial.encode("utf-8"), hashlib.sha256).hexdigest()
    return digest[:DEVICE_ID_HEX_CHARS]


def is_pseudonymous_device_id(text: object) -> bool:
    """Whether ``text`` has the shape of a ``pseudonymous_device_id`` (16–64 lowercase hex)."""
    return isinstance(text, str) and _DEVICE_ID_PATTERN.fullmatch(text) is not None


@functools.lru_cache(maxsize=4096)  # keys repeat in every record; checking each once keeps batches fast
def looks_like_identifier(key: str) -> bool:
    """Whether a key names something that identifies a patient (name, MRN, birth date, …)."""
    spaced = _CAMEL_CASE.sub(r"\1 \2", key).lower()
    words = [word for word in _WORD_SEPARATOR.split(spaced) if word]
    compact = "".join(words)
    return any(word in IDENTIFIER_WORDS for word in words) or any(part in compact for part in IDENTIFIER_FRAGMENTS)


def _fail(field: str, what: str, expected: str, fix: str) -> TelemetryError:
    return TelemetryError(f"telemetry field '{field}' {what}", expected=expected, fix=fix, field=field)


def _scan(value: Any, field: str) -> None:
    """Refuse identifier-like keys, lists of numbers and long strings at any depth."""
    if isinstance(value, dict):
        for key, item in value.items():
            child = f"{field}.{key}" if field else str(key)
            if not isinstance(key, str):
                raise _fail(child, "has a non-string key", "string keys", "use string keys")
            if looks_like_identifier(key):
                raise _fail(
                    child,
                    "looks like a patient identifier",
                    "no names, record numbers, birth dates, addresses, phone numbers, emails or SSNs",
                    "remove the field; telemetry is pseudonymous and carries summaries only",
                )
            if len(key) > MAX_STRING_CHARS:
                raise _fail(child, f"has a key over {MAX_STRING_CHARS} characters", "short keys", "shorten the key")
            if isinstance(item, dict | list | tuple | str):  # numbers need no scan
                _scan(item, child)
    elif isinstance(value, list | tuple):
        if any(isinstance(item, int | float) and not isinstance(item, bool) for item in value):
            raise _fail(
                field,
                "holds a list of numbers, which looks like a raw waveform",
                "summary statistics only (a dict of named numbers under 'features')",
                "send summary features instead of the signal",
            )
        for index, item in enumerate(value):
            _scan(item, f"{field}[{index}]")
    elif isinstance(value, str) and len(value) > MAX_STRING_CHARS:
        raise _fail(field, f"is a string over {MAX_STRING_CHARS} characters", "short codes and labels", "shorten it")


def _text(record: dict[str, Any], field: str) -> str:
    value = record[field]
    if not isinstance(value, str) or not value:
        raise _fail(field, f"is {type(value).__name__}, not a non-empty string", FIELDS[field], "send a string")
    return value


def _number(value: Any, field: str, expected: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(field, "is not a finite number", expected, "send a finite number (report bad input as a flag)")
    return float(value)


def _time(record: dict[str, Any]) -> str:
    text = _text(record, "time")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _fail("time", "is not an ISO-8601 timestamp", FIELDS["time"], "use utc_timestamp()") from None
    if moment.utcoffset() is None or moment.utcoffset().total_seconds() != 0:
        raise _fail("time", "is not in UTC", "a timestamp ending in Z or +00:00", "use utc_timestamp()")
    return utc_timestamp(moment)


def validate_record(record: Any, *, sequence_required: bool = True) -> dict[str, Any]:
    """A checked, normalised copy of ``record`` (floats as floats, time in canonical UTC form).

    ``sequence_required=False`` is for the outbox, which assigns the sequence itself.
    """
    if not isinstance(record, dict):
        raise _fail("record", f"is {type(record).__name__}, not an object", "a JSON object", "send an object")
    _scan(record, "")
    unknown = sorted(set(record) - set(FIELDS))
    if unknown:
        raise _fail(unknown[0], "is not part of telemetry schema version 1", f"only {', '.join(FIELDS)}", "drop it")
    required = [field for field in FIELDS if sequence_required or field != "sequence"]
    missing = [field for field in required if field not in record]
    if missing:
        raise _fail(missing[0], "is missing", FIELDS[missing[0]], "fill in every schema field")

    checked: dict[str, Any] = {}
    if "sequence" in record:
        sequence = record["sequence"]
        if isinstance(sequence, bool) or not isinstance(sequence, int) or sequence < 1:
            raise _fail("sequence", "is not a positive integer", FIELDS["sequence"], "let the outbox assign it")
        checked["sequence"] = sequence
    checked["time"] = _time(record)
    device_id = _text(record, "device_id")
    if not is_pseudonymous_device_id(device_id):
        raise _fail("device_id", "is not a pseudonymous id", FIELDS["device_id"], "use pseudonymous_device_id()")
    checked["device_id"] = device_id
    checked["bundle_id"] = _text(record, "bundle_id")
    if not _SHA256_PATTERN.fullmatch(_text(record, "bundle_sha256")):
        raise _fail("bundle_sha256", "is not a sha256 hex digest", FIELDS["bundle_sha256"], "copy it from the bundle")
    checked["bundle_sha256"] = record["bundle_sha256"]
    for field in ("variant", "provider", "predicted_class"):
        checked[field] = _text(record, field)
    latency = _number(record["latency_us"], "latency_us", FIELDS["latency_us"])
    if latency < 0:
        raise _fail("latency_us", "is negative", FIELDS["latency_us"], "measure with a monotonic clock")
    checked["latency_us"] = latency
    confidence = _number(record["confidence"], "confidence", FIELDS["confidence"])
    if not 0.0 <= confidence <= 1.0:
        raise _fail("confidence", "is outside 0..1", FIELDS["confidence"], "send the softmax probability")
    checked["confidence"] = confidence
    checked["quality_flags"] = _quality_flags(record["quality_flags"])
    checked["features"] = _features(record["features"])
    return checked


def _quality_flags(flags: Any) -> list[str]:
    if not isinstance(flags, list) or not all(isinstance(flag, str) and flag for flag in flags):
        raise _fail("quality_flags", "is not a list of non-empty strings", FIELDS["quality_flags"], "send codes")
    if len(flags) > MAX_QUALITY_FLAGS:
        raise _fail("quality_flags", f"has over {MAX_QUALITY_FLAGS} entries", FIELDS["quality_flags"], "send fewer")
    return list(flags)


def _features(features: Any) -> dict[str, float]:
    if not isinstance(features, dict):
        raise _fail("features", "is not an object", FIELDS["features"], "send a dict of named numbers")
    if len(features) > MAX_FEATURES:
        raise _fail("features", f"has over {MAX_FEATURES} entries", "summary statistics only", "send summaries")
    return {
        name: _number(value, f"features.{name}", "a finite number (a summary statistic)")
        for name, value in features.items()
    }
