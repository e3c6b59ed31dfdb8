"""The collector's fast path (``compiled.decode_aggregates``, msgspec) and its exact path (``validate_aggregate``)
judge every upload alike: each leaf and key of a real aggregate is mutated in turn — wrong types, out-of-range and
non-finite numbers, identifiers where codes belong, extra and missing fields — and for every body the fast path
accepts only what the exact path accepts, stores the same values, and the collector's answer (accepted, or the
refusal's status) is the exact path's."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("msgspec")

from dashboard.collector import schema
from dashboard.collector.compiled import decode_aggregates
from dashboard.collector.schema import BatchError, CollectorLimits, parse_batch
from tests.runtime.test_telemetry_aggregates import minutes

DEVICE = "ab" * 16
ODD_VALUES: tuple[Any, ...] = (
    -1, 0, 1.5, 10**20, "x", "", None, True, [], {}, "patient John Smith, MRN 12345678", "2026-01-01T12:00:30Z",
    "Jane.Doe.DOB.1970-01-01", "SSN:078-05-1120",
)


def _envelope(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {"schema_version": 3, "device_id": DEVICE, "dropped": 0,
            "records": [{**record, "sequence": index + 1} for index, record in enumerate(records)]}


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key path in ``value`` (dict keys and list indices), parents before children."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield (*prefix, index)
            yield from _paths(item, (*prefix, index))


def _set(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    changed = copy.deepcopy(document)
    target = changed
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return changed


def _delete(document: Any, path: tuple[Any, ...]) -> Any:
    changed = copy.deepcopy(document)
    target = changed
    for step in path[:-1]:
        target = target[step]
    del target[path[-1]]
    return changed


def _bodies() -> Iterator[tuple[str, bytes]]:
    """(what was changed, body): the valid envelope, then one mutation at a time."""
    valid = _envelope(minutes()[:1])
    yield "valid", json.dumps(valid).encode()
    for path in _paths(valid["records"][0]):
        where = ("records", 0, *path)
        for value in ODD_VALUES:
            yield f"{path} = {value!r}", json.dumps(_set(valid, where, value)).encode()
        yield f"{path} deleted", json.dumps(_delete(valid, where)).encode()
        if isinstance(path[-1], str):  # the same value under a key the protocol does not have
            parent = ("records", 0, *path[:-1])
            target = valid
            for step in parent:
                target = target[step]
            renamed = {("Patient_Name" if key == path[-1] else key): item for key, item in target.items()}
            yield f"{path} renamed", json.dumps(_set(valid, parent, renamed) if path[:-1] else
                                                {**valid, "records": [renamed]}).encode()
    for text in ('"minute": "2026-01-01T12:00:00Z"', '"records": 66'):  # a duplicated key: the first value differs
        body = json.dumps(valid)
        yield f"duplicated {text}", body.replace(text, text.replace("12:00", "13:00").replace("66", "65") + ", "
                                                 + text, 1).encode()
    for constant in ("NaN", "Infinity"):
        yield f"{constant} as a sum", json.dumps(valid).replace('"sum": ', f'"sum": {constant}, "x": ', 1).encode()


def _exact(body: bytes, monkeypatch: pytest.MonkeyPatch) -> schema.Batch | BatchError:
    with monkeypatch.context() as patch:
        patch.setattr(schema, "decode_aggregates", lambda *arguments, **options: None)
        try:
            return parse_batch(body)
        except BatchError as error:
            return error


def _either(body: bytes) -> schema.Batch | BatchError:
    try:
        return parse_batch(body)
    except BatchError as error:
        return error


def test_the_fast_path_accepts_only_what_the_exact_path_accepts_and_stores_the_same(monkeypatch) -> None:
    limits = CollectorLimits()
    checked = accepted_fast = 0
    for change, body in _bodies():
        exact = _exact(body, monkeypatch)
        fast = decode_aggregates(body, max_records=limits.max_records, max_integer=limits.max_integer)
        answer = _either(body)
        checked += 1
        if isinstance(exact, BatchError):
            assert fast is None, f"{change}: the fast path accepted what the exact path refuses ({exact})"
            assert isinstance(answer, BatchError) and answer.status == exact.status, change
            continue
        assert not isinstance(answer, BatchError), f"{change}: refused ({answer}) though the exact path accepts"
        assert [dict(record) for record in answer.records] == [dict(record) for record in exact.records], change
        if fast is not None:
            accepted_fast += 1
            assert [json.loads(item.text) for item in fast[2]] == [dict(record) for record in exact.records], change
    assert checked > 1000 and accepted_fast >= 1  # the valid envelope at least takes the fast path


@pytest.mark.parametrize("field, value", [("bundle_id", "Jane.Doe.DOB.1970-01-01"), ("variant", "SSN:078-05-1120"),
                                          ("provider", "01/31/1970"), ("bundle_id", "MRN.12345678")])
def test_an_identifier_typed_into_a_code_is_refused_on_both_paths(field, value, monkeypatch) -> None:
    """The codes are letters, digits and ._:+- — a birth date, SSN or MRN fits that shape, so the words and the
    date's shape are refused too, for a bundle the collector knows and one it does not."""
    body = json.dumps(_set(_envelope(minutes()[:1]), ("records", 0, field), value)).encode()
    limits = CollectorLimits()
    assert decode_aggregates(body, max_records=limits.max_records, max_integer=limits.max_integer) is None
    for refused in (_exact(body, monkeypatch), _either(body)):
        assert isinstance(refused, BatchError) and refused.status == 422 and refused.field == field, refused
        assert value not in str(refused)
