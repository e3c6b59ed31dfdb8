"""A fleet's month of SYNTHETIC telemetry in a PostgreSQL store, fast enough to benchmark the dashboard at 1 000
devices (a load to time the pages on, not data to judge a model by).

Payloads are the device's own format: an hour of each published bundle's stream — beats of the ECG bundle (75 a minute),
rows of the tabular one (12 a minute), features drawn from the bundle's reference profile, latency log-normal — is
aggregated by ``runtime.telemetry.aggregates.MinuteAggregator`` in a few behaviours (``BEHAVIOURS``: normal in four
seeds, slow, noisy, drifted, lead-off). Every device-hour takes one of them — a problem device its problem's for
the hours it lasts (``problem_of``), else a normal one — with the device, minute and ids substituted in the JSON
text. An hour's rollup is what the store computes: ``dashboard.collector.aggregates.fold_rollups`` with the
store's default merge of its minutes (the current hour's of the minutes so far).

Rows go in with ``COPY`` in the store's own layout (``dashboard/collector/migrations.py``: ``aggregates``,
``aggregate_rollups`` with its features apart), schema made by ``PostgresStore`` itself; a few older devices send
schema-2 records through ``PostgresStore.insert_batch``. Nothing here is used by the pages.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from dashboard.collector.aggregates import fold_rollups
from dashboard.collector.interface import without_features
from dashboard.data.bundles import BundleInfo
from runtime.events import BeatEvent, RowPrediction
from runtime.results import ClassResult
from runtime.telemetry.aggregates import AggregateIdentity, AggregationPlan, MinuteAggregator
from runtime.telemetry.event_filter import EventFilter
from runtime.telemetry.records import pseudonymous_device_id, utc_timestamp

logger = logging.getLogger(__name__)

SALT = "render-benchmark"
DEVICE_PLACEHOLDER = "feedfacefeedfacefeedfacefeedface"  # the template's device id, replaced per device
TEMPLATE_HOUR = datetime(2000, 1, 1, tzinfo=UTC)  # templates are made for this hour, replaced per row
TEMPLATE_PREFIX = "2000-01-01T00:"  # how a template minute's text starts: "YYYY-MM-DDTHH:" of the real hour
BEHAVIOURS = ("normal-0", "normal-1", "normal-2", "normal-3", "slow", "noisy", "drifted", "lead-off")
SLOW_LATENCY_US = 25_000.0  # a slow inference, over the 10 ms objective
SILENT_MINUTES = 30  # a silent device sends nothing from the whole hour at least this long before the data's end


@dataclass(frozen=True)
class Stream:
    """How one bundle's devices stream: events per minute and whether they are beats or table rows."""

    bundle: BundleInfo
    per_minute: int
    beats: bool
    latency_us: float  # median inference latency


@dataclass(frozen=True)
class HourTemplate:
    """One behaviour's hour on one bundle: 60 minute payloads (JSON text, "" for a minute without events) and the
    store's rollup of them, of the whole hour and of its first ``partial_minutes``."""

    behaviour: str
    minutes: tuple[str, ...]
    record_ids: tuple[str, ...]
    rollup: tuple[int, str]  # (aggregates merged, payload JSON)
    partial: tuple[int, str]


def problem_of(index: int) -> tuple[str, timedelta] | None:
    """(behaviour, how long before the data's end it started) of device ``index``, or None for a healthy one: 2 %
    slow for the last 2 h, 2 % noisy for 90 min, 2 % drifted for 10 h, 2 % losing signal for 1 h (1 % go silent:
    ``is_silent``)."""
    problems = {1: ("slow", timedelta(hours=2)), 2: ("noisy", timedelta(minutes=90)),
                3: ("drifted", timedelta(hours=10)), 4: ("lead-off", timedelta(hours=1))}
    return problems.get(index % 50)


def is_silent(index: int) -> bool:
    return index % 100 == 5


def device_ids(count: int) -> list[str]:
    return [pseudonymous_device_id(f"bench-{index:05d}", SALT) for index in range(count)]


def _events(stream: Stream, behaviour: str, rng: np.random.Generator) -> tuple[list[Any], list[float]]:
    """An hour of ``stream``'s events in ``behaviour``, with their epoch seconds."""
    profile = stream.bundle.profile or {}
    count = stream.per_minute * 60
    moments = TEMPLATE_HOUR.timestamp() + np.sort(rng.uniform(0, 3600, count))
    if behaviour == "lead-off":  # no beats for a few minutes: the signal-loss rule
        minute = (moments - TEMPLATE_HOUR.timestamp()) // 60
        moments = moments[~(((minute >= 20) & (minute < 27)) | ((minute >= 41) & (minute < 44)))]
        count = len(moments)
    shift = 1.2 if behaviour == "drifted" else 0.0
    features = {}
    for name, reference in (profile.get("features") or {}).items():
        sample = np.asarray(reference.get("sample") or [0.0], dtype=np.float64)
        spread = float(reference.get("std") or 1.0)
        features[name] = rng.choice(sample, count) + rng.normal(0, 0.05 * spread, count) + shift * spread
    labels = stream.bundle.labels
    positive = 0.3 if behaviour == "drifted" else 0.07
    classes = np.where(rng.random(count) < positive, labels[-1], labels[0])
    confidence_sample = np.asarray(((profile.get("predictions") or {}).get("confidence") or {}).get("sample")
                                   or [0.9], dtype=np.float64)
    confidence = np.clip(rng.choice(confidence_sample, count), 0.0, 1.0)
    latency = rng.lognormal(math.log(stream.latency_us), 0.3, count)
    if behaviour == "slow":
        slow = rng.random(count) < 0.4
        latency[slow] = rng.lognormal(math.log(SLOW_LATENCY_US), 0.2, int(slow.sum()))
    flagged = rng.random(count) < (0.3 if behaviour == "noisy" else 0.003)
    events = []
    for index in range(count):
        flags = ("baseline_wander",) if flagged[index] else ()
        values = {name: float(column[index]) for name, column in features.items()}
        low = bool(confidence[index] < 0.6)
        if stream.beats:
            events.append(BeatEvent(float(moments[index] - moments[0]), str(classes[index]), float(confidence[index]),
                                    {}, 72.0, 72, flags, low, float(latency[index]), values))
        else:
            events.append(RowPrediction(index, stream.bundle.manifest.output.task.value,
                                        ClassResult(str(classes[index]), float(confidence[index]), {}, low),
                                        float(latency[index]), flags, features=values))
    return events, moments.tolist()


def hour_template(stream: Stream, behaviour: str, seed: int, partial_minutes: int) -> HourTemplate:
    """One behaviour's hour of aggregates on ``stream``'s bundle, as the device would send them."""
    bundle = stream.bundle
    task = bundle.manifest.output.task.value
    plan = AggregationPlan.from_profile(bundle.profile, task, tuple(bundle.labels))
    identity = AggregateIdentity(DEVICE_PLACEHOLDER, bundle.bundle_id, bundle.manifest_sha256, bundle.shipped_variant,
                                 "CPUExecutionProvider", task)
    events, moments = _events(stream, behaviour, np.random.default_rng(seed))
    aggregator = MinuteAggregator(identity, plan, origin_s=TEMPLATE_HOUR.timestamp(),
                                  event_filter=EventFilter(tuple(bundle.labels)))
    payloads = []
    for start in range(0, len(events), 50):
        payloads += aggregator.add(events[start:start + 50], moments[start:start + 50]).aggregates
    payloads += aggregator.flush()
    by_minute = {int(payload["minute"][14:16]): payload for payload in payloads}
    minutes = tuple(json.dumps(by_minute[minute], separators=(",", ":")) if minute in by_minute else ""
                    for minute in range(60))
    record_ids = tuple(by_minute[minute]["record_id"] if minute in by_minute else "" for minute in range(60))

    def rollup(upto: int) -> tuple[int, str]:
        stored = [{"device_id": payload["device_id"], "bundle_id": payload["bundle_id"], "minute": payload["minute"],
                   "record_id": payload["record_id"], "payload": payload}
                  for minute, payload in by_minute.items() if minute < upto]
        if not stored:
            return 0, ""
        ((count, merged),) = fold_rollups(stored).values()
        return count, json.dumps(merged, separators=(",", ":"))

    return HourTemplate(behaviour, minutes, record_ids, rollup(60), rollup(partial_minutes))


@dataclass
class FleetPlan:
    """Which template every device-hour takes."""

    devices: list[str]
    streams: list[Stream]  # one per device
    templates: dict[tuple[str, str], HourTemplate]  # (bundle name, behaviour) → template
    end: datetime  # the data's end: a minute; the current hour's rollup covers its minutes before it
    days: int
    minute_hours: int  # minute aggregates are kept for this many hours before the end
    legacy: list[int] = field(default_factory=list)  # device indices that send schema-2 records instead

    def behaviour(self, index: int, hour: datetime) -> str | None:
        """The behaviour of device ``index`` in ``hour`` (None: it sent nothing)."""
        if is_silent(index) and hour >= (self.end - timedelta(minutes=SILENT_MINUTES)).replace(minute=0):
            return None  # silent from a whole hour at least SILENT_MINUTES before the end
        problem = problem_of(index)
        if problem is not None and hour + timedelta(hours=1) > self.end - problem[1]:
            return problem[0]
        return f"normal-{(index * 7 + int(hour.timestamp() // 3600)) % 4}"


def make_plan(devices: int, days: int, minute_hours: int, end: datetime, streams: list[Stream],
              share: Callable[[int], int], legacy: int = 5) -> FleetPlan:
    """Templates for every stream and behaviour; device i streams ``streams[share(i)]``."""
    started = time.perf_counter()
    partial = end.minute
    templates = {}
    for number, stream in enumerate(streams):
        for seed, behaviour in enumerate(BEHAVIOURS):
            templates[(stream.bundle.name, behaviour)] = hour_template(stream, behaviour, 100 * number + seed,
                                                                       partial)
    logger.info("templates: %d in %.1f s", len(templates), time.perf_counter() - started)
    identifiers = device_ids(devices)
    legacy_devices = [index for index in range(devices) if index % max(devices // max(legacy, 1), 1) == 7][:legacy]
    return FleetPlan(identifiers, [streams[share(index)] for index in range(devices)], templates, end, days,
                     minute_hours, legacy_devices)


def _row_id(device_id: str, moment: str) -> str:
    return hashlib.blake2b(f"{device_id}{moment}".encode(), digest_size=16).hexdigest()


def _apart(text: str) -> tuple[str, str]:
    """A rollup's JSON text as the store keeps it (migration 5, ``interface.without_features``): (payload less its
    features, the features) — neither holds the device id or the minute, so both are substituted in the first."""
    payload = json.loads(text)
    lean, features = without_features(payload)
    features_text = r"\N" if features is None else json.dumps(features, separators=(",", ":"))
    if DEVICE_PLACEHOLDER in features_text or TEMPLATE_PREFIX in features_text:
        raise ValueError("a template's features hold its device id or minute: they cannot be stored apart as text")
    return json.dumps(lean, separators=(",", ":")), features_text


def rollup_lines(plan: FleetPlan, updated_at: str) -> Iterator[str]:
    """COPY lines of ``aggregate_rollups`` (device_id, hour, bundle_id, aggregates, payload, updated_at, features)."""
    last = plan.end.replace(minute=0, second=0, microsecond=0)
    first = last - timedelta(days=plan.days) + timedelta(hours=1)
    legacy = set(plan.legacy)
    apart: dict[str, tuple[str, str]] = {}  # a template's text: its two columns (16 templates, split once each)
    hour = first
    while hour <= last:
        prefix = hour.strftime("%Y-%m-%dT%H")
        for index, device_id in enumerate(plan.devices):
            behaviour = None if index in legacy else plan.behaviour(index, hour)
            if behaviour is None:
                continue
            stream = plan.streams[index]
            template = plan.templates[(stream.bundle.name, behaviour)]
            count, text = template.partial if hour == last else template.rollup
            if not count:
                continue
            if text not in apart:
                apart[text] = _apart(text)
            lean, features = apart[text]
            payload = lean.replace(DEVICE_PLACEHOLDER, device_id).replace(TEMPLATE_PREFIX, prefix + ":")
            yield (f"{device_id}\t{prefix}:00:00+00\t{stream.bundle.bundle_id}\t{count}\t{payload}\t{updated_at}\t"
                   f"{features}\n")
        hour += timedelta(hours=1)


def aggregate_lines(plan: FleetPlan, received_at: str) -> Iterator[str]:
    """COPY lines of ``aggregates`` (device_id, minute, bundle_id, record_id, received_at, payload) for the last
    ``minute_hours`` before the end."""
    legacy = set(plan.legacy)
    start = plan.end - timedelta(hours=plan.minute_hours)
    hour = start.replace(minute=0)
    while hour < plan.end:
        prefix = hour.strftime("%Y-%m-%dT%H")
        for index, device_id in enumerate(plan.devices):
            behaviour = None if index in legacy else plan.behaviour(index, hour)
            if behaviour is None:
                continue
            stream = plan.streams[index]
            template = plan.templates[(stream.bundle.name, behaviour)]
            for minute in range(60):
                moment = hour + timedelta(minutes=minute)
                text = template.minutes[minute]
                if not text or moment < start or moment >= plan.end:
                    continue
                minute_text = f"{prefix}:{minute:02d}:00Z"
                record_id = _row_id(device_id, minute_text)
                payload = (text.replace(DEVICE_PLACEHOLDER, device_id).replace(TEMPLATE_PREFIX, prefix + ":")
                           .replace(template.record_ids[minute], record_id))
                yield (f"{device_id}\t{prefix}:{minute:02d}:00+00\t{stream.bundle.bundle_id}\t{record_id}\t"
                       f"{received_at}\t{payload}\n")
        hour += timedelta(hours=1)


def copy_lines(connection: Any, table: str, columns: str, lines: Iterator[str], batch: int = 2_000) -> int:
    """``COPY table (columns) FROM STDIN`` of ``lines``; how many rows."""
    rows = 0
    with connection.cursor() as cursor, cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        chunk: list[str] = []
        for line in lines:
            chunk.append(line)
            if len(chunk) >= batch:
                copy.write("".join(chunk).encode())
                rows += len(chunk)
                chunk = []
        if chunk:
            copy.write("".join(chunk).encode())
            rows += len(chunk)
    return rows


def legacy_records(plan: FleetPlan, index: int, hours: int) -> list[dict[str, Any]]:
    """Schema-2 records of an older device for the last ``hours`` (one per beat or row, as its runtime sends)."""
    stream = plan.streams[index]
    bundle = stream.bundle
    records = []
    rng = np.random.default_rng(index)
    start = plan.end - timedelta(hours=hours)
    for hour_number in range(hours):
        events, moments = _events(stream, "normal-0", rng)
        offset = (start + timedelta(hours=hour_number)).timestamp() - TEMPLATE_HOUR.timestamp()
        for event, moment in zip(events, moments, strict=True):
            when = moment + offset
            if when >= plan.end.timestamp():
                continue
            result = ({"class": event.beat_class, "confidence": round(event.probability, 6),
                       "low_confidence": event.low_confidence} if stream.beats else event.result.to_telemetry())
            records.append({
                "sequence": len(records) + 1, "time": utc_timestamp(datetime.fromtimestamp(when, UTC)),
                "device_id": plan.devices[index], "bundle_id": bundle.bundle_id,
                "bundle_sha256": bundle.manifest_sha256, "variant": bundle.shipped_variant,
                "provider": "CPUExecutionProvider", "latency_us": round(event.latency_us, 1),
                "task": bundle.manifest.output.task.value, "result": result,
                "quality_flags": list(event.quality_flags),
                "features": {name: round(value, 6) for name, value in event.features.items()},
            })
    return records


def device_rows(plan: FleetPlan) -> list[tuple[Any, ...]]:
    """The ``devices`` rows a collector keeps for the aggregate senders (``insert_aggregates(device_id=…)``): no
    records, first and last time the span of their minutes."""
    legacy = set(plan.legacy)
    first = plan.end - timedelta(days=plan.days)
    rows = []
    for index, device_id in enumerate(plan.devices):
        if index in legacy:
            continue
        last = (plan.end - timedelta(minutes=SILENT_MINUTES)).replace(minute=0) if is_silent(index) else plan.end
        rows.append((device_id, 0, first, last, 0, None, first, last))
    return rows


def insert_device_rows(connection: Any, plan: FleetPlan) -> None:
    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO devices (device_id, dropped, first_received_at, last_received_at, records, last_sequence, "
            "first_time, last_time) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (device_id) DO NOTHING",
            device_rows(plan))
