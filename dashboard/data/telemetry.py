"""Read the collector's telemetry store (read-only) into pandas frames.

The store is a SQLite file or a PostgreSQL database (``postgresql://…``), read through the collector's
``TelemetryStore`` interface (``dashboard.collector.backends.open_store``) opened read-only: a typo in
``--database`` cannot create an empty store, reading never blocks the collector, and a store at another schema
version is refused with both version numbers. Every call opens and closes its own store (one connection), which
keeps the reader safe to share between Streamlit sessions and threads.

``aggregate_frame`` and ``rollup_frame`` read schema-3 aggregates (and their hourly rollups) as the monitoring maths
take them (``dashboard.monitoring.aggregate_window``): one row per aggregate with its identity, start, length and a
compact payload; anything stored that is not a device aggregate is skipped. ``dashboard.data.windows`` puts them
together with older devices' records into the window a page shows.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from dashboard.collector.backends import open_store
from dashboard.collector.interface import (
    DEVICE_COLUMNS,
    RECORD_COLUMNS,
    StoreSchemaError,
    StoreUnavailableError,
    TelemetryStore,
)
from dashboard.data.files import DataUnavailableError
from dashboard.data.settings import DatabaseUrl, parse_database
from dashboard.monitoring.aggregate_window import aggregate_frame, compact_payload
from runtime.telemetry.aggregates import AGGREGATE_KIND, IDENTITY_KEYS, MINUTE_S
from runtime.telemetry.records import utc_timestamp

__all__ = ["RECORD_COLUMNS", "TelemetryReader", "aggregate_rows", "feature_table"]

HOUR_S = 3600
DAY_S = 86_400


def _moment(value: datetime | str) -> str:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        raise ValueError("telemetry times are compared in UTC; pass an aware datetime")
    return utc_timestamp(moment)


def _unavailable(error: StoreUnavailableError | StoreSchemaError) -> DataUnavailableError:
    return DataUnavailableError(error.what, expected=error.expected, fix=error.fix)


class TelemetryReader:
    """Read-only access to one telemetry store: a SQLite file or a PostgreSQL URL.

    ``shared``: the store is opened once, at the first read, and kept open (its connections reused: PostgreSQL's
    pool, SQLite's connection per thread, both safe across threads) until ``close`` — for a dashboard process that
    reads a window in a hundred small blocks. A store that cannot be opened is tried again at the next read."""

    def __init__(self, database: Path | str | DatabaseUrl, *, shared: bool = False) -> None:
        self.database = parse_database(database)
        self.shared = shared
        self._open: TelemetryStore | None = None
        self._lock = threading.Lock()

    def _opened(self) -> TelemetryStore:
        try:
            return open_store(self.database, read_only=True)
        except (StoreUnavailableError, StoreSchemaError) as error:
            raise _unavailable(error) from None

    @contextmanager
    def _store(self) -> Iterator[TelemetryStore]:
        if self.shared:
            with self._lock:
                if self._open is None:
                    self._open = self._opened()
                store = self._open
        else:
            store = self._opened()
        try:
            yield store
        except StoreUnavailableError as error:
            raise _unavailable(error) from None
        finally:
            if not self.shared:
                store.close()

    def close(self) -> None:
        """Close a shared store (a later read opens it again)."""
        with self._lock:
            store, self._open = self._open, None
        if store is not None:
            store.close()

    def count(self) -> int:
        """How many records are stored."""
        with self._store() as store:
            return store.count()

    def simulated_devices(self) -> frozenset[str]:
        """The device ids whose uploads came from a simulator (``edgemed simulate``)."""
        with self._store() as store:
            return frozenset(store.simulated_devices())

    def devices(self) -> pd.DataFrame:
        """One row per device that ever uploaded (the collector's ``devices`` table with its record counters)."""
        with self._store() as store:
            rows = store.devices()
        frame = pd.DataFrame(rows, columns=list(DEVICE_COLUMNS))
        for column in ("first_received_at", "last_received_at", "first_time", "last_time"):
            frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
        return frame

    def records(
        self,
        device_id: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        with_features: bool = False,
    ) -> pd.DataFrame:
        """Records oldest first; ``time`` is a UTC timestamp, ``quality_flags`` a list per record, ``task`` the
        task kind (None for schema-1 records), ``result`` the task kind's result dict (None when the model could
        not judge the input, and for schema-1 records), ``predicted_class`` / ``confidence`` a classifier's (or an
        anomaly's label) whatever the schema.

        With ``with_features`` a ``features`` column holds each record's feature dict.
        """
        since = None if since is None else _moment(since)
        until = None if until is None else _moment(until)
        with self._store() as store:
            rows = store.record_rows(device_id, since, until, with_features=with_features)
        columns = list(RECORD_COLUMNS) + (["features"] if with_features else [])
        frame = pd.DataFrame(rows, columns=columns)
        frame["time"] = pd.to_datetime(frame["time"], utc=True, format="ISO8601")
        frame["latency_us"] = pd.to_numeric(frame["latency_us"], errors="coerce")
        frame["confidence"] = pd.to_numeric(frame["confidence"], errors="coerce")
        frame["quality_flags"] = [flags if isinstance(flags, list) else [] for flags in frame["quality_flags"]]
        frame["result"] = [_object(value) for value in frame["result"]]
        if with_features:
            frame["features"] = [value if isinstance(value, dict) else {} for value in frame["features"]]
        return frame

    def aggregates(self, since: datetime | str | None = None, until: datetime | str | None = None,
                   device_id: str | None = None) -> pd.DataFrame:
        """Per-minute aggregates (``device_id``, ``bundle_id``, ``minute`` as a UTC timestamp, ``record_id``,
        ``payload`` dict), by minute."""
        with self._store() as store:
            rows = store.aggregates(since, until, device_id)
        frame = pd.DataFrame(rows, columns=["device_id", "bundle_id", "minute", "record_id", "payload"])
        frame["minute"] = pd.to_datetime(frame["minute"], utc=True, format="ISO8601")
        return frame

    def rollups(self, since: datetime | str | None = None, until: datetime | str | None = None,
                device_id: str | None = None) -> pd.DataFrame:
        """Hourly rollups of the aggregates (``device_id``, ``bundle_id``, ``hour`` as a UTC timestamp, how many
        ``aggregates`` each merges, ``payload`` dict), by hour."""
        with self._store() as store:
            rows = store.rollups(since, until, device_id)
        frame = pd.DataFrame(rows, columns=["device_id", "bundle_id", "hour", "aggregates", "payload"])
        frame["hour"] = pd.to_datetime(frame["hour"], utc=True, format="ISO8601")
        return frame


    def aggregate_frame(self, since: datetime | str | None = None, until: datetime | str | None = None,
                        device_id: str | None = None, *, features: bool = True) -> pd.DataFrame:
        """Schema-3 minute aggregates with ``since`` ≤ minute ≤ ``until`` as an aggregate frame (compact payloads;
        without feature histograms when ``features`` is False)."""
        since = None if since is None else _moment(since)
        until = None if until is None else _moment(until)
        with self._store() as store:
            rows = store.aggregates(since, until, device_id, features=features)
        return aggregate_rows(rows, "minute", None, features=features)

    def received_frame(self, since: datetime | str, until: datetime | str, device_id: str | None = None, *,
                       features: bool = True, received_after: datetime | str,
                       known: frozenset[AggregateKey] = frozenset()
                       ) -> tuple[pd.DataFrame, frozenset[AggregateKey], str | None]:
        """(the aggregate frame of the minute aggregates with ``since`` ≤ minute ≤ ``until`` that the collector stored
        after ``received_after``, less those whose key (device_id, minute, bundle_id, record_id) is in ``known``;
        the keys of the rows in it; the latest ``received_at`` among them, None when none: a known row was read when
        its ``received_at`` was, so the latest of all is the later of this and the one noted then)."""
        with self._store() as store:
            fresh = store.aggregates(_moment(since), _moment(until), device_id, features=features,
                                     received_after=_moment(received_after), known=known)
        latest = max((row["received_at"] for row in fresh), default=None)
        return aggregate_rows(fresh, "minute", None, features=features), frozenset(map(_key, fresh)), latest

    def rollup_frame(self, since: datetime | str | None = None, until: datetime | str | None = None,
                     device_id: str | None = None, *, features: bool = True) -> pd.DataFrame:
        """Hourly rollups of schema-3 aggregates with ``since`` ≤ hour ≤ ``until`` as an aggregate frame: one row per
        (device, hour, bundle), ``minute`` its hour, ``seconds`` 3 600."""
        since = None if since is None else _moment(since)
        until = None if until is None else _moment(until)
        with self._store() as store:
            rows = store.rollups(since, until, device_id, features=features)
        return aggregate_rows(rows, "hour", HOUR_S, features=features)

    def day_frame(self, since: datetime | str | None = None, until: datetime | str | None = None,
                  device_id: str | None = None, *, features: bool = True
                  ) -> tuple[pd.DataFrame, list[tuple[str, str, str]]]:
        """(the daily rollups with ``since`` ≤ day ≤ ``until`` that are current, as an aggregate frame: one row per
        (device, day, bundle) and identity (variant, provider, build: ``days.fold_day_parts``), ``minute`` its day,
        ``seconds`` 86 400, session ""; the keys (device_id, day as UTC text, bundle_id) of the days in that range
        still pending, whose hourly rollups a reader merges instead)."""
        since = None if since is None else _moment(since)
        until = None if until is None else _moment(until)
        with self._store() as store:
            days = store.day_rollups(since, until, device_id, features=features)
        return aggregate_rows(days.rows, "day", DAY_S, features=features, session=""), days.pending


def is_aggregate(payload: object) -> bool:
    """A stored payload in the device's aggregate format (anything else in the table is not read)."""
    return (isinstance(payload, Mapping) and payload.get("kind") == AGGREGATE_KIND
            and isinstance(payload.get("latency_us"), Mapping) and isinstance(payload.get("records"), int))


AggregateKey = tuple[str, str, str, str]  # (device_id, minute as canonical UTC text, bundle_id, record_id)


def _key(row: Mapping[str, Any]) -> AggregateKey:
    return row["device_id"], row["minute"], row["bundle_id"], row["record_id"]


def aggregate_rows(rows: Iterable[Mapping[str, Any]], start_key: str, seconds: int | None, *,
                   features: bool = True, session: str | None = None) -> pd.DataFrame:
    """An aggregate frame of store rows (``aggregates``, ``rollups`` or daily rollups): the row's device, bundle and
    start win over the payload's (a rollup's payload keeps only what its minutes agree on); ``seconds`` None: the
    payload's; ``session`` None: the payload's."""
    payloads = []
    for row in rows:
        payload = row["payload"]
        if not is_aggregate(payload):
            continue
        compact = compact_payload(payload, features=features)
        for key in IDENTITY_KEYS:
            compact[key] = payload.get(key)
        compact.update(device_id=row["device_id"], bundle_id=row["bundle_id"], minute=row[start_key],
                       seconds=seconds or payload.get("seconds") or MINUTE_S,
                       session=(payload.get("session") or "") if session is None else session)
        payloads.append(compact)
    return aggregate_frame(payloads)


def _object(value: Any) -> dict | None:
    """A stored result: its dict, or None (null, absent, or not an object)."""
    return value if isinstance(value, dict) else None


def feature_table(records: pd.DataFrame) -> pd.DataFrame:
    """The ``features`` column of ``records`` spread into one numeric column per feature."""
    if records.empty or "features" not in records:
        return pd.DataFrame(index=records.index)
    return pd.DataFrame.from_records(list(records["features"]), index=records.index).apply(pd.to_numeric)
