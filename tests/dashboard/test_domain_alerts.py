"""The input-domain alert: a device refusing inputs outside its bundle's validated domain is named on the Alerts page.

Tabular rows are always records (a refused row carries the flag), so the rule on records and on the device's own
minute aggregates must give the same verdicts. A beat the device refuses has no record at all: only the aggregates'
``no_result`` counts show it, so there the aggregate rule fires and the record rule cannot.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from dashboard.data.bundles import BundleCatalog
from dashboard.monitoring import aggregate_checks, aggregate_fleet, alerts, checks
from dashboard.monitoring.aggregate_window import aggregate_frame
from dashboard.monitoring.alerts import CRITICAL, WARNING, AlertConfig
from runtime.contract import TaskKind
from runtime.events import BeatEvent, RowPrediction
from runtime.results import OUT_OF_DOMAIN, ClassResult
from runtime.runner import telemetry_record
from runtime.telemetry.aggregates import AggregateIdentity, AggregationPlan, MinuteAggregator
from runtime.telemetry.records import pseudonymous_device_id, utc_timestamp

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
LABELS = ("benign", "malignant")
BUNDLE = SimpleNamespace(bundle_id="domain-1", manifest_sha256="7" * 64, variant="fp32",
                         provider="CPUExecutionProvider", output=SimpleNamespace(task=TaskKind.BINARY))
CONFIG = AlertConfig()
SHARES = {"inside": 0.0, "stray": 0.004, "rescaled": 0.03, "wrong-units": 0.4}  # share of inputs refused


def device_id(name: str) -> str:
    return pseudonymous_device_id(f"SN-{name}", "domain-alerts")


def _moments(seed: int, every_s: float = 5.0, hours: float = 2.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    start = NOW.timestamp() - hours * 3600
    moments = start + 0.3 + np.arange(int(hours * 3600 / every_s)) * every_s + rng.uniform(0, 1.0, int(
        hours * 3600 / every_s))
    return moments[moments < NOW.timestamp()]


def rows(share: float, seed: int) -> list[tuple[RowPrediction, float]]:
    """A tabular device's rows, ``share`` of them refused as outside the domain in the last 50 minutes."""
    rng = np.random.default_rng(seed)
    moments = _moments(seed)
    recent = NOW.timestamp() - moments < 50 * 60
    refused = recent & (rng.random(len(moments)) < share)
    events = []
    for index, (moment, outside) in enumerate(zip(moments.tolist(), refused.tolist(), strict=True)):
        if outside:
            events.append((RowPrediction(index, "binary", None, 40.0, (OUT_OF_DOMAIN,),
                                         out_of_domain=("mean_area",)), moment))
        else:
            events.append((RowPrediction(index, "binary", ClassResult("benign", 0.9, {"benign": 0.9,
                                                                                      "malignant": 0.1}), 40.0),
                           moment))
    return events


def beats(share: float, seed: int) -> list[tuple[BeatEvent, float]]:
    """An ECG device's beats, ``share`` refused (no class, flag ``out_of_domain``) in the last 50 minutes."""
    rng = np.random.default_rng(seed)
    moments = _moments(seed, every_s=1.0)
    start = float(moments[0])
    refused = (NOW.timestamp() - moments < 50 * 60) & (rng.random(len(moments)) < share)
    events = []
    for moment, outside in zip(moments.tolist(), refused.tolist(), strict=True):
        if outside:
            events.append((BeatEvent(moment - start, None, None, {}, 60.0, None, (OUT_OF_DOMAIN,), False, 0.0), moment))
        else:
            events.append((BeatEvent(moment - start, "non-V", 0.95, {}, 60.0, None, (), False, 900.0), moment))
    return events


def raw_frame(fleet: dict[str, list]) -> pd.DataFrame:
    """What ``TelemetryReader.records`` gives the record rules: one record per row, per classified beat."""
    found = []
    for name, events in fleet.items():
        for event, moment in events:
            if isinstance(event, BeatEvent) and not event.classified:  # as the runner: no record for it
                continue
            record = telemetry_record(BUNDLE, event)
            found.append({"device_id": device_id(name),
                          "time": utc_timestamp(datetime.fromtimestamp(moment, UTC)),
                          "latency_us": record["latency_us"], "quality_flags": record["quality_flags"]})
    frame = pd.DataFrame(found)
    frame["time"] = pd.to_datetime(frame["time"], utc=True, format="ISO8601")
    return frame


def aggregates(fleet: dict[str, list]) -> pd.DataFrame:
    """Each device's own minute aggregates, fed its events in 10-second chunks."""
    payloads = []
    for name, events in fleet.items():
        aggregator = MinuteAggregator(AggregateIdentity.of(BUNDLE, device_id(name)),
                                      AggregationPlan("binary", LABELS), origin_s=events[0][1])
        for start in range(0, len(events), 10):
            chunk = events[start:start + 10]
            payloads += aggregator.add([event for event, _ in chunk], [moment for _, moment in chunk]).aggregates
        payloads += aggregator.flush()
    return aggregate_frame(payloads)


def _verdicts(found) -> set[tuple[str, str, str]]:
    return {(alert.kind, alert.severity, alert.device_id) for alert in found}


def test_rows_outside_the_domain_alert_alike_on_records_and_aggregates() -> None:
    fleet = {name: rows(share, seed) for seed, (name, share) in enumerate(SHARES.items())}
    raw = alerts.domain_alerts(raw_frame(fleet), NOW, CONFIG)
    aggregated = aggregate_checks.domain_alerts(aggregates(fleet), NOW, CONFIG)
    assert _verdicts(aggregated) == _verdicts(raw) == {
        ("input domain", WARNING, device_id("rescaled")), ("input domain", CRITICAL, device_id("wrong-units"))}
    assert sorted(alert.value for alert in aggregated) == pytest.approx(sorted(alert.value for alert in raw))
    assert [alert.message for alert in sorted(aggregated, key=lambda alert: alert.device_id)] == [
        alert.message for alert in sorted(raw, key=lambda alert: alert.device_id)]


def test_refused_beats_alert_on_aggregates_which_records_cannot_show() -> None:
    fleet = {"ecg-inside": beats(0.0, 11), "ecg-outside": beats(0.3, 12)}
    frame = aggregates(fleet)
    (alert,) = aggregate_checks.domain_alerts(frame, NOW, CONFIG)
    assert (alert.kind, alert.severity, alert.device_id) == ("input domain", CRITICAL, device_id("ecg-outside"))
    last_hour = frame[frame["device_id"] == device_id("ecg-outside")]
    last_hour = last_hour[last_hour["minute"] >= pd.Timestamp(NOW - timedelta(hours=1))]
    refused = sum(payload["no_result"]["quality_flags"].get(OUT_OF_DOMAIN, 0) for payload in last_hour["payload"])
    inputs = int(last_hour["records"].sum()) + sum(payload["no_result"]["count"] for payload in last_hour["payload"])
    assert refused > 0 and alert.value == pytest.approx(refused / inputs)
    assert f"({refused:,} of {inputs:,})" in alert.message and "validated" in alert.message
    assert alerts.domain_alerts(raw_frame(fleet), NOW, CONFIG) == []  # the refused beats never became records


def test_fleet_alerts_carry_the_domain_rule_on_both_paths() -> None:
    fleet = {"wrong-units": rows(0.4, 3)}
    assert "input domain" in {alert.kind for alert in aggregate_checks.fleet_alerts(aggregates(fleet), NOW)}
    assert "input domain" in {alert.kind for alert in checks.fleet_alerts(raw_frame(fleet), None, NOW)}


def test_a_device_with_too_few_inputs_gets_no_domain_verdict() -> None:
    fleet = {"wrong-units": rows(0.4, 3)}
    frame = raw_frame(fleet)
    sparse = frame.tail(CONFIG.quality_minimum_events - 1)
    assert sparse["quality_flags"].map(lambda flags: OUT_OF_DOMAIN in flags).sum() > 0
    assert alerts.domain_alerts(sparse, NOW, CONFIG) == []
    assert alerts.domain_alert("d", 5, CONFIG.quality_minimum_events - 1, CONFIG) is None
    assert alerts.domain_alert("d", 0, 10_000, CONFIG) is None
    assert alerts.domain_alert("d", 99, 10_000, CONFIG) is None  # under 1 %
    assert alerts.domain_alert("d", 100, 10_000, CONFIG).severity == WARNING
    assert alerts.domain_alert("d", 1_000, 10_000, CONFIG).severity == CRITICAL


def test_refused_rows_raise_the_domain_alert_and_not_a_signal_quality_one() -> None:
    """A refused row's flag is the input-domain rule's: the signal-quality rule (electrodes, noise) leaves it out on
    both paths, so one cause gives one alert."""
    fleet = {"wrong-units": rows(0.4, 3)}
    for found in (checks.fleet_alerts(raw_frame(fleet), None, NOW), aggregate_checks.fleet_alerts(aggregates(fleet),
                                                                                                   NOW)):
        assert [(alert.kind, alert.severity) for alert in found] == [("input domain", CRITICAL)]


def test_the_fleet_page_names_a_refusing_device_by_its_input_domain_not_as_noisy(tmp_path) -> None:
    """The Fleet page's status and flagged share follow the alert rules: a device refusing rows (or beats) outside
    the domain is ``domain`` with its refused share, and its refusals are not signal-quality flags ("noisy")."""
    fleet = {name: rows(share, seed) for seed, (name, share) in enumerate(SHARES.items())}
    fleet["ecg-outside"] = beats(0.3, 12)
    frame = aggregates(fleet)
    hour = frame[frame["minute"] >= pd.Timestamp(NOW - timedelta(hours=1))]
    devices = pd.DataFrame({"device_id": [device_id(name) for name in fleet], "last_seen": pd.Timestamp(NOW),
                            "clock_ahead_min": np.nan, "dropped": 0, "sends": "aggregates"})
    overview = aggregate_fleet.device_overview(devices, hour, BundleCatalog(tmp_path), NOW, timedelta(hours=1))
    rows_by_name = overview.set_index("device_id").rename(index={device_id(name): name for name in fleet})
    assert rows_by_name["status"].to_dict() == {"inside": "ok", "stray": "ok", "rescaled": "domain",
                                                "wrong-units": "domain", "ecg-outside": "domain"}
    assert (rows_by_name["flagged_share"] == 0).all()  # refusals are not signal-quality flags
    shares = {alert.device_id: alert.value for alert in aggregate_checks.domain_alerts(frame, NOW, CONFIG)}
    for name in ("rescaled", "wrong-units", "ecg-outside"):
        assert rows_by_name.loc[name, "outside_share"] == pytest.approx(shares[device_id(name)])
    assert rows_by_name.loc["inside", "outside_share"] == 0
    series = aggregate_fleet.group_series(hour, timedelta(minutes=5), hour["device_id"])
    assert (series["flagged_share"] == 0).all()  # the flag-rate chart: signal quality only
