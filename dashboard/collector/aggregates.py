"""Per-minute aggregate records as the store keeps them, and how they roll up into hours.

An aggregate is ``{"device_id", "bundle_id", "minute", "record_id", "payload"}``: one device's summary of one
bundle's inferences during one UTC minute (``minute`` is the minute's start, ISO 8601), named by a ``record_id``
the device derives from its content's identity (what the collector acknowledges), and carrying a ``payload``
object whose fields belong to the device-side format (``runtime/telemetry/aggregates.py``: the whole schema-3
record fits), not to the store. The store keeps each (device, minute, bundle, record_id) once: a resend is a
duplicate (one whose payload differs is logged, the first kept), while a second aggregate of the same minute
under another ``record_id`` (a stream restarted within the minute, a variant switch) is stored beside the first.

Rollups are hourly per (device, hour, bundle): ``aggregates`` counts the aggregates merged and ``payload`` is their
merge. The default rule (``merge_payloads``) is generic: numbers are summed, except under a key with the word
``min`` or ``max`` in it (``latency_max_us``, ``min``: words split at ``_``), which keeps the smallest/largest,
and under a key with the word ``id`` or ``version``, which is kept when equal (like text); booleans are or-ed;
objects merge key by key (a histogram as ``{bin: count}`` sums per bin); lists of numbers of equal length are
summed element-wise; anything else is kept when every part agrees, else becomes null. So a payload should carry
counts and sums (``latency_sum_us`` with ``count``), never means or percentiles, to roll up exactly. A store takes
another rule as ``merge=`` (the device format's own ``merge_aggregates``, say); then ``rebuild_rollups``
recomputes the stored hours with it. Float sums are added in minute order on both backends.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import math
import operator
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

import msgspec

from runtime.telemetry.aggregate_schema import fold_aggregates, merge_aggregates
from runtime.telemetry.records import AGGREGATE_KIND, TelemetryError, is_pseudonymous_device_id, utc_timestamp

_logger = logging.getLogger(__name__)
AGGREGATE_FIELDS = ("device_id", "bundle_id", "minute", "record_id", "payload")
ROLLUP_FIELDS = ("device_id", "bundle_id", "hour", "aggregates", "payload")
_CODE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,99}")  # as runtime's bundle ids
_RECORD_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")

_IDENTITY_WORDS = frozenset({"id", "version"})  # numbers that name something (a format version): never summed
Merge = Callable[[Mapping[str, Any], Mapping[str, Any]], dict[str, Any]]
RollupKey = tuple[str, str, str]  # (device_id, hour as canonical UTC text, bundle_id)


def _fail(field: str, what: str, expected: str) -> TelemetryError:
    return TelemetryError(f"aggregate field '{field}' {what}", expected=expected, field=field,
                          fix="send aggregates as runtime/telemetry/aggregates.py writes them")


def parse_minute(value: object, field: str = "minute") -> datetime:
    """The aware UTC minute start in ``value`` (ISO 8601 with a zero offset, seconds and fraction zero)."""
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.utcoffset() is None or moment.utcoffset().total_seconds() != 0:
        raise _fail(field, "is not an ISO-8601 UTC time", "the minute's start, e.g. 2025-01-31T12:34:00Z")
    if moment.second or moment.microsecond:
        raise _fail(field, "is not the start of a minute", "seconds and fraction zero")
    return moment


class EncodedAggregate(Mapping[str, Any]):
    """A checked schema-3 aggregate and the JSON text a store writes for it (``compiled.decode_aggregates``): its
    index fields are at hand, the rest is decoded from the text only when something reads it (an inline rollup)."""

    __slots__ = ("_value", "fields", "text")

    def __init__(self, text: bytes, fields: dict[str, Any]) -> None:
        self.text = text  # UTF-8 JSON of the whole checked aggregate
        self.fields = fields  # device_id, bundle_id, minute, record_id, sequence, seconds: as in the text
        self._value: dict[str, Any] | None = None

    def value(self) -> dict[str, Any]:
        if self._value is None:
            self._value = msgspec.json.decode(self.text)
        return self._value

    def __getitem__(self, key: str) -> Any:
        fields = self.fields
        return fields[key] if key in fields else self.value()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.value())

    def __len__(self) -> int:
        return len(self.value())

    def __repr__(self) -> str:
        return f"EncodedAggregate({self.fields!r})"


def check_aggregate(aggregate: Any) -> dict[str, Any]:
    """A normalised copy of ``aggregate`` (``minute`` as canonical UTC text), or ``TelemetryError`` naming the
    field."""
    return checked_with_text(aggregate)[0]


def checked_with_text(aggregate: Any) -> tuple[dict[str, Any], str]:
    """``check_aggregate`` and the payload as JSON text: what a store writes, encoded once (an aggregate's payload is
    several kilobytes): canonical (sorted keys, no spaces), or an ``EncodedAggregate``'s own text as it is."""
    if not isinstance(aggregate, Mapping):
        raise _fail("aggregate", f"is {type(aggregate).__name__}, not an object", "a JSON object")
    unknown = sorted(set(aggregate) - set(AGGREGATE_FIELDS))
    if unknown:
        raise _fail(unknown[0], "is not part of an aggregate", f"only {', '.join(AGGREGATE_FIELDS)}")
    missing = [field for field in AGGREGATE_FIELDS if field not in aggregate]
    if missing:
        raise _fail(missing[0], "is missing", f"every one of {', '.join(AGGREGATE_FIELDS)}")
    if not is_pseudonymous_device_id(aggregate["device_id"]):
        raise _fail("device_id", "is not a pseudonymous id", "16-64 lowercase hex, not all digits")
    for field, pattern in (("bundle_id", _CODE_PATTERN), ("record_id", _RECORD_ID_PATTERN)):
        if not isinstance(aggregate[field], str) or not pattern.fullmatch(aggregate[field]):
            raise _fail(field, "is not a code", "letters, digits and ._:- (bundle ids also +), at most 100-128")
    payload = aggregate["payload"]
    if not isinstance(payload, Mapping):
        raise _fail("payload", "is not an object", "a JSON object of counts and sums")
    if isinstance(payload, EncodedAggregate):  # checked and encoded by the collector's fast path: written as is
        text = payload.text.decode()
    else:
        try:
            text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError):
            raise _fail("payload", "is not finite JSON", "JSON values with finite numbers") from None
        payload = dict(payload)
    return {
        "device_id": aggregate["device_id"],
        "bundle_id": aggregate["bundle_id"],
        "minute": utc_timestamp(parse_minute(aggregate["minute"])),
        "record_id": aggregate["record_id"],
        "payload": payload,
    }, text


def hour_of(minute: str | datetime) -> str:
    """The canonical UTC text of the hour that holds ``minute``."""
    moment = datetime.fromisoformat(minute) if isinstance(minute, str) else minute
    return utc_timestamp(moment.replace(minute=0, second=0, microsecond=0))


def hour_window(since: datetime | None, until: datetime | None) -> tuple[datetime | None, datetime | None]:
    """[start, end) of the whole hours from ``since``'s hour through ``until``'s hour (None: unbounded)."""
    start = None if since is None else since.replace(minute=0, second=0, microsecond=0)
    end = None if until is None else until.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return start, end


_NUMBERS = (int, float)  # exact types: a JSON boolean is not a number here


@functools.lru_cache(maxsize=4096)  # keys repeat in every payload
def _rule(key: str | None) -> Callable[[Any, Any], Any]:
    """How two numbers under ``key`` merge: kept when equal (an id or version), smallest, largest, or summed."""
    words = set((key or "").lower().split("_"))
    if words & _IDENTITY_WORDS:
        return lambda total, addition: total if total == addition else None
    if words & {"min", "minimum"}:
        return min
    if words & {"max", "maximum"}:
        return max
    return operator.add


def merge_values(total: Any, addition: Any, key: str | None = None) -> Any:
    """``total`` and ``addition`` merged by the default rollup rule (see the module docstring)."""
    if type(total) in _NUMBERS and type(addition) in _NUMBERS:
        merged = _rule(key)(total, addition)
        return None if type(merged) is float and not math.isfinite(merged) else merged
    if type(total) is bool and type(addition) is bool:
        return total or addition
    if isinstance(total, Mapping) and isinstance(addition, Mapping):
        merged = dict(total)
        for name, value in addition.items():
            merged[name] = merge_values(total[name], value, name) if name in total else copy.deepcopy(value)
        return merged
    if (type(total) is list and type(addition) is list and len(total) == len(addition)
            and all(type(item) in _NUMBERS for item in (*total, *addition))):
        return [left + right for left, right in zip(total, addition)]
    return total if total == addition else None


def merge_payloads(total: Mapping[str, Any], addition: Mapping[str, Any]) -> dict[str, Any]:
    """The default ``Merge``: two minutes' (or hours') payloads as one."""
    return merge_values(dict(total), dict(addition))


def merge_device_aggregates(total: Mapping[str, Any], addition: Mapping[str, Any]) -> dict[str, Any]:
    """The collector's ``Merge``: two schema-3 payloads (``kind: "aggregate"``) by the device format's own
    ``runtime.telemetry.aggregate_schema.merge_aggregates``; anything else, or two aggregates it refuses to merge
    (other bins or bundle sha under one bundle id: a bundle rebuilt without a new id), by the generic rule, with a
    warning, so a rollup never fails the batch that brought its minute."""
    if total.get("kind") == addition.get("kind") == AGGREGATE_KIND:
        try:
            return merge_aggregates(total, addition)
        except (TelemetryError, KeyError, TypeError, ValueError) as error:
            _logger.warning("rolled up two aggregates of %s by the generic rule: %s", total.get("bundle_id"),
                            getattr(error, "what", error))
    return merge_payloads(total, addition)


def _fold_device_aggregates(payloads: list[Mapping[str, Any]]) -> dict[str, Any]:
    """``merge_device_aggregates`` over several payloads at once: schema-3 aggregates by the runtime's one-pass
    ``fold_aggregates`` (the same result as merging them pairwise), anything else pair by pair."""
    if all(payload.get("kind") == AGGREGATE_KIND for payload in payloads):
        try:
            return fold_aggregates(payloads)
        except (TelemetryError, KeyError, TypeError, ValueError):
            pass  # the pairwise merge below warns and falls back to the generic rule where it must
    return functools.reduce(merge_device_aggregates, payloads)


merge_device_aggregates.many = _fold_device_aggregates  # fold_rollups folds a rollup's new minutes in one pass


def fold_rollups(aggregates: Iterable[Mapping[str, Any]], merge: Merge = merge_payloads,
                 start: Mapping[RollupKey, tuple[int, Any]] | None = None,
                 ) -> dict[RollupKey, tuple[int, dict[str, Any]]]:
    """(aggregates merged, payload) per rollup key: ``start`` (stored rollups) plus ``aggregates``, merged in
    (minute, record_id) order (a ``merge`` with a ``many`` attribute folds each key's payloads in one call)."""
    rollups = dict(start or {})
    rollups.update(iter_rollups(aggregates, merge, start))
    return rollups


def iter_rollups(aggregates: Iterable[Mapping[str, Any]], merge: Merge = merge_payloads,
                 start: Mapping[RollupKey, tuple[int, Any]] | None = None,
                 decode: Callable[[Any], Mapping[str, Any]] | None = None,
                 decode_stored: Callable[[Any], Mapping[str, Any]] | None = None,
                 ) -> Iterator[tuple[RollupKey, tuple[int, dict[str, Any]]]]:
    """``fold_rollups`` one rollup at a time, in key order, for the keys ``aggregates`` touch (a ``start`` rollup
    no aggregate touches is not yielded). With ``decode`` (``decode_stored``), each aggregate's ``payload`` (each
    ``start`` payload) is what that function turns into the payload, decoded only when its rollup is folded: a
    caller that stores each rollup before taking the next holds one rollup's objects at a time, not a batch's (the
    rollup job folds thousands of minutes per call; holding them all made the garbage collector's passes a third
    of its time)."""
    groups: dict[RollupKey, list[Any]] = {}
    for aggregate in sorted(aggregates, key=lambda item: (item["minute"], item["device_id"], item["bundle_id"],
                                                          item.get("record_id", ""))):
        key = (aggregate["device_id"], hour_of(aggregate["minute"]), aggregate["bundle_id"])
        groups.setdefault(key, []).append(aggregate["payload"])
    keep = lambda payload: payload  # noqa: E731
    load, load_stored = decode or keep, decode_stored or keep
    many = getattr(merge, "many", None)
    for key in sorted(groups):
        count, stored = (start or {}).get(key, (0, None))
        payloads = groups.pop(key)
        parts = [load(payload) for payload in payloads]
        if stored is not None:
            parts.insert(0, load_stored(stored))
        if len(parts) == 1:
            folded = dict(parts[0])  # merges build new objects: nothing is shared mutably
        elif many is not None:
            folded = many(parts)
        else:
            folded = functools.reduce(merge, parts)
        del parts
        yield key, (count + len(payloads), folded)


def warn_changed(logger: logging.Logger, changed: list[str]) -> None:
    """One WARNING for a batch's resent aggregates whose payload differs from the stored one (the first is kept)."""
    if changed:
        logger.warning("%d aggregate(s) resent with a different payload (first record_id %s); kept the stored one",
                       len(changed), changed[0])
