"""Daily rollups: a device's day of hourly rollups folded into one row per (device, day, bundle) and identity.

The 7- and 30-day views read a fleet's month as 30 rows per device instead of 720 hourly rollups (at 1 000 devices
the hourly read of a month is ~700 k rows and ~18 GB of JSON). A day is folded from its stored hourly rollups with
the store's own merge (``aggregates.fold_rollups``'s rule: the hours in order, one pass where the merge has
``many``), so a daily rollup is what rolling its minutes up in one go would give. The hours are folded apart per
identity they carry (``day_identity``: bundle build, variant, provider, task), each group one row (``part`` 0, 1, …
in the order the groups first appear): a day that spans a variant switch is a row per variant, and one for the
switching hour's own rollup ("mixed"), just as the dashboard merges a pending day's hours per identity
(``dashboard.data.windows.merge_days``); a day's rows do not change shape when it stops being pending.

Every write of an hourly rollup queues its day (``day_queue``, in the same transaction); a store folds a queued day
only once it has ended ``DAY_SETTLE`` ago (``roll_up_days``, the collector's rollup job, after the hours), then
again whenever a late hour changes it. A day still queued is "pending": readers (``day_rollups``) get its keys and
read those hours instead, so a daily row is never used while it lags its hours.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from dashboard.collector.aggregates import Merge
from runtime.telemetry.records import utc_timestamp

DAY = timedelta(days=1)
DAY_SETTLE = timedelta(minutes=15)  # a day is folded once it ended this long ago (devices upload within minutes)
DEFAULT_DAY_BATCH = 50  # device-days one roll_up_days call folds in one transaction (24 rollups of ~33 kB each)
DAY_FIELDS = ("device_id", "bundle_id", "day", "hours", "aggregates", "payload")
DayKey = tuple[str, str, str]  # (device_id, day as canonical UTC text, bundle_id)


@dataclass(frozen=True)
class DayRollups:
    """What ``TelemetryStore.day_rollups`` read in one statement: the daily rows that are current and the keys of
    the days still pending (queued: to be read from their hourly rollups instead)."""

    rows: list[dict[str, Any]] = field(default_factory=list)  # DAY_FIELDS, by day, device and bundle
    pending: list[DayKey] = field(default_factory=list)  # (device_id, day, bundle_id), sorted


def day_rollups_query(where: str, day: str, features: bool) -> str:
    """The one statement of ``day_rollups`` on either backend: the current daily rows under ``where`` (their days not
    queued), then the queued keys under it, each row led by 0 (a daily rollup) or 1 (pending); ``day`` renders the
    day column as canonical UTC text."""
    return (f"SELECT 0, device_id, bundle_id, {day}, hours, aggregates, payload, {'features' if features else 'NULL'} "
            f"FROM day_rollups AS r{where}{' AND' if where else ' WHERE'} NOT EXISTS (SELECT 1 FROM day_queue AS q "
            "WHERE (q.device_id, q.day, q.bundle_id) = (r.device_id, r.day, r.bundle_id)) "
            f"UNION ALL SELECT 1, device_id, bundle_id, {day}, NULL, NULL, NULL, NULL FROM day_queue{where} "
            "ORDER BY 4, 2, 3")


def day_of(hour: str | datetime) -> str:
    """The canonical UTC text of the day that holds ``hour``."""
    moment = datetime.fromisoformat(hour) if isinstance(hour, str) else hour
    return utc_timestamp(moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0))


def day_keys(rollup_keys: Iterable[tuple[str, str, str]]) -> list[DayKey]:
    """The days (sorted, once each) of hourly rollup keys (device_id, hour, bundle_id)."""
    return sorted({(device, day_of(hour), bundle) for device, hour, bundle in rollup_keys})


def closed_before(now: datetime | None = None) -> datetime:
    """Days starting before this have ended ``DAY_SETTLE`` ago at ``now`` (default: the clock)."""
    return (now or datetime.now(UTC)) - DAY - DAY_SETTLE


IDENTITY_FIELDS = ("bundle_sha256", "variant", "provider", "task")  # what a day's rows are apart by


def day_identity(payload: Mapping[str, Any]) -> tuple[Any, ...]:
    """The identity an hourly rollup's payload carries (None where it has none, as generic payloads may)."""
    return tuple(payload.get(name) for name in IDENTITY_FIELDS)


def fold_day_parts(hours: list[tuple[int, Mapping[str, Any]]], merge: Merge) -> list[tuple[int, int, dict[str, Any]]]:
    """(hours, aggregates, payload) per identity (``day_identity``) of a day's hourly rollups, oldest first, each
    group folded by ``fold_day``; the groups in the order their first hour comes."""
    groups: dict[tuple[Any, ...], list[tuple[int, Mapping[str, Any]]]] = {}
    for count, payload in hours:
        groups.setdefault(day_identity(payload), []).append((count, payload))
    return [fold_day(group, merge) for group in groups.values()]


def fold_day(hours: list[tuple[int, Mapping[str, Any]]], merge: Merge) -> tuple[int, int, dict[str, Any]]:
    """(hours, aggregates, payload) of a day's hourly rollups ``(aggregates, payload)``, oldest first, folded with
    ``merge`` (its ``many`` in one pass where it has one)."""
    payloads = [payload for _, payload in hours]
    if len(payloads) == 1:
        folded = dict(payloads[0])
    elif getattr(merge, "many", None) is not None:
        folded = merge.many(payloads)
    else:
        folded = functools.reduce(merge, payloads)
    return len(hours), sum(count for count, _ in hours), folded
