"""Cached telemetry for the live pages: ``dashboard.data.windows`` with Streamlit caches in front of the store.

* Blocks that no longer change (``Block.complete``: ended ``windows.SETTLE`` ago) are kept ``COMPLETE_TTL_S``; the
  open minute blocks (the last few minutes) are held and brought up to date with the rows stored since, at most
  every ``OPEN_TTL_S`` (under the pages' refresh period: ``open_blocks``), so each refresh reads only what is new;
  the current hour's rollups are re-read every ``OPEN_ROLLUP_TTL_S``. A page that refreshes every 30 s over 24 h of
  1 000 devices re-reads a few thousand minute aggregates, not the day.
* Blocks are ``st.cache_resource``: shared by every session as they are, never copied (a day of a fleet is hundreds
  of megabytes; ``st.cache_data`` would unpickle a copy on every hit). Nothing downstream changes a frame or
  payload in place. The small device table and older devices' records are ``st.cache_data``.
* ``plans`` (the bundles' aggregation plans) lives as long as the set of published bundle versions.
* Fleet-wide drift (``drift_alerts``) is evaluated once every ``widgets.DRIFT_EVERY_MINUTES``: the first visit waits
  for it, later refreshes show the latest evaluation while the next runs in a background thread.
* One ``TelemetryReader`` per store keeps its connections for the process (``reader``).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard.components import widgets
from dashboard.components.open_blocks import OpenMinuteBlocks
from dashboard.data.allocator import use_system_allocator
from dashboard.data.bundles import BundleCatalog, read_catalog
from dashboard.data.files import DataUnavailableError
from dashboard.data.settings import DashboardSettings, database_environment_value, parse_database
from dashboard.data.telemetry import TelemetryReader
from dashboard.data.windows import (
    Block,
    Resolution,
    Sources,
    TelemetryWindow,
    WindowRequest,
    device_table,
    drift_window,
    load_window,
    read_block,
    refresh_minutes,
)
from dashboard.monitoring import aggregate_checks
from dashboard.monitoring.aggregate_window import PlanFor, aggregate_frame, catalog_plans
from dashboard.monitoring.alerts import Alert
from dashboard.monitoring.drift import DEFAULT_DRIFT_CONFIG
from runtime.real_data import RealDataStatus, RealDataValidation

logger = logging.getLogger(__name__)

COMPLETE_TTL_S = 3600  # a finished block is re-read after an hour (an upload later than SETTLE shows up by then)
OPEN_TTL_S = 20  # under REFRESH_SECONDS: every refresh brings the open minute blocks up to date, re-reads records
# The current hour's rollups (a thousand devices: tens of megabytes of JSON) are re-read every other minute: the
# windows that read them (6 hours and more) do not need the current minute; the last hour's rules read minutes.
OPEN_ROLLUP_TTL_S = 110
SYNC_DRIFT_DEVICES = 100  # a fleet's first drift evaluation is waited for up to this many devices
BLOCK_ENTRIES = 8192  # two hours of minute blocks and a month of hours, for a few windows and devices


@st.cache_resource(max_entries=8, show_spinner=False)
def reader(database: str) -> TelemetryReader:
    """One shared reader per store: its connections are kept for the process (every block read reuses them). The
    process's first reader also moves Arrow to the C library's allocator, before any frame is read (``allocator``)."""
    use_system_allocator()
    return TelemetryReader(database, shared=True)


def _read(database: str, resolution: str, start: str, end: str, complete: bool, device_id: str | None,
          features: bool, bundles: str) -> pd.DataFrame:
    block = Block(Resolution(resolution), pd.Timestamp(start), pd.Timestamp(end), complete)
    plan_for = _catalog_plans(bundles) if bundles else None
    return read_block(reader(database), block, device_id, features, plan_for)


@st.cache_resource(ttl=COMPLETE_TTL_S, max_entries=BLOCK_ENTRIES, show_spinner=False)
def _complete_block(database: str, resolution: str, start: str, end: str, device_id: str | None,
                    features: bool, bundles: str, versions: tuple[str, ...]) -> pd.DataFrame:
    return _read(database, resolution, start, end, True, device_id, features, bundles)


@st.cache_resource(ttl=OPEN_TTL_S, max_entries=256, show_spinner=False)
def _open_block(database: str, resolution: str, start: str, end: str, device_id: str | None,
                features: bool, bundles: str, versions: tuple[str, ...]) -> pd.DataFrame:
    return _read(database, resolution, start, end, False, device_id, features, bundles)


@st.cache_resource(show_spinner=False)
def _open_minute_blocks() -> OpenMinuteBlocks:
    return OpenMinuteBlocks(OPEN_TTL_S)


def _open_minutes(database: str, resolution: str, start: str, end: str, device_id: str | None,
                  features: bool, bundles: str, versions: tuple[str, ...]) -> pd.DataFrame:
    block = Block(Resolution(resolution), pd.Timestamp(start), pd.Timestamp(end), False)
    return _open_minute_blocks().frame((database, start, end, device_id, features), lambda held: refresh_minutes(
        reader(database), block, device_id, features, held))


@st.cache_resource(ttl=OPEN_ROLLUP_TTL_S, max_entries=64, show_spinner=False)
def _open_rollups(database: str, resolution: str, start: str, end: str, device_id: str | None,
                  features: bool, bundles: str, versions: tuple[str, ...]) -> pd.DataFrame:
    return _read(database, resolution, start, end, False, device_id, features, bundles)


@st.cache_data(ttl=OPEN_TTL_S, max_entries=64, show_spinner=False)
def _devices(database: str) -> pd.DataFrame:
    return reader(database).devices()


@st.cache_data(ttl=OPEN_TTL_S, max_entries=64, show_spinner=False)
def _simulated(database: str) -> frozenset[str]:
    return reader(database).simulated_devices()


def simulated_devices(current: DashboardSettings) -> frozenset[str]:
    """The store's devices whose uploads came from a simulator (``edgemed simulate``)."""
    return _simulated(database_environment_value(current.database))


SIMULATED_NOTICE = ("come from a simulator (`edgemed simulate`: the real runtime on real PLUX recordings with "
                    "scripted, synthetic faults, or on synthetic ECGSYN ECG) — simulated telemetry, not patient data")


def simulated_notice(current: DashboardSettings, shown: list[str] | pd.Series) -> frozenset[str]:
    """A banner when any of the ``shown`` devices is simulated (how many of them); the simulated ones."""
    marked = simulated_devices(current) & set(shown)
    if marked:
        count = len(set(shown))
        st.warning(f"SIMULATED: {len(marked):,} of the {count:,} device{'' if count == 1 else 's'} shown here "
                   + SIMULATED_NOTICE, icon=":material/science:")
    return marked


def unvalidated_notice(catalog: BundleCatalog, bundles: pd.Series) -> frozenset[str]:
    """A red banner when devices run a published bundle whose signed manifest says it was NOT validated on real data
    (``runtime.real_data``: a device refuses it unless a development run allows it); the names of such bundles.
    ``bundles``: each shown device's bundle name, as the Fleet table gives it."""
    unvalidated = frozenset(bundle.name for bundle in catalog.bundles
                            if RealDataValidation.of(bundle.manifest).status is RealDataStatus.NOT_VALIDATED)
    running = bundles[bundles.isin(unvalidated)]
    if len(running):
        names = ", ".join(sorted(set(running)))
        st.error(f"NOT VALIDATED ON REAL DATA: {len(running):,} of the {len(bundles):,} devices shown run {names}, "
                 "whose manifest says it was not validated on real data — development runs "
                 "(--allow-unvalidated), their answers are not for patients (the Builds page says why)",
                 icon=":material/block:")
    return unvalidated


@st.cache_resource(ttl=OPEN_TTL_S, max_entries=256, show_spinner=False)
def _records(database: str, device_id: str | None, since: str, until: str) -> pd.DataFrame:
    return reader(database).records(device_id, pd.Timestamp(since), pd.Timestamp(until), with_features=True)


def _versions(current: DashboardSettings) -> tuple[str, ...]:
    return tuple(sorted(bundle.manifest_sha256 for bundle in widgets.catalog(current).bundles))


def sources(current: DashboardSettings) -> Sources:
    """Cached ``Sources`` for the store of ``current`` (folded records depend on the bundles' reference bins too:
    their blocks are keyed by the published bundle versions)."""
    database = database_environment_value(current.database)
    bundles, versions = str(current.bundles.resolve()), _versions(current)

    def block(block: Block, device_id: str | None, features: bool) -> pd.DataFrame:
        read = (_complete_block if block.complete else
                _open_rollups if block.resolution in (Resolution.HOUR, Resolution.DAY) else
                _open_minutes if block.resolution is Resolution.MINUTE else _open_block)
        folded = block.resolution is Resolution.RECORDS
        return read(database, block.resolution.value, block.start.isoformat(), block.end.isoformat(), device_id,
                    features, bundles if folded else "", versions if folded else ())

    return Sources(block, lambda: _devices(database))


@st.cache_resource(ttl=COMPLETE_TTL_S, max_entries=16, show_spinner=False)
def _plans(bundles: str, versions: tuple[str, ...]) -> PlanFor:
    return catalog_plans(read_catalog(Path(bundles)))


def _catalog_plans(bundles: str) -> PlanFor:
    catalog = widgets.catalog_in(Path(bundles))  # read again only when the bundles changed on disk
    return _plans(bundles, tuple(sorted(bundle.manifest_sha256 for bundle in catalog.bundles)))


def plans(current: DashboardSettings) -> PlanFor:
    """The aggregation plans of the published bundles (reference bins), cached per set of bundle versions."""
    return _plans(str(current.bundles.resolve()), _versions(current))


def window(current: DashboardSettings, request: WindowRequest, end: datetime) -> TelemetryWindow:
    """``load_window`` through the caches."""
    return load_window(request, end, sources(current), plans(current))


def _evaluate_drift(database: str, bundles: str, evaluated: pd.Timestamp, span: timedelta,
                    device_id: str | None) -> list[Alert]:
    current = DashboardSettings(bundles=Path(bundles), database=parse_database(database))
    request = WindowRequest(span, minutes_for=widgets.ROLLUPS_ONLY, device_id=device_id)
    view = drift_window(request, evaluated, sources(current), plans(current), DEFAULT_DRIFT_CONFIG)
    return aggregate_checks.drift_alerts(view.frame, evaluated, plans(current), DEFAULT_DRIFT_CONFIG)


@dataclass
class _DriftResults:
    """The latest drift alerts per (store, bundles, window) and the evaluations running in the background."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    latest: dict[tuple, tuple[pd.Timestamp, list[Alert]]] = field(default_factory=dict)
    running: set[tuple] = field(default_factory=set)
    pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="drift"))

    def refresh(self, key: tuple, evaluated: pd.Timestamp) -> None:
        """Evaluate ``key`` at ``evaluated`` in the background unless it is being evaluated already."""
        with self.lock:
            if key in self.running:
                return
            self.running.add(key)

        def work() -> None:
            try:
                alerts = _evaluate_drift(*key[:2], evaluated, *key[3:])
                with self.lock:
                    self.latest[key] = (evaluated, alerts)
            except Exception:  # a thread's error reaches no page: log it, keep the previous evaluation
                logger.exception("drift evaluation of %s failed; the page keeps the previous one",
                                 parse_database(key[0]))
            finally:
                with self.lock:
                    self.running.discard(key)

        self.pool.submit(work)


@st.cache_resource(show_spinner=False)
def _drift_results() -> _DriftResults:
    return _DriftResults()


def drift_alerts(current: DashboardSettings, request: WindowRequest, moment: datetime, devices: int
                 ) -> tuple[list[Alert], pd.Timestamp | None]:
    """(drift alerts of every device in ``request``'s window, when they were evaluated; None: not yet).

    A day of a thousand devices' histograms takes tens of seconds and hardly moves in minutes, so drift is evaluated
    once every ``widgets.DRIFT_EVERY_MINUTES`` (at the start of that period) in a background thread; a page gets the
    latest evaluation at once. Only the first evaluation of a fleet of up to ``SYNC_DRIFT_DEVICES`` (``devices``)
    is waited for; a larger fleet's first visit shows no drift alerts until its evaluation is done."""
    evaluated = pd.Timestamp(moment).floor(f"{widgets.DRIFT_EVERY_MINUTES}min")
    key = (database_environment_value(current.database), str(current.bundles.resolve()), _versions(current),
           request.span, request.device_id)
    results = _drift_results()
    with results.lock:
        latest = results.latest.get(key)
    if latest is None and devices <= SYNC_DRIFT_DEVICES:
        alerts = _evaluate_drift(key[0], key[1], evaluated, request.span, request.device_id)
        with results.lock:
            results.latest[key] = (evaluated, alerts)
        return alerts, evaluated
    if latest is None or latest[0] < evaluated:
        results.refresh(key, evaluated)
    return (latest[1], latest[0]) if latest is not None else ([], None)


def known_devices(current: DashboardSettings) -> pd.DataFrame:
    """Every device the store has a row for (``windows.DEVICE_COLUMNS``): devices that sent records, and those that
    sent aggregates through a collector that keeps their row (``insert_aggregates(device_id=…)``)."""
    stored = _devices(database_environment_value(current.database))
    return device_table(stored, aggregate_frame([]), pd.Timestamp(widgets.now()))


def devices_or_stop(current: DashboardSettings, nothing: str) -> pd.DataFrame:
    """``known_devices``; an info message and ``st.stop()`` when the store cannot be read or is empty."""
    try:
        devices = known_devices(current)
    except DataUnavailableError as error:
        st.info(str(error))
        st.stop()
    if devices.empty:
        st.info(f"no telemetry yet: the store {current.database} is empty, so {nothing}")
        st.stop()
    return devices


def device_records(current: DashboardSettings, device_id: str, since: datetime, until: datetime) -> pd.DataFrame:
    """One device's per-event records (with features) in [since, until], cached like the blocks' open ends."""
    return _records(database_environment_value(current.database), device_id, pd.Timestamp(since).isoformat(),
                    pd.Timestamp(until).isoformat())


def drift_running() -> bool:
    """Whether a drift evaluation runs in the background now (the render benchmark waits for it)."""
    results = _drift_results()
    with results.lock:
        return bool(results.running)
