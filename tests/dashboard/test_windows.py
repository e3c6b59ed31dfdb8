"""Which blocks a page's window reads (``dashboard.data.windows``): minute aggregates for the last hour, whole hours of
rollups behind them, whole days for long windows, and what a refresh re-reads."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd

from dashboard.data.bundles import BundleCatalog
from dashboard.data.windows import (
    DEVICE_COLUMNS,
    Resolution,
    WindowRequest,
    device_table,
    fleet_request,
    merge_days,
    plan,
    record_blocks,
)
from dashboard.monitoring.aggregate_fleet import device_overview, status_counts
from dashboard.monitoring.aggregate_sums import summary_of
from dashboard.monitoring.aggregate_window import aggregate_frame, compact_payload

END = datetime(2026, 3, 2, 12, 33, 20, tzinfo=UTC)  # the window ends at 12:34, the minute after


def test_the_alert_window_reads_the_last_hour_minute_by_minute_and_whole_hours_before() -> None:
    start, stop, minute_from, blocks = plan(WindowRequest(timedelta(hours=6), minutes_for=timedelta(hours=1)), END)
    assert (start, stop, minute_from) == (pd.Timestamp("2026-03-02 06:34Z"), pd.Timestamp("2026-03-02 12:34Z"),
                                          pd.Timestamp("2026-03-02 11:00Z"))
    hours = [block for block in blocks if block.resolution is Resolution.HOUR]
    minutes = [block for block in blocks if block.resolution is Resolution.MINUTE]
    assert [block.start.hour for block in hours] == [7, 8, 9, 10] and all(block.complete for block in hours)
    assert len(minutes) == 94 and minutes[0].start == minute_from and minutes[-1].end == stop
    open_minutes = [block.start.strftime("%H:%M") for block in minutes if not block.complete]
    assert open_minutes == ["12:31", "12:32", "12:33"]  # what a refresh re-reads: the minutes still arriving


def test_the_fleet_page_reads_minutes_for_an_hour_rollups_beyond_and_days_for_a_month() -> None:
    hour, bucket = fleet_request(timedelta(hours=1))
    assert hour.minutes_for is None and bucket == timedelta(minutes=5)
    day, bucket = fleet_request(timedelta(hours=24))
    _, _, minute_from, blocks = plan(day, END)
    assert minute_from is None and bucket == timedelta(hours=1)
    assert {block.resolution for block in blocks} == {Resolution.HOUR} and len(blocks) == 24
    assert not blocks[-1].complete and blocks[-1].start == pd.Timestamp("2026-03-02 12:00Z")  # the current hour
    month, bucket = fleet_request(timedelta(days=30))
    _, _, _, blocks = plan(month, END)
    days = [block for block in blocks if block.resolution is Resolution.DAY]
    assert bucket == timedelta(days=1) and len(days) == 29 and all(block.complete for block in days)
    assert sum(block.resolution is Resolution.HOUR for block in blocks) == 11 + 13  # the two partial days


def test_older_devices_records_are_read_by_the_hour_and_by_five_minutes_in_the_hour_filling() -> None:
    blocks = record_blocks(pd.Timestamp("2026-03-02 10:34Z"), pd.Timestamp("2026-03-02 12:34Z"),
                           pd.Timestamp("2026-03-02 12:34Z"))
    assert [(block.start.strftime("%H:%M"), block.end.strftime("%H:%M")) for block in blocks[:2]] == [
        ("10:00", "11:00"), ("11:00", "12:00")]
    assert [block.start.strftime("%H:%M") for block in blocks[2:]] == [f"12:{minute:02d}" for minute in
                                                                        range(0, 35, 5)]
    assert [block.complete for block in blocks] == [True, True] + [True] * 6 + [False]


def _payload(minute: str, records: int, latency: dict[str, int]) -> dict:
    return {"kind": "aggregate", "device_id": "a" * 32, "bundle_id": "b1", "bundle_sha256": "c" * 64,
            "variant": "fp32", "provider": "CPUExecutionProvider", "task": "binary", "minute": minute,
            "seconds": 3600, "session": "", "bins_id": "0" * 16, "filter": None, "records": records, "unjudged": 0,
            "classes": {"N": records}, "low_confidence": {}, "flagged": 1, "quality_flags": {"gap": 1},
            "latency_us": {"scheme": "log10/64", "count": records, "sum": 10.0 * records, "min": 5.0, "max": 20.0,
                           "bins": latency},
            "features": {}, "outputs": {}}


def test_a_day_of_rollups_merges_into_one_row_with_every_count() -> None:
    hours = aggregate_frame([compact_payload(_payload("2026-03-01T03:00:00Z", 4, {"70": 4})),
                             compact_payload(_payload("2026-03-01T04:00:00Z", 6, {"70": 2, "80": 4}))])
    day = merge_days(hours, pd.Timestamp("2026-03-01T00:00Z"))
    assert len(day) == 1 and day.iloc[0]["seconds"] == 86_400 and day.iloc[0]["records"] == 10
    merged, separate = summary_of(day, tracks=False), summary_of(hours, tracks=False)
    assert (merged.records, merged.flagged, merged.classes, merged.quality_flags) == (
        separate.records, separate.flagged, separate.classes, separate.quality_flags)
    assert (merged.latency.counts == separate.latency.counts).all() and merged.latency.count == 10


def counted_sources(settings) -> tuple:
    """(``Sources`` reading the store of ``settings`` and noting every block it reads, the bundles' plans, that list of
    blocks)."""
    from dashboard.data import windows
    from dashboard.data.bundles import read_catalog
    from dashboard.data.telemetry import TelemetryReader
    from dashboard.monitoring.aggregate_window import catalog_plans

    plans = catalog_plans(read_catalog(settings.bundles))
    reader = TelemetryReader(settings.database)
    read: list = []

    def counted(block, device_id, features):
        read.append(block)
        return windows.read_block(reader, block, device_id, features, plans)

    return windows.Sources(counted, reader.devices), plans, read


def test_a_month_reads_an_older_devices_records_only_where_the_store_holds_some(mixed_fixture, monkeypatch) -> None:
    """The store's device counters bound where a device's records lie: a 30-day window reads the few hours of the
    older devices' records (not 720 empty hour blocks each) and gives the same window as reading every block."""
    from dashboard.data import windows
    from tests.dashboard.test_record_fold import _plain

    sources, plans, read = counted_sources(mixed_fixture.mixed)
    request, _ = fleet_request(timedelta(days=30))
    end = windows.window_end(mixed_fixture.now)
    found = windows.load_window(request, end, sources, plans)
    record_reads = sum(block.resolution is Resolution.RECORDS for block in read)
    read.clear()
    monkeypatch.setattr(windows, "_may_hold", lambda block, stored: True)  # every block of every range
    expected = windows.load_window(request, end, sources, plans)
    every = sum(block.resolution is Resolution.RECORDS for block in read)
    assert found.folded and found.folded == expected.folded
    pd.testing.assert_frame_equal(found.frame.drop(columns="payload"), expected.frame.drop(columns="payload"))
    assert [json.dumps(_plain(payload)) for payload in found.frame["payload"]] == [
        json.dumps(_plain(payload)) for payload in expected.frame["payload"]]
    pd.testing.assert_frame_equal(found.devices, expected.devices)
    assert 0 < record_reads < 40 < 700 < every  # hours of records, not the month's hours


def test_one_devices_window_reads_its_complete_hours_of_minutes_whole(mixed_fixture, monkeypatch) -> None:
    """A device's 24-hour window of minute aggregates reads each complete hour as one block (at most 25 hours and the
    current hour's minutes: under 85 reads, not 1 440) and gives the same window as reading it minute by minute."""
    from dashboard.data import windows
    from tests.dashboard.fixture_data import AGGREGATE_SENDERS, DEVICES
    from tests.dashboard.test_record_fold import _plain

    sources, plans, read = counted_sources(mixed_fixture.mixed)
    request = WindowRequest(timedelta(hours=24), device_id=DEVICES[AGGREGATE_SENDERS[0]])
    end = windows.window_end(mixed_fixture.now)
    found = windows.load_window(request, end, sources, plans)
    hours = [block for block in read
             if block.resolution is Resolution.MINUTE and block.end - block.start > pd.Timedelta(minutes=1)]
    whole_reads = sum(block.resolution is Resolution.MINUTE for block in read)
    read.clear()
    every_minute = windows.minute_blocks
    monkeypatch.setattr(windows, "minute_blocks",
                        lambda start, end, now, whole_hours=False: every_minute(start, end, now))
    expected = windows.load_window(request, end, sources, plans)
    assert len(found.frame) and whole_reads <= 25 + 60 < 1_400 < sum(block.resolution is Resolution.MINUTE
                                                                     for block in read)
    assert hours and all(block.start == block.start.floor("1h") and block.complete for block in hours)
    pd.testing.assert_frame_equal(found.frame.drop(columns="payload"), expected.frame.drop(columns="payload"))
    assert [json.dumps(_plain(payload)) for payload in found.frame["payload"]] == [
        json.dumps(_plain(payload)) for payload in expected.frame["payload"]]


def test_an_open_minute_block_is_brought_up_to_date_with_only_the_rows_stored_since(location) -> None:
    """``refresh_minutes`` on both backends: after more uploads into an open minute (another device, a restarted
    stream's second aggregate of the minute, a resend) the refreshed block is the frame a whole read gives, row for
    row, and only the two new rows were built into a frame (the rows already held are skipped by key)."""
    from dashboard.collector.backends import open_store
    from dashboard.data.telemetry import TelemetryReader
    from dashboard.data.windows import Block, read_block, refresh_minutes
    from tests.dashboard.test_day_rollups import device_minutes
    from tests.dashboard.test_store_backends import assert_same_frames

    first, second = (device_minutes(seed, hours=(10,), device=device) for seed, device in ((20, "ab" * 16),
                                                                                           (21, "cd" * 16)))
    minute = pd.Timestamp(first[1]["minute"])  # 22:07 on 1 January: three minutes per device in that hour
    block = Block(Resolution.MINUTE, minute, minute + pd.Timedelta(minutes=1), False)
    restarted = dict(first[1], record_id="f" * 32, payload=dict(first[1]["payload"], session="restarted"))
    reader = TelemetryReader(location)
    built: list[int] = []
    received_frame = reader.received_frame

    def counting(*arguments, **options):
        frame, keys, latest = received_frame(*arguments, **options)
        built.append(len(frame))
        return frame, keys, latest

    reader.received_frame = counting
    with open_store(location) as store:
        store.insert_aggregates(first)
        held = refresh_minutes(reader, block, None, True)
        assert len(held.frame) == 1 and held.latest is not None and built == [1]
        assert refresh_minutes(reader, block, None, True, held).frame is held.frame  # nothing new: the same frame
        store.insert_aggregates([*second, restarted, first[1]])  # the resend is stored once, as before
    for features in (True, False):
        start = refresh_minutes(reader, block, None, features)
        with open_store(location) as store:
            store.insert_aggregates(second)  # already stored: nothing new for this reader
        assert refresh_minutes(reader, block, None, features, start).frame is start.frame
    built.clear()
    refreshed = refresh_minutes(reader, block, None, True, held)
    assert built == [2] and len(refreshed.keys) == 3 and refreshed.latest >= held.latest
    assert_same_frames(refreshed.frame, read_block(reader, block, None, True))
    assert sorted(refreshed.frame["session"]) == sorted([first[1]["payload"]["session"], "restarted",
                                                         second[1]["payload"]["session"]])


def test_a_pages_window_after_the_refresh_period_holds_what_was_stored_since(tmp_path) -> None:
    """Through the pages' caches: an hour's window read, another device's minute stored into an open minute (a
    minute still within ``SETTLE``: later uploads into complete minutes show when those are read again), the refresh
    period passed (``expire``): the window read again is the one a dashboard with empty caches reads."""
    import streamlit as st

    from dashboard.collector.backends import open_store
    from dashboard.components import telemetry
    from dashboard.data.settings import DashboardSettings
    from tests.dashboard.test_day_rollups import device_minutes
    from tests.dashboard.test_record_fold import _plain

    database = tmp_path / "telemetry.sqlite3"
    current = DashboardSettings(bundles=tmp_path / "bundles", database=database)
    first, second = (device_minutes(seed, hours=(10,), device=device) for seed, device in ((30, "ab" * 16),
                                                                                           (31, "cd" * 16)))
    end = datetime(2026, 1, 1, 23, 0, 30, tzinfo=UTC)  # 22:59 is one of the open minutes
    request = WindowRequest(timedelta(hours=1), minutes_for=timedelta(hours=1))
    st.cache_resource.clear()
    st.cache_data.clear()
    try:
        with open_store(database) as store:
            store.insert_aggregates(first)
            before = telemetry.window(current, request, end).frame
            assert second[-1]["minute"].startswith("2026-01-01T22:59")
            store.insert_aggregates(second[-1:])
        assert len(telemetry.window(current, request, end).frame) == len(before)  # within the period: as held
        telemetry._open_minute_blocks().expire()
        refreshed = telemetry.window(current, request, end).frame
        st.cache_resource.clear()
        st.cache_data.clear()
        whole = telemetry.window(current, request, end).frame
    finally:
        st.cache_resource.clear()
        st.cache_data.clear()
    assert sorted(set(whole["device_id"])) == ["ab" * 16, "cd" * 16] and set(before["device_id"]) == {"ab" * 16}
    assert len(whole) > len(before)
    pd.testing.assert_frame_equal(refreshed.drop(columns="payload"), whole.drop(columns="payload"))
    assert [json.dumps(_plain(payload)) for payload in refreshed["payload"]] == [
        json.dumps(_plain(payload)) for payload in whole["payload"]]


def test_last_seen_follows_the_collectors_clock_and_a_clock_ahead_is_its_own_status(tmp_path) -> None:
    """Device timestamps are the device's clock. One set years ahead kept showing "ok" after it stopped sending, one
    years behind showed "silent" while it sent: silence is judged by when the collector received, and data stamped
    after it arrived is flagged "clock"."""
    now = pd.Timestamp(END)
    received = {"right": now - timedelta(minutes=1), "ahead-now": now - timedelta(minutes=2),
                "ahead-gone": now - timedelta(hours=3), "behind": now - timedelta(minutes=1),
                "quiet": now - timedelta(minutes=25)}
    newest = {"right": now - timedelta(minutes=1, seconds=20), "ahead-now": now + timedelta(days=3 * 365),
              "ahead-gone": now + timedelta(days=365), "behind": now - timedelta(days=2 * 365),
              "quiet": now - timedelta(minutes=26)}
    stored = pd.DataFrame({"device_id": list(received), "dropped": 0, "records": 10,
                           "last_received_at": list(received.values()), "last_time": list(newest.values())})
    table = device_table(stored, aggregate_frame([]), now)
    assert list(table.columns) == DEVICE_COLUMNS
    rows = table.set_index("device_id")
    assert rows.loc["behind", "last_seen"] == received["behind"] and rows.loc["ahead-now", "last_seen"] == (
        received["ahead-now"])
    assert rows["clock_ahead_min"].notna().to_dict() == {"ahead-gone": True, "ahead-now": True, "behind": False,
                                                        "quiet": False, "right": False}
    assert round(rows.loc["ahead-now", "clock_ahead_min"] / (60 * 24 * 365), 2) == 3.0
    overview = device_overview(table, aggregate_frame([]), BundleCatalog(tmp_path), now, timedelta(hours=1))
    status = overview.set_index("device_id")["status"].to_dict()
    assert status == {"ahead-gone": "silent", "ahead-now": "clock", "behind": "ok", "quiet": "silent", "right": "ok"}
    assert status_counts(overview) == {"silent": 2, "clock": 1, "domain": 0, "noisy": 0, "slow": 0, "ok": 2}


def test_a_view_ending_before_the_receipt_keeps_last_seen_by_the_data() -> None:
    """A view of the past (or a store written by a simulation with its own clock) has no receipt inside it: last seen
    is the device's latest data, and nothing is said about its clock."""
    stop = pd.Timestamp(END)
    stored = pd.DataFrame({"device_id": ["a"], "dropped": 0, "records": 1,
                           "last_received_at": [stop + timedelta(days=30)], "last_time": [stop - timedelta(minutes=4)]})
    (row,) = device_table(stored, aggregate_frame([]), stop).itertuples()
    assert row.last_seen == stop - timedelta(minutes=4) and pd.isna(row.clock_ahead_min)
