"""Beats refused for the signal's quality are signal-quality alerts, not lost signal.

The ECG stream gives a beat with any quality flag no class, so no schema-2 record: a device whose amplifier clips, or
whose samples disagree with the declared rate, sends fewer records and no flagged ones. Seen in a 1 000-device
simulation (`make dashboard-pg`): the gain-drift and rate-mismatch devices were reported as "signal loss — lead off"
with a 0 % flagged share. Their minute aggregates count every refused beat with its flags (``no_result``); the
aggregate rules read them.
"""

from __future__ import annotations

import numpy as np

from dashboard.monitoring import aggregate_checks, aggregate_fleet, alerts
from dashboard.monitoring.alerts import CRITICAL, WARNING, AlertConfig
from runtime.events import BeatEvent
from tests.dashboard.test_domain_alerts import NOW, _moments, aggregates, device_id, raw_frame

CONFIG = AlertConfig()


def beats(flag: str | None, share: float, seed: int, bursts: bool = False) -> list[tuple[BeatEvent, float]]:
    """A beat a second for two hours; in the last 50 minutes ``share`` of them refused with ``flag`` (``bursts``:
    in every fourth minute only)."""
    rng = np.random.default_rng(seed)
    moments = _moments(seed, every_s=1.0)
    start = float(moments[0])
    refused = (NOW.timestamp() - moments < 50 * 60) & (rng.random(len(moments)) < share)
    if bursts:
        refused &= (moments // 60).astype(np.int64) % 4 == 0
    events = []
    for moment, no_class in zip(moments.tolist(), refused.tolist(), strict=True):
        if no_class and flag is not None:
            events.append((BeatEvent(moment - start, None, None, {}, 60.0, None, (flag,), False, 0.0), moment))
        else:
            events.append((BeatEvent(moment - start, "non-V", 0.95, {}, 60.0, None, (), False, 900.0), moment))
    return events


FLEET = {"steady": beats(None, 0.0, 21), "clipping": beats("clipped", 0.36, 22),
         "wrong-rate": beats("rate_mismatch", 1.0, 23, bursts=True), "restarting": beats("warming_up", 0.2, 24)}


def test_beats_refused_for_quality_are_a_quality_alert_naming_the_flag() -> None:
    found = {alert.device_id: alert for alert in aggregate_checks.quality_alerts(aggregates(FLEET), NOW, CONFIG)}
    assert set(found) == {device_id("clipping"), device_id("wrong-rate")}  # a stream's warm-up is not quality
    clipping, wrong_rate = found[device_id("clipping")], found[device_id("wrong-rate")]
    assert clipping.severity == CRITICAL and 0.25 < clipping.value < 0.36 and "clipped" in clipping.message
    assert wrong_rate.severity == WARNING and 0.15 < wrong_rate.value < 0.25 and "rate_mismatch" in wrong_rate.message
    assert "refused" in clipping.message
    # records cannot show it: no flagged record anywhere
    assert alerts.quality_alerts(raw_frame(FLEET), NOW, CONFIG) == []


def test_refused_beats_are_not_a_lost_signal() -> None:
    raw = {alert.device_id for alert in alerts.signal_loss_alerts(raw_frame(FLEET), NOW, CONFIG)}
    assert device_id("wrong-rate") in raw  # on records, minutes of refused beats look like a lead off
    assert aggregate_checks.signal_loss_alerts(aggregates(FLEET), NOW, CONFIG) == []


def test_the_fleet_flagged_share_counts_refused_beats() -> None:
    frame = aggregates(FLEET)
    numbers = aggregate_fleet._payload_numbers(frame)
    share = {name: numbers.loc[frame["device_id"] == device_id(name), "flagged"].sum()
             / numbers.loc[frame["device_id"] == device_id(name), "inputs"].sum() for name in FLEET}
    assert share["steady"] == 0 and share["restarting"] == 0
    assert share["clipping"] > CONFIG.quality_warn_rate and share["wrong-rate"] > CONFIG.quality_warn_rate


def test_refused_flag_rates_show_per_device_what_the_record_flag_table_cannot() -> None:
    frame = aggregates(FLEET)
    assert aggregate_fleet.flag_rates(frame).query("flag != 'any' and records > 0").empty  # no flagged record
    refused = aggregate_fleet.refused_flag_rates(frame)
    by_device = {(row.device_id, row.flag): row for row in refused.itertuples()}
    assert set(by_device) == {(device_id("clipping"), "clipped"), (device_id("wrong-rate"), "rate_mismatch"),
                              (device_id("restarting"), "warming_up")}  # listed as sent; the alerts leave it out
    clipping = by_device[(device_id("clipping"), "clipped")]
    expected = sum(1 for event, _ in FLEET["clipping"] if event.quality_flags) / len(FLEET["clipping"])
    assert clipping.rate == expected and clipping.refused == round(expected * len(FLEET["clipping"]))
    assert aggregate_fleet.refused_flag_rates(frame.iloc[0:0]).empty
    without_warm_up = aggregate_fleet.refused_flag_rates(frame, leave_out=frozenset({"warming_up"}))
    assert set(without_warm_up["device_id"]) == {device_id("clipping"), device_id("wrong-rate")}
