"""The telemetry record schema (version 2): one record per inference, summaries only.

A record never carries a raw signal or anything that identifies a patient. ``validate_record``
enforces that on the device (before a record is stored) and on the collector (before it is
written): unknown keys, wrong types, lists of numbers anywhere (a raw waveform), keys that look
like patient identifiers and long strings are all refused with a ``TelemetryError`` naming the
field. Messages name fields, never their values, so an error can be logged without leaking data.

Schema 2 carries each task kind's result (``task`` + ``result``, see ``RESULT_FIELDS``); schema 1
(``predicted_class`` + ``confidence``, classifiers only) is what older devices send: the collector
still accepts it, devices write schema 2.

Dependency rule: standard library only (this package ships to the device).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from runtime.errors import EdgemedError

SCHEMA_VERSION = 2  # per-event records: 2: task + per-kind result; 1: predicted_class + confidence (classifiers)
AGGREGATE_SCHEMA_VERSION = 3  # per-minute aggregates (``kind: "aggregate"``, runtime.telemetry.aggregate_schema)
RECORD_SCHEMA_VERSIONS = (1, 2)  # the per-event record schemas ``validate_record`` checks itself
# What the collector accepts; a device writes SCHEMA_VERSION records and AGGREGATE_SCHEMA_VERSION aggregates.
SUPPORTED_SCHEMA_VERSIONS = (*RECORD_SCHEMA_VERSIONS, AGGREGATE_SCHEMA_VERSION)
AGGREGATE_KIND = "aggregate"  # the ``kind`` of a schema-3 record (runtime.telemetry.aggregates)
# An upload with this header set to "1" comes from a simulator, not a device on a patient (protocol.md).
SIMULATED_HEADER = "X-Edgemed-Simulated"
MAX_STRING_CHARS = 200  # longer strings are free text, which could hold anything; refuse them
MAX_UNIT_CHARS = 16  # a unit of a bundle the collector does not know: 'mmol/L', 'beats/min', '°C' fit
MAX_FEATURES = 128  # summary statistics only: a 252-sample ECG window cannot hide in the features
MAX_OUTPUTS = 64  # labels or targets in one result: named outputs, not a waveform in disguise
MAX_QUALITY_FLAGS = 32  # flags are short codes; more than this is not a flag list
# A record and five levels of objects or lists under it: what the collector's body limit (8 levels: envelope →
# records → record → …) leaves a record. Deeper is refused on the device too, so it never sits in an outbox as a
# batch the collector would refuse; a cyclic record is refused here rather than recursing without end.
MAX_RECORD_DEPTH = 6
DEVICE_ID_HEX_CHARS = 32  # 128 bits of HMAC-SHA256: collision-free across any fleet
# Quality flags of a row the model could not judge (runtime.results.UNJUDGED_FLAGS): its result is null.
UNJUDGED_FLAGS = frozenset({"input_not_finite", "output_not_finite", "out_of_domain"})
# Closed vocabularies (the collector's allow-list; tests/runtime check them against the runtime's own names).
# Quality flags: the ECG stream's (runtime.ecg.quality.QualityFlag) and the windowed stream's
# (runtime.windows.WindowFlag, which shares their names and adds too_short), the row runner's unjudged flags, and
# common ECG signal-quality codes a device may add.
KNOWN_QUALITY_FLAGS = frozenset({
    "non_finite", "flat_line", "clipped", "gap", "rate_mismatch", "partial_window", "warming_up", "too_short",
    "no_qrs", *UNJUDGED_FLAGS, "low_confidence", "baseline_wander", "noisy", "lead_off", "low_amplitude",
    "motion_artifact",
})
# Summary-statistic names a record may carry when the collector does not know its bundle: the waveform
# summaries of runtime.features and plain moments. A tabular bundle's column names come from its reference profile.
# The RR features the ECG stream derives for a bundle that asks for them (runtime.contract.derived.RR_FEATURE_NAMES)
# are summaries of the beat's timing, allowed likewise.
SUMMARY_FEATURE_NAMES = frozenset({
    "peak_to_peak", "difference_rms", "skewness", "kurtosis", "peak_position",
    "mean", "std", "min", "max", "median", "rms", "heart_rate",
    "pre_rr_s", "post_rr_s", "local_rr_s", "pre_to_local", "post_to_local", "pre_to_post",
})
# A multi-input bundle's summaries are named "<input>/<feature>" (runtime.input_features.feature_prefix:
# "residual/kurtosis", "rr/pre_rr_s"); "<input>.<feature>" is accepted too (what this list allowed first).
_INPUT_PREFIX = re.compile(r"[a-z_][a-z0-9_]{0,31}[./]")
# Numbers hidden in text: "0.1,0.2", "1;2", or four or more numbers separated by spaces. Linear time: a number
# starts only where no digit precedes it and its parts are possessive, so a long digit run (a hash, a serial) is
# read once instead of once per starting digit (the backtracking form took ~20 µs for a sha256, ~1.6 ms for 136
# digits). Both alternatives need a comma, semicolon or space: text without one is passed by ``_SEPARATOR`` alone.
_NUMBER_LIST = re.compile(
    r"\d\s*[,;]\s*[-+.]?\d|(?<!\d)(?:[-+]?\d++(?:\.\d++)?(?:[eE][-+]?\d++)?\s++){3,}[-+]?\.?\d"
)
_SEPARATOR = re.compile(r"[,;\s]")
# A class label when the bundle is unknown: a short code or words, no long digit runs (dates, record numbers).
_LABEL_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9 _./()+-]{0,39}")
_DIGIT_RUN = re.compile(r"\d{4,}")
MAX_LABEL_WORDS = 3
_CODE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,99}")  # bundle ids, variants, provider names
# A date (1970-01-01, 01/31/1970) or a US social security number inside a code or label: never a model's name for
# anything, the shape of a patient's birth date or SSN typed into the wrong field.
_DATE_OR_SSN = re.compile(r"\d{4}-\d{1,2}-\d{1,2}|\d{1,2}/\d{1,2}/\d{2,4}|\d{1,2}\.\d{1,2}\.\d{4}|\d{3}-\d{2}-\d{4}")


@functools.lru_cache(maxsize=8192)  # codes and labels repeat in every record of a fleet: each is judged once
def looks_like_identifier_value(text: str) -> bool:
    """Whether a code or label (not a timestamp field) carries a patient identifier's words (``looks_like_identifier``:
    name, MRN, DOB, patient, …) or a date's or SSN's shape."""
    return looks_like_identifier(text) or _DATE_OR_SSN.search(text) is not None


@dataclass(frozen=True)
class Vocabulary:
    """What a record's names may be, where they come from a closed set (the collector's allow-list).

    The collector builds one per known bundle (labels from its manifest, feature names from its reference
    profile) and uses ``Vocabulary()`` for a bundle it does not know. The device passes none.
    """

    feature_names: frozenset[str] = SUMMARY_FEATURE_NAMES  # bare names; an "input." prefix is allowed
    labels: frozenset[str] | None = None  # class labels; None = any short label (``_LABEL_PATTERN``)
    quality_flags: frozenset[str] = KNOWN_QUALITY_FLAGS
    units: frozenset[str] | None = None  # regression units; None = any short unit (``allows_unit``)

    def allows_feature(self, name: str) -> bool:
        if name in self.feature_names:
            return True
        prefix = _INPUT_PREFIX.match(name)
        return prefix is not None and name[prefix.end():] in self.feature_names

    def allows_unit(self, unit: str) -> bool:
        """A unit the bundle declares, or (bundle unknown) a short one: ≤ 16 characters, ≤ 3 words, no 4-digit run
        ('ms', 'bpm', 'mmol/L', '°C', '10^3/µL'), never a sentence that could carry a name or number."""
        if self.units is not None:
            return unit in self.units
        return 0 < len(unit) <= MAX_UNIT_CHARS and _DIGIT_RUN.search(unit) is None and len(unit.split()) <= (
            MAX_LABEL_WORDS) and unit.isprintable() and not looks_like_identifier_value(unit)

    def allows_label(self, label: str) -> bool:
        """A label of the bundle's manifest, or (bundle unknown) a short one that carries no identifier's words or
        shape. A person's name as a label ("Jane Doe") cannot be told from a class name; only a known bundle's
        closed label set keeps it out — publish the bundles a collector receives under its bundles folder."""
        if self.labels is not None:
            return label in self.labels
        return (_LABEL_PATTERN.fullmatch(label) is not None and _DIGIT_RUN.search(label) is None
                and len(label.split()) <= MAX_LABEL_WORDS and not looks_like_identifier_value(label))

    @staticmethod
    def allows_code(code: str) -> bool:
        """A bundle id, variant or provider: letters, digits and ``._:+-``, and no identifier's words or shape."""
        return _CODE_PATTERN.fullmatch(code) is not None and not looks_like_identifier_value(code)


_DEVICE_ID_PATTERN = re.compile(r"[0-9a-f]{16,64}")
_SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
_CAMEL_CASE = re.compile(r"([a-z0-9])([A-Z])")
_WORD_SEPARATOR = re.compile(r"[^a-z0-9]+")

# Whole words (after splitting on punctuation and camelCase) that mark a patient identifier.
IDENTIFIER_WORDS = frozenset({"name", "mrn", "dob", "ssn", "nhs", "surname", "forename", "initials"})
# Fragments that mark a patient identifier wherever they occur in a key.
IDENTIFIER_FRAGMENTS = ("patient", "birth", "address", "phone", "email", "firstname", "lastname", "postcode", "zipcode")

# field -> what the value must be (human description); the same in both schema versions
_COMMON_FIELDS: dict[str, str] = {
    "sequence": "a positive integer assigned by the outbox",
    "time": "an ISO-8601 timestamp in UTC",
    "device_id": "a pseudonymous device id (lowercase hex, see pseudonymous_device_id)",
    "bundle_id": "a non-empty string",
    "bundle_sha256": "64 lowercase hex characters",
    "variant": "a non-empty string",
    "provider": "a non-empty string",
    "latency_us": "a finite number ≥ 0",
}
_SUMMARY_FIELDS: dict[str, str] = {
    "quality_flags": "a list of short strings",
    "features": "an object of summary-statistic names to finite numbers",
}
# Schema 2.
FIELDS: dict[str, str] = {
    **_COMMON_FIELDS,
    "task": "the bundle's task kind: multiclass, binary, multilabel, regression or anomaly",
    "result": "the task kind's result object, or null when a quality flag says the model could not judge the input",
    **_SUMMARY_FIELDS,
}
# Schema 1 (older devices).
FIELDS_V1: dict[str, str] = {
    **_COMMON_FIELDS,
    "predicted_class": "a non-empty string",
    "confidence": "a number between 0 and 1",
    **_SUMMARY_FIELDS,
}
_DESCRIPTIONS = {**FIELDS_V1, **FIELDS}
# Schema 2: task kind → the keys of its result and what they hold.
RESULT_FIELDS: dict[str, dict[str, str]] = {
    "multiclass": {"class": "the decided label", "confidence": "its probability (0..1)",
                   "low_confidence": "true when under the bundle's low-confidence threshold"},
    "binary": {"class": "the decided label", "confidence": "its probability (0..1)",
               "low_confidence": "true or false"},
    "multilabel": {"labels": "the labels at or above their thresholds (strings)",
                   "scores": "label → probability (0..1), every label"},
    "regression": {"values": "target → finite value", "units": "target → unit (short string)"},
    "anomaly": {"class": "the normal or anomalous label", "score": "a finite score",
                "alarm": "true when score ≥ threshold", "threshold": "the bundle's finite threshold"},
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


COLLECTOR_URL_EXPECTED = ("https://HOST[:PORT]/v1/telemetry, or http:// to a collector on this machine "
                          "(127.0.0.1, ::1, localhost); no user name or password")


def collector_url_problem(url: str) -> str | None:
    """What is wrong with a collector URL (None: nothing), checked before anything runs: a scheme other than http(s),
    plain http to another machine (health data in clear text on a network), no host, a port that is no port, an
    unbalanced IPv6 bracket (``urlsplit`` refuses it only when a request is built, after the run) or credentials in
    the URL (they would reach the logs with it)."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a port out of range or not a number
    except ValueError as error:
        return f"is not a valid URL ({error})"
    if parts.scheme not in ("http", "https"):
        return "is not http(s)"
    if not parts.hostname:
        return "names no host"
    if parts.username is not None or parts.password is not None:
        return "carries a user name or password"
    if port == 0:
        return "has port 0"
    if parts.scheme == "http" and not _is_this_machine(parts.hostname):
        return "would send health telemetry unencrypted (http) to another machine"
    return None


def _is_this_machine(host: str) -> bool:
    """Whether ``host`` is a loopback name or address: plain http never leaves the machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_pseudonymous_device_id(text: object) -> bool:
    """Whether ``text`` has the shape of a ``pseudonymous_device_id`` (16–64 lowercase hex), and not of a serial
    number: all decimal digits is refused (a hash is that with probability (10/16)³² ≈ 3·10⁻⁷)."""
    return isinstance(text, str) and _DEVICE_ID_PATTERN.fullmatch(text) is not None and not text.isdigit()


@functools.lru_cache(maxsize=4096)  # keys repeat in every record; checking each once keeps batches fast
def looks_like_identifier(key: str) -> bool:
    """Whether a key names something that identifies a patient (name, MRN, birth date, …)."""
    spaced = _CAMEL_CASE.sub(r"\1 \2", key).lower()
    words = [word for word in _WORD_SEPARATOR.split(spaced) if word]
    compact = "".join(words)
    return any(word in IDENTIFIER_WORDS for word in words) or any(part in compact for part in IDENTIFIER_FRAGMENTS)


def _fail(field: str, what: str, expected: str, fix: str) -> TelemetryError:
    return TelemetryError(f"telemetry field '{field}' {what}", expected=expected, fix=fix, field=field)


_IDENTIFIER, _LONG, _NUMBERS = 1, 2, 3  # what is wrong with a key (``_key_verdict``)


@functools.lru_cache(maxsize=8192)  # keys repeat in every record: each distinct key is judged once
def _key_verdict(key: str) -> int:
    """0 for an acceptable key, else ``_IDENTIFIER``, ``_LONG`` or ``_NUMBERS`` (checked in that order)."""
    if looks_like_identifier(key):
        return _IDENTIFIER
    if len(key) > MAX_STRING_CHARS:
        return _LONG
    return _NUMBERS if _has_number_list(key) else 0


def scan_privacy(value: Any, field: str, depth: int = 1) -> None:
    """Refuse identifier-like keys, lists of numbers and long strings at any depth, and objects or lists nested
    deeper than ``MAX_RECORD_DEPTH`` (``TelemetryError`` naming the field under ``field``; ``depth``: the level of
    ``value``, 1 for a record). Public: the collector's fast path judges names and codes with this same scan."""
    if depth > MAX_RECORD_DEPTH and isinstance(value, dict | list | tuple):
        raise _fail(field or "record", f"nests objects or lists deeper than {MAX_RECORD_DEPTH} levels",
                    f"a record at most {MAX_RECORD_DEPTH} levels deep (the collector refuses deeper bodies)",
                    "send flat summaries: named numbers, labels and flags")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise _fail(f"{field}.{key}" if field else str(key), "has a non-string key", "string keys",
                            "use string keys")
            verdict = _key_verdict(key)
            if verdict:  # a field name is named; free text, numbers or a waveform as a key only by its length
                shown = shown_key(key)
                _refuse_key(verdict, f"{field}.{shown}" if field else shown)
            if isinstance(item, str):  # the common leaves inline: a recursion per label costs more than its check
                if len(item) > MAX_STRING_CHARS or _has_number_list(item):
                    scan_privacy(item, f"{field}.{key}" if field else key, depth + 1)
            elif isinstance(item, dict | list | tuple):  # numbers need no scan
                scan_privacy(item, f"{field}.{key}" if field else key, depth + 1)
    elif isinstance(value, list | tuple):
        if any(isinstance(item, int | float) and not isinstance(item, bool) for item in value):
            raise _fail(
                field,
                "holds a list of numbers, which looks like a raw waveform",
                "summary statistics only (a dict of named numbers under 'features')",
                "send summary features instead of the signal",
            )
        for index, item in enumerate(value):
            scan_privacy(item, f"{field}[{index}]", depth + 1)
    elif isinstance(value, str) and len(value) > MAX_STRING_CHARS:
        raise _fail(field, f"is a string over {MAX_STRING_CHARS} characters", "short codes and labels", "shorten it")
    elif isinstance(value, str):
        _no_number_list(value, field)


def shown_key(key: object) -> str:
    """A key as a refusal may name it: itself when it has a field name's shape (a letter, then letters, digits and
    ``_.-``, at most 64), else only its length: free text, numbers or a waveform as a key may be a patient's name
    or signal, which must reach neither the logs nor the answer."""
    text = key if isinstance(key, str) else str(key)
    if _SHOWN_KEY.fullmatch(text):
        return text
    return f"<key of {len(text)} characters>"


_SHOWN_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")


def _refuse_key(verdict: int, field: str) -> None:
    if verdict == _IDENTIFIER:
        raise _fail(
            field,
            "looks like a patient identifier",
            "no names, record numbers, birth dates, addresses, phone numbers, emails or SSNs",
            "remove the field; telemetry is pseudonymous and carries summaries only",
        )
    if verdict == _LONG:
        raise _fail(field, f"has a key over {MAX_STRING_CHARS} characters", "short keys", "shorten the key")
    raise _fail(field, "holds a list of numbers inside text, which could carry a raw signal",
                "codes and labels without comma-, semicolon- or space-separated numbers",
                "send summary features under 'features' instead")


def _has_number_list(text: str) -> bool:
    return _SEPARATOR.search(text) is not None and _NUMBER_LIST.search(text) is not None


def _no_number_list(text: str, field: str) -> None:
    if _has_number_list(text):
        raise _fail(field or "record", "holds a list of numbers inside text, which could carry a raw signal",
                    "codes and labels without comma-, semicolon- or space-separated numbers",
                    "send summary features under 'features' instead")


def _text(record: dict[str, Any], field: str) -> str:
    value = record[field]
    if not isinstance(value, str) or not value:
        raise _fail(field, f"is {type(value).__name__}, not a non-empty string", _DESCRIPTIONS[field], "send a string")
    return value


def _number(value: Any, field: str, expected: str) -> float:
    try:
        number = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
    except OverflowError:  # an integer beyond float range
        number = math.nan
    if not math.isfinite(number):
        raise _fail(field, "is not a finite number", expected, "send a finite number (report bad input as a flag)")
    return number


def _time(record: dict[str, Any]) -> str:
    text = _text(record, "time")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _fail("time", "is not an ISO-8601 timestamp", FIELDS["time"], "use utc_timestamp()") from None
    if moment.utcoffset() is None or moment.utcoffset().total_seconds() != 0:
        raise _fail("time", "is not in UTC", "a timestamp ending in Z or +00:00", "use utc_timestamp()")
    return utc_timestamp(moment)


def record_schema_version(record: dict[str, Any]) -> int:
    """The schema a stored record was written in: 3 for an aggregate (``kind: "aggregate"``), 2 when it has a
    ``task``, else 1 (an older device's)."""
    if record.get("kind") == AGGREGATE_KIND:
        return AGGREGATE_SCHEMA_VERSION
    return 2 if "task" in record else 1


def validate_record(
    record: Any, *, sequence_required: bool = True, schema_version: int = SCHEMA_VERSION,
    vocabulary: Vocabulary | None = None,
) -> dict[str, Any]:
    """A checked, normalised copy of ``record`` (floats as floats, time in canonical UTC form).

    ``sequence_required=False`` is for the outbox, which assigns the sequence itself. ``schema_version``
    is the envelope's (the collector accepts every version in ``SUPPORTED_SCHEMA_VERSIONS``); version 3 is an
    aggregate, checked by ``runtime.telemetry.aggregate_schema.validate_aggregate`` (refused here).
    """
    if schema_version not in SUPPORTED_SCHEMA_VERSIONS:
        raise _fail("schema_version", f"{schema_version!r} is not supported",
                    f"one of {list(SUPPORTED_SCHEMA_VERSIONS)}", "align the device and collector versions")
    if schema_version == AGGREGATE_SCHEMA_VERSION:
        raise _fail("schema_version", f"{schema_version} is the aggregate schema, not a per-event record's",
                    "1 or 2 here; runtime.telemetry.aggregate_schema.validate_aggregate checks schema 3",
                    "check a schema-3 aggregate with validate_aggregate")
    fields = FIELDS if schema_version == 2 else FIELDS_V1
    if not isinstance(record, dict):
        raise _fail("record", f"is {type(record).__name__}, not an object", "a JSON object", "send an object")
    scan_privacy(record, "")
    unknown = sorted(set(record) - set(fields))
    if unknown:
        raise _fail(shown_key(unknown[0]), f"is not part of telemetry schema version {schema_version}",
                    f"only {', '.join(fields)}", "drop it")
    required = [field for field in fields if sequence_required or field != "sequence"]
    missing = [field for field in required if field not in record]
    if missing:
        raise _fail(missing[0], "is missing", fields[missing[0]], "fill in every schema field")

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
    for field in ("variant", "provider"):
        checked[field] = _text(record, field)
    latency = _number(record["latency_us"], "latency_us", FIELDS["latency_us"])
    if latency < 0:
        raise _fail("latency_us", "is negative", FIELDS["latency_us"], "measure with a monotonic clock")
    checked["latency_us"] = latency
    checked["quality_flags"] = _quality_flags(record["quality_flags"])
    if schema_version == 2:
        checked["task"], checked["result"] = _task_result(record, checked["quality_flags"])
    else:
        checked["predicted_class"] = _text(record, "predicted_class")
        checked["confidence"] = _probability(record["confidence"], "confidence")
    checked["features"] = _features(record["features"])
    if vocabulary is not None:
        _check_vocabulary(checked, vocabulary)
    return checked


def _labels_of(record: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, label) for every class label or target name the record carries."""
    if "predicted_class" in record:
        return [("predicted_class", record["predicted_class"])]
    result = record.get("result") or {}
    found = [("result.class", result["class"])] if "class" in result else []
    found += [("result.labels", label) for label in result.get("labels", [])]
    for key in ("scores", "values", "units"):
        found += [(f"result.{key}", name) for name in result.get(key, {})]
    return found


def _check_vocabulary(record: dict[str, Any], vocabulary: Vocabulary) -> None:
    """The allow-list: codes shaped as codes, flags, labels and feature names from closed sets."""
    for field in ("bundle_id", "variant", "provider"):
        if not vocabulary.allows_code(record[field]):
            raise _fail(field, "is not a code (letters, digits and ._:+- only, no identifier's words or date)",
                        _DESCRIPTIONS[field],
                        "send the identifier the runtime reports")
    units = ((record.get("result") or {}).get("units") or {}) if isinstance(record.get("result"), dict) else {}
    for target, unit in units.items():
        if not vocabulary.allows_unit(unit):
            raise _fail(f"result.units.{target}", "is not a unit the bundle declares" if vocabulary.units is not None
                        else f"is not a short unit (at most {MAX_UNIT_CHARS} characters, {MAX_LABEL_WORDS} words, no "
                        "4-digit run)", "the unit the bundle's manifest gives the target, e.g. 'ms' or 'mmol/L'",
                        "send the manifest's units")
    unknown = [flag for flag in record["quality_flags"] if flag not in vocabulary.quality_flags]
    if unknown:
        raise _fail("quality_flags", "holds a flag outside the known vocabulary",
                    "flags the runtime sets (see KNOWN_QUALITY_FLAGS)", "send only the runtime's flags")
    for field, label in _labels_of(record):
        if not vocabulary.allows_label(label):
            raise _fail(field, "holds a label outside the bundle's labels" if vocabulary.labels is not None
                        else "holds text that is not a short label", "a class label or target of the bundle",
                        "send the labels the bundle's manifest declares")
    for name in record["features"]:
        if not vocabulary.allows_feature(name):
            raise _fail(f"features.{name}", "is not a summary feature of the bundle",
                        "the features of the bundle's reference profile (or the standard summaries when the "
                        "collector does not know the bundle)", "send only the runtime's summary features")


def _probability(value: Any, field: str) -> float:
    number = _number(value, field, "a number between 0 and 1")
    if not 0.0 <= number <= 1.0:
        raise _fail(field, "is outside 0..1", "a number between 0 and 1", "send the probability")
    return number


def _label(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(field, f"is {type(value).__name__}, not a non-empty string", "a label", "send the label")
    return value


def _named(value: Any, field: str, check: Callable[[Any, str], Any]) -> dict[str, Any]:
    """An object of 1..MAX_OUTPUTS named entries, each checked by ``check``."""
    if not isinstance(value, dict) or not value:
        raise _fail(field, "is not a non-empty object", "name → value, one entry per label or target",
                    "send the outputs by name")
    if len(value) > MAX_OUTPUTS:
        raise _fail(field, f"has over {MAX_OUTPUTS} entries", "named outputs only", "send fewer outputs")
    return {name: check(item, f"{field}.{name}") for name, item in value.items()}


def _class_result(result: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(result["low_confidence"], bool):
        raise _fail("result.low_confidence", "is not true or false", "a boolean", "send a boolean")
    return {"class": _label(result["class"], "result.class"),
            "confidence": _probability(result["confidence"], "result.confidence"),
            "low_confidence": result["low_confidence"]}


def _labels_result(result: dict[str, Any]) -> dict[str, Any]:
    scores = _named(result["scores"], "result.scores", _probability)
    labels = result["labels"]
    if not isinstance(labels, list) or len(set(map(str, labels))) != len(labels) or not all(
        isinstance(label, str) and label in scores for label in labels
    ):
        raise _fail("result.labels", "is not a list of distinct labels from result.scores",
                    RESULT_FIELDS["multilabel"]["labels"], "send the present labels by name")
    return {"labels": list(labels), "scores": scores}


def _values_result(result: dict[str, Any]) -> dict[str, Any]:
    values = _named(result["values"], "result.values", lambda value, field: _number(value, field, "a finite value"))
    units = _named(result["units"], "result.units", _label)
    if set(units) != set(values):
        raise _fail("result.units", "names other targets than result.values", "one unit per target",
                    "send a unit for every value")
    return {"values": values, "units": units}


def _anomaly_result(result: dict[str, Any]) -> dict[str, Any]:
    score = _number(result["score"], "result.score", "a finite score")
    threshold = _number(result["threshold"], "result.threshold", "a finite threshold")
    if not isinstance(result["alarm"], bool) or result["alarm"] != (score >= threshold):
        raise _fail("result.alarm", "is not the boolean score ≥ threshold", RESULT_FIELDS["anomaly"]["alarm"],
                    "send the decision the bundle's rule makes")
    return {"class": _label(result["class"], "result.class"), "score": score, "alarm": result["alarm"],
            "threshold": threshold}


_RESULT_CHECKS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "multiclass": _class_result,
    "binary": _class_result,
    "multilabel": _labels_result,
    "regression": _values_result,
    "anomaly": _anomaly_result,
}


def _task_result(record: dict[str, Any], flags: list[str]) -> tuple[str, dict[str, Any] | None]:
    task = record["task"]
    if not isinstance(task, str) or task not in RESULT_FIELDS:
        raise _fail("task", "is not a known task kind", FIELDS["task"], "send the bundle's output task")
    result = record["result"]
    unjudged = UNJUDGED_FLAGS.intersection(flags)
    if result is None:
        if not unjudged:
            raise _fail("result", "is null without a flag saying why", f"a {task} result, or null with one of "
                        f"the quality flags {', '.join(sorted(UNJUDGED_FLAGS))}", "send the result")
        return task, None
    if unjudged:
        raise _fail("result", f"is given although the record is flagged {sorted(unjudged)[0]}",
                    "null: an input the model could not judge has no answer", "send result null")
    expected = RESULT_FIELDS[task]
    if not isinstance(result, dict) or set(result) != set(expected):
        found = sorted(set(result) ^ set(expected)) if isinstance(result, dict) else ["(not an object)"]
        raise _fail(f"result.{found[0]}" if isinstance(result, dict) else "result",
                    f"does not fit a {task} result", f"exactly the keys {', '.join(expected)}",
                    "send the result the runtime makes for this task kind")
    return task, _RESULT_CHECKS[task](result)


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
