"""The pages' data path on aggregates: a mixed fleet (schema-3 aggregates with the records their event filter keeps,
a schema-1 device, a device that upgraded from records to aggregates halfway) reads as its all-records twin, the
alert rules on that path reach the raw-record verdicts, and every live page renders it on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

pytest.importorskip("streamlit")

from streamlit.testing.v1 import AppTest

from dashboard.data.bundles import read_catalog
from dashboard.data.settings import DashboardSettings
from dashboard.data.telemetry import TelemetryReader
from dashboard.data.windows import (
    Block,
    Resolution,
    Sources,
    WindowRequest,
    alert_requests,
    drift_window,
    load_window,
)
from dashboard.monitoring import aggregate_checks, alerts, checks
from dashboard.monitoring.aggregate_sums import summary_of
from dashboard.monitoring.aggregate_window import aggregate_frame, catalog_plans, minute_window, window_end
from dashboard.monitoring.alerts import AlertConfig
from dashboard.monitoring.drift import DEFAULT_DRIFT_CONFIG
from tests.dashboard.apptest_pages import APP, TIMEOUT_S, run_page, texts
from tests.dashboard.fixture_data import AGGREGATE_SENDERS, DEVICES, UPGRADED


def _window(settings: DashboardSettings, request: WindowRequest, end):
    plans = catalog_plans(read_catalog(settings.bundles))
    return load_window(request, end, Sources.for_reader(TelemetryReader(settings.database), plans), plans)


def _verdicts(found) -> set[tuple[str, str, str]]:
    return {(alert.kind, alert.severity, alert.device_id) for alert in found}


def test_the_mixed_fleet_sends_what_the_scenario_says(mixed_fixture) -> None:
    reader = TelemetryReader(mixed_fixture.mixed.database)
    stored = set(reader.aggregates()["device_id"])
    assert stored == {DEVICES[name] for name in (*AGGREGATE_SENDERS, UPGRADED)}
    kept = len(mixed_fixture.sent[DEVICES["healthy"]])
    assert 0 < kept < 7 * 120  # the filter's picks (every label but the first, low confidence), not every row


def test_the_last_hour_of_a_mixed_fleet_reads_as_its_all_records_twin(mixed_fixture) -> None:
    """Minute by minute, the devices' own aggregates and the dashboard's folding of the same events agree exactly
    (per-event records the event filter also sent are never counted twice)."""
    end = window_end(mixed_fixture.now)
    request = WindowRequest(timedelta(hours=1), features=False)
    raw, mixed = _window(mixed_fixture.raw, request, end), _window(mixed_fixture.mixed, request, end)
    assert set(raw.folded) == set(DEVICES.values()) and set(mixed.folded) == {DEVICES["orphan"]}
    for device_id in DEVICES.values():
        one, other = (summary_of(view.frame[view.frame["device_id"] == device_id], tracks=False)
                      for view in (raw, mixed))
        assert (other.records, other.flagged, other.classes) == (one.records, one.flagged, one.classes), device_id
        assert (other.latency.counts == one.latency.counts).all() and other.records > 0
    sends = mixed.devices.set_index("device_id")["sends"]
    assert sends[DEVICES["healthy"]] == "aggregates" and sends[DEVICES["orphan"]] == "records"


def test_the_upgraded_device_is_counted_once_across_its_upgrade(mixed_fixture) -> None:
    end = window_end(mixed_fixture.now)
    request = WindowRequest(timedelta(hours=8), minutes_for=timedelta(hours=8), features=False)
    device = DEVICES[UPGRADED]
    raw, mixed = (_window(settings, request, end) for settings in (mixed_fixture.raw, mixed_fixture.mixed))
    assert mixed.devices.set_index("device_id").at[device, "sends"] == "both"
    counts = [int(view.frame.loc[view.frame["device_id"] == device, "records"].sum()) for view in (raw, mixed)]
    assert counts[0] == counts[1] == 7 * 30  # one record every two minutes for seven hours


def test_the_alert_pages_data_path_gives_the_raw_record_verdicts(mixed_fixture) -> None:
    """The Alerts page's window (minute aggregates for the last hour, rollups behind) through the store and the
    aggregate rules, against the raw-record rules on the twin's records: the same latency, quality and signal-loss
    alerts fire, and the burn rates of the windows read minute by minute are equal."""
    end = window_end(mixed_fixture.now)
    config = AlertConfig()
    recent = _window(mixed_fixture.mixed, alert_requests(config, DEFAULT_DRIFT_CONFIG)[0], end)
    records = TelemetryReader(mixed_fixture.raw.database).records(since=end - timedelta(hours=24),
                                                                  with_features=True)
    found = (aggregate_checks.latency_alerts(recent.frame, end, config)
             + aggregate_checks.quality_alerts(recent.frame, end, config)
             + aggregate_checks.signal_loss_alerts(recent.frame, end, config))
    moment = end.to_pydatetime()
    expected = (alerts.latency_alerts(records, moment, config) + alerts.quality_alerts(records, moment, config)
                + alerts.signal_loss_alerts(records, moment, config))
    assert _verdicts(found) == _verdicts(expected)
    assert {(kind, device) for kind, _, device in _verdicts(found)} == {
        ("latency SLO", DEVICES["regressed"]), ("signal quality", DEVICES["noisy"])}
    exact = ["burn_5 min", "burn_30 min", "burn_1 h"]
    mine = aggregate_checks.burn_rates(recent.frame, end, config).set_index("device_id")[exact].sort_index()
    theirs = alerts.burn_rates(records, moment, config).set_index("device_id")[exact].sort_index()
    pd.testing.assert_frame_equal(mine, theirs, check_exact=False, rtol=1e-9)


def _borderline(row, config) -> bool:
    """A drift row whose raw statistic lies within the aggregates' stated error of its threshold (protocol.md:
    KS D within 0.02, Wasserstein / std within 0.01): there the verdicts may differ."""
    if row.wasserstein_normalised is not None and abs(row.wasserstein_normalised - config.distance_drift) <= 0.01:
        return True
    return row.method == "KS test" and row.statistic is not None and row.p_value is not None and (
        abs(row.p_value - config.p_value) <= 0.05)


def test_the_drift_rules_data_path_gives_the_minute_aggregates_verdicts(mixed_fixture) -> None:
    """Drift from the page's path (hourly rollups, each device's baseline hour read minute by minute) is exactly drift
    on minute aggregates; against raw records every row agrees but for statistics at their threshold, and the
    drifted device alone is flagged."""
    end = window_end(mixed_fixture.now)
    reader = TelemetryReader(mixed_fixture.mixed.database)
    catalog = read_catalog(mixed_fixture.mixed.bundles)
    plans = catalog_plans(catalog)
    request = alert_requests(AlertConfig(), DEFAULT_DRIFT_CONFIG)[1]
    page = drift_window(request, end, Sources.for_reader(reader, plans), plans, DEFAULT_DRIFT_CONFIG)
    assert (page.frame["seconds"] == 3600).any() and (page.frame["seconds"] == 60).any()
    minutes = _window(mixed_fixture.mixed, WindowRequest(DEFAULT_DRIFT_CONFIG.window), end)
    records = TelemetryReader(mixed_fixture.raw.database).records(since=end - timedelta(hours=24),
                                                                  with_features=True)
    for name in AGGREGATE_SENDERS:
        device = DEVICES[name]
        mine, exact = (aggregate_checks.device_baseline_drift(view.frame[view.frame["device_id"] == device], end,
                                                              plans) for view in (page, minutes))
        assert [row.to_row() for row in mine.results] == [row.to_row() for row in exact.results], name
        raw = checks.device_baseline_drift(records[records["device_id"] == device], end.to_pydatetime())
        assert [row.name for row in mine.results] == [row.name for row in raw.results]
        for ours, theirs in zip(mine.results, raw.results, strict=True):
            assert ours.status == theirs.status or _borderline(theirs, DEFAULT_DRIFT_CONFIG), (name, theirs)
    found = _verdicts(aggregate_checks.drift_alerts(page.frame, end, plans))
    expected = _verdicts(a for a in checks.fleet_alerts(records, catalog, end.to_pydatetime()) if a.kind == "drift")
    assert ("drift", "critical", DEVICES["drifted"]) in found & expected
    assert not {device for _, _, device in found | expected} & {DEVICES["healthy"], DEVICES["regressed"]}


def test_windows_over_an_hour_start_on_a_whole_hour_of_rollups(mixed_fixture) -> None:
    end = window_end(mixed_fixture.now)
    recent, _ = alert_requests(AlertConfig(), DEFAULT_DRIFT_CONFIG)
    view = _window(mixed_fixture.mixed, recent, end)
    aggregated = view.frame[view.frame["session"] != "folded"]
    hours, minutes = aggregated[aggregated["seconds"] == 3600], aggregated[aggregated["seconds"] == 60]
    assert len(hours) and len(minutes) and view.minute_from == end.floor("1h") - pd.Timedelta(hours=1)
    assert hours["minute"].min() == (end - pd.Timedelta(hours=6)).ceil("1h")
    assert hours["minute"].max() < view.minute_from
    assert minutes["minute"].min() >= view.minute_from
    assert len(minute_window(view.frame, end, timedelta(hours=1))) < len(view.frame)




@pytest.fixture(params=["sqlite", "postgres"])
def mixed_settings(request, mixed_fixture, use_settings) -> DashboardSettings:
    settings = mixed_fixture.mixed if request.param == "sqlite" else request.getfixturevalue("mixed_postgres")
    use_settings(settings)
    return settings


def test_the_live_pages_render_a_mixed_fleet(mixed_settings: DashboardSettings) -> None:
    fleet = run_page("fleet")
    overview = fleet.dataframe[0].value
    assert len(overview) == len(DEVICES) and set(overview["sends"]) == {"aggregates", "records", "both"}
    assert {metric.label for metric in fleet.metric} >= {"devices", "ok", "silent", "slow", "noisy"}
    assert "minute aggregates" in texts(fleet, "caption") or "hourly rollups" in texts(fleet, "caption")

    page = run_page("alerts")
    markdown = texts(page, "markdown")
    assert "latency SLO" in markdown and "drift" in markdown and "signal quality" in markdown
    links = {link.proto.query_string for link in page.get("page_link")}
    assert {f"device={DEVICES[name]}" for name in ("regressed", "drifted", "noisy")} <= links

    device = run_page("device", {"device": DEVICES["regressed"]})
    assert "latency SLO" in texts(device, "error", "warning") and "sends **aggregates**" in texts(device, "markdown")
    assert "events it also sent on their own" in texts(device, "caption")
    assert {"Timeline", "Answers", "Burn rates", "Drift"} <= {item.value for item in device.subheader}

    drift = run_page("drift", {"device": DEVICES["drifted"]})
    assert (drift.dataframe[0].value["status"] == "alert").sum() >= 10


def test_the_fleet_page_over_a_week_reads_whole_days(mixed_fixture, use_settings) -> None:
    use_settings(mixed_fixture.mixed)
    app = AppTest.from_file(APP, default_timeout=TIMEOUT_S)
    app.switch_page("pages/fleet.py").run()
    app.segmented_control[0].set_value("last 7 days").run()
    assert not app.exception and len(app.dataframe[0].value) == len(DEVICES)
    assert "hourly rollups" in texts(app, "caption")


def test_a_baseline_hour_whose_minutes_are_gone_keeps_its_rollup(mixed_fixture) -> None:
    """A store that pruned its minute aggregates: the drift window keeps each hourly rollup whole."""
    end = window_end(mixed_fixture.now)
    plans = catalog_plans(read_catalog(mixed_fixture.mixed.bundles))
    sources = Sources.for_reader(TelemetryReader(mixed_fixture.mixed.database), plans)
    pruned = Sources(lambda block, device, features: aggregate_frame([]) if block.resolution is Resolution.MINUTE
                     else sources.blocks(block, device, features), sources.devices)
    request = alert_requests(AlertConfig(), DEFAULT_DRIFT_CONFIG)[1]
    kept = drift_window(request, end, pruned, plans, DEFAULT_DRIFT_CONFIG)
    plain = load_window(request, end, sources, plans)
    assert kept.frame[["device_id", "minute", "records"]].equals(plain.frame[["device_id", "minute", "records"]])


def test_a_warmed_dashboard_serves_the_first_fleet_and_alerts_visits_from_memory(mixed_fixture, use_settings,
                                                                                  monkeypatch) -> None:
    """``edgemed dashboard`` warms the caches at start (``components.warm_up``): afterwards the first visit to the
    Fleet page's default view, to its 30-day view and to Alerts reads no block from the store."""
    import streamlit as st

    from dashboard.components import telemetry, warm_up, widgets
    from dashboard.data.settings import CLOCK_VARIABLE

    use_settings(mixed_fixture.mixed)
    monkeypatch.setenv(CLOCK_VARIABLE, mixed_fixture.now.isoformat())  # the warm-up and the pages share one moment
    st.cache_resource.clear()
    st.cache_data.clear()
    assert warm_up.warm(widgets.settings()) > 0
    reads: list[Block] = []
    original = telemetry.read_block

    def counted(reader, block, *arguments, **options):
        reads.append(block)
        return original(reader, block, *arguments, **options)

    monkeypatch.setattr(telemetry, "read_block", counted)
    fleet = run_page("fleet")
    alerts = run_page("alerts")
    month = AppTest.from_file(APP, default_timeout=TIMEOUT_S)
    month.session_state["fleet-window"] = "last 30 days"  # the time-window picker's choice
    month.switch_page("pages/fleet.py")
    month.run()
    assert not month.exception and "last 30 days" in str(month.session_state["fleet-window"])
    assert reads == [], f"{len(reads)} block(s) read from the store after the warm-up"
    assert len(fleet.dataframe[0].value) == len(DEVICES) and "latency SLO" in texts(alerts, "markdown")
    st.cache_resource.clear()  # the blocks read through the patched reader are not left to other tests
    st.cache_data.clear()


def test_the_warm_up_reads_again_before_what_it_read_expires_and_outlives_a_failure(monkeypatch, caplog) -> None:
    """``keep_warm`` warms at once, then every interval (``REWARM_S``: under the complete blocks' time to live), until
    stopped; a round that fails is logged and the next one runs."""
    import threading

    from dashboard.components import telemetry, warm_up

    assert 0 < warm_up.REWARM_S < telemetry.COMPLETE_TTL_S
    stop, rounds = threading.Event(), []

    def warm(current):
        rounds.append(current)
        if len(rounds) == 2:
            raise RuntimeError("the store went away")
        if len(rounds) == 3:
            stop.set()
        return 0.5

    monkeypatch.setattr(warm_up, "warm", warm)
    with caplog.at_level("INFO", logger=warm_up.__name__):
        warm_up.keep_warm("settings", stop, every_s=0.01)
    assert rounds == ["settings"] * 3 and "warming the dashboard's caches failed" in caplog.text
    assert caplog.text.count("dashboard caches warm after 0.5 s") == 2
