"""Every page under ``streamlit.testing.v1.AppTest`` on fixture data, and on bad input: messages, no exceptions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("streamlit")

from streamlit.testing.v1 import AppTest

from dashboard.data.benchmarks import NO_RESULTS_MESSAGE
from dashboard.data.bundles import read_bundle
from dashboard.data.settings import DashboardSettings
from tests.dashboard.apptest_pages import APP, TIMEOUT_S, run_page, texts
from tests.dashboard.conftest import BARE_BUNDLE, KIND_BUNDLES, SCENARIO
from tests.dashboard.fixture_data import DEVICES, KIND_DEVICES


def charts(app: AppTest) -> int:
    return len(app.get("vega_lite_chart"))


@pytest.fixture
def fixture_settings(dashboard_fixture, use_settings) -> DashboardSettings:
    use_settings(dashboard_fixture.settings)
    return dashboard_fixture.settings


def test_builds_page(fixture_settings: DashboardSettings) -> None:
    app = run_page("builds")
    assert app.title[0].value == "Builds"
    assert [header.value for header in app.header] == [SCENARIO, BARE_BUNDLE]
    assert "shipped" in texts(app, "success") and "fastest passing variant" in texts(app, "success")
    assert {"Variants", "Accuracy vs latency", "Training curves"} <= {item.value for item in app.subheader}
    variants = app.dataframe[0].value
    assert len(variants) == 4 and variants["shipped"].sum() == 1
    assert charts(app) >= 2 * (1 + 2 + 4)  # per bundle: Pareto, two training curves, four confusion matrices


def test_benchmarks_page(fixture_settings: DashboardSettings) -> None:
    app = run_page("benchmarks")
    assert app.title[0].value == "Benchmarks" and [header.value for header in app.header] == [SCENARIO, "Machine"]
    rows = app.dataframe[0].value
    assert {"onnxruntime int8-static", "keras call", "litert int8"} <= set(rows["model"])
    assert set(rows["threads"].dropna()) == {1, 2} and "not available" in set(rows["status"])
    assert "Head-to-head (interleaved, batch 1)" in {item.value for item in app.subheader}
    assert set(app.dataframe[1].value["model"]) == {"onnxruntime fp32", "onnxruntime fp16", "litert int8"}
    assert charts(app) == 1
    # what the rows were timed on, synthetic in bold (bench.json's inputs)
    assert (f"Timing inputs: **SYNTHETIC** — {SCENARIO} test split: its first 64 of 2,000 samples, cycled "
            "(SYNTHETIC data)") in texts(app, "caption")


def test_a_benchmark_file_that_does_not_name_its_timing_inputs_says_so() -> None:
    from dashboard.data.benchmarks import timing_inputs_note

    assert timing_inputs_note({"name": "old"}) == ("Timing inputs: not recorded in this file (written before "
                                                    "bench.json named them).")
    real = {"inputs": "ecg-pvc test split: its first 64 of 6,842 samples, cycled (real data)",
            "inputs_synthetic": False}
    assert timing_inputs_note(real) == "Timing inputs: " + real["inputs"]


def test_fleet_page(fixture_settings: DashboardSettings) -> None:
    app = run_page("fleet")
    assert app.title[0].value == "Fleet"
    overview = app.dataframe[0].value
    assert len(overview) == len(DEVICES) and {"bundle", "p95_us", "last_seen"} <= set(overview.columns)
    assert "SLO objective 10,000 µs" in texts(app, "caption")
    assert charts(app) == 3 + 3  # latency, throughput, flag rate; the class shares of each of the three bundles
    assert "Predictions per bundle, last 6 hours" in {item.value for item in app.subheader}
    assert "SIMULATED" not in texts(app, "warning") and not overview["simulated"].any()


def test_simulated_devices_are_labelled_on_every_fleet_page(dashboard_fixture, use_settings, tmp_path) -> None:
    """A device whose uploads came from a simulator is labelled so wherever it is shown: a banner on the pages
    that show it (how many of the devices shown are simulated) and its row on the Fleet page."""
    import dataclasses
    import sqlite3

    from dashboard.collector.store import SqliteStore

    database = tmp_path / "telemetry.sqlite3"
    with sqlite3.connect(dashboard_fixture.settings.database) as source, sqlite3.connect(database) as copy:
        source.backup(copy)
    with SqliteStore(database) as store:
        store.mark_simulated(DEVICES["noisy"])
    use_settings(dataclasses.replace(dashboard_fixture.settings, database=database))
    app = run_page("fleet")
    assert f"SIMULATED: 1 of the {len(DEVICES)} devices shown here come from a simulator" in texts(app, "warning")
    overview = app.dataframe[0].value
    assert overview["simulated"].sum() == 1
    assert f"SIMULATED: 1 of the {len(DEVICES)} devices" in texts(run_page("alerts"), "warning")
    device = run_page("device", query={"device": DEVICES["noisy"]})
    assert "SIMULATED: 1 of the 1 device shown here" in texts(device, "warning")
    assert "SIMULATED" not in texts(run_page("device", query={"device": DEVICES["healthy"]}), "warning")
    drift = run_page("drift", {"device": DEVICES["noisy"]})
    assert "SIMULATED: 1 of the 1 device shown here" in texts(drift, "warning")
    # a bundle's scope counts the devices whose rows it compares, not every device of the store
    drift.selectbox[0].set_value(f"all devices on bundle {SCENARIO}").run()
    on_bundle = {device for device, records in dashboard_fixture.records.items()
                 if any(record.get("bundle_sha256") == read_bundle(dashboard_fixture.root / "bundles" / SCENARIO)
                        .manifest_sha256 for record in records)}
    assert DEVICES["noisy"] in on_bundle and len(on_bundle) < len(DEVICES)
    assert f"SIMULATED: 1 of the {len(on_bundle)} devices shown here" in texts(drift, "warning")


def test_drift_page_for_the_drifted_device(fixture_settings: DashboardSettings) -> None:
    app = run_page("drift", {"device": DEVICES["drifted"]})
    assert app.title[0].value == "Drift" and app.selectbox[0].value == f"device {DEVICES['drifted']}"
    table = app.dataframe[0].value
    assert (table["status"] == "alert").sum() >= 25 and set(table["method"]) == {"KS test", "chi-square test"}
    assert charts(app) == 2


def test_drift_page_for_a_busy_device_uses_distances(fixture_settings: DashboardSettings) -> None:
    app = run_page("drift", {"device": DEVICES["busy"]})
    assert "JS + Wasserstein" in set(app.dataframe[0].value["method"])
    assert "alert" not in set(app.dataframe[0].value["status"])


def test_drift_page_across_a_bundle(fixture_settings: DashboardSettings) -> None:
    app = AppTest.from_file(APP, default_timeout=TIMEOUT_S)
    app.switch_page("pages/drift.py").run()
    app.selectbox[0].select(f"all devices on bundle {SCENARIO}").run()
    assert not app.exception and len(app.dataframe[0].value) > 30


@pytest.mark.parametrize(("device", "message"), [("bare", "has no reference profile"),
                                                 ("orphan", "not among the published bundles")])
def test_drift_page_without_a_reference_profile_says_so(fixture_settings, device: str, message: str) -> None:
    app = run_page("drift", {"device": DEVICES[device]})
    assert message in texts(app, "warning") and not app.dataframe


def test_alerts_page_links_alerts_to_devices(fixture_settings: DashboardSettings) -> None:
    app = run_page("alerts")
    assert app.title[0].value == "Alerts"
    markdown = texts(app, "markdown")
    assert "latency SLO" in markdown and "drift" in markdown and "signal quality" in markdown
    links = {link.proto.query_string for link in app.get("page_link")}
    for name in ("regressed", "drifted", "noisy"):
        assert f"device={DEVICES[name]}" in links
    assert len(app.dataframe[0].value) == len(DEVICES)  # burn rates per device


def test_device_page_shows_the_timeline_and_alerts(fixture_settings: DashboardSettings) -> None:
    app = run_page("device", {"device": DEVICES["regressed"]})
    assert app.title[0].value == "Device" and app.selectbox[0].value == DEVICES["regressed"]
    assert "latency SLO" in texts(app, "error", "warning") and "burn" in texts(app, "error", "warning")
    assert {"Timeline", "Answers", "Burn rates", "Drift"} <= {item.value for item in app.subheader}
    assert charts(app) == 5  # latency, answers per bucket, confidence, flag rate, class shares
    assert "answer" in app.dataframe[-1].value.columns


def test_device_page_for_an_unknown_device(fixture_settings: DashboardSettings) -> None:
    app = run_page("device", {"device": "f" * 32})
    assert "unknown device" in texts(app, "error") and app.selectbox[0].value in DEVICES.values()


@pytest.mark.parametrize("page", ["fleet", "drift", "alerts", "device"])
def test_live_pages_on_an_empty_store(empty_settings, use_settings, page: str) -> None:
    use_settings(empty_settings)
    app = run_page(page)
    assert "no telemetry yet" in texts(app, "info")


@pytest.mark.parametrize("page", ["fleet", "drift", "alerts", "device"])
def test_live_pages_without_a_database(empty_settings, use_settings, tmp_path: Path, page: str) -> None:
    use_settings(DashboardSettings(database=tmp_path / "missing.sqlite3"))
    app = run_page(page)
    assert "no telemetry database" in texts(app, "info")
    assert not (tmp_path / "missing.sqlite3").exists()


def test_missing_benchmark_file(empty_settings, use_settings) -> None:
    use_settings(empty_settings)
    assert NO_RESULTS_MESSAGE in texts(run_page("benchmarks"), "info")


def test_builds_without_bundles_or_artefacts(dashboard_fixture, empty_settings, use_settings) -> None:
    use_settings(empty_settings)
    assert "no bundles" in texts(run_page("builds"), "info")
    use_settings(DashboardSettings(artifacts=empty_settings.artifacts, bundles=dashboard_fixture.settings.bundles))
    app = run_page("builds")
    assert "is not in" in texts(app, "info") and "clinical metrics" in texts(app, "info")


@pytest.fixture
def kind_settings(kind_fixture, use_settings) -> DashboardSettings:
    use_settings(kind_fixture.settings)
    return kind_fixture.settings


def metrics(app: AppTest) -> dict[str, str]:
    return {metric.label: metric.value for metric in app.metric}


def test_fleet_page_shows_each_kinds_answers(kind_settings: DashboardSettings) -> None:
    app = run_page("fleet")
    bundles = {item.value.strip("*") for item in app.markdown if item.value.startswith("**")}
    assert {*KIND_BUNDLES.values(), "future-bundle (not published here)"} <= bundles
    assert "alarm rate" in metrics(app) and metrics(app)["alarm threshold (score ≥)"] == "1"
    assert "is not one this dashboard can chart" in texts(app, "info")
    statistics = [frame.value for frame in app.dataframe if "p95" in frame.value.columns]
    assert set(statistics[0]["output"]) == {"qt_interval", "heart_rate_estimate"}
    assert "not judged" in texts(app, "caption")
    # the hand-built bundles' manifests say their data are synthetic: every device on one of them is named in red
    banner = texts(app, "error")
    assert "NOT VALIDATED ON REAL DATA" in banner and "not for patients" in banner
    assert all(name in banner for name in KIND_BUNDLES.values()) and "future-bundle" not in banner


@pytest.mark.parametrize(("device", "chart_count", "shown"), [
    ("kind-regression", 1 + 1 + 1 + 1, "qt_interval"),  # latency, values per bucket, flag rate, value distribution
    # latency, answers per bucket, scores per bucket with the threshold, flag rate, score histogram
    ("kind-anomaly", 1 + 1 + 1 + 1 + 1, "alarm rate"),
    # latency, labels per bucket, scores per bucket, flag rate, positive rates
    ("kind-multilabel", 1 + 1 + 1 + 1 + 1, "at or above its own threshold"),
    ("kind-future", 1 + 1, "is not one this dashboard can chart"),  # latency, flag rate
])
def test_device_page_for_every_kind(kind_settings, device: str, chart_count: int, shown: str) -> None:
    app = run_page("device", {"device": KIND_DEVICES[device]})
    assert charts(app) == chart_count
    page_text = texts(app, "info", "caption", "markdown") + " ".join(metrics(app)) + str(app.dataframe[-1].value)
    assert shown in page_text
    answers = app.dataframe[-1].value["answer"]
    assert answers.str.startswith("not judged (input_not_finite)").any() or device == "kind-future"


@pytest.mark.parametrize("task", list(KIND_BUNDLES))
def test_drift_page_for_every_kind(kind_settings, task: str) -> None:
    app = run_page("drift", {"device": KIND_DEVICES[f"kind-{task}"]})
    names = set(app.dataframe[0].value["name"])
    expected = {"regression": "value qt_interval", "anomaly": "anomaly score", "multilabel": "score af"}[task]
    assert expected in names and "heart_rate" in names
    assert "Answers in the window" in {item.value for item in app.subheader}
    app.selectbox[1].select(expected).run()
    assert not app.exception and charts(app) >= 2


def test_drift_page_across_a_bundle_of_another_kind_and_for_an_unknown_kind(kind_settings) -> None:
    app = AppTest.from_file(APP, default_timeout=TIMEOUT_S)
    app.switch_page("pages/drift.py").run()
    app.selectbox[0].select(f"all devices on bundle {KIND_BUNDLES['anomaly']}").run()
    assert not app.exception and "anomaly score" in set(app.dataframe[0].value["name"])
    app = run_page("drift", {"device": KIND_DEVICES["kind-future"]})
    assert "not among the published bundles" in texts(app, "warning")


def test_builds_and_alerts_pages_with_bundles_of_every_kind(kind_settings) -> None:
    app = run_page("builds")
    assert [header.value for header in app.header] == sorted(KIND_BUNDLES.values())
    assert [item.value for item in app.subheader].count("How the device decides") == 3
    assert "record no macro-F1" in texts(app, "info")
    rules = "\n".join(str(frame.value) for frame in app.dataframe)
    assert "threshold af" in rules and "unit of qt_interval" in rules and "target false-alarm rate" in rules
    run_page("alerts")


def test_builds_page_shows_windowed_bundles(tmp_path: Path, use_settings) -> None:
    """Bundles on the windowed stream (signal_window inputs, as eeg-artifact and ppg-quality) are shown whole."""
    from runtime.contract import TaskKind
    from tests.runtime.window_bundles import build_window_bundle, window_spec

    build_window_bundle(tmp_path / "bundles" / "eeg-like", TaskKind.MULTICLASS, window_spec(channels=2))
    ppg = build_window_bundle(tmp_path / "bundles" / "ppg-like", TaskKind.BINARY)
    manifest = json.loads((ppg / "manifest.json").read_text())  # as ppg-quality's: real test data, trained on
    manifest["data"] |= {"synthetic": False,  # real rest PPG with SYNTHETIC motion artefacts added
                         "provenance": {"synthetic": False, "synthetic_training_data": "SYNTHETIC motion artefacts",
                                        "test_resampling": {"unit": "recording × 10-s block", "groups": 3,
                                                            "samples": 40, "note": "whole groups resampled"}}}
    (ppg / "manifest.json").write_text(json.dumps(manifest, indent=1))
    use_settings(DashboardSettings(artifacts=tmp_path / "artifacts", bundles=tmp_path / "bundles"))
    app = run_page("builds")
    assert [header.value for header in app.header] == ["eeg-like", "ppg-like"]
    eeg_caption, ppg_caption = (next(text for text in texts(app, "caption").splitlines() if f"{kind} bundle" in text)
                                for kind in ("multiclass", "binary"))
    assert eeg_caption.endswith(" · **synthetic data**")  # the hand-built bundle's data are synthetic
    assert ppg_caption.endswith(" · **synthetic training data**") and "**synthetic data**" not in ppg_caption
    # what the signed manifest says about real data, above the shipped variant: the synthetic one is NOT validated
    # (red, no green "shipped"); the other states no evidence verdict (a warning)
    assert "NOT validated on real data: its training and test data are synthetic" in texts(app, "error")
    assert "A device refuses this bundle" in texts(app, "error")
    assert "Real-data validation not stated" in texts(app, "warning")
    assert not app.success and sum("shipped **" in str(item.value) for item in app.info) == 2
    # the intervals say how they were resampled: whole groups of correlated windows
    assert ("95 % CIs resample 3 whole groups of the 40 test samples (one group: recording × 10-s block)"
            in texts(app, "caption"))
    assert not [warning.value for warning in app.warning if "cannot be shown" in str(warning.value)]
    assert [item.value for item in app.subheader].count("How the device decides") == 2
