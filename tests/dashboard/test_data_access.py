"""Data access and fleet statistics without Streamlit: telemetry reader, bundles, builds, benchmarks, settings."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dashboard.data.benchmark_checks import benchmark_problems
from dashboard.data.benchmarks import (
    NO_RESULTS_MESSAGE,
    distribution_frame,
    head_to_head_frame,
    load_benchmarks,
    machine_frame,
    rows_frame,
)
from dashboard.data.builds import (
    confusion_frame,
    load_clinical_metrics,
    load_history,
    pareto_variants,
    sensitivity_frame,
    variants_frame,
)
from dashboard.data.bundles import read_catalog
from dashboard.data.files import DataUnavailableError
from dashboard.data.settings import DEFAULT_LATENCY_OBJECTIVE_US, DashboardSettings
from dashboard.data.telemetry import TelemetryReader, feature_table
from dashboard.monitoring.checks import device_drift
from dashboard.monitoring.drift import DriftStatus
from dashboard.monitoring.fleet import device_overview, flag_rates, flag_series, latency_series
from tests.dashboard.conftest import BARE_BUNDLE, SCENARIO
from tests.dashboard.fixture_data import DEVICES, bench_document


@pytest.fixture(scope="module")
def reader(dashboard_fixture) -> TelemetryReader:
    return TelemetryReader(dashboard_fixture.settings.database)


def test_reader_returns_every_stored_record(dashboard_fixture, reader: TelemetryReader) -> None:
    inserted = dashboard_fixture.records
    assert reader.count() == sum(map(len, inserted.values()))
    devices = reader.devices()
    assert sorted(devices["device_id"]) == sorted(inserted)
    regressed = reader.records(DEVICES["regressed"], with_features=True)
    assert list(regressed["sequence"]) == [record["sequence"] for record in inserted[DEVICES["regressed"]]]
    first = inserted[DEVICES["regressed"]][0]
    assert regressed["features"].iloc[0] == first["features"]
    assert regressed["latency_us"].iloc[0] == first["latency_us"] and str(regressed["time"].dt.tz) == "UTC"
    assert set(feature_table(regressed).columns) == set(first["features"])


def test_reader_filters_by_time(dashboard_fixture, reader: TelemetryReader) -> None:
    since = dashboard_fixture.now - timedelta(hours=1)
    recent = reader.records(since=since)
    assert len(recent) and (recent["time"] >= since).all()
    assert reader.records(until=dashboard_fixture.now - timedelta(days=1)).empty
    with pytest.raises(ValueError, match="aware"):
        reader.records(since=since.replace(tzinfo=None))


def test_reader_never_creates_or_writes_the_database(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.sqlite3"
    with pytest.raises(DataUnavailableError, match="no telemetry database"):
        TelemetryReader(missing).devices()
    assert not missing.exists()
    foreign = tmp_path / "foreign.sqlite3"
    foreign.write_bytes(b"")  # an empty file is a database without tables
    with pytest.raises(DataUnavailableError, match="no telemetry tables"):
        TelemetryReader(foreign).records()


def test_empty_store_reads_as_empty_frames(empty_settings: DashboardSettings) -> None:
    reader = TelemetryReader(empty_settings.database)
    assert reader.devices().empty and reader.records().empty and reader.count() == 0


def test_catalog_matches_every_identifier_telemetry_may_use(dashboard_fixture) -> None:
    catalog = read_catalog(dashboard_fixture.settings.bundles)
    assert [bundle.name for bundle in catalog.bundles] == [SCENARIO, BARE_BUNDLE] and catalog.problems == ()
    bundle = catalog.by_name(SCENARIO)
    assert catalog.match(bundle.bundle_id) is bundle
    assert catalog.match("unknown", bundle.manifest_sha256) is bundle
    assert catalog.match(None, bundle.model_sha256) is bundle
    assert catalog.match("0123456789ab", "0" * 64) is None
    bare = catalog.by_name(BARE_BUNDLE)
    assert bare.profile is None and "reference_profile.json" in bare.profile_problem


def test_catalog_reports_broken_bundles_instead_of_failing(tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "manifest.json").write_text("{not json")
    (tmp_path / "not-a-bundle").mkdir()
    catalog = read_catalog(tmp_path)
    assert catalog.bundles == () and len(catalog.problems) == 1 and "broken" in catalog.problems[0]
    assert "does not exist" in read_catalog(tmp_path / "missing").problems[0]


def test_bundles_the_contract_refuses_are_problems_not_crashes(dashboard_fixture, tmp_path: Path) -> None:
    source = dashboard_fixture.settings.bundles / SCENARIO
    for name, change in {
        "old": lambda manifest: manifest.update(schema_version=1),
        "odd-task": lambda manifest: manifest["output"].update(task="segmentation"),
    }.items():
        shutil.copytree(source, tmp_path / name)
        manifest = json.loads((tmp_path / name / "manifest.json").read_text())
        change(manifest)
        (tmp_path / name / "manifest.json").write_text(json.dumps(manifest))
    catalog = read_catalog(tmp_path)
    assert catalog.bundles == () and len(catalog.problems) == 2
    old, odd = sorted(catalog.problems, key=lambda problem: "old" not in problem)
    assert "bundle old" in old and "older edgemed" in old and "edgemed build" in old
    assert "bundle odd-task" in odd and "'output.task'" in odd and "multiclass" in odd


def test_the_catalog_reads_the_typed_contract(dashboard_fixture) -> None:
    bundle = read_catalog(dashboard_fixture.settings.bundles).by_name(SCENARIO)
    assert bundle.manifest.schema_version == 2 and bundle.manifest.output.task == "multiclass"
    assert bundle.labels == ["malignant", "benign"] and bundle.manifest.data.synthetic is False
    assert bundle.bundle_id == bundle.lineage["bundle"] == bundle.manifest.bundle_id(bundle.manifest_sha256)


def test_build_tables_come_from_the_manifest_and_the_artefacts(dashboard_fixture) -> None:
    settings = dashboard_fixture.settings
    bundle = read_catalog(settings.bundles).by_name(SCENARIO)
    variants = variants_frame(bundle)
    assert set(variants["variant"]) == set(bundle.manifest.variants)
    assert variants.loc[variants["shipped"], "variant"].tolist() == [bundle.shipped_variant]
    assert variants["macro_f1_ci"].str.match(r"0\.\d{3} \[0\.\d{3}, [01]\.\d{3}\]").all()
    how_made = dict(zip(variants["variant"], variants["how_made"], strict=True))
    assert how_made["int8-static"].startswith("int8 settings: ") and how_made["fp16"] == ""
    assert variants.loc[variants["variant"] == "fp32", "ratio_to_fp32"].item() == 1.0
    # The manifest's latency names are the benchmark's; the headline p50 is the median of the window medians.
    latency = {name: summary["latency"] for name, summary in bundle.manifest.variants.items()}
    assert dict(zip(variants["variant"], variants["latency_p50_us"], strict=True)) == {
        name: value["median_of_windows_us"] for name, value in latency.items()}
    assert dict(zip(variants["variant"], variants["latency_p90_us"], strict=True)) == {
        name: value["p90_us"] for name, value in latency.items()}
    assert list(sensitivity_frame(bundle).columns) == ["variant", *bundle.labels]
    metrics = load_clinical_metrics(settings.artifacts, bundle)
    confusion = confusion_frame(metrics[bundle.shipped_variant])
    assert confusion["count"].sum() == metrics[bundle.shipped_variant]["samples"]
    history = load_history(settings.artifacts, bundle)
    assert {"loss", "accuracy"} <= set(history["metric"]) and set(history["split"]) == {"train", "validation"}
    with pytest.raises(DataUnavailableError, match="not in"):
        load_history(dashboard_fixture.root / "elsewhere", bundle)


def test_pareto_front_keeps_the_undominated_variants() -> None:
    frame = pd.DataFrame({"variant": ["fast", "accurate", "dominated", "balanced"],
                          "latency_p50_us": [10.0, 40.0, 30.0, 20.0], "macro_f1": [0.80, 0.95, 0.85, 0.90]})
    assert pareto_variants(frame) == {"fast", "accurate", "balanced"}


def test_benchmarks_load_and_tabulate(dashboard_fixture) -> None:
    results = load_benchmarks(dashboard_fixture.settings.benchmarks)
    assert results.problems == ()
    (scenario,) = results.scenarios
    rows = rows_frame(scenario)
    assert {"onnxruntime fp32", "keras call", "litert int8"} <= set(rows["model"])
    assert rows.loc[rows["status"] == "not available", "reason"].str.contains("not installed").all()
    distribution = distribution_frame(scenario)
    assert distribution.groupby("series").size().eq(101).all()
    assert set(distribution["threads"]) == {"1", "2"}
    assert "Fixture CPU @ 2.0GHz" in machine_frame(results)["value"].tolist()
    head_to_head = head_to_head_frame(scenario).set_index("model")
    assert set(head_to_head.index) == {"onnxruntime fp32", "onnxruntime fp16", "litert int8"}
    assert head_to_head.loc["onnxruntime fp32", "vs_onnx_fp32"] == 1.0
    assert head_to_head.loc["onnxruntime fp16", "vs_litert_int8"] == pytest.approx(31.0 / 34.0)  # per-round median


def test_benchmarks_missing_broken_or_off_schema(tmp_path: Path) -> None:
    with pytest.raises(DataUnavailableError, match=NO_RESULTS_MESSAGE):
        load_benchmarks(tmp_path / "bench.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(DataUnavailableError, match="cannot be read"):
        load_benchmarks(tmp_path / "broken.json")
    document = bench_document()
    del document["machine"]
    del document["scenarios"][0]["head_to_head"]  # files from before the head-to-head phase
    document["scenarios"][0]["rows"][0].pop("latency")
    (tmp_path / "old.json").write_text(json.dumps(document))
    results = load_benchmarks(tmp_path / "old.json")
    assert any("machine" in problem for problem in results.problems)
    assert not rows_frame(results.scenarios[0]).empty and not machine_frame(results).empty
    assert head_to_head_frame(results.scenarios[0]).empty


def test_benchmark_problems_name_each_mistyped_or_missing_key_the_page_reads() -> None:
    document = bench_document()
    document["schema_version"] = 1
    row = document["scenarios"][0]["rows"][0]
    row["threads"] = "one"
    row["latency"]["quantiles_us"] = "fast"
    row["throughput"]["1"]["samples_per_second"] = None
    document["scenarios"][0]["rows"][-1]["status"] = "skipped"
    document["scenarios"][0]["head_to_head"][0]["models"]["litert int8"].pop("spread")
    document["settings"].pop("stability")  # the harness writes it, the page does not read it: not checked
    row = "$.scenarios[0].rows[0] (onnxruntime fp32)"
    assert benchmark_problems(document) == (
        "$.schema_version: 1 is not one of [2, 3]",
        f"{row}.threads: expected integer or null, got string",
        f"{row}.latency.quantiles_us: expected array, got string",
        f"{row}.throughput.1.samples_per_second: expected number, got null",
        "$.scenarios[0].rows[12] (onnxruntime *).status: 'skipped' is not one of ['ok', 'not available']",
        "$.scenarios[0].head_to_head[0].models.litert int8: missing 'spread'",
    )


def test_dashboard_reads_benchmarks_without_the_pipeline() -> None:
    code = ("import sys\nimport dashboard.data.benchmarks\n"
            "assert not [name for name in sys.modules if name.split('.')[0] == 'pipeline']")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_settings_from_environment() -> None:
    assert DashboardSettings.from_environment({}) == DashboardSettings()
    settings = DashboardSettings.from_environment({
        "EDGEMED_DASHBOARD_BUNDLES": "/x/bundles", "EDGEMED_DASHBOARD_LATENCY_OBJECTIVE_US": "2500",
    })
    assert settings.bundles == Path("/x/bundles") and settings.latency_objective_us == 2500.0
    bad = DashboardSettings.from_environment({"EDGEMED_DASHBOARD_LATENCY_OBJECTIVE_US": "fast"})
    assert bad.latency_objective_us == DEFAULT_LATENCY_OBJECTIVE_US
    round_trip = DashboardSettings.from_environment(settings.to_environment())
    assert round_trip.bundles == Path("/x/bundles").resolve() and round_trip.latency_objective_us == 2500.0


def test_fleet_statistics_match_numpy(dashboard_fixture, reader: TelemetryReader) -> None:
    now = dashboard_fixture.now
    recent = reader.records(since=now - timedelta(hours=1))
    series = latency_series(recent, timedelta(minutes=15), now - timedelta(hours=1), now)
    regressed = recent[recent["device_id"] == DEVICES["regressed"]]
    bucket = regressed["time"].dt.floor("15min")
    first = bucket.min()
    row = series[(series["device_id"] == DEVICES["regressed"]) & (series["bucket"] == first)].iloc[0]
    values = regressed.loc[bucket == first, "latency_us"].to_numpy()
    assert row["p95_us"] == pytest.approx(np.quantile(values, 0.95)) and row["inferences"] == len(values)
    overview = device_overview(reader.devices(), recent, read_catalog(dashboard_fixture.settings.bundles), now,
                               timedelta(hours=1)).set_index("device_id")
    assert overview.loc[DEVICES["orphan"], "bundle"] == "unknown (0123456789ab)"
    assert overview.loc[DEVICES["regressed"], "p95_us"] > 10_000 > overview.loc[DEVICES["healthy"], "p95_us"]
    assert overview.loc[DEVICES["busy"], "per_minute"] == pytest.approx(6.0, abs=0.2)
    rates = flag_rates(recent).set_index(["device_id", "flag"])["rate"]
    assert rates[(DEVICES["noisy"], "any")] > 0.2 > rates[(DEVICES["healthy"], "any")]
    assert flag_series(recent, timedelta(minutes=15))["flagged_share"].between(0, 1).all()


def test_device_drift_on_the_fixture(dashboard_fixture, reader: TelemetryReader) -> None:
    catalog = read_catalog(dashboard_fixture.settings.bundles)
    now = dashboard_fixture.now

    def report(name: str):
        return device_drift(reader.records(DEVICES[name], with_features=True), catalog, now)

    assert report("drifted").status is DriftStatus.ALERT
    assert report("healthy").status is not DriftStatus.ALERT and report("healthy").results[0].method == "KS test"
    assert report("busy").results[0].method == "JS + Wasserstein"
    assert "no reference profile" in report("bare").message
    assert "not among the published bundles" in report("orphan").message


def test_data_and_monitoring_modules_do_not_import_streamlit() -> None:
    modules = ["dashboard.data.benchmarks", "dashboard.data.builds", "dashboard.data.bundles",
               "dashboard.data.settings", "dashboard.data.telemetry", "dashboard.monitoring.alerts",
               "dashboard.monitoring.checks", "dashboard.monitoring.drift", "dashboard.monitoring.fleet",
               "dashboard.monitoring.predictions"]
    code = f"import sys\nfor name in {modules!r}: __import__(name)\nassert 'streamlit' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
