"""Dashboard fixtures: one tiny real bundle, a SQLite telemetry store filled through the collector's
``SqliteStore.insert_batch`` and a ``bench.json``, built once per session; plus the bad-input variants
(empty store, missing benchmark file, bundle without reference profile)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dashboard.collector.store import SqliteStore
from dashboard.data.bundles import read_bundle
from dashboard.data.settings import DashboardSettings
from tests.dashboard.fixture_data import (
    KIND_DEVICES,
    batches,
    bench_document,
    fleet_records,
    kind_profile,
    kind_records,
)

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
