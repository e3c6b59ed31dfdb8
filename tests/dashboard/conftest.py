"""Dashboard fixtures: one tiny real bundle, a SQLite telemetry store filled through the collector's
``SqliteStore.insert_batch`` and a ``bench.json``, built once per session; plus the bad-input variants
(empty store, missing benchmark file, bundle without reference profile); and the same fleet sent as a mixed fleet
(schema-3 aggregates, the records their event filter keeps, older devices' records) beside its all-records twin,
on SQLite and on a throwaway PostgreSQL server."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dashboard.collector.store import SqliteStore
from dashboard.data.bundles import read_bundle
from dashboard.data.settings import DashboardSettings, DatabaseUrl
from tests.dashboard.fixture_data import (
    AGGREGATE_SENDERS,
    KIND_DEVICES,
    UPGRADED,
    batches,
    bench_document,
    fleet_records,
    kind_profile,
    kind_records,
    mixed_fleet,
)
from tests.dashboard.store_locations import location, postgres_server  # noqa: F401 (fixtures for every test here)

SCENARIO = "breast-cancer"  # seconds to build at the tiny profile (the ECG scenario takes over a minute)
BARE_BUNDLE = "breast-cancer-without-profile"
KIND_BUNDLES = {"multilabel": "labels-test", "regression": "qt-regression", "anomaly": "st-anomaly"}


@dataclass(frozen=True)
class DashboardFixture:
    root: Path
    settings: DashboardSettings
    now: datetime  # the moment the telemetry was generated up to
    records: dict[str, list[dict]]  # per device id, as inserted


def _build_bundle(root: Path) -> None:
    from pipeline.build.builder import build_scenario
    from pipeline.build.context import StageContext
    from pipeline.config import Profile
    from pipeline.scenarios import get_scenario

    scenario = get_scenario(SCENARIO)
    build_scenario(scenario, scenario.build_config(Profile.TINY, seed=0), StageContext(root / "artifacts"),
                   root / "bundles")


def _bare_copy(bundles: Path) -> Path:
    """A copy of the bundle without reference_profile.json (its manifest renamed, so its sha differs)."""
    bare = bundles / BARE_BUNDLE
    shutil.copytree(bundles / SCENARIO, bare)
    (bare / "reference_profile.json").unlink()
    manifest = json.loads((bare / "manifest.json").read_text())
    manifest["scenario"] = BARE_BUNDLE
    (bare / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return bare


@pytest.fixture(scope="session")
def dashboard_fixture(tmp_path_factory: pytest.TempPathFactory) -> DashboardFixture:
    root = tmp_path_factory.mktemp("dashboard")
    _build_bundle(root)
    bare = _bare_copy(root / "bundles")
    now = datetime.now(UTC).replace(microsecond=0)
    records = fleet_records(read_bundle(root / "bundles" / SCENARIO), read_bundle(bare), now)
    database = root / "telemetry.sqlite3"
    with SqliteStore(database) as store:
        for device_id, device_records in records.items():
            for batch in batches(device_records):
                store.insert_batch(device_id, batch)
    benchmarks = root / "bench.json"
    benchmarks.write_text(json.dumps(bench_document(SCENARIO)))
    settings = DashboardSettings(root / "artifacts", root / "bundles", database, benchmarks)
    return DashboardFixture(root, settings, now, records)


@pytest.fixture(scope="session")
def kind_fixture(tmp_path_factory: pytest.TempPathFactory) -> DashboardFixture:
    """Hand-built multilabel, regression and anomaly bundles (manifest and reference profile) and a store with one
    device on each, plus a device sending a task kind this dashboard does not know (on an unpublished bundle)."""
    from tests.runtime.hand_built import OUTPUTS, TABULAR, write_manifest

    root = tmp_path_factory.mktemp("kinds")
    now = datetime.now(UTC).replace(microsecond=0)
    records: dict[str, list[dict]] = {}
    for seed, (task, name) in enumerate(KIND_BUNDLES.items()):
        folder = root / "bundles" / name
        folder.mkdir(parents=True)
        (folder / "reference_profile.json").write_text(json.dumps(kind_profile(task, seed)))
        output = next(spec for kind, spec in OUTPUTS.items() if kind.value == task)
        write_manifest(folder, name, (TABULAR,), output, lineage={"bundle": f"{name}-id"})
        bundle = read_bundle(folder)
        records[KIND_DEVICES[f"kind-{task}"]] = kind_records(task, bundle, KIND_DEVICES[f"kind-{task}"], now, seed)
    records[KIND_DEVICES["kind-future"]] = kind_records("segmentation", None, KIND_DEVICES["kind-future"], now, 9)
    database = root / "telemetry.sqlite3"
    with SqliteStore(database) as store:  # straight into the store: the future kind would not pass the collector
        for device_id, device_records in records.items():
            for batch in batches(device_records):
                store.insert_batch(device_id, batch)
    settings = DashboardSettings(root / "artifacts", root / "bundles", database, root / "bench.json")
    return DashboardFixture(root, settings, now, records)


@dataclass(frozen=True)
class MixedFixture:
    now: datetime  # the data runs up to here (7 s past a minute: no record falls on a minute boundary)
    raw: DashboardSettings  # every event as a schema-1/2 record
    mixed: DashboardSettings  # the same events as a mixed fleet sends them (SQLite)
    sent: dict[str, list[dict]]  # per device id: the records the mixed fleet sent
    aggregates: list[dict]  # the aggregates it sent, as the store keeps them


def fill_store(store: Any, sent: dict[str, list[dict]], aggregates: list[dict]) -> None:
    for device_id, device_records in sent.items():
        for batch in batches(device_records):
            store.insert_batch(device_id, batch)
    by_device: dict[str, list[dict]] = {}
    for aggregate in aggregates:  # as the collector stores a device's upload: its devices row kept too
        by_device.setdefault(aggregate["device_id"], []).append(aggregate)
    for device_id, uploads in by_device.items():
        for start in range(0, len(uploads), 500):
            store.insert_aggregates(uploads[start:start + 500], device_id=device_id)


@pytest.fixture(scope="session")
def mixed_fixture(dashboard_fixture: DashboardFixture, tmp_path_factory: pytest.TempPathFactory) -> MixedFixture:
    root = tmp_path_factory.mktemp("mixed")
    bundles = dashboard_fixture.settings.bundles
    bundle, bare = read_bundle(bundles / SCENARIO), read_bundle(bundles / BARE_BUNDLE)
    now = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1) + timedelta(seconds=7)
    records = fleet_records(bundle, bare, now)
    sent, aggregates = mixed_fleet(records, {name: bundle for name in AGGREGATE_SENDERS} | {UPGRADED: bare}, now)
    with SqliteStore(root / "raw.sqlite3") as store:
        fill_store(store, records, [])
    with SqliteStore(root / "mixed.sqlite3") as store:
        fill_store(store, sent, aggregates)
    settings = {name: DashboardSettings(dashboard_fixture.settings.artifacts, bundles, root / f"{name}.sqlite3",
                                        root / "bench.json") for name in ("raw", "mixed")}
    return MixedFixture(now, settings["raw"], settings["mixed"], sent, aggregates)


@pytest.fixture(scope="session")
def mixed_postgres(mixed_fixture: MixedFixture, request: pytest.FixtureRequest) -> DashboardSettings:
    """The mixed fleet in a database of its own on the session's PostgreSQL server (``store_locations``; skipped
    without the server binaries)."""
    pytest.importorskip("psycopg")
    from dashboard.collector.postgres_store import PostgresStore

    url = DatabaseUrl(request.getfixturevalue("postgres_server").create_database("mixed"))
    with PostgresStore(url) as store:
        fill_store(store, mixed_fixture.sent, mixed_fixture.aggregates)
    return dataclasses.replace(mixed_fixture.mixed, database=url)


@pytest.fixture(scope="session")
def empty_settings(tmp_path_factory: pytest.TempPathFactory) -> DashboardSettings:
    """An empty telemetry store, no bundles, no artefacts and no benchmark file."""
    root = tmp_path_factory.mktemp("empty")
    SqliteStore(root / "telemetry.sqlite3").close()
    return DashboardSettings(root / "artifacts", root / "bundles", root / "telemetry.sqlite3", root / "bench.json")


@pytest.fixture
def use_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """Point the dashboard (in this process) at some settings."""

    def apply(settings: DashboardSettings) -> None:
        for name, value in settings.to_environment().items():
            monkeypatch.setenv(name, value)

    yield apply


_SCREENSHOTS = pytest.StashKey[Path]()


@pytest.fixture(scope="session")
def screenshots(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the browser test saves its screenshots; listed in the terminal summary."""
    folder = tmp_path_factory.mktemp("screenshots")
    request.config.stash[_SCREENSHOTS] = folder
    return folder


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    folder = config.stash.get(_SCREENSHOTS, None)
    if folder is None:
        return
    shots = sorted(folder.glob("*.png"))
    if shots:
        terminalreporter.section("dashboard screenshots")
        for shot in shots:
            terminalreporter.write_line(str(shot))
