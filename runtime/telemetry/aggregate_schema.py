"""Checking and merging schema-3 aggregate records (``kind: "aggregate"``, protocol.md "Aggregates (schema 3)").

``validate_aggregate`` is the aggregate's ``validate_record``: the device runs it before the outbox stores an
aggregate, the collector before it writes one. It applies the same privacy scan as schema 2 (no identifier-like
keys, no lists of numbers, no long strings; histograms are objects keyed by bin index for that reason), closes the
field set, and checks that counts add up (bins sum to their count, classes and unjudged rows to the records).
``merge_aggregates`` adds two aggregates of the same key: a stream restarted within a minute, or a rollup of
minutes into longer periods.

Dependency rule: numpy and the standard library only (this package ships to the device).
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from runtime.telemetry.aggregates import (
    AGGREGATE_KIND,
    CONFIDENCE_TRACK,
    IDENTITY_KEYS,
    MINUTE_S,
    SCORE_TRACK,
    SCORES_PREFIX,
    SUMMARY_KEYS,
    VALUES_PREFIX,
    aggregate_record_id,
)
from runtime.telemetry.event_filter import FilterRule
from runtime.telemetry.histogram import (
    GENERIC_SCHEME,
    LATENCY_SCHEME,
    REFERENCE_MAX_EDGES,
    REFERENCE_SCHEME,
    generic_edges,
    latency_edges,
)
from runtime.telemetry.records import (
    MAX_FEATURES,
    MAX_OUTPUTS,
    MAX_QUALITY_FLAGS,
    RESULT_FIELDS,
    TelemetryError,
    Vocabulary,
    is_pseudonymous_device_id,
    looks_like_identifier,
    scan_privacy,
    shown_key,
)

_HEX = re.compile(r"[0-9a-f]+")
_MINUTE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:00Z")
_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,99}")
# A stream's start as the aggregator writes it (ISO-8601 UTC), a merge's id, or the dashboard's folded records: never
# free text (a name typed into it would be stored with every minute).
SESSION_PATTERN = (r"\A(?:[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?Z"
                   r"|merged:[0-9a-f]{32}|folded)\Z")
_SESSION = re.compile(SESSION_PATTERN)
FILTER_RULES = frozenset(rule.value for rule in FilterRule)
RULE_PATTERN = r"\A(?:" + "|".join(sorted(FILTER_RULES)) + r")\Z"
MAX_COUNT = 2**63 - 1  # a count fits a signed 64-bit integer (both stores' INTEGER)
REQUIRED = ("kind", "record_id", *IDENTITY_KEYS, "minute", "seconds", "session", "bins_id", "filter", "records",
            "unjudged", "classes", "low_confidence", "flagged", "quality_flags", "no_result", "quality_events",
            "sent_individually", "late", "latency_us", "features", "outputs")
OPTIONAL = ("sequence", "labels", "alarms")  # the outbox's sequence; multilabel positives; anomaly alarms
AGGREGATE_SCHEMA_FIELDS = frozenset(REQUIRED) | frozenset(OPTIONAL)
# Highest bin index per scheme (its number of edges).
MAX_BIN = {LATENCY_SCHEME: len(latency_edges()), GENERIC_SCHEME: len(generic_edges()),
           REFERENCE_SCHEME: REFERENCE_MAX_EDGES}
BIN_KEYS = {scheme: frozenset(map(str, range(highest + 1))) for scheme, highest in MAX_BIN.items()}
_EXACT_PATTERNS = ("record_id", "device_id", "bundle_sha256", "minute")  # fields checked against exact patterns
MIXED = "mixed"  # a merged aggregate's variant or provider when its parts differ
TRACK_KEYS = ("scheme", "count", "sum", "sum_squares", "min", "max", "bins")
LATENCY_KEYS = ("scheme", "count", "sum", "min", "max", "bins")
_KEY_SETS = {keys: frozenset(keys) for keys in (TRACK_KEYS, LATENCY_KEYS)}


def _fail(field: str, what: str, expected: str) -> TelemetryError:
    return TelemetryError(f"aggregate field '{field}' {what}", expected=expected,
                          fix="send the aggregate the runtime's MinuteAggregator makes (protocol.md)", field=field)


def _count(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise _fail(field, "is not a count", f"an integer from 0 to {MAX_COUNT}")
    return value


def _finite(value: Any, field: str) -> float:
    try:  # an integer beyond float's range is no finite number either (float() overflows on it)
        finite = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(float(value))
    except OverflowError:
        finite = False
    if not finite:
        raise _fail(field, "is not a finite number", "a finite number")
    return float(value)


def _counts(value: Any, field: str, limit: int = MAX_OUTPUTS) -> dict[str, int]:
    if not isinstance(value, dict) or len(value) > limit:
        raise _fail(field, "is not an object of counts", f"name → count, at most {limit} entries")
    if set(map(type, value.values())) <= {int} and min(value.values(), default=0) >= 0 and max(
            value.values(), default=0) <= MAX_COUNT:  # the common case, in C
        return {str(name): count for name, count in value.items()}
    return {str(name): _count(count, f"{field}.{name}") for name, count in value.items()}


def _bins(value: Any, field: str, scheme: str, total: int) -> dict[str, int]:
    """Keys are bin indices (digits only, so they can carry neither text nor a list), values counts."""
    if not isinstance(value, dict):
        raise _fail(field, "is not an object", "bin index → count")
    if not value:
        if total:
            raise _fail(field, "does not add up to its count", "bin counts summing to 'count'")
        return {}
    # Whole-dict checks in C: a histogram has hundreds of bins and a minute several histograms. The keys must be
    # the canonical indices of the scheme ("0" … "513"): one subset test covers type, digits and range.
    if not value.keys() <= BIN_KEYS[scheme]:
        raise _fail(field, "has a key that is not a bin index of its scheme", f"\"0\" … \"{MAX_BIN[scheme]}\"")
    counts = value.values()
    if not set(map(type, counts)) <= {int} or min(counts) < 0 or max(counts) > MAX_COUNT:
        raise _fail(field, "has a bin that is not a count", f"integers from 0 to {MAX_COUNT}")
    if sum(counts) != total:
        raise _fail(field, "does not add up to its count", "bin counts summing to 'count'")
    return dict(value)


def _privacy_probe(record: Mapping[str, Any]) -> dict[str, Any]:
    """What the generic privacy scan (``records.scan_privacy``) must see of an aggregate: every key and string except a
    histogram's own fields, whose key set (``_histogram``) and bins (``_bins``: digit keys, integer counts) are
    checked exactly, and the hex ids and the minute, which must match exact patterns — a pattern search per bin
    (or over a 64-digit hash, which that search backtracks through) would cost more than building the aggregate."""

    def histogram(value: Any) -> Any:
        return {"scheme": value.get("scheme")} if isinstance(value, dict) else value

    probe = {key: value for key, value in record.items() if key not in _EXACT_PATTERNS}
    for section in ("features", "outputs"):
        if isinstance(probe.get(section), dict):
            probe[section] = {name: histogram(value) for name, value in probe[section].items()}
    if "latency_us" in probe:
        probe["latency_us"] = histogram(probe["latency_us"])
    return probe


def _histogram(value: Any, field: str, keys: tuple[str, ...], schemes: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict) or value.keys() != _KEY_SETS[keys]:
        raise _fail(field, "does not have the histogram's keys", f"exactly {', '.join(keys)}")
    if value["scheme"] not in schemes:
        raise _fail(f"{field}.scheme", "is not a known bin scheme", f"one of {', '.join(schemes)}")
    count = value["count"]
    if type(count) is not int or count < 0:
        count = _count(count, f"{field}.count")
    checked = {"scheme": value["scheme"], "count": count}
    for key in keys[2:-1]:
        number = value[key]
        kind = type(number)
        # field names are built only for a refusal: this runs for every histogram of every minute
        checked[key] = float(number) if (kind is float and math.isfinite(number)) or (
            kind is int and -MAX_COUNT <= number <= MAX_COUNT) else _finite(number, f"{field}.{key}")
    if count and checked["min"] > checked["max"]:
        raise _fail(field, "has min above max", "min ≤ max")
    checked["bins"] = _bins(value["bins"], f"{field}.bins", value["scheme"], count)
    return checked


def _tracks(value: Any, field: str, limit: int) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict) or len(value) > limit:
        raise _fail(field, "is not an object of histograms", f"name → histogram, at most {limit}")
    return {str(name): _histogram(track, f"{field}.{name}", TRACK_KEYS, (REFERENCE_SCHEME, GENERIC_SCHEME))
            for name, track in value.items()}


def _text(record: Mapping[str, Any], field: str, pattern: re.Pattern | None = None, length: int | None = None) -> str:
    value = record[field]
    if not isinstance(value, str) or not value or (pattern is not None and not pattern.fullmatch(value)) or (
            length is not None and len(value) != length):
        raise _fail(field, "is not the expected string", "see protocol.md, Aggregates (schema 3)")
    return value


def _filter(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if (not isinstance(value, dict) or set(value) != {"version", "rules", "positive_labels"}
            or not isinstance(value["version"], int) or isinstance(value["version"], bool)
            or not 0 <= value["version"] <= MAX_COUNT
            or not all(isinstance(item, list) and all(isinstance(text, str) for text in item)
                       for item in (value["rules"], value["positive_labels"]))
            or not set(value["rules"]) <= FILTER_RULES or len(value["rules"]) > len(FILTER_RULES)
            or len(value["positive_labels"]) > MAX_OUTPUTS):
        raise _fail("filter", "is not an event-filter description",
                    f"null or {{version, rules (of {', '.join(sorted(FILTER_RULES))}), positive_labels (at most "
                    f"{MAX_OUTPUTS} of the bundle's labels)}}")
    return {"version": value["version"], "rules": list(value["rules"]),
            "positive_labels": list(value["positive_labels"])}


def validate_aggregate(record: Any, *, sequence_required: bool = False,
                       vocabulary: Vocabulary | None = None) -> dict[str, Any]:
    """A checked copy of an aggregate record; ``TelemetryError`` naming the field otherwise (never its value).

    Every field's shape and type is checked before the privacy scan (which then walks a bounded structure: no
    nesting or number the schema does not allow gets that far), every count is an integer up to ``MAX_COUNT`` and
    every other number finite: the collector needs no separate walk over an aggregate's values."""
    if not isinstance(record, dict):
        raise _fail("record", "is not an object", "a JSON object")
    unknown = sorted(set(record) - AGGREGATE_SCHEMA_FIELDS,
                     key=lambda name: (not isinstance(name, str) or not looks_like_identifier(name), str(name)))
    if unknown:
        scan_privacy({unknown[0]: None}, "")  # an identifier-like, numeric or over-long key is named as such
        raise _fail(shown_key(unknown[0]), "is not part of the aggregate schema", "only the fields of protocol.md")
    missing = [name for name in REQUIRED if name not in record]
    if sequence_required and "sequence" not in record:
        missing.append("sequence")
    if missing:
        raise _fail(missing[0], "is missing", "every field of the aggregate schema")
    if record["kind"] != AGGREGATE_KIND:
        raise _fail("kind", "is not 'aggregate'", "'aggregate'")
    checked: dict[str, Any] = {"kind": AGGREGATE_KIND, "record_id": _text(record, "record_id", _HEX, 32)}
    if "sequence" in record:
        checked["sequence"] = _count(record["sequence"], "sequence")
    if not is_pseudonymous_device_id(record["device_id"]):
        raise _fail("device_id", "is not a pseudonymous id", "lowercase hex from pseudonymous_device_id")
    checked["device_id"] = record["device_id"]
    for name in ("bundle_id", "variant", "provider"):
        checked[name] = _text(record, name, _CODE)
    checked["bundle_sha256"] = _text(record, "bundle_sha256", _HEX, 64)
    if not isinstance(record["task"], str) or record["task"] not in RESULT_FIELDS:
        raise _fail("task", "is not a known task kind", ", ".join(RESULT_FIELDS))
    checked["task"] = record["task"]
    checked["minute"] = _text(record, "minute", _MINUTE)
    try:
        datetime.fromisoformat(checked["minute"])
    except ValueError:
        raise _fail("minute", "is not a UTC minute", "YYYY-MM-DDTHH:MM:00Z") from None
    seconds = _count(record["seconds"], "seconds")
    if seconds < MINUTE_S or seconds % MINUTE_S:
        raise _fail("seconds", "is not a whole number of minutes", "60, or a multiple of it for a rollup")
    checked["seconds"] = seconds
    session = record["session"]
    if not isinstance(session, str) or not _SESSION.search(session):
        raise _fail("session", "is not a session id", "the stream's start (ISO-8601 UTC, e.g. "
                    "2026-01-31T12:00:05.250000Z) or merged:<32 hex>")
    checked["session"] = session
    checked["bins_id"] = _text(record, "bins_id", _HEX, 16)
    checked["filter"] = _filter(record["filter"])
    _check_counts(record, checked)
    scan_privacy(_privacy_probe(checked), "")
    if vocabulary is not None:
        check_aggregate_vocabulary(checked, vocabulary)
    return checked


def _check_counts(record: Mapping[str, Any], checked: dict[str, Any]) -> None:
    for name in ("records", "unjudged", "flagged", "sent_individually", "late"):
        checked[name] = _count(record[name], name)
    for name in ("classes", "low_confidence"):
        checked[name] = _counts(record[name], name)
    checked["quality_flags"] = _counts(record["quality_flags"], "quality_flags", MAX_QUALITY_FLAGS)
    if "labels" in record:
        checked["labels"] = _counts(record["labels"], "labels")
    if "alarms" in record:
        checked["alarms"] = _count(record["alarms"], "alarms")
    no_result = record["no_result"]
    if not isinstance(no_result, dict) or set(no_result) != {"count", "quality_flags"}:
        raise _fail("no_result", "is not {count, quality_flags}", "the events the stream gave no result")
    checked["no_result"] = {"count": _count(no_result["count"], "no_result.count"), "quality_flags":
                            _counts(no_result["quality_flags"], "no_result.quality_flags", MAX_QUALITY_FLAGS)}
    events = record["quality_events"]
    if not isinstance(events, dict) or len(events) > MAX_QUALITY_FLAGS or not all(
            isinstance(item, dict) and set(item) == {"count", "seconds"} for item in events.values()):
        raise _fail("quality_events", "is not flag → {count, seconds}", "quality stretches per flag")
    checked["quality_events"] = {flag: {"count": _count(item["count"], f"quality_events.{flag}.count"),
                                        "seconds": _finite(item["seconds"], f"quality_events.{flag}.seconds")}
                                 for flag, item in events.items()}
    checked["latency_us"] = _histogram(record["latency_us"], "latency_us", LATENCY_KEYS, (LATENCY_SCHEME,))
    checked["features"] = _tracks(record["features"], "features", MAX_FEATURES)
    checked["outputs"] = _tracks(record["outputs"], "outputs", MAX_OUTPUTS + 1)
    records = checked["records"]
    if checked["latency_us"]["count"] != records:
        raise _fail("latency_us.count", "differs from records", "one latency per record")
    if max(checked["flagged"], checked["sent_individually"], checked["unjudged"]) > records:
        raise _fail("records", "is smaller than a count of records", "flagged, sent_individually, unjudged ≤ records")
    if checked["classes"] and sum(checked["classes"].values()) + checked["unjudged"] != records:
        raise _fail("classes", "do not add up to the records", "classes + unjudged = records")


def check_aggregate_vocabulary(record: Mapping[str, Any], vocabulary: Vocabulary) -> None:
    """The collector's allow-list (``runtime.telemetry.records.Vocabulary``), applied to an aggregate's names.
    Public: the collector's fast path applies this same check to the names it decoded."""
    for field in ("bundle_id", "variant", "provider"):
        if field in record and not vocabulary.allows_code(record[field]):
            raise _fail(field, "is not a code without an identifier's words or date", "the code the runtime reports")
    flags = [*record["quality_flags"], *record["no_result"]["quality_flags"], *record["quality_events"]]
    if any(flag not in vocabulary.quality_flags for flag in flags):
        raise _fail("quality_flags", "holds a flag outside the known vocabulary", "flags the runtime sets")
    labels = [*record["classes"], *record["low_confidence"], *record.get("labels", {}),
              *((record.get("filter") or {}).get("positive_labels") or ())]
    for name in record["outputs"]:
        if name.startswith((SCORES_PREFIX, VALUES_PREFIX)):
            labels.append(name.split(".", 1)[1])
        elif name not in (CONFIDENCE_TRACK, SCORE_TRACK):
            raise _fail(f"outputs.{name}", "is not an output track", "confidence, score, scores.<l>, values.<t>")
    if any(not vocabulary.allows_label(label) for label in labels):
        raise _fail("classes", "holds a label outside the bundle's labels", "the labels of the bundle's manifest")
    if any(not vocabulary.allows_feature(name) for name in record["features"]):
        raise _fail("features", "holds a name that is not a summary feature of the bundle",
                    "the features of the bundle's reference profile (or the standard summaries)")


# -- merging ---------------------------------------------------------------------------------------------------


def _add_counts(first: Mapping[str, int], second: Mapping[str, int]) -> dict[str, int]:
    merged = dict(first)
    for name, count in second.items():
        merged[name] = merged.get(name, 0) + count
    return merged


def merge_histograms(first: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, Any]:
    """Two histograms of the same scheme (and edges) added: counts, sums, min, max and bins."""
    if first["scheme"] != second["scheme"]:
        raise _fail("scheme", "differs between the histograms merged", "histograms on the same bins")
    merged = {"scheme": first["scheme"], "count": first["count"] + second["count"]}
    for key in ("sum", "sum_squares"):
        if key in first:
            merged[key] = first[key] + second[key]
    if not first["count"] or not second["count"]:
        low, high = (second["min"], second["max"]) if not first["count"] else (first["min"], first["max"])
    else:
        low, high = min(first["min"], second["min"]), max(first["max"], second["max"])
    merged |= {"min": low, "max": high, "bins": _add_counts(first["bins"], second["bins"])}
    return {key: merged[key] for key in (TRACK_KEYS if "sum_squares" in first else LATENCY_KEYS)}


def _merge_tracks(first: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, Any]:
    names = list(dict.fromkeys([*first, *second]))
    return {name: merge_histograms(first[name], second[name]) if name in first and name in second
            else dict(first.get(name) or second[name]) for name in names}


def _minute_epoch(minute: str) -> float:
    return datetime.fromisoformat(minute).timestamp()


def merge_aggregates(first: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, Any]:
    """One aggregate of two of the same device, bundle and bins: every count added, histograms merged.

    The result covers both periods (``minute`` = the earlier start, ``seconds`` up to the later end), so the
    same function serves a stream restarted within a minute and a rollup of minutes into hours. Its ``record_id``
    hashes the two it came from, so merging the same pair again gives the same id. A ``variant`` or ``provider``
    that differs between them becomes ``"mixed"`` (a rollup over a variant switch), a differing filter null.
    """
    for key in ("device_id", "bundle_id", "bundle_sha256", "task", "bins_id"):
        if first[key] != second[key]:
            raise _fail(key, "differs between the aggregates merged", "aggregates of one device, bundle and bins")
    start = min(_minute_epoch(first["minute"]), _minute_epoch(second["minute"]))
    end = max(_minute_epoch(item["minute"]) + item["seconds"] for item in (first, second))
    minute = first["minute"] if _minute_epoch(first["minute"]) == start else second["minute"]
    seconds = int(end - start)
    session = first["session"] if first["session"] == second["session"] else "merged:" + hashlib.sha256(
        "\x1f".join(sorted([first["record_id"], second["record_id"]])).encode()).hexdigest()[:32]
    identity = {key: first[key] if first[key] == second[key] else MIXED for key in IDENTITY_KEYS}
    merged: dict[str, Any] = {
        "kind": AGGREGATE_KIND, "record_id": aggregate_record_id(identity, minute, seconds, session), **identity,
        "minute": minute, "seconds": seconds, "session": session, "bins_id": first["bins_id"],
        "filter": first["filter"] if first["filter"] == second["filter"] else None,
    }
    for key in SUMMARY_KEYS:
        if key not in first and key not in second:
            continue
        one, two = first.get(key), second.get(key)
        if key in ("latency_us",):
            merged[key] = merge_histograms(one, two)
        elif key in ("features", "outputs"):
            merged[key] = _merge_tracks(one or {}, two or {})
        elif key == "no_result":
            merged[key] = {"count": one["count"] + two["count"],
                           "quality_flags": _add_counts(one["quality_flags"], two["quality_flags"])}
        elif key == "quality_events":
            empty = {"count": 0, "seconds": 0.0}
            merged[key] = {flag: {name: one.get(flag, empty)[name] + two.get(flag, empty)[name] for name in empty}
                           for flag in dict.fromkeys([*one, *two])}
        elif isinstance(one, dict) or isinstance(two, dict):
            merged[key] = _add_counts(one or {}, two or {})
        else:
            merged[key] = (one or 0) + (two or 0)
    return merged


def fold_aggregates(parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``functools.reduce(merge_aggregates, parts)``, equal to it value for value, in one pass.

    A rollup folds dozens of minutes into one: pairwise merging copies the growing counts and bins at every step,
    this adds each part into one accumulator instead (floats in the same order, so sums are bit for bit the
    same). The identity, period and ids follow the same chain of pairwise steps (they are a few strings)."""
    if not parts:
        raise _fail("aggregates", "is empty", "at least one aggregate to fold")
    head = _common_head(parts)
    chained = head is None
    head = dict(parts[0]) if chained else head
    summary = _Accumulator(parts[0])
    for part in parts[1:]:
        if chained:
            head = _merge_head(head, part)
        summary.add(part)
    return {**head, **summary.result()}


_SHARED_HEAD_KEYS = ("kind", *IDENTITY_KEYS, "session", "bins_id", "filter")


def _common_head(parts: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The head the chain of ``_merge_head`` steps ends with, computed once, when every part has the first's kind,
    identity, session, bins and filter (a rollup of one stream's minutes: the usual case); None otherwise (the chain
    decides: mixed variants, merged sessions, refusals). The chain keeps all of those, takes the earliest minute
    (the first such part's text on a tie) and the latest end, and ids the result by them alone."""
    first = parts[0]
    if len(parts) < 2 or any(part[key] != first[key] for part in parts[1:] for key in _SHARED_HEAD_KEYS):
        return None
    starts = [_minute_epoch(part["minute"]) for part in parts]
    start = min(starts)
    minute = parts[starts.index(start)]["minute"]
    seconds = int(max(moment + part["seconds"] for moment, part in zip(starts, parts, strict=True)) - start)
    identity = {key: first[key] for key in IDENTITY_KEYS}
    return {"kind": AGGREGATE_KIND, "record_id": aggregate_record_id(identity, minute, seconds, first["session"]),
            **identity, "minute": minute, "seconds": seconds, "session": first["session"], "bins_id": first["bins_id"],
            "filter": first["filter"]}


def _merge_head(first: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, Any]:
    """``merge_aggregates`` without the counts: the checks, the identity, period, session, ids and filter."""
    merged = merge_aggregates({key: first[key] for key in _HEAD_KEYS}, {key: second[key] for key in _HEAD_KEYS})
    return {key: merged[key] for key in _HEAD_KEYS}


_HEAD_KEYS = ("kind", "record_id", *IDENTITY_KEYS, "minute", "seconds", "session", "bins_id", "filter")


class _Accumulator:
    """The summary fields (``SUMMARY_KEYS``) of aggregates added one after another, as ``merge_aggregates``
    would leave them after a chain of pairwise merges."""

    def __init__(self, first: Mapping[str, Any]) -> None:
        self.values: dict[str, Any] = {}
        for key in SUMMARY_KEYS:
            if key in first:
                self.values[key] = _own(first[key])

    def add(self, part: Mapping[str, Any]) -> None:
        values = self.values
        for key in SUMMARY_KEYS:
            if key not in values and key not in part:
                continue
            one, two = values.get(key), part.get(key)
            if key == "latency_us":
                _add_histogram(one, two)
            elif key in ("features", "outputs"):
                values[key] = one = one if one is not None else {}
                for name, track in (two or {}).items():
                    if name in one:
                        _add_histogram(one[name], track)
                    else:
                        one[name] = _own(track)
            elif key == "no_result":
                one["count"] += two["count"]
                _add_into(one["quality_flags"], two["quality_flags"])
            elif key == "quality_events":
                empty = {"count": 0, "seconds": 0.0}
                values[key] = {flag: {name: one.get(flag, empty)[name] + two.get(flag, empty)[name] for name in empty}
                               for flag in dict.fromkeys([*one, *two])}
            elif isinstance(one, dict) or isinstance(two, dict):
                values[key] = one = one if one is not None else {}
                _add_into(one, two or {})
            else:
                values[key] = (one or 0) + (two or 0)

    def result(self) -> dict[str, Any]:
        return {key: self.values[key] for key in SUMMARY_KEYS if key in self.values}


def _own(value: Any) -> Any:
    """A copy of a summary value deep enough to add into (dicts of dicts of numbers)."""
    if not isinstance(value, dict):
        return value
    if not any(map(isinstance, value.values(), itertools.repeat(dict))):  # counts or bins: copied in C
        return dict(value)
    return {key: _own(item) for key, item in value.items()}


def _add_into(total: dict[str, int], addition: Mapping[str, int]) -> None:
    for name, count in addition.items():
        total[name] = total.get(name, 0) + count


def _add_histogram(total: dict[str, Any], addition: Mapping[str, Any]) -> None:
    """``merge_histograms(total, addition)`` into ``total``."""
    if total["scheme"] != addition["scheme"]:
        raise _fail("scheme", "differs between the histograms merged", "histograms on the same bins")
    if not total["count"] or not addition["count"]:
        low, high = (addition["min"], addition["max"]) if not total["count"] else (total["min"], total["max"])
    else:
        low, high = min(total["min"], addition["min"]), max(total["max"], addition["max"])
    total["count"] += addition["count"]
    for key in ("sum", "sum_squares"):
        if key in total:
            total[key] = total[key] + addition[key]
    total["min"], total["max"] = low, high
    _add_into(total["bins"], addition["bins"])
