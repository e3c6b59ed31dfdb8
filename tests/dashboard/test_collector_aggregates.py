"""The collector with schema-3 envelopes: aggregates made by the runtime accepted, stored once per record id and
acknowledged by sequence; a restarted stream's second aggregate of a minute kept; mixed or malformed envelopes
refused with the field; rolled up inline or by the collector's background job."""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from fastapi.testclient import TestClient

from dashboard.collector.aggregates import merge_device_aggregates
from dashboard.collector.app import RollupJob, create_app
from dashboard.collector.interface import RollupMode
from dashboard.collector.store import SqliteStore
from dashboard.collector.vocabulary import BundleVocabularies
from runtime.telemetry.aggregate_schema import fold_aggregates
from tests.runtime.test_telemetry_aggregates import LABELS, aggregator, beat, minutes
from tests.runtime.test_telemetry_records import sample_record

DEVICE = "ab" * 16  # the device id of tests.runtime.test_telemetry_aggregates' aggregator


def envelope(records: list[dict[str, Any]], *, device_id: str = DEVICE, first: int = 1, version: int = 3,
             dropped: int = 0) -> dict[str, Any]:
    numbered = [{**record, "sequence": first + index} for index, record in enumerate(records)]
    return {"schema_version": version, "device_id": device_id, "dropped": dropped, "records": numbered}


@pytest.fixture
def store(tmp_path) -> Iterator[SqliteStore]:
    with SqliteStore(tmp_path / "collector.sqlite3", merge=merge_device_aggregates) as opened:
        yield opened


@pytest.fixture
def client(store) -> TestClient:
    return TestClient(create_app(store))


def test_aggregates_are_stored_once_and_acknowledged_by_sequence(client, store):
    made = minutes()  # three minutes of one device from the runtime's aggregator
    first = client.post("/v1/telemetry", json=envelope(made, dropped=4))
    assert first.status_code == 200, first.json()
    assert first.json() == {"acknowledged": [1, 2, 3], "duplicates": 0}
    again = client.post("/v1/telemetry", json=envelope(made, dropped=4))  # the acknowledgement was lost: a resend
    assert again.json() == {"acknowledged": [1, 2, 3], "duplicates": 3}
    stored = store.aggregates(device_id=DEVICE)
    assert [item["payload"]["record_id"] for item in stored] == [item["record_id"] for item in made]
    assert stored[0]["payload"] == {**made[0], "sequence": 1}  # the whole checked aggregate
    (device,) = store.devices()
    assert (device["device_id"], device["records"], device["last_sequence"], device["dropped"]) == (DEVICE, 0, 3, 4)
    assert device["first_time"] == "2026-01-01T12:00:00.000000Z"
    (hour,) = store.rollups(device_id=DEVICE)
    assert hour["aggregates"] == 3 and hour["payload"] == fold_aggregates([{**item, "sequence": index + 1}
                                                                          for index, item in enumerate(made)])


def test_a_restarted_stream_sends_a_second_aggregate_of_the_minute_which_is_kept(client, store):
    (before,) = aggregator().add([beat(5.0), beat(61.0)]).aggregates
    restarted = aggregator()
    restarted.session = "2026-01-01T12:00:30.000000Z"  # what a new MinuteAggregator started mid-minute has
    (after,) = restarted.add([beat(35.0), beat(70.0)]).aggregates
    assert after["minute"] == before["minute"] and after["record_id"] != before["record_id"]
    assert client.post("/v1/telemetry", json=envelope([before, after])).json()["duplicates"] == 0
    assert len(store.aggregates(device_id=DEVICE)) == 2
    (hour,) = store.rollups(device_id=DEVICE)
    assert hour["aggregates"] == 2 and hour["payload"]["records"] == 2


def test_an_envelope_mixing_versions_or_holding_a_bad_aggregate_is_refused_whole(client, store):
    made = minutes()
    record = {**sample_record(), "device_id": DEVICE}
    mixed = client.post("/v1/telemetry", json=envelope([made[0], record]))  # a schema-2 record in a schema-3 envelope
    assert mixed.status_code == 422 and mixed.json()["record_index"] == 1
    wrong = client.post("/v1/telemetry", json=envelope([made[0]], version=2))  # an aggregate in a schema-2 envelope
    assert wrong.status_code == 422 and wrong.json()["record_index"] == 0
    spoiled = copy.deepcopy(made)
    spoiled[2]["features"]["peak_to_peak"]["bins"] = {"3": [[[[[[[[[[1]]]]]]]]]]}  # deep, not a count
    deep = client.post("/v1/telemetry", json=envelope(spoiled))
    assert deep.status_code == 422 and deep.json()["field"] == "features.peak_to_peak.bins"
    spoiled = copy.deepcopy(made)
    spoiled[1]["records"] = 2**64  # beyond any store's integer
    assert client.post("/v1/telemetry", json=envelope(spoiled)).status_code == 422
    spoiled = copy.deepcopy(made)
    spoiled[1]["patient_name"] = "x"
    named = client.post("/v1/telemetry", json=envelope(spoiled))
    assert named.status_code == 422 and "patient identifier" in named.json()["detail"]
    body = json.dumps(envelope(made)).replace('"sum": ', '"sum": NaN, "x": ', 1)
    assert client.post("/v1/telemetry", content=body, headers={"Content-Type": "application/json"}
                       ).status_code == 400
    assert store.aggregates() == [] and store.devices() == []


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("latency_us", "sum"), 10**400, "latency_us.sum"),  # beyond float: refused, never a 500
        (("latency_us", "min"), -(10**400), "latency_us.min"),
        (("quality_events",), {"gap": {"count": 1, "seconds": 10**400}}, "quality_events.gap.seconds"),
        (("session",), "Jane Doe MRN 00123456 DOB 1962-04-01", "session"),  # free text stored with every minute
        (("filter",), {"version": 1, "rules": ["Jane Doe", "MRN 00123456"], "positive_labels": []}, "filter"),
        (("filter",), {"version": 1, "rules": ["positive"], "positive_labels": ["John Smith 1962-04-01"]}, "classes"),
    ],
)
def test_numbers_beyond_float_and_free_text_in_an_aggregate_are_refused_with_its_field(client, store, path, value,
                                                                                       field):
    spoiled = copy.deepcopy(minutes())
    target = spoiled[0]
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    answer = client.post("/v1/telemetry", json=envelope(spoiled))
    assert answer.status_code == 422 and answer.json()["field"] == field, answer.text
    assert "Jane" not in answer.text and "John" not in answer.text
    assert store.aggregates() == []


def test_a_newer_schema_version_is_refused_naming_both_versions(client):
    response = client.post("/v1/telemetry", json=envelope(minutes(), version=4))
    assert response.status_code == 422 and response.json()["field"] == "schema_version"
    assert "schema_version 4 is not supported; this collector accepts 1, 2, 3 (newest 3)" in response.json()["detail"]


def test_a_known_bundle_keeps_aggregates_to_its_labels_and_features(store, tmp_path):
    folder = tmp_path / "bundles" / "ecg"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"lineage": {"bundle": "ecg-test-1"},
                                                      "output": {"labels": list(LABELS)}}))
    (folder / "reference_profile.json").write_text(json.dumps({"features": {"peak_to_peak": {}, "skewness": {}}}))
    client = TestClient(create_app(store, vocabularies=BundleVocabularies(tmp_path / "bundles")))
    made = minutes()
    assert client.post("/v1/telemetry", json=envelope(made)).status_code == 200
    foreign = copy.deepcopy(made)
    foreign[0]["classes"] = {"N": foreign[0]["classes"].pop("non-V"), **foreign[0]["classes"]}
    refused = client.post("/v1/telemetry", json=envelope(foreign, first=10))
    assert refused.status_code == 422 and refused.json()["field"] == "classes"


def test_deferred_rollups_are_folded_by_the_collectors_job_exactly_once(tmp_path):
    inline = SqliteStore(tmp_path / "inline.sqlite3", merge=merge_device_aggregates)
    deferred = SqliteStore(tmp_path / "deferred.sqlite3", merge=merge_device_aggregates, rollups=RollupMode.DEFERRED)
    made = minutes()
    for store in (inline, deferred):
        client = TestClient(create_app(store))
        assert client.post("/v1/telemetry", json=envelope(made[:2])).status_code == 200
        assert client.post("/v1/telemetry", json=envelope(made, first=1)).json()["duplicates"] == 2
    assert deferred.rollups() == [] and deferred.pending_rollups() == 3 and inline.pending_rollups() == 0
    assert TestClient(create_app(deferred)).get("/v1/ready").json() == {"status": "ready", "rollups_pending": 3}
    job = RollupJob(deferred)
    assert job.run_once() == 3 and job.run_once() == 0  # folded once, the queue emptied in the same transaction
    (day,) = deferred.day_rollups().rows  # then the day (ended long ago) from its one hour
    assert job.days == 1 and deferred.pending_days() == 0 and (day["hours"], day["aggregates"]) == (1, 3)
    strip = [{key: value for key, value in item.items() if key != "updated_at"} for item in inline.rollups()]
    assert deferred.rollups() == strip
    with TestClient(create_app(deferred)):  # the app starts and stops its job with itself
        pass
    assert deferred.rebuild_rollups() == 1 and deferred.rollups() == strip
    inline.close()
    deferred.close()


def test_folding_many_aggregates_at_once_equals_merging_them_pairwise():
    import functools

    from runtime.telemetry.aggregate_schema import merge_aggregates

    parts = minutes() + [dict(item, minute=f"2026-01-01T12:0{3 + index}:00Z") for index, item in enumerate(minutes())]
    assert fold_aggregates(parts) == functools.reduce(merge_aggregates, parts)
    assert fold_aggregates(parts[:1]) == parts[0]
    assert json.dumps(fold_aggregates(parts), sort_keys=True) == json.dumps(  # float sums in the same order
        functools.reduce(merge_aggregates, parts), sort_keys=True)


def test_folding_takes_the_one_step_head_only_where_the_pairwise_chain_would_give_the_same():
    """One stream's minutes (one session, identity, bins and filter) get their head in one step; minutes of two
    sessions, two variants or a tie on the earliest minute give exactly the pairwise chain's head too, and folding
    never changes the parts it was given."""
    import copy
    import functools

    from runtime.telemetry.aggregate_schema import merge_aggregates

    made = minutes()
    later = [dict(item, minute=f"2026-01-01T12:{10 + index:02d}:00Z") for index, item in enumerate(made)]
    other_session = [dict(item, session="2026-01-01T12:30:00Z") for item in later]
    other_variant = [dict(item, variant="int8") for item in later]
    tie = [made[0], dict(made[1], minute=made[0]["minute"]), *made[2:]]
    for parts in (made + later, later + made, made + other_session, other_variant + made, tie, made[:2]):
        before = copy.deepcopy(parts)
        assert fold_aggregates(parts) == functools.reduce(merge_aggregates, parts)
        assert parts == before
    assert fold_aggregates(made + other_variant)["variant"] == "mixed"
    assert fold_aggregates(made + other_session)["session"].startswith("merged:")


def test_rollups_folded_one_at_a_time_from_text_equal_the_eager_fold_and_decode_only_their_own_minutes():
    """The rollup job's ``iter_rollups``: payloads kept as text and decoded when their rollup is folded give the
    eager ``fold_rollups`` of decoded payloads, stored rollups included, key by key in order; while the first rollup
    is handed out, only its own minutes (and stored rollup) have been decoded."""
    from dashboard.collector.aggregates import fold_rollups, hour_of, iter_rollups

    made = minutes()
    others = [dict(item, device_id="cd" * 16) for item in made]  # a second device: a second rollup
    rows = [{key: record[key] for key in ("device_id", "bundle_id", "minute", "record_id")} | {"payload": record}
            for record in made + others]
    stored_part = dict(made[0], device_id="cd" * 16, record_id="e" * 32)  # a minute folded before
    start = {(others[0]["device_id"], hour_of(others[0]["minute"]), others[0]["bundle_id"]): (1, stored_part)}
    eager = fold_rollups(rows, merge_device_aggregates, start)
    decoded: list[str] = []

    def decode(text: str) -> dict[str, Any]:
        decoded.append(text)
        return json.loads(text)

    as_text = [dict(row, payload=json.dumps(row["payload"])) for row in rows]
    stored_text = {key: (count, json.dumps(payload)) for key, (count, payload) in start.items()}
    lazy = iter_rollups(as_text, merge_device_aggregates, stored_text, decode=decode, decode_stored=decode)
    first_key, first = next(lazy)
    assert first_key[0] == "ab" * 16 and len(decoded) == len(made)  # the first device's minutes, no more
    assert [(first_key, first), *lazy] == sorted(eager.items())
    assert len(decoded) == len(rows) + 1 and eager[first_key][0] == len(made)
    assert eager[next(iter(start))][0] == 1 + len(others)
