"""What devices answered, per task kind: summaries and drift inputs computed from telemetry frames, checked
against numpy on the hand-built kind fleet (multilabel, regression, anomaly, an unknown kind, schema 1)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dashboard.data.builds import decision_rule_frame
from dashboard.data.bundles import read_catalog
from dashboard.data.telemetry import TelemetryReader
from dashboard.monitoring.checks import device_baseline_drift, device_drift
from dashboard.monitoring.drift import CLASS_ROW, CONFIDENCE_ROW, DriftStatus
from dashboard.monitoring.predictions import (
    ANOMALY_SCORE_ROW,
    answer_texts,
    by_bundle,
    judged_mask,
    output_numbers,
    summarise,
    task_of,
)
from tests.dashboard.conftest import KIND_BUNDLES
from tests.dashboard.fixture_data import DEVICES, KIND_DEVICES, UNJUDGED_EVERY


@pytest.fixture(scope="module")
def kinds(kind_fixture):
    reader = TelemetryReader(kind_fixture.settings.database)
    return kind_fixture, reader, read_catalog(kind_fixture.settings.bundles)


def records_of(kinds, device: str) -> pd.DataFrame:
    _, reader, _ = kinds
    return reader.records(KIND_DEVICES[device], with_features=True)


def inserted(kinds, device: str) -> list[dict]:
    return kinds[0].records[KIND_DEVICES[device]]


def test_the_reader_gives_task_result_and_the_flagged_records_without_one(kinds):
    records = records_of(kinds, "kind-regression")
    assert set(records["task"]) == {"regression"} and records["predicted_class"].isna().all()
    assert records["result"].iloc[0] == inserted(kinds, "kind-regression")[0]["result"]
    unjudged = ~judged_mask(records)
    assert unjudged.sum() == len(records) // UNJUDGED_EVERY and records.loc[unjudged, "result"].isna().all()
    anomaly = records_of(kinds, "kind-anomaly")
    assert set(anomaly["predicted_class"].dropna()) <= {"normal", "anomalous"} and anomaly["confidence"].isna().all()


def test_regression_summary_is_each_targets_value_distribution_with_units(kinds):
    _, _, catalog = kinds
    records = records_of(kinds, "kind-regression")
    summary = summarise(records, catalog.by_name(KIND_BUNDLES["regression"]))
    assert summary.task == "regression" and summary.unjudged == len(records) // UNJUDGED_EVERY
    statistics = summary.statistics.set_index("output")
    values = np.array([record["result"]["values"]["qt_interval"] for record in inserted(kinds, "kind-regression")
                       if record["result"]])
    assert statistics.loc["qt_interval", "unit"] == "ms" and statistics.loc["heart_rate_estimate", "unit"] == "bpm"
    assert statistics.loc["qt_interval", "count"] == len(values)
    assert statistics.loc["qt_interval", "mean"] == pytest.approx(values.mean())
    assert statistics.loc["qt_interval", "p95"] == pytest.approx(np.quantile(values, 0.95))


def test_anomaly_summary_is_the_score_distribution_alarm_rate_and_threshold(kinds):
    _, _, catalog = kinds
    records = records_of(kinds, "kind-anomaly")
    summary = summarise(records, catalog.by_name(KIND_BUNDLES["anomaly"]))
    answered = [record["result"] for record in inserted(kinds, "kind-anomaly") if record["result"]]
    assert summary.alarm_rate == pytest.approx(np.mean([result["alarm"] for result in answered]))
    assert 0 < summary.alarm_rate < 0.5 and summary.threshold == 1.0
    assert summary.shares.set_index("class")["count"].to_dict() == {
        "normal": sum(not result["alarm"] for result in answered),
        "anomalous": sum(result["alarm"] for result in answered)}
    assert len(summary.values) == len(answered) and set(summary.values["output"]) == {ANOMALY_SCORE_ROW}


def test_multilabel_summary_is_each_labels_positive_rate(kinds):
    _, _, catalog = kinds
    records = records_of(kinds, "kind-multilabel")
    summary = summarise(records, catalog.by_name(KIND_BUNDLES["multilabel"]))
    answered = [record["result"] for record in inserted(kinds, "kind-multilabel") if record["result"]]
    rates = summary.shares.set_index("label")["share"]
    assert list(rates.index) == ["af", "lbbb", "rbbb"]
    for label in rates.index:
        assert rates[label] == pytest.approx(np.mean([label in result["labels"] for result in answered]))


def test_an_unknown_task_kind_is_counted_with_a_message_not_an_exception(kinds):
    records = records_of(kinds, "kind-future")
    summary = summarise(records, None)
    assert summary.task == "segmentation" and "is not one this dashboard can chart" in summary.message
    assert output_numbers(records, "segmentation").shape == (len(records) - len(records) // UNJUDGED_EVERY, 0)
    report = device_drift(records, kinds[2], kinds[0].now)
    assert "not among the published bundles" in report.message
    baseline = device_baseline_drift(records, kinds[0].now)
    assert {result.name for result in baseline.results} == {"heart_rate", "qrs_width", "st_level"}
    assert answer_texts(records.head(1), "segmentation") == ["segmentation result"]


@pytest.mark.parametrize(("device", "outputs"), [
    ("kind-regression", {"value qt_interval", "value heart_rate_estimate"}),
    ("kind-anomaly", {ANOMALY_SCORE_ROW, CLASS_ROW}),
    ("kind-multilabel", {"score af", "score lbbb", "score rbbb"}),
])
def test_drift_compares_the_kinds_outputs_with_the_reference_profile(kinds, device, outputs):
    fixture, _, catalog = kinds
    report = device_drift(records_of(kinds, device), catalog, fixture.now)
    names = {result.name for result in report.results}
    assert outputs <= names and CONFIDENCE_ROW not in names
    assert (CLASS_ROW in names) == (device == "kind-anomaly")
    assert report.status is not DriftStatus.ALERT  # the devices behave like the reference profile
    baseline = device_baseline_drift(records_of(kinds, device), fixture.now)
    assert outputs <= {result.name for result in baseline.results}


def test_bundles_are_grouped_and_described_by_their_contract(kinds):
    _, reader, catalog = kinds
    groups = by_bundle(reader.records(), catalog)
    expected = [*KIND_BUNDLES.values(), "future-bundle (not published here)"]
    assert sorted(name for name, _, _ in groups) == sorted(expected)
    assert {task_of(records, bundle) for _, bundle, records in groups} == {*KIND_BUNDLES, "segmentation"}
    rules = decision_rule_frame(catalog.by_name(KIND_BUNDLES["anomaly"])).set_index("setting")["value"]
    assert "score ≥ 1" in rules["decision"] and rules["target false-alarm rate"] == "1.00%"
    units = decision_rule_frame(catalog.by_name(KIND_BUNDLES["regression"])).set_index("setting")["value"]
    assert units["unit of qt_interval"] == "ms"


def test_schema_1_records_read_as_a_classifier(dashboard_fixture):
    records = TelemetryReader(dashboard_fixture.settings.database).records(DEVICES["orphan"])
    legacy = dashboard_fixture.records[DEVICES["orphan"]]
    assert records["task"].isna().all() and list(records["predicted_class"]) == [r["predicted_class"] for r in legacy]
    assert judged_mask(records).all() and task_of(records) == "multiclass"
    summary = summarise(records)
    assert summary.shares["count"].sum() == len(legacy) and summary.unjudged == 0
    assert answer_texts(records.head(1), "multiclass")[0].startswith(legacy[0]["predicted_class"] + " (")
