"""Which blocks a page's window reads (``dashboard.data.windows``): minute aggregates for the last hour, whole hours of
rollups behind them, whole days for long windows, and what a refresh re-reads."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd

from dashboard.data.windows import (
    Resolution,
    WindowRequest,
    fleet_request,
    merge_days,
    plan,
    record_blocks,
)
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
    """A device's 24-hour window of minute aggregates reads each complete hour as one block (~25 reads, not 1 440)
    and gives the same window as reading it minute by minute."""
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
    assert len(found.frame) and whole_reads < 70 < 1_400 < sum(block.resolution is Resolution.MINUTE for block in read)
    assert hours and all(block.start == block.start.floor("1h") and block.complete for block in hours)
    pd.testing.assert_frame_equal(found.frame.drop(columns="payload"), expected.frame.drop(columns="payload"))
    assert [json.dumps(_plain(payload)) for payload in found.frame["payload"]] == [
        json.dumps(_plain(payload)) for payload in expected.frame["payload"]]
