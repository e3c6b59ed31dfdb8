"""The dashboard's latency, drift and alert maths on minute aggregates give the raw-record verdicts.

One simulated fleet of beat streams (healthy, drifted, regressed, leaking, noisy, losing signal) is sent both ways:
as schema-2 records (``runtime.runner.telemetry_record``, one per classified beat) and as the device's minute
aggregates (``runtime.telemetry.aggregates.MinuteAggregator`` fed the same events). Every rule runs on each and
must reach the same verdict — firing and not firing — on the same data. Folding the records into aggregates on the
dashboard side (``fold_records``) must give the device's aggregates exactly.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from dashboard.monitoring import aggregate_checks, alerts, checks
from dashboard.monitoring.aggregate_window import aggregate_frame, catalog_plans, minute_window
from dashboard.monitoring.alerts import AlertConfig
from dashboard.monitoring.drift import DriftStatus
from dashboard.monitoring.fleet import latency_series
from dashboard.monitoring.record_fold import fold_records
from runtime.contract import TaskKind
from runtime.events import BeatEvent, QualityEvent
from runtime.runner import telemetry_record
from runtime.telemetry.aggregates import AggregateIdentity, AggregationPlan, MinuteAggregator
from runtime.telemetry.event_filter import EventFilter
from runtime.telemetry.histogram import LATENCY_RELATIVE_ERROR
from runtime.telemetry.records import pseudonymous_device_id, utc_timestamp

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)  # on a minute: whole-minute windows are the raw windows
HISTORY = timedelta(hours=7)
LABELS = ("non-V", "V")
V_SHARE = 0.07
BUNDLE = SimpleNamespace(
    bundle_id="sim-ecg-1", manifest_sha256="5" * 64, variant="fp32", provider="CPUExecutionProvider",
    output=SimpleNamespace(task=TaskKind.BINARY),
)


def _features(rng: np.random.Generator, count: int, shift: float = 0.0) -> dict[str, np.ndarray]:
    """Waveform-like summaries; ``shift`` moves every one by that many of its standard deviations.
    ``difference_rms`` is not in the reference profile, so it travels on the generic bins."""
    return {
        "peak_to_peak": rng.normal(6.8, 1.7, count) + shift * 1.7,
        "skewness": rng.normal(0.2, 1.2, count) + shift * 1.2,
        "kurtosis": np.exp(rng.normal(1.8, 0.5, count)) + shift * 4.0,
        "difference_rms": np.abs(rng.normal(0.4, 0.15, count)) + shift * 0.15,
    }


def _confidences(rng: np.random.Generator, count: int, shift: float = 0.0) -> np.ndarray:
    return np.clip(1.0 - 0.5 * rng.beta(1.0, 8.0 / (1.0 + 3.0 * shift), count), 0.5, 1.0)


def _distribution(values: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
    """As ``pipeline/build/reference_profile.py`` stores one: moments, decile edges, a 500-value sample."""
    return {"count": len(values), "mean": float(values.mean()), "std": float(values.std()),
            "decile_edges": [float(edge) for edge in np.percentile(values, np.linspace(0, 100, 11))],
            "sample": [round(float(value), 6) for value in np.sort(rng.choice(values, 500, replace=False))]}


@functools.cache
def profile() -> dict[str, Any]:
    rng = np.random.default_rng(1234)
    features = _features(rng, 6000)
    v_count = int(6000 * V_SHARE)
    return {
        "schema_version": 1, "split": "test", "samples": 6000, "task": "binary", "feature_kind": "waveform",
        "features": {name: _distribution(values, rng) for name, values in features.items() if name != "difference_rms"},
        "predictions": {"class_counts": {"non-V": 6000 - v_count, "V": v_count},
                        "class_fractions": {"non-V": 1 - v_count / 6000, "V": v_count / 6000},
                        "confidence": _distribution(_confidences(rng, 6000), rng)},
    }


class Catalog:
    """The one published bundle (stand-in for ``dashboard.data.bundles.BundleCatalog``)."""

    def __init__(self) -> None:
        self.bundle = SimpleNamespace(name="sim-ecg", profile=profile(), profile_problem=None, labels=list(LABELS),
                                      manifest=SimpleNamespace(output=SimpleNamespace(task=TaskKind.BINARY)))

    def match(self, bundle_id: str | None, bundle_sha256: str | None = None):
        return self.bundle if bundle_sha256 == BUNDLE.manifest_sha256 or bundle_id == BUNDLE.bundle_id else None


@dataclass(frozen=True)
class Behaviour:
    name: str
    every_s: float = 2.0  # seconds between beats
    hours: float = 7.0
    drift_since: timedelta | None = None  # features, confidence and classes shift from then on
    shift: float = 0.0
    v_share_after: float = V_SHARE
    slow_since: timedelta | None = None
    slow_share: float = 0.0
    slow_until: timedelta = timedelta(0)  # slow inferences stop this long before NOW
    flagged_since: timedelta | None = None
    flagged_share: float = 0.0
    silent: tuple[tuple[float, float], ...] = ()  # (minutes before NOW start, length in minutes) with no beats


BEHAVIOURS = (
    Behaviour("healthy"),
    Behaviour("small", every_s=30.0),  # 840 records in 7 h: KS and chi-square instead of distances
    Behaviour("drifted", drift_since=timedelta(hours=4), shift=1.2, v_share_after=0.3),
    Behaviour("drifted-small", every_s=20.0, drift_since=timedelta(hours=3), shift=1.5, v_share_after=0.35),
    Behaviour("regressed", slow_since=timedelta(minutes=70), slow_share=0.5),  # fast burn: page
    Behaviour("leaking", slow_since=timedelta(hours=7), slow_share=0.08),  # slow burn: ticket
    Behaviour("recovered", slow_since=timedelta(hours=2), slow_share=0.6, slow_until=timedelta(minutes=40)),
    Behaviour("noisy", flagged_since=timedelta(minutes=50), flagged_share=0.35),  # critical quality
    Behaviour("grainy", flagged_since=timedelta(hours=2), flagged_share=0.08),  # warning quality
    Behaviour("lead-off", silent=((40.0, 3.0), (20.0, 2.0))),  # signal loss
)


def device_id(name: str) -> str:
    return pseudonymous_device_id(f"SN-{name}", "aggregate-verdicts")


def simulate(behaviour: Behaviour, seed: int) -> list[tuple[BeatEvent | QualityEvent, float]]:
    """(event, epoch seconds) of one device's beats, oldest first; beats never fall on a minute boundary."""
    rng = np.random.default_rng(seed)
    start = NOW.timestamp() - behaviour.hours * 3600
    times = start + 0.37 + np.arange(int(behaviour.hours * 3600 / behaviour.every_s)) * behaviour.every_s
    times = times + rng.uniform(0, 0.2 * behaviour.every_s, len(times))
    times = times[times < NOW.timestamp()]
    age = NOW.timestamp() - times
    for before, length in behaviour.silent:
        times = times[~((age <= before * 60) & (age > (before - length) * 60))]
        age = NOW.timestamp() - times
    count = len(times)
    drifted = age < behaviour.drift_since.total_seconds() if behaviour.drift_since else np.zeros(count, bool)
    base, moved = _features(rng, count), _features(rng, count, behaviour.shift)
    features = {name: np.where(drifted, moved[name], base[name]) for name in base}
    confidence = np.where(drifted, _confidences(rng, count, behaviour.shift), _confidences(rng, count))
    is_v = rng.random(count) < np.where(drifted, behaviour.v_share_after, V_SHARE)
    slow = np.zeros(count, bool)
    if behaviour.slow_since is not None:
        inside = (age < behaviour.slow_since.total_seconds()) & (age >= behaviour.slow_until.total_seconds())
        slow = inside & (rng.random(count) < behaviour.slow_share)
    latency = np.where(slow, rng.lognormal(np.log(25_000), 0.2, count), rng.lognormal(np.log(2_000), 0.3, count))
    flagged = np.zeros(count, bool)
    if behaviour.flagged_since is not None:
        flagged = (age < behaviour.flagged_since.total_seconds()) & (rng.random(count) < behaviour.flagged_share)
    unclassified = rng.random(count) < 0.01  # beats restarting after a flat line: no class, so no schema-2 record
    events: list[tuple[BeatEvent | QualityEvent, float]] = []
    for index in range(count):
        flags = ("baseline_wander",) if flagged[index] else ()
        if unclassified[index]:
            events.append((BeatEvent(float(times[index] - start), None, None, {}, None, None, ("warming_up",), False,
                                     0.0), float(times[index])))
            events.append((QualityEvent(float(times[index] - start), 1.5, "flat_line"), float(times[index])))
            continue
        label = "V" if is_v[index] else "non-V"
        events.append((BeatEvent(
            time_s=float(times[index] - start), beat_class=label, probability=float(confidence[index]),
            probabilities={}, heart_rate_bpm=60.0, heart_rate_1min_bpm=None, quality_flags=flags,
            low_confidence=bool(confidence[index] < 0.6), latency_us=float(latency[index]),
            features={name: float(values[index]) for name, values in features.items()},
        ), float(times[index])))
    return events


@functools.cache
def fleet() -> dict[str, list[tuple[BeatEvent | QualityEvent, float]]]:
    return {behaviour.name: simulate(behaviour, seed) for seed, behaviour in enumerate(BEHAVIOURS)}


def raw_frame(names: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Schema-2 records of the fleet as ``TelemetryReader.records(with_features=True)`` reads them."""
    rows = []
    for name, events in fleet().items():
        if names is not None and name not in names:
            continue
        for sequence, (event, moment) in enumerate(events, start=1):
            if not (isinstance(event, BeatEvent) and event.classified):  # as the runner: only classified beats
                continue
            record = telemetry_record(BUNDLE, event)
            result = record["result"]
            rows.append({
                "device_id": device_id(name), "sequence": sequence,
                "time": utc_timestamp(datetime.fromtimestamp(moment, UTC)), "bundle_id": record["bundle_id"],
                "bundle_sha256": record["bundle_sha256"], "variant": record["variant"],
                "provider": record["provider"], "latency_us": record["latency_us"], "task": record["task"],
                "predicted_class": result["class"], "confidence": result["confidence"],
                "quality_flags": record["quality_flags"], "result": result, "features": record["features"],
            })
    frame = pd.DataFrame(rows)
    frame["time"] = pd.to_datetime(frame["time"], utc=True, format="ISO8601")
    return frame.sort_values(["time", "device_id", "sequence"], kind="stable").reset_index(drop=True)


def device_payloads(name: str) -> list[dict[str, Any]]:
    """The device's own aggregates: a ``MinuteAggregator`` fed the stream's events in 10-second chunks."""
    events = fleet()[name]
    plan = AggregationPlan.from_profile(profile(), "binary", LABELS)
    identity = AggregateIdentity.of(BUNDLE, device_id(name))
    aggregator = MinuteAggregator(identity, plan, origin_s=events[0][1], event_filter=EventFilter(LABELS))
    payloads = []
    chunk: list = []
    for event, moment in events:
        if chunk and moment - chunk[0][1] >= 10.0:
            payloads += aggregator.add([item for item, _ in chunk], [when for _, when in chunk]).aggregates
            chunk = []
        chunk.append((event, moment))
    payloads += aggregator.add([item for item, _ in chunk], [when for _, when in chunk]).aggregates
    return payloads + aggregator.flush()


@functools.cache
def aggregates() -> pd.DataFrame:
    return aggregate_frame([payload for name in fleet() for payload in device_payloads(name)])


@functools.cache
def records() -> pd.DataFrame:
    return raw_frame()


def plans():
    return catalog_plans(Catalog())


def assert_close(found, expected, path: str = "") -> None:
    """Equal structure, labels and counts; sums equal up to float summation order."""
    if isinstance(expected, dict):
        assert isinstance(found, dict) and set(found) == set(expected), path
        for key, value in expected.items():
            assert_close(found[key], value, f"{path}.{key}")
    elif isinstance(expected, float):
        assert found == pytest.approx(expected, rel=1e-12, abs=1e-9), path
    else:
        assert found == expected, path


def _verdicts(found) -> set[tuple[str, str, str]]:
    return {(alert.kind, alert.severity, alert.device_id) for alert in found}


def by_device(name: str) -> str:
    return device_id(name)


# -- latency objective -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("objective_us", [10_000.0, 7_000.0])
def test_latency_burn_alerts_fire_and_stay_quiet_as_on_records(objective_us: float) -> None:
    config = AlertConfig(latency_objective_us=objective_us)
    raw = alerts.latency_alerts(records(), NOW, config)
    aggregated = aggregate_checks.latency_alerts(aggregates(), NOW, config)
    assert _verdicts(aggregated) == _verdicts(raw)
    fired = {alert.device_id: alert.message.split(" ")[0] for alert in aggregated}
    assert fired == {by_device("regressed"): "fast", by_device("leaking"): "slow"}  # both ways: others stay quiet
    assert by_device("recovered") not in fired  # its short windows have recovered


def test_burn_rates_are_exact_when_the_objective_is_a_bin_edge() -> None:
    raw = alerts.burn_rates(records(), NOW, AlertConfig()).set_index("device_id")
    aggregated = aggregate_checks.burn_rates(aggregates(), NOW, AlertConfig()).set_index("device_id")
    pd.testing.assert_frame_equal(aggregated.sort_index(), raw.sort_index(), check_exact=False, rtol=1e-12)


def test_latency_percentiles_are_within_the_stated_bound() -> None:
    bucket, start = timedelta(minutes=15), NOW - timedelta(hours=2)
    raw = latency_series(records()[records()["time"] >= start], bucket, start, NOW)
    aggregated = aggregate_checks.latency_series(minute_window(aggregates(), NOW, timedelta(hours=2)), bucket,
                                                 start, NOW)
    joined = raw.merge(aggregated, on=["device_id", "bucket"], suffixes=("_raw", "_aggregate"))
    assert len(joined) == len(raw) > 0
    assert (joined["inferences_raw"] == joined["inferences_aggregate"]).all()
    for column in ("p50_us", "p95_us"):
        error = (joined[f"{column}_aggregate"] - joined[f"{column}_raw"]).abs() / joined[f"{column}_raw"]
        assert error.max() <= LATENCY_RELATIVE_ERROR + 1e-12


# -- alert rules: quality, signal loss, drift --------------------------------------------------------------------


def test_quality_alerts_match_records_both_ways() -> None:
    raw = alerts.quality_alerts(records(), NOW, AlertConfig())
    aggregated = aggregate_checks.quality_alerts(aggregates(), NOW, AlertConfig())
    assert _verdicts(aggregated) == _verdicts(raw) == {
        ("signal quality", "critical", by_device("noisy")), ("signal quality", "warning", by_device("grainy"))}
    # the aggregates' share is over every detected beat: records plus the ~1 % refused while warming up, which
    # records cannot show (a warm-up is not a quality flag: the numerators are equal)
    assert sorted(alert.value for alert in aggregated) == pytest.approx(sorted(alert.value for alert in raw), rel=0.02)


def test_signal_loss_alerts_match_records_both_ways() -> None:
    raw = alerts.signal_loss_alerts(records(), NOW, AlertConfig())
    aggregated = aggregate_checks.signal_loss_alerts(aggregates(), NOW, AlertConfig())
    assert _verdicts(aggregated) == _verdicts(raw) == {("signal loss", "warning", by_device("lead-off"))}
    assert [alert.message for alert in aggregated] == [alert.message for alert in raw]


def test_fleet_alerts_match_records_including_drift() -> None:
    raw = checks.fleet_alerts(records(), Catalog(), NOW)
    aggregated = aggregate_checks.fleet_alerts(aggregates(), NOW, plans())
    assert _verdicts(aggregated) == _verdicts(raw)
    drifting = {alert.device_id for alert in aggregated if alert.kind == "drift"}
    assert drifting == {by_device("drifted"), by_device("drifted-small")}  # and no healthy device


@pytest.mark.parametrize("name", ["healthy", "small", "drifted", "drifted-small", "noisy"])
def test_device_baseline_drift_rows_match_records(name: str) -> None:
    mine = records()[records()["device_id"] == by_device(name)]
    raw = checks.device_baseline_drift(mine, NOW)
    aggregated = aggregate_checks.device_baseline_drift(
        aggregates()[aggregates()["device_id"] == by_device(name)], NOW, plans())
    assert [row.name for row in aggregated.results] == [row.name for row in raw.results]
    assert [row.status for row in aggregated.results] == [row.status for row in raw.results]
    assert aggregated.status == raw.status


@pytest.mark.parametrize("name", ["healthy", "small", "drifted", "drifted-small"])
def test_drift_against_the_bundle_profile_matches_records(name: str) -> None:
    mine = records()[records()["device_id"] == by_device(name)]
    raw = checks.device_drift(mine, Catalog(), NOW)
    aggregated = aggregate_checks.device_drift(aggregates()[aggregates()["device_id"] == by_device(name)],
                                               Catalog(), NOW, plans())
    assert aggregated.records == raw.records
    raw_rows, aggregate_rows = {r.name: r for r in raw.results}, {r.name: r for r in aggregated.results}
    assert list(aggregate_rows) == list(raw_rows)
    assert "difference_rms" not in raw_rows  # the profile has no reference for it: not compared either way
    for row_name, expected in raw_rows.items():
        found = aggregate_rows[row_name]
        assert (found.status, found.drift, found.method) == (expected.status, expected.drift, expected.method)
        assert found.psi == pytest.approx(expected.psi, abs=1e-9)  # exact: the decile bins are among the bins
        if expected.js_distance is not None:
            assert found.js_distance == pytest.approx(expected.js_distance, abs=1e-9)
        if expected.wasserstein_normalised is not None:
            assert found.wasserstein_normalised == pytest.approx(expected.wasserstein_normalised, abs=0.01)
        if expected.method == "KS test":
            assert found.statistic == pytest.approx(expected.statistic, abs=0.02)
    assert aggregated.status == raw.status
    if name.startswith("drifted"):
        assert raw.status is DriftStatus.ALERT


# -- schema 2 accepted: folded into the same aggregates -----------------------------------------------------------


def test_folding_records_gives_the_device_aggregates() -> None:
    names = ("healthy", "noisy")
    folded = fold_records(raw_frame(names), plans())
    device = aggregates()[aggregates()["device_id"].isin([by_device(name) for name in names])]
    device = device[device["records"] > 0]  # a minute of flat-line beats only has no records to fold
    assert len(folded) == len(device)
    compared = ("records", "unjudged", "classes", "low_confidence", "flagged", "quality_flags", "latency_us",
                "features", "outputs")
    for mine, theirs in zip(folded.sort_values(["device_id", "minute"])["payload"],
                            device.sort_values(["device_id", "minute"])["payload"], strict=True):
        assert mine["minute"] == theirs["minute"] and mine["bins_id"] == theirs["bins_id"]
        for key in compared:
            assert_close(mine[key], theirs[key], key)


def test_folded_records_reach_the_same_alerts() -> None:
    folded = fold_records(records(), plans())
    assert _verdicts(aggregate_checks.fleet_alerts(folded, NOW, plans())) == _verdicts(
        checks.fleet_alerts(records(), Catalog(), NOW))
