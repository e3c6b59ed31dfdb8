"""Daily rollups (``dashboard.collector.days``) on both backends, and the dashboard's day blocks read from them.

A day is folded from its stored hourly rollups once it has ended, again after a late hour changes it, and removed when
its hours are gone; until then it is pending and a reader merges its hours itself. The 7- and 30-day views then read
one row per device and day and give the same counts and histograms as merging the hours.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from dashboard.collector.aggregates import merge_device_aggregates
from dashboard.collector.backends import open_store
from dashboard.collector.days import DAY_SETTLE, day_of, fold_day, fold_day_parts
from dashboard.data.telemetry import TelemetryReader
from dashboard.data.windows import Block, Resolution, merge_days, read_block, read_day
from dashboard.monitoring.aggregate_sums import summary_of
from runtime.telemetry.records import pseudonymous_device_id
from tests.runtime.test_telemetry_aggregates import aggregator, beat

DAY_ONE, DAY_TWO = "2026-01-01T00:00:00.000000Z", "2026-01-02T00:00:00.000000Z"
# the test aggregator's origin is 2026-01-01 12:00 UTC: hours 10–13 after it straddle midnight, 36 is 2 January's end
HOURS = (10, 11, 12, 13, 35)


def device_minutes(seed: int, hours: tuple[int, ...] = HOURS, device: str | None = None) -> list[dict[str, Any]]:
    """A device's minute aggregates (the runtime's own) for three minutes in each of ``hours`` after the origin."""
    rng = np.random.default_rng(seed)
    times = [hour * 3600 + minute * 60 + offset for hour in hours for minute in (0, 7, 59)
             for offset in np.sort(rng.uniform(0, 59, 5))]
    machine = aggregator()
    events = [beat(float(time), "V" if rng.random() < 0.2 else "non-V", latency_us=float(rng.lognormal(7, 0.4)),
                   features={"peak_to_peak": float(rng.normal(7, 2)), "skewness": float(rng.normal()),
                             "difference_rms": 0.4}) for time in times]
    made = machine.add(events).aggregates + machine.flush()
    if device is not None:
        made = [dict(item, device_id=device) for item in made]
    return [{key: item[key] for key in ("device_id", "bundle_id", "minute", "record_id")} | {"payload": item}
            for item in made]


def test_a_day_folds_from_its_hours_once_it_has_ended_and_again_after_a_late_hour(location):
    with open_store(location, merge=merge_device_aggregates) as store:
        rows = device_minutes(1)
        store.insert_aggregates(rows)
        assert store.pending_days() == 2 and store.day_rollups().rows == []
        just_ended = datetime(2026, 1, 2, tzinfo=UTC) + DAY_SETTLE - timedelta(seconds=1)
        assert store.roll_up_days(now=just_ended) == 0  # 1 January ended less than DAY_SETTLE ago
        assert store.roll_up_days(now=just_ended + timedelta(seconds=2)) == 1
        first = store.day_rollups()
        assert [row["day"] for row in first.rows] == [DAY_ONE] and [key[1] for key in first.pending] == [DAY_TWO]
        assert store.roll_up_days() == 1 and store.roll_up_days() == 0 and store.pending_days() == 0

        days = {row["day"]: row for row in store.day_rollups().rows}
        hours = store.rollups()
        for day, row in days.items():
            own = [(hour["aggregates"], hour["payload"]) for hour in hours if day_of(hour["hour"]) == day]
            assert (row["hours"], row["aggregates"], row["payload"]) == fold_day(own, merge_device_aggregates)
            minutes = [item["payload"] for item in rows if day_of(item["minute"]) == day]
            assert row["aggregates"] == len(minutes) and row["payload"]["records"] == sum(
                minute["records"] for minute in minutes)
        assert (days[DAY_ONE]["hours"], days[DAY_TWO]["hours"]) == (2, 3)
        lean = store.day_rollups(features=False).rows
        assert [row["payload"] for row in lean] == [
            {key: value for key, value in row["payload"].items() if key != "features"} for row in days.values()]
        assert [row["day"] for row in store.day_rollups(since=DAY_TWO).rows] == [DAY_TWO]

        late = device_minutes(2, hours=(11,))  # an outbox that waited: 1 January's 23:xx, other record ids
        store.insert_aggregates([dict(item, record_id=item["record_id"][:-4] + "late") for item in late])
        pending = store.day_rollups()
        assert [row["day"] for row in pending.rows] == [DAY_TWO] and [key[1] for key in pending.pending] == [DAY_ONE]
        assert store.roll_up_days() == 1
        (refolded,) = [row for row in store.day_rollups().rows if row["day"] == DAY_ONE]
        assert refolded["aggregates"] == days[DAY_ONE]["aggregates"] + len(late)


def test_a_day_whose_hours_are_rebuilt_away_is_removed(location):
    with open_store(location, merge=merge_device_aggregates) as store:
        store.insert_aggregates(device_minutes(3))
        while store.roll_up_days():
            pass
        assert len(store.day_rollups().rows) == 2
        store.prune_aggregates(datetime(2026, 1, 2, tzinfo=UTC))  # 1 January's minutes gone, its rollups kept
        store.rebuild_rollups(since=DAY_ONE, until="2026-01-01T23:59:00Z")  # …then rebuilt from nothing
        assert store.roll_up_days() == 1
        assert [row["day"] for row in store.day_rollups().rows] == [DAY_TWO] and store.pending_days() == 0


def test_a_day_block_reads_the_stores_days_and_merges_the_pending_ones_from_their_hours(location):
    """Three devices, one of whose days are still pending: the day block has each device once per day, with the
    counts, classes and latency and output histograms of merging every hour of the day (``merge_days``, the path
    before daily rollups) and float sums equal to rounding."""
    devices = sorted(pseudonymous_device_id(f"SN-day-{index}", "day-tests") for index in range(3))
    with open_store(location, merge=merge_device_aggregates) as store:
        for seed, device in enumerate(devices):
            store.insert_aggregates(device_minutes(10 + seed, device=device))
        assert store.roll_up_days(limit=4) == 4  # the first two devices' days (by device): the third's pending
    reader = TelemetryReader(location)
    block = Block(Resolution.DAY, pd.Timestamp(DAY_ONE), pd.Timestamp(DAY_TWO), True)
    _, pending = reader.day_frame(DAY_ONE, DAY_ONE, features=False)
    assert [key[0] for key in pending] == [devices[2]]
    found = read_block(reader, block, None, False)
    assert sorted(found["device_id"]) == devices and set(found["seconds"]) == {86_400}
    assert set(found["minute"]) == {pd.Timestamp(DAY_ONE)} and set(found["session"]) == {""}
    expected = merge_days(reader.rollup_frame(DAY_ONE, pd.Timestamp(DAY_TWO) - pd.Timedelta(1, "us"),
                                              features=False), pd.Timestamp(DAY_ONE))
    for device in devices:
        mine, theirs = (summary_of(frame[frame["device_id"] == device], tracks=False) for frame in (found, expected))
        assert (mine.records, mine.flagged, mine.classes, mine.quality_flags) == (
            theirs.records, theirs.flagged, theirs.classes, theirs.quality_flags)
        assert (mine.latency.counts == theirs.latency.counts).all()
        assert mine.latency.total == pytest.approx(theirs.latency.total, rel=1e-12)
    one = read_day(reader, block, devices[2], False)  # one device, pending: its hours merged
    assert list(one["device_id"]) == [devices[2]] and one.iloc[0]["records"] == found[
        found["device_id"] == devices[2]].iloc[0]["records"]


def switching_minutes(seed: int) -> list[dict[str, Any]]:
    """``device_minutes`` whose bundle variant switches to int8 at 2 January 01:59 (hour 13 after the origin, its
    last minute): 2 January has an fp32 hour, the switching hour ("mixed" once rolled up) and an int8 hour."""
    switched = datetime(2026, 1, 2, 1, 59, tzinfo=UTC)
    rows = device_minutes(seed)
    return [dict(row, payload=dict(row["payload"], variant="int8"))
            if datetime.fromisoformat(row["minute"]) >= switched else row for row in rows]


def test_a_day_spanning_a_variant_switch_is_a_row_per_variant_as_its_pending_hours_are(location):
    """The store's daily rows of a day with a variant switch are apart per identity, each the fold of its own hours
    (``fold_day``) in the order they first come; the dashboard's day block reads the same rows (variant, counts,
    latency) whether the day is folded or still pending (its hours merged by ``merge_days``)."""
    rows = switching_minutes(4)
    with open_store(location, merge=merge_device_aggregates) as store:
        store.insert_aggregates(rows)
        hours = store.rollups()
        reader = TelemetryReader(location)
        block = Block(Resolution.DAY, pd.Timestamp(DAY_TWO), pd.Timestamp(DAY_TWO) + pd.Timedelta(days=1), True)
        pending = read_block(reader, block, None, False)  # nothing folded yet: the hours merged here
        while store.roll_up_days():
            pass
        days = [row for row in store.day_rollups().rows if row["day"] == DAY_TWO]
        own = [(hour["aggregates"], hour["payload"]) for hour in hours if day_of(hour["hour"]) == DAY_TWO]
        assert [row["payload"]["variant"] for row in days] == ["fp32", "mixed", "int8"]
        assert [(row["hours"], row["aggregates"], row["payload"]) for row in days] == [
            fold_day([part], merge_device_aggregates) for part in own]  # one hour per identity here
        assert fold_day_parts(own, merge_device_aggregates) == [(1, count, payload) for count, payload in own]
        (day_one,) = [row for row in store.day_rollups().rows if row["day"] == DAY_ONE]  # no switch: one row
        assert day_one["payload"]["variant"] == "fp32" and day_one["hours"] == 2
        folded = read_block(reader, block, None, False)
    assert sorted(folded["variant"]) == sorted(pending["variant"]) == ["fp32", "int8", "mixed"]
    for variant in ("fp32", "mixed", "int8"):
        mine, theirs = (summary_of(frame[frame["variant"] == variant], tracks=False) for frame in (folded, pending))
        assert (mine.records, mine.classes) == (theirs.records, theirs.classes) and mine.records > 0
        assert (mine.latency.counts == theirs.latency.counts).all()


def test_migration_8_keeps_a_days_row_and_queues_the_day_to_be_folded_apart_per_variant(location):
    """A version-7 store's daily row (one per device, day and bundle: the switch folded into "mixed") is kept as
    part 0 and its day queued, so readers use the hours until the job folds the day again, per variant; a day of
    one variant is left as it is (current, not queued)."""
    from dashboard.collector.migrations import HEAD, MIGRATIONS, Dialect
    from tests.dashboard.test_store_backends import raw, schema_at

    dialect = schema_at(location, 7)
    rows = switching_minutes(5)
    with open_store(location, merge=merge_device_aggregates) as reference:  # written by this code, then set back
        reference.insert_aggregates(rows)
        hours = reference.rollups()
    whole, uniform = (fold_day([(hour["aggregates"], hour["payload"]) for hour in hours if day_of(hour["hour"]) == day],
                               merge_device_aggregates) for day in (DAY_TWO, DAY_ONE))  # version 7: a day, one row
    device, bundle = rows[0]["device_id"], rows[0]["bundle_id"]
    raw(location, "DELETE FROM day_queue")
    raw(location, "DELETE FROM day_rollups")
    raw(location, "DELETE FROM schema_version WHERE version >= 8")
    raw(location, "DROP TABLE simulated_devices")  # (migration 9's)
    if dialect is Dialect.POSTGRES:  # back to version 7's layout
        raw(location, "ALTER TABLE day_rollups DROP CONSTRAINT day_rollups_pkey, DROP COLUMN part, "
                      "ADD PRIMARY KEY (device_id, day, bundle_id)")
    else:
        raw(location, "DROP TABLE day_rollups")
        for statement in MIGRATIONS[6].statements(dialect)[:2]:
            raw(location, statement)
    for day, (count, merged, payload) in ((DAY_TWO, whole), (DAY_ONE, uniform)):
        raw(location, "INSERT INTO day_rollups (device_id, day, bundle_id, hours, aggregates, payload, features, "
                      "updated_at) VALUES (?, ?, ?, ?, ?, ?, NULL, ?)",
            (device, day, bundle, count, merged, json.dumps(payload), "2026-01-03T00:00:00Z"))
    with open_store(location, merge=merge_device_aggregates) as store:  # migrates 7 → 9
        assert store.schema_version() == HEAD == 9
        stale = raw(location, "SELECT part, aggregates FROM day_rollups ORDER BY day")
        assert [tuple(row) for row in stale] == [(0, uniform[1]), (0, whole[1])]
        read = store.day_rollups()
        assert read.pending == [(device, DAY_TWO, bundle)]  # the switch day's hours read instead…
        assert [(row["day"], row["payload"]) for row in read.rows] == [(DAY_ONE, uniform[2])]  # …the other kept
        while store.roll_up_days():
            pass
        days = [row for row in store.day_rollups().rows if row["day"] == DAY_TWO]
        assert [row["payload"]["variant"] for row in days] == ["fp32", "mixed", "int8"]
        assert sum(row["aggregates"] for row in days) == whole[1] and whole[2]["variant"] == "mixed"
