"""The telemetry window a live page shows: minute aggregates, hourly rollups and older devices' records as one
aggregate frame (``dashboard.monitoring.aggregate_window``), read in blocks a page can cache.

Resolution: a window ending at E (``now`` rounded up to a minute) and reaching back ``span`` reads

* minute aggregates for its last ``minutes_for`` (from the start of that hour; the whole window when
  ``minutes_for`` ≥ ``span``) — exact windows for the alert rules of the last hour;
* hourly rollups (the store's: kept in the insert's transaction, or moments later by the collector's rollup job;
  the current hour's included) for the whole hours before that; a rollup counts only when its hour starts inside
  the window, so a window read from rollups starts on the first whole hour (up to 59 minutes shorter than ``span``);
* with ``daily``, every whole day inside the window as one row per device and day, and per variant on a day that
  switched one (the 7- and 30-day views: 30 rows per device instead of 720): the store's daily rollups
  (``dashboard.collector.days``, folded once a day has ended), or for a day still pending there its hourly rollups
  merged here.

Older devices (telemetry schema 1 and 2, one record per inference) are folded into minute aggregates with the
device's own code (``record_fold.fold_records``). A device that sends aggregates also sends some events on
their own (the event filter); those are never added to its counts: only the records a device sent before its
first aggregate in the window are folded. A device that went back from aggregates to records is shown from its
aggregates only.

Blocks: minute aggregates are read minute by minute, rollups per hour (or per day), older devices' records per hour
(per 5 minutes in the hour still filling). A block that ended ``SETTLE`` ago no longer changes (devices upload a
minute's aggregate within that), so a page caches it for long and re-reads only the open blocks at each refresh
(``dashboard.components.telemetry``): a few minutes of the fleet, not its window. Nothing here imports Streamlit.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import pandas as pd

from dashboard.data.telemetry import TelemetryReader
from dashboard.monitoring.aggregate_window import (
    FOLDED_SESSION,
    PlanFor,
    aggregate_frame,
    latest_bundle_minutes,
    merge_compact,
    window_end,
)
from dashboard.monitoring.alerts import AlertConfig
from dashboard.monitoring.drift import DriftConfig
from dashboard.monitoring.fleet import bucket_for
from dashboard.monitoring.record_fold import fold_records

logger = logging.getLogger(__name__)

MINUTE_BLOCK = timedelta(minutes=1)  # minute aggregates are read (and cached) in aligned blocks this long
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
SETTLE = timedelta(minutes=3)  # a minute's aggregate reaches the store within this after the minute ends
ONE_QUERY_FOR_RECORDS = 20  # more older devices than this: their records are read in one query, not one each
DEVICE_COLUMNS = ["device_id", "records_stored", "dropped", "last_seen", "clock_ahead_min", "sends"]
CLOCK_TOLERANCE = pd.Timedelta(minutes=5)  # a device's newest data may end this long after it arrived (a flushed,
# partial minute ends up to a minute later; a clock a few minutes fast): beyond it the device's clock is ahead
_BEFORE = pd.Timedelta(microseconds=1)  # the store's ranges include both ends; a block's end is not its own


class Resolution(StrEnum):
    MINUTE = "minute"  # minute aggregates
    HOUR = "hour"  # hourly rollups
    DAY = "day"  # a day of hourly rollups merged per device and bundle
    RECORDS = "records"  # older devices' per-event records, folded into minute aggregates


@dataclass(frozen=True)
class Block:
    """One cacheable read: the rows of ``resolution`` starting in [start, end)."""

    resolution: Resolution
    start: pd.Timestamp
    end: pd.Timestamp
    complete: bool  # ended SETTLE before the window's end: what it holds no longer changes


@dataclass(frozen=True)
class WindowRequest:
    """Which window a page reads."""

    span: timedelta
    minutes_for: timedelta | None = None  # minute aggregates for this long before the end (None: the whole span)
    device_id: str | None = None  # one device, or the fleet
    features: bool = True  # feature histograms (drift); False for pages that draw no drift
    daily: bool = False  # whole days from day blocks (the 7- and 30-day views)
    fold: bool = True  # fold older devices' records in (False: a device list needs only the store's counters)


def alert_requests(config: AlertConfig, drift: DriftConfig) -> tuple[WindowRequest, WindowRequest]:
    """The windows the alert rules read: (the latency, quality and signal-loss rules': minute aggregates for the
    last hour, rollups back to the slow burn window, no feature histograms; the drift rule's: rollups over the drift
    window, with features)."""
    recent = WindowRequest(max(config.slow.long_window, config.quality_window, config.signal_loss_window),
                           minutes_for=max(config.fast.long_window, config.quality_window, config.signal_loss_window),
                           features=False)
    return recent, WindowRequest(drift.window, minutes_for=timedelta(0))


def fleet_request(span: timedelta) -> tuple[WindowRequest, timedelta]:
    """What the Fleet page reads for a window of ``span``, and its chart bucket: minute aggregates up to an hour;
    beyond, hourly rollups (the current hour's too: one row a device, where its minutes would be up to sixty) — hour
    buckets up to three days, whole days (day buckets) beyond."""
    if span <= HOUR:
        return WindowRequest(span, features=False), bucket_for(span)
    if span <= timedelta(days=3):
        return WindowRequest(span, minutes_for=timedelta(0), features=False), max(bucket_for(span), HOUR)
    return WindowRequest(span, minutes_for=timedelta(0), features=False, daily=True), DAY


BlockReader = Callable[[Block, str | None, bool], pd.DataFrame]  # (block, device_id, features) → aggregate frame


@dataclass(frozen=True)
class Sources:
    """Where a window's parts come from: ``for_reader`` reads the store directly; pages pass cached readers."""

    blocks: BlockReader
    devices: Callable[[], pd.DataFrame]  # ``TelemetryReader.devices``

    @classmethod
    def for_reader(cls, reader: TelemetryReader, plan_for: PlanFor | None = None) -> Sources:
        return cls(lambda block, device_id, features: read_block(reader, block, device_id, features, plan_for),
                   reader.devices)


@dataclass(frozen=True)
class TelemetryWindow:
    """A page's window: rows starting in [start, end) from minute aggregates, rollups and folded records."""

    start: pd.Timestamp  # E − span
    end: pd.Timestamp  # E: now rounded up to a whole minute
    frame: pd.DataFrame  # aggregate frame, oldest first
    devices: pd.DataFrame  # DEVICE_COLUMNS: every device the store knows or the window shows
    minute_from: pd.Timestamp | None  # rows from here on are minute aggregates (None: rollups up to the end)
    folded: tuple[str, ...] = field(default=())  # devices whose per-event records were folded into the frame
    coverage: pd.Timestamp | None = None  # every device's rows are complete from here on (rollups: the first whole
    # hour after ``start``; before it only records folded from ``start``): rates compare devices over [coverage, end)

    @property
    def records(self) -> int:
        return int(self.frame["records"].sum()) if len(self.frame) else 0

    def describe(self) -> str:
        """Where the rows come from, for a caption."""
        parts = []
        if self.minute_from is None or self.minute_from > self.start:
            days = bool(len(self.frame)) and bool((self.frame["seconds"] >= DAY.total_seconds()).any())
            parts.append("hourly rollups" + (" (whole days merged)" if days else "") + " from "
                         f"{_ceil(self.start, HOUR):%Y-%m-%d %H:%M}")
        if self.minute_from is not None:
            parts.append(f"minute aggregates from {self.minute_from:%H:%M}")
        if self.folded:
            parts.append(f"records of {len(self.folded)} older device(s) folded into minutes")
        return " · ".join(parts) + " UTC"


def _floor(moment: pd.Timestamp, size: timedelta) -> pd.Timestamp:
    return moment.floor(pd.Timedelta(size))


def _ceil(moment: pd.Timestamp, size: timedelta) -> pd.Timestamp:
    return moment.ceil(pd.Timedelta(size))


def minute_blocks(start: pd.Timestamp, end: pd.Timestamp, now: pd.Timestamp, whole_hours: bool = False
                  ) -> list[Block]:
    """Aligned ``MINUTE_BLOCK`` blocks of minute aggregates covering [start, end); with ``whole_hours`` (one device's
    window: a row or two a minute) from ``start``'s hour on, each hour complete by ``now`` as one block (a day is
    ~24 reads, not 1 440; the minutes before ``start`` are left out by ``load_window``)."""
    blocks, moment = [], _floor(start, HOUR if whole_hours else MINUTE_BLOCK)
    while moment < end:
        stop = moment + pd.Timedelta(MINUTE_BLOCK)
        hour_end = moment + pd.Timedelta(HOUR)
        whole = moment == _floor(moment, HOUR) and hour_end <= end and hour_end + pd.Timedelta(SETTLE) <= now
        if whole_hours and whole:
            stop = hour_end
        blocks.append(Block(Resolution.MINUTE, moment, stop, stop + pd.Timedelta(SETTLE) <= now))
        moment = stop
    return blocks


def rollup_blocks(start: pd.Timestamp, end: pd.Timestamp, now: pd.Timestamp, daily: bool = False) -> list[Block]:
    """Hour blocks of rollups for the hours starting in [start, end) (``start`` on an hour); with ``daily`` the days
    wholly inside as day blocks."""
    blocks, moment = [], start
    while moment < end:
        if daily and moment == _floor(moment, DAY) and moment + pd.Timedelta(DAY) <= end:
            stop, resolution = moment + pd.Timedelta(DAY), Resolution.DAY
        else:
            stop, resolution = moment + pd.Timedelta(HOUR), Resolution.HOUR
        blocks.append(Block(resolution, moment, stop, stop + pd.Timedelta(SETTLE) <= now))
        moment = stop
    return blocks


RECORD_BLOCK = timedelta(minutes=5)  # older devices' records in the hour still filling are read in blocks this long


def record_blocks(start: pd.Timestamp, end: pd.Timestamp, now: pd.Timestamp) -> list[Block]:
    """Blocks of older devices' records covering [start, end): whole hours once they are complete, ``RECORD_BLOCK``
    blocks in the hour still filling (so a refresh re-reads minutes, not the hour)."""
    blocks, moment = [], _floor(start, HOUR)
    while moment < end:
        stop = moment + pd.Timedelta(HOUR)
        if stop + pd.Timedelta(SETTLE) <= now:
            blocks.append(Block(Resolution.RECORDS, moment, stop, True))
        else:
            inner = _floor(max(moment, start), RECORD_BLOCK)
            while inner < min(stop, end):
                following = inner + pd.Timedelta(RECORD_BLOCK)
                blocks.append(Block(Resolution.RECORDS, inner, following, following + pd.Timedelta(SETTLE) <= now))
                inner = following
        moment = stop
    return blocks


def plan(request: WindowRequest, end: datetime) -> tuple[pd.Timestamp, pd.Timestamp, pd.Timestamp | None,
                                                            list[Block]]:
    """(start, end, first minute read from minute aggregates, blocks) of ``request`` ending at ``end``."""
    stop = window_end(end)
    start = stop - pd.Timedelta(request.span)
    minutes_for = request.minutes_for
    if minutes_for is None or minutes_for >= request.span:
        minute_from: pd.Timestamp | None = start
    elif minutes_for <= timedelta(0):
        minute_from = None
    else:
        minute_from = max(start, _floor(stop - pd.Timedelta(minutes_for), HOUR))
    first_hour = _ceil(start, HOUR)
    blocks = rollup_blocks(first_hour, minute_from if minute_from is not None else stop, stop, request.daily)
    if minute_from is not None:
        blocks += minute_blocks(minute_from, stop, stop, whole_hours=request.device_id is not None)
    return start, stop, minute_from, blocks


def read_block(reader: TelemetryReader, block: Block, device_id: str | None, features: bool,
               plan_for: PlanFor | None = None) -> pd.DataFrame:
    """The rows of one block, straight from the store (records folded with ``plan_for``'s reference bins)."""
    until = block.end - _BEFORE
    if block.resolution is Resolution.MINUTE:
        return reader.aggregate_frame(block.start, until, device_id, features=features)
    if block.resolution is Resolution.RECORDS:
        records = reader.records(device_id, block.start, until, with_features=features)  # only they need them
        return fold_records(records, plan_for, compact=True)  # features only where they were read
    if block.resolution is Resolution.DAY:
        return read_day(reader, block, device_id, features)
    return reader.rollup_frame(block.start, until, device_id, features=features)


# An open minute block is brought up to date with the rows the collector stored since the latest one read, less this
# margin: an upload's receipt time is taken just before its transaction, which commits moments later (and collectors'
# clocks may differ a little). A row later than that shows when the block is complete and read whole, SETTLE on.
RECEIPT_MARGIN = timedelta(seconds=60)
EVERY_RECEIPT = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class OpenMinutes:
    """An open minute block as read so far: its frame, the keys of its rows, the latest receipt time among them."""

    frame: pd.DataFrame
    keys: frozenset[tuple[str, str, str, str]]
    latest: str | None  # canonical UTC text; None: nothing read yet


def refresh_minutes(reader: TelemetryReader, block: Block, device_id: str | None, features: bool,
                    previous: OpenMinutes | None = None) -> OpenMinutes:
    """An open minute block read whole (``previous`` None), or ``previous`` with the rows stored since its latest
    receipt (less ``RECEIPT_MARGIN``; rows already held are skipped by key): the frame a whole read would give, the
    rows in the same order, for a few new rows' work instead of the block's (a thousand devices' minute)."""
    until = block.end - _BEFORE
    after = EVERY_RECEIPT if previous is None or previous.latest is None else (
        pd.Timestamp(previous.latest).to_pydatetime() - RECEIPT_MARGIN)
    known = frozenset() if previous is None else previous.keys
    frame, keys, latest = reader.received_frame(block.start, until, device_id, features=features,
                                                received_after=after, known=known)
    if previous is None:
        return OpenMinutes(frame, keys, latest)
    latest = max(filter(None, (latest, previous.latest)), default=None)
    if not len(frame):
        return OpenMinutes(previous.frame, known, latest)
    parts = [part for part in (previous.frame, frame) if len(part)]
    # a whole read: the store's order (minute, device, bundle), then the frame's stable sort by minute, device, session
    merged = pd.concat(parts, ignore_index=True).sort_values(["minute", "device_id", "session", "bundle_id"],
                                                             kind="stable").reset_index(drop=True)
    return OpenMinutes(merged, known | keys, latest)


def read_day(reader: TelemetryReader, block: Block, device_id: str | None, features: bool) -> pd.DataFrame:
    """A day block: the store's daily rollups (``dashboard.collector.days``), and for the days still pending there
    (not yet ended, or changed by a late hour) their hourly rollups merged here (``merge_days``)."""
    until = block.end - _BEFORE
    days, pending = reader.day_frame(block.start, until, device_id, features=features)
    if not pending:
        return days
    waiting = sorted({device for device, _, _ in pending})
    if device_id is not None or len(waiting) > ONE_QUERY_FOR_RECORDS:  # one read of the day's hours
        hours = reader.rollup_frame(block.start, until, device_id, features=features)
    else:
        hours = pd.concat([reader.rollup_frame(block.start, until, device, features=features) for device in waiting],
                          ignore_index=True)
    keys = pd.Series(list(zip(hours["device_id"], hours["bundle_id"], strict=True)), index=hours.index, dtype=object)
    hours = hours[keys.isin({(device, bundle) for device, _, bundle in pending})]
    merged = merge_days(hours, block.start)
    return pd.concat([part for part in (days, merged) if len(part)], ignore_index=True) if len(merged) else days


def merge_days(hours: pd.DataFrame, day: pd.Timestamp) -> pd.DataFrame:
    """A day of rollups as one row per (device, bundle, variant, provider): minute = the day, seconds = 86 400."""
    if hours.empty:
        return hours
    keys = ["device_id", "bundle_id", "bundle_sha256", "variant", "provider", "task"]
    payloads = [merge_compact(list(group["payload"]), minute=day.strftime("%Y-%m-%dT%H:%M:%SZ"),
                              seconds=int(DAY.total_seconds()), session="")
                for _, group in hours.groupby(keys, sort=True, dropna=False)]
    return aggregate_frame(payloads)


def load_window(request: WindowRequest, end: datetime, sources: Sources, plan_for: PlanFor | None = None
                ) -> TelemetryWindow:
    """The window of ``request`` ending at ``end`` (module docstring)."""
    start, stop, minute_from, blocks = plan(request, end)
    parts = [sources.blocks(block, request.device_id, request.features) for block in blocks]
    frame = pd.concat([part for part in parts if len(part)], ignore_index=True) if any(
        len(part) for part in parts) else aggregate_frame([])
    if len(frame):
        first_hour = _ceil(start, HOUR)
        minute_rows = frame["seconds"] <= 60
        keep = (frame["minute"] < stop) & (~minute_rows | (frame["minute"] >= (minute_from or stop)))
        keep &= minute_rows | (frame["minute"] >= first_hour)
        frame = frame[keep]
    stored = sources.devices()
    if request.device_id is not None:
        stored = stored[stored["device_id"] == request.device_id]
    first_hour = _ceil(start, HOUR)
    coverage = minute_from if minute_from is not None and minute_from <= first_hour else first_hour
    folded_frame, folded = (_fold_older_devices(stored, frame, (start, coverage, stop), sources, plan_for, request)
                            if request.fold else (aggregate_frame([]), ()))
    if len(folded_frame):
        frame = pd.concat([frame, folded_frame], ignore_index=True)
    frame = frame.sort_values(["minute", "device_id", "session"], kind="stable").reset_index(drop=True)
    return TelemetryWindow(start, stop, frame, device_table(stored, frame, stop), minute_from, folded, coverage)


def drift_window(request: WindowRequest, end: datetime, sources: Sources, plan_for: PlanFor | None,
                 drift: DriftConfig) -> TelemetryWindow:
    """``load_window`` for the device-baseline drift rule: rollups, except that each device's rollup in which its
    baseline (the first ``baseline_fraction`` of its window's records) ends is replaced by that hour's minute
    aggregates, so the cut falls on the same minute as on minute aggregates (``aggregate_checks``)."""
    view = load_window(request, end, sources, plan_for)
    hours = baseline_hours(view.frame, end, drift)
    if not hours:
        return view
    now = window_end(end)
    parts, replaced = [], []
    by_hour: dict[pd.Timestamp, list[str]] = {}
    for device_id, hour in hours.items():
        by_hour.setdefault(hour, []).append(device_id)
    for hour, devices in by_hour.items():
        stop = hour + pd.Timedelta(HOUR)
        if len(devices) > ONE_QUERY_FOR_RECORDS and request.device_id is None:  # one read of the hour for all
            blocks = minute_blocks(hour, stop, now)
            rows = pd.concat([sources.blocks(block, None, True) for block in blocks], ignore_index=True)
            parts.append(rows[rows["device_id"].isin(devices) & (rows["minute"] < stop)])
        else:
            block = Block(Resolution.MINUTE, hour, stop, stop + pd.Timedelta(SETTLE) <= now)
            parts += [sources.blocks(block, device_id, True) for device_id in devices]
        replaced += [(device_id, hour) for device_id in devices]
    frame = view.frame
    keys = pd.Series(list(zip(frame["device_id"], frame["minute"], strict=True)), index=frame.index)
    hour_rows = frame[keys.isin(replaced) & (frame["seconds"] > 60)]
    minutes = pd.concat([part for part in parts if len(part)], ignore_index=True) if any(
        len(part) for part in parts) else aggregate_frame([])
    # Only where the hour's minute aggregates are all there (not pruned, none still arriving): else its rollup stays
    # and the cut falls on the hour.
    expected = hour_rows.groupby("device_id")["records"].sum()
    found = minutes.groupby("device_id")["records"].sum() if len(minutes) else pd.Series(dtype="int64")
    whole = {str(device) for device, total in expected.items() if found.get(device, -1) == total}
    if len(whole) < len(expected):
        logger.info("drift: %d device(s) keep the hourly rollup of their baseline hour (its minute aggregates do not "
                    "add up to it)", len(expected) - len(whole))
    if not whole:
        return view
    drop = hour_rows.index[hour_rows["device_id"].isin(whole)]
    frame = pd.concat([frame.drop(index=drop), minutes[minutes["device_id"].isin(whole)]], ignore_index=True)
    frame = frame.sort_values(["minute", "device_id", "session"], kind="stable").reset_index(drop=True)
    return dataclasses.replace(view, frame=frame)


def baseline_hours(frame: pd.DataFrame, end: datetime, drift: DriftConfig) -> dict[str, pd.Timestamp]:
    """Per device: the hourly rollup inside which its drift baseline ends (none where it ends between rows)."""
    hours = {}
    for device_id, group in frame.groupby("device_id"):
        window = latest_bundle_minutes(group, end, drift.window)
        if window.empty:
            continue
        per_row = window.groupby("minute")["records"].sum().sort_index()
        target = int(per_row.sum() * drift.baseline_fraction)
        cumulative = per_row.cumsum()
        inside = per_row.index[((cumulative - per_row) < target) & (cumulative > target)]
        if len(inside) and (window.loc[window["minute"] == inside[0], "seconds"] > 60).any():
            hours[str(device_id)] = inside[0]
    return hours


def _fold_older_devices(stored: pd.DataFrame, frame: pd.DataFrame, bounds: tuple[pd.Timestamp, ...],
                        sources: Sources, plan_for: PlanFor | None, request: WindowRequest
                        ) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """Minute aggregates folded from the records of devices that sent records, not aggregates, in the window; and of
    a device whose first aggregate comes after the window's aggregates begin (``coverage``: its first whole hour of
    rollups, or its first minute), its records from then until that first aggregate (an upgrade). Records of a
    device that sent aggregates from the start are the event filter's picks, already counted: never folded."""
    start, coverage, stop = bounds
    if stored.empty:
        return aggregate_frame([]), ()
    first_aggregate = frame.groupby("device_id")["minute"].min() if len(frame) else pd.Series(dtype="object")
    ranges: dict[str, tuple[pd.Timestamp, pd.Timestamp]] = {}
    held: dict[str, tuple[pd.Timestamp, pd.Timestamp]] = {}  # where each device's stored records lie
    for device in stored.itertuples(index=False):
        if pd.isna(device.last_time) or device.last_time < start or not device.records:
            continue
        first = first_aggregate.get(device.device_id)
        if first is None:
            ranges[device.device_id] = (start, stop)
        elif first > coverage and device.first_time < first:
            ranges[device.device_id] = (coverage, first)
        held[device.device_id] = (device.first_time, device.last_time)
    if not ranges:
        return aggregate_frame([]), ()
    if len(ranges) > ONE_QUERY_FOR_RECORDS and request.device_id is None:  # one read of each block for them all
        firsts, lasts = [held[device][0] for device in ranges], [held[device][1] for device in ranges]
        span = (pd.NaT, pd.NaT) if pd.isna(firsts + lasts).any() else (min(firsts), max(lasts))
        parts = [sources.blocks(block, None, request.features) for block in record_blocks(start, stop, stop)
                 if _may_hold(block, span)]
    else:
        parts = [sources.blocks(block, device_id, request.features)
                 for device_id, (low, high) in ranges.items() for block in record_blocks(low, high, stop)
                 if _may_hold(block, held[device_id])]
    folded = pd.concat([part for part in parts if len(part)], ignore_index=True) if any(
        len(part) for part in parts) else aggregate_frame([])
    if len(folded):  # blocks are whole hours: keep each device's range
        low = folded["device_id"].map({device: low for device, (low, _) in ranges.items()})
        high = folded["device_id"].map({device: high for device, (_, high) in ranges.items()})
        folded = folded[(folded["minute"] >= low) & (folded["minute"] < high)]
    return folded, tuple(sorted(set(folded["device_id"]))) if len(folded) else ()


def _may_hold(block: Block, stored: tuple[pd.Timestamp, pd.Timestamp]) -> bool:
    """Whether ``block`` can hold any of the records stored between the first and last record time ``stored`` (the
    store's device counters: every record it keeps lies in there): a month of an older device that sent records for
    a few hours reads those hours, not 720 empty blocks (each one a cache lookup)."""
    first, last = stored
    return pd.isna(first) or pd.isna(last) or (block.end > first and block.start <= last)


def device_table(stored: pd.DataFrame, frame: pd.DataFrame, stop: pd.Timestamp) -> pd.DataFrame:
    """Every device the store knows (its record counters) or the window shows: stored records, dropped, last seen,
    how far its clock is ahead, and what it sends.

    Last seen is when the collector last received from it (its own clock): a device's timestamps are its own clock,
    and one set years ahead would otherwise never turn silent, one years behind be silent while it sends. Where the
    store has no receipt inside the view (no device row, or a view ending before it), last seen is its latest record,
    or the end of its latest aggregate in the window. ``clock_ahead_min``: minutes by which its newest data ends after
    it last arrived, when that is over ``CLOCK_TOLERANCE`` (else NaN): its data sits at the wrong times."""
    received = (pd.to_datetime(stored["last_received_at"], utc=True) if "last_received_at" in stored
                else pd.Series(pd.NaT, index=stored.index, dtype="datetime64[ns, UTC]"))
    in_view = received.notna() & (received <= _aware(stop) + CLOCK_TOLERANCE)
    newest = pd.to_datetime(stored["last_time"], utc=True)
    ahead = (newest - received).where(in_view & (newest - received > CLOCK_TOLERANCE))
    table = pd.DataFrame({"device_id": stored["device_id"], "records_stored": stored["records"],
                          "dropped": stored["dropped"], "last_seen": newest.where(~in_view, received),
                          "received": in_view, "clock_ahead_min": ahead.dt.total_seconds() / 60})
    if len(frame):
        # a minute aggregate was sent after its minute; of a rollup we only know that something arrived in its hour
        # never after now: a stream's flush sends its last, partial minute before that minute has ended
        latest_possible = min(stop, pd.Timestamp.now(tz=stop.tz or "UTC")) if stop.tz is not None else stop
        ends = frame["minute"].where(frame["seconds"] > 60, frame["minute"] + pd.Timedelta(minutes=1)).clip(
            upper=latest_possible)
        aggregated = frame["session"] != FOLDED_SESSION
        latest = ends[aggregated].groupby(frame.loc[aggregated, "device_id"]).max()
        sends = frame.assign(aggregated=aggregated).groupby("device_id")["aggregated"].agg(["any", "all"])
        extra = pd.DataFrame({"device_id": sorted(set(frame["device_id"].unique()) - set(table["device_id"]))})
        table = pd.concat([table, extra.assign(records_stored=0, dropped=0, last_seen=pd.NaT, received=False)],
                          ignore_index=True)
        seen = pd.Series(pd.to_datetime(latest.reindex(table["device_id"]).to_numpy(), utc=True), index=table.index)
        stored_seen = pd.to_datetime(table["last_seen"], utc=True)
        by_data = pd.concat([stored_seen, seen], axis=1).max(axis=1)  # the device's clock: its latest data
        table["last_seen"] = stored_seen.where(table["received"].astype(bool), by_data)
        kinds = {device_id: ("aggregates" if every else "both") if some else "records"
                 for device_id, some, every in zip(sends.index.tolist(), sends["any"].tolist(),
                                                   sends["all"].tolist(), strict=True)}
        table["sends"] = [kinds.get(device_id, "—") for device_id in table["device_id"].tolist()]
    else:
        table["sends"] = "—"
    table["last_seen"] = pd.to_datetime(table["last_seen"], utc=True)
    table["records_stored"] = table["records_stored"].fillna(0).astype("int64")
    table["dropped"] = table["dropped"].fillna(0).astype("int64")
    table["clock_ahead_min"] = table["clock_ahead_min"].astype("float64")
    return table.sort_values("device_id", kind="stable").reset_index(drop=True)[DEVICE_COLUMNS]


def _aware(moment: pd.Timestamp) -> pd.Timestamp:
    return moment.tz_localize("UTC") if moment.tzinfo is None else moment


def latest_devices(*tables: pd.DataFrame) -> pd.DataFrame:
    """Device tables of several windows as one: each device once, with its latest ``last_seen`` (``sends`` and the
    counters from the first table that has it)."""
    frames = [table for table in tables if len(table)]
    if not frames:
        return pd.DataFrame(columns=DEVICE_COLUMNS)
    combined = pd.concat(frames, ignore_index=True)
    seen = pd.to_datetime(combined["last_seen"], utc=True).groupby(combined["device_id"]).max()
    first = combined.drop_duplicates("device_id", keep="first").set_index("device_id")
    first["last_seen"] = seen
    return first.reset_index().sort_values("device_id", kind="stable").reset_index(drop=True)[DEVICE_COLUMNS]
