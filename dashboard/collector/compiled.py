"""The fast path of a schema-3 upload: the envelope decoded and checked in C (msgspec), then re-encoded once.

``decode_aggregates(body, vocabularies)`` decodes a whole schema-3 envelope into typed structs whose declared
constraints (closed field sets, required fields, integer ranges, id patterns, size limits) msgspec checks while it
parses, runs the few checks a type cannot state (bins add up to their count, counts to the records, min ≤ max, a
UTC minute, the bundle's vocabulary, the privacy scan) and encodes each aggregate back to JSON for the store.
Every aggregate it accepts is one ``runtime.telemetry.aggregate_schema.validate_aggregate`` accepts, stored with
the same values (numbers that are floats there are floats here); the stored text is encoded from the checked
structure, never copied from the body, so nothing the checks did not see (a duplicated key's first value) is kept.

It never refuses: on anything unusual it answers None and ``schema.parse_batch`` takes the exact path, which
refuses with the field and the record index, or accepts what this path was too strict for.

The privacy scan (``records.scan_privacy`` on ``aggregate_schema._privacy_probe``) judges keys and strings; the
names and codes of an aggregate repeat in every minute of every device, so each distinct one is judged once by that
same scan and remembered (``_Judged``); a minute costs set lookups.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from dashboard.collector.aggregates import EncodedAggregate
from runtime.telemetry.aggregate_schema import (
    AGGREGATE_SCHEMA_FIELDS,
    BIN_KEYS,
    FILTER_RULES,
    LATENCY_KEYS,
    MAX_COUNT,
    RULE_PATTERN,
    SESSION_PATTERN,
    TRACK_KEYS,
    check_aggregate_vocabulary,
)
from runtime.telemetry.histogram import GENERIC_SCHEME, LATENCY_SCHEME, REFERENCE_SCHEME
from runtime.telemetry.records import (
    AGGREGATE_SCHEMA_VERSION,
    MAX_FEATURES,
    MAX_OUTPUTS,
    MAX_QUALITY_FLAGS,
    RESULT_FIELDS,
    TelemetryError,
    Vocabulary,
    is_pseudonymous_device_id,
    scan_privacy,
)

# msgspec matches a pattern with re.search: anchored with \A…\Z (``$`` would let a trailing newline through).
Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_COUNT)]
Code = Annotated[str, msgspec.Meta(pattern=r"\A[A-Za-z0-9][A-Za-z0-9._:+-]{0,99}\Z")]
Hex16 = Annotated[str, msgspec.Meta(pattern=r"\A[0-9a-f]{16}\Z")]
Hex32 = Annotated[str, msgspec.Meta(pattern=r"\A[0-9a-f]{32}\Z")]
Hex64 = Annotated[str, msgspec.Meta(pattern=r"\A[0-9a-f]{64}\Z")]
DeviceId = Annotated[str, msgspec.Meta(pattern=r"\A[0-9a-f]{16,64}\Z")]
Minute = Annotated[str, msgspec.Meta(pattern=r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:00Z\Z")]
Counts = Annotated[dict[str, Count], msgspec.Meta(max_length=MAX_OUTPUTS)]
Flags = Annotated[dict[str, Count], msgspec.Meta(max_length=MAX_QUALITY_FLAGS)]
_ANY_BUNDLE = Vocabulary()  # the allow-list of a bundle the collector does not know


class Track(msgspec.Struct, forbid_unknown_fields=True):
    """A feature or output histogram (``aggregate_schema.TRACK_KEYS``, in that order)."""

    scheme: str
    count: Count
    sum: float
    sum_squares: float
    min: float
    max: float
    bins: dict[str, Count]


class Latency(msgspec.Struct, forbid_unknown_fields=True):
    """The latency histogram (``aggregate_schema.LATENCY_KEYS``)."""

    scheme: str
    count: Count
    sum: float
    min: float
    max: float
    bins: dict[str, Count]


class NoResult(msgspec.Struct, forbid_unknown_fields=True):
    count: Count
    quality_flags: Flags


class QualityEvent(msgspec.Struct, forbid_unknown_fields=True):
    count: Count
    seconds: float


class Filter(msgspec.Struct, forbid_unknown_fields=True):
    version: Count
    rules: Annotated[list[Annotated[str, msgspec.Meta(pattern=RULE_PATTERN)]],
                     msgspec.Meta(max_length=len(FILTER_RULES))]
    positive_labels: Annotated[list[str], msgspec.Meta(max_length=MAX_OUTPUTS)]


class Aggregate(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A schema-3 minute aggregate as the collector receives it (``sequence`` required); optional fields last."""

    kind: Literal["aggregate"]
    record_id: Hex32
    sequence: Count
    device_id: DeviceId
    bundle_id: Code
    bundle_sha256: Hex64
    variant: Code
    provider: Code
    task: str
    minute: Minute
    seconds: Count
    session: Annotated[str, msgspec.Meta(pattern=SESSION_PATTERN)]
    bins_id: Hex16
    filter: Filter | None
    records: Count
    unjudged: Count
    classes: Counts
    low_confidence: Counts
    flagged: Count
    quality_flags: Flags
    no_result: NoResult
    quality_events: Annotated[dict[str, QualityEvent], msgspec.Meta(max_length=MAX_QUALITY_FLAGS)]
    sent_individually: Count
    late: Count
    latency_us: Latency
    features: Annotated[dict[str, Track], msgspec.Meta(max_length=MAX_FEATURES)]
    outputs: Annotated[dict[str, Track], msgspec.Meta(max_length=MAX_OUTPUTS + 1)]
    labels: Counts | msgspec.UnsetType = msgspec.UNSET
    alarms: Count | msgspec.UnsetType = msgspec.UNSET


class Envelope(msgspec.Struct, forbid_unknown_fields=True):
    schema_version: Literal[3]
    device_id: str
    dropped: Count
    records: list[Aggregate]


# the schema's fields, no more, no fewer
assert {field for field in Aggregate.__struct_fields__} == set(AGGREGATE_SCHEMA_FIELDS)
assert Track.__struct_fields__ == TRACK_KEYS and Latency.__struct_fields__ == LATENCY_KEYS
_DECODER = msgspec.json.Decoder(Envelope)
_ENCODER = msgspec.json.Encoder()
_TRACK_SCHEMES = (REFERENCE_SCHEME, GENERIC_SCHEME)


class _Judged:
    """Keys and strings the privacy scan has passed (it judges a value, not its place): a bounded memory."""

    LIMIT = 100_000  # distinct names and codes remembered; forgotten all at once past it (rare: a fleet's names)

    def __init__(self) -> None:
        self.passed: set[str] = set()

    def keys(self, keys: set[str]) -> bool:
        fresh = keys - self.passed
        return not fresh or self._judge({key: None for key in fresh}, fresh)

    def strings(self, strings: set[str]) -> bool:
        fresh = strings - self.passed
        return not fresh or self._judge(sorted(fresh), fresh)

    def _judge(self, probe: Any, fresh: set[str]) -> bool:
        try:
            scan_privacy(probe, "")
        except TelemetryError:
            return False  # the exact path names the field
        if len(self.passed) > self.LIMIT:
            self.passed.clear()
        self.passed |= fresh
        return True


_JUDGED = _Judged()
# The probe's own keys: the schema's field names and the histogram's, judged once like any key.
_JUDGED.keys({*AGGREGATE_SCHEMA_FIELDS, *TRACK_KEYS, "version", "rules", "positive_labels", "count", "seconds"})


def _histogram_ok(track: Track | Latency, schemes: tuple[str, ...], sums: tuple[float, ...]) -> bool:
    """What ``aggregate_schema._histogram`` checks beyond the types: scheme, finite numbers, min ≤ max, bins."""
    if track.scheme not in schemes or not all(map(math.isfinite, sums)):
        return False
    if track.count and track.min > track.max:
        return False
    bins = track.bins
    if not bins:
        return track.count == 0
    return bins.keys() <= BIN_KEYS[track.scheme] and sum(bins.values()) == track.count


def _aggregate_ok(item: Aggregate, vocabularies: Callable[[Any], Vocabulary] | None) -> bool:
    if item.task not in RESULT_FIELDS or item.seconds < 60 or item.seconds % 60:
        return False
    try:
        datetime.fromisoformat(item.minute)
    except ValueError:
        return False
    latency = item.latency_us
    if not _histogram_ok(latency, (LATENCY_SCHEME,), (latency.sum, latency.min, latency.max)):
        return False
    tracks = (*item.features.values(), *item.outputs.values())
    if not all(_histogram_ok(track, _TRACK_SCHEMES, (track.sum, track.sum_squares, track.min, track.max))
               for track in tracks):
        return False
    if not all(math.isfinite(event.seconds) for event in item.quality_events.values()):
        return False
    records = item.records
    if latency.count != records or max(item.flagged, item.sent_individually, item.unjudged) > records:
        return False
    if item.classes and sum(item.classes.values()) + item.unjudged != records:
        return False
    labels = item.labels if item.labels is not msgspec.UNSET else {}
    keys = {*item.classes, *item.low_confidence, *item.quality_flags, *labels, *item.no_result.quality_flags,
            *item.quality_events, *item.features, *item.outputs}
    strings = {item.kind, item.bundle_id, item.variant, item.provider, item.task, item.session, item.bins_id,
               latency.scheme, *(track.scheme for track in tracks)}
    if item.filter is not None:
        strings.update(item.filter.rules, item.filter.positive_labels)
    if not (_JUDGED.keys(keys) and _JUDGED.strings(strings)):
        return False
    # without ``vocabularies`` every record keeps to the fixed allow-list, as on the exact path
    vocabulary = vocabularies({"bundle_sha256": item.bundle_sha256, "bundle_id": item.bundle_id}) if (
        vocabularies is not None) else _ANY_BUNDLE
    names = {"quality_flags": item.quality_flags, "no_result": {"quality_flags": item.no_result.quality_flags},
             "quality_events": item.quality_events, "classes": item.classes, "low_confidence": item.low_confidence,
             "labels": labels, "outputs": item.outputs, "features": item.features,
             "filter": None if item.filter is None else {"positive_labels": item.filter.positive_labels},
             "bundle_id": item.bundle_id, "variant": item.variant, "provider": item.provider}
    try:
        check_aggregate_vocabulary(names, vocabulary)
    except TelemetryError:
        return False
    return True


def decode_aggregates(body: bytes, vocabularies: Callable[[Any], Vocabulary] | None = None, *, max_records: int,
                      max_integer: int = MAX_COUNT) -> tuple[str, int, list[EncodedAggregate]] | None:
    """(device_id, dropped, checked aggregates) of a schema-3 envelope whose every aggregate passes, or None: then
    the exact path (``schema.parse_batch``) decides, and names what is wrong."""
    try:
        envelope = _DECODER.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    device_id = envelope.device_id
    if (envelope.schema_version != AGGREGATE_SCHEMA_VERSION or not is_pseudonymous_device_id(device_id)
            or len(envelope.records) > max_records or envelope.dropped > max_integer):
        return None
    decoded = []
    sequences = set()
    encode = _ENCODER.encode
    for item in envelope.records:
        if item.device_id != device_id or item.sequence in sequences or not _aggregate_ok(item, vocabularies):
            return None
        sequences.add(item.sequence)
        decoded.append(EncodedAggregate(encode(item), {
            "kind": item.kind, "device_id": device_id, "bundle_id": item.bundle_id, "minute": item.minute,
            "record_id": item.record_id, "sequence": item.sequence, "seconds": item.seconds}))
    return device_id, envelope.dropped, decoded
