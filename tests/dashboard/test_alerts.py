"""Alert rules on constructed latency series, drift results and quality flags; and on the fixture fleet."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from dashboard.data.bundles import read_catalog
from dashboard.data.telemetry import TelemetryReader
from dashboard.monitoring.alerts import (
    CRITICAL,
    WARNING,
    Alert,
    AlertConfig,
    alerts_frame,
    burn_rate,
    burn_rates,
    card_order,
    drift_alert,
    kind_summary,
    latency_alerts,
    quality_alerts,
    signal_loss_alerts,
)
from dashboard.monitoring.checks import fleet_alerts
from dashboard.monitoring.drift import DriftResult, DriftStatus
from tests.dashboard.fixture_data import DEVICES

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
CONFIG = AlertConfig(latency_objective_us=10_000.0, slo_target=0.99)
FAST, SLOW = 1_000.0, 50_000.0  # a healthy and a too-slow inference


def series(
    slow_share: float, slow_for: timedelta, *, recovered_for: timedelta = timedelta(0), every_s: float = 10.0,
    device_id: str = "a" * 32, seed: int = 0,
) -> pd.DataFrame:
    """Seven hours of inferences every ``every_s`` seconds; ``slow_share`` of them slow during ``slow_for``
    before ``recovered_for`` ago, all fast otherwise."""
    rng = np.random.default_rng(seed)
    ages = np.arange(0, 7 * 3600, every_s)[::-1]
    times = [NOW - timedelta(seconds=float(age)) for age in ages]
    in_episode = (ages >= recovered_for.total_seconds()) & (ages < (recovered_for + slow_for).total_seconds())
    slow = in_episode & (rng.random(len(ages)) < slow_share)
    return pd.DataFrame({
        "device_id": device_id, "time": pd.to_datetime(times, utc=True),
        "latency_us": np.where(slow, SLOW, FAST), "quality_flags": [[] for _ in ages],
    })


def test_burn_rate_is_the_slow_share_over_the_budget() -> None:
    records = series(1.0, timedelta(minutes=30))  # the last 30 minutes all slow
    assert burn_rate(records, NOW, timedelta(minutes=30), CONFIG) == pytest.approx(100.0)
    assert burn_rate(records, NOW, timedelta(hours=1), CONFIG) == pytest.approx(50.0)
    assert burn_rate(records, NOW - timedelta(hours=1), timedelta(minutes=30), CONFIG) == 0.0


def test_a_window_with_too_few_inferences_has_no_burn_rate() -> None:
    sparse = series(1.0, timedelta(hours=7), every_s=60.0)  # five inferences in five minutes
    assert burn_rate(sparse, NOW, timedelta(minutes=5), CONFIG) is None
    (alert,) = latency_alerts(sparse, NOW, CONFIG)  # the fast rule has no 5-minute verdict; the slow rule does
    assert alert.message.startswith("slow burn")


def test_healthy_latency_fires_nothing() -> None:
    records = series(0.005, timedelta(hours=7))  # 0.5 % slow: half the budget
    assert latency_alerts(records, NOW, CONFIG) == []
    rates = burn_rates(records, NOW, CONFIG)
    assert set(rates.columns) == {"device_id", "burn_5 min", "burn_30 min", "burn_1 h", "burn_6 h"}
    assert (rates.drop(columns="device_id").to_numpy(dtype=float) < CONFIG.slow.burn_rate).all()


def test_a_sharp_regression_pages_through_the_fast_rule() -> None:
    (alert,) = latency_alerts(series(0.5, timedelta(minutes=70)), NOW, CONFIG)
    assert alert.severity == CRITICAL and alert.device_id == "a" * 32
    assert alert.message.startswith("fast burn (page)") and alert.value >= CONFIG.fast.burn_rate


def test_a_slow_leak_files_a_ticket_through_the_slow_rule_only() -> None:
    (alert,) = latency_alerts(series(0.08, timedelta(hours=7), seed=1), NOW, CONFIG)  # 8× burn everywhere
    assert alert.severity == WARNING and alert.message.startswith("slow burn (ticket)")
    assert CONFIG.slow.burn_rate <= alert.value < CONFIG.fast.burn_rate


def test_the_short_window_stops_an_alert_once_the_problem_is_over() -> None:
    recovered = series(1.0, timedelta(minutes=40), recovered_for=timedelta(minutes=10))
    assert burn_rate(recovered, NOW, timedelta(hours=1), CONFIG) >= CONFIG.fast.burn_rate  # long window still hot
    assert burn_rate(recovered, NOW, timedelta(minutes=5), CONFIG) == 0.0
    alerts = latency_alerts(recovered, NOW, CONFIG)
    assert [alert.message.split(" (")[0] for alert in alerts] == ["slow burn"]  # 30 min window still burning
    long_ago = series(1.0, timedelta(minutes=40), recovered_for=timedelta(minutes=45))
    assert latency_alerts(long_ago, NOW, CONFIG) == []


def test_alerts_are_per_device() -> None:
    records = pd.concat([series(0.005, timedelta(hours=7), device_id="b" * 32),
                         series(0.5, timedelta(minutes=70), device_id="c" * 32)])
    assert [alert.device_id for alert in latency_alerts(records, NOW, CONFIG)] == ["c" * 32]


def test_drift_alerts_name_the_device_and_the_features() -> None:
    results = [
        DriftResult("level", 500, "KS test", psi=0.4, drift=True, status=DriftStatus.ALERT),
        DriftResult("noise", 500, "KS test", psi=0.12, drift=False, status=DriftStatus.WARN),
        DriftResult("predicted class", 500, "chi-square test", psi=0.01, status=DriftStatus.OK),
    ]
    alert = drift_alert("d" * 32, results)
    assert alert.device_id == "d" * 32 and alert.severity == CRITICAL and alert.kind == "drift"
    assert "level (PSI 0.40)" in alert.message and "noise" not in alert.message
    assert drift_alert("d" * 32, results[1:]) is None  # one borderline row among many is chance, not drift
    second = DriftResult("spread", 500, "KS test", psi=0.15, drift=True, status=DriftStatus.WARN)
    warning = drift_alert("d" * 32, [*results[1:], second])
    assert warning.severity == WARNING and "noise" in warning.message and "spread" in warning.message
    assert drift_alert("d" * 32, results[2:]) is None
    assert drift_alert("d" * 32, [DriftResult("level", 10, "—")]) is None  # insufficient data is no alert


def with_flags(share: float, count: int = 120, device_id: str = "e" * 32) -> pd.DataFrame:
    flagged = int(share * count)
    flags = [["flat_line"]] * flagged + [[]] * (count - flagged)
    times = [NOW - timedelta(seconds=30 * index) for index in range(count)]
    return pd.DataFrame({"device_id": device_id, "time": pd.to_datetime(times, utc=True), "quality_flags": flags,
                         "latency_us": FAST})


@pytest.mark.parametrize(("share", "severity"), [(0.0, None), (0.03, None), (0.1, WARNING), (0.3, CRITICAL)])
def test_signal_quality_alerts_name_the_device(share: float, severity: str | None) -> None:
    alerts = quality_alerts(with_flags(share), NOW, CONFIG)
    if severity is None:
        assert alerts == []
        return
    (alert,) = alerts
    assert alert.severity == severity and alert.device_id == "e" * 32 and "flat_line" in alert.message


def test_quality_needs_enough_recent_records() -> None:
    assert quality_alerts(with_flags(1.0, count=10), NOW, CONFIG) == []
    assert quality_alerts(with_flags(1.0), NOW + timedelta(hours=2), CONFIG) == []  # all older than the window


def test_alerts_frame_puts_critical_first() -> None:
    alerts = quality_alerts(pd.concat([with_flags(0.1, device_id="f" * 32), with_flags(0.3)]), NOW, CONFIG)
    assert list(alerts_frame(alerts)["severity"]) == [CRITICAL, WARNING]
    assert alerts_frame([]).empty


def test_fixture_fleet_alerts_point_at_the_right_devices(dashboard_fixture) -> None:
    settings = dashboard_fixture.settings
    records = TelemetryReader(settings.database).records(with_features=True)
    alerts = fleet_alerts(records, read_catalog(settings.bundles), dashboard_fixture.now)
    by_kind = {(alert.kind, alert.device_id) for alert in alerts}
    assert ("latency SLO", DEVICES["regressed"]) in by_kind
    assert ("drift", DEVICES["drifted"]) in by_kind
    assert ("signal quality", DEVICES["noisy"]) in by_kind
    assert not any(alert.device_id in (DEVICES["healthy"], DEVICES["busy"]) for alert in alerts)
    fast = [alert for alert in alerts if alert.device_id == DEVICES["regressed"]]
    assert fast[0].severity == CRITICAL and "fast burn" in fast[0].message


def _beats(minutes: int, silent: range = range(0), device_id: str = "f" * 32) -> pd.DataFrame:
    """One record per second (60 beats a minute) except in the ``silent`` minutes."""
    times = [NOW - timedelta(minutes=minutes) + timedelta(seconds=second) for second in range(minutes * 60)
             if second // 60 not in silent]
    return pd.DataFrame({"device_id": device_id, "time": pd.to_datetime(times, utc=True),
                         "quality_flags": [[] for _ in times], "latency_us": FAST})


def test_signal_loss_flags_a_lead_off_gap_and_not_a_steady_device() -> None:
    assert signal_loss_alerts(_beats(30), NOW, CONFIG) == []
    (alert,) = signal_loss_alerts(_beats(30, silent=range(10, 13)), NOW, CONFIG)
    assert alert.kind == "signal loss" and alert.device_id == "f" * 32 and alert.value == 3.0
    assert "lead off" in alert.message


def test_the_first_cards_name_every_kind_even_when_one_kind_fires_on_hundreds_of_devices() -> None:
    found = [Alert("latency SLO", CRITICAL, f"device-{number:03d}", "slow") for number in range(283)]
    found += [Alert("signal quality", CRITICAL, "amplifier", "clipped"), Alert("signal loss", WARNING, "lead", "off"),
              Alert("signal quality", WARNING, "noisy", "noise"), Alert("drift", WARNING, "drifting", "psi")]
    table = alerts_frame(found)
    assert table["kind"].head(50).tolist().count("latency SLO") == 50  # by severity: the clipping is not in sight
    cards = card_order(table)
    assert cards[["severity", "kind"]].head(5).values.tolist() == [
        [CRITICAL, "latency SLO"], [CRITICAL, "signal quality"], [WARNING, "drift"], [WARNING, "signal loss"],
        [WARNING, "signal quality"]]
    assert cards["device_id"].iloc[5:8].tolist() == ["device-001", "device-002", "device-003"]  # then the rest
    kept = ["severity", "kind", "device_id", "message"]
    assert sorted(map(tuple, cards[kept].values.tolist())) == sorted(map(tuple, table[kept].values.tolist()))
    assert kind_summary(table) == ("latency SLO: 283 (283 critical) · signal quality: 2 (1 critical) · drift: 1 · "
                                   "signal loss: 1")
    assert card_order(alerts_frame([])).empty and kind_summary(alerts_frame([])) == ""
