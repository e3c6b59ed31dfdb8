"""Minute aggregates on the device: bins, the aggregator, the event filter, the schema-3 check and merging."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import pytest

from runtime.contract import TaskKind
from runtime.events import BeatEvent, QualityEvent, RowPrediction
from runtime.results import AnomalyResult, ClassResult, LabelsResult, ValuesResult
from runtime.telemetry.aggregate_schema import merge_aggregates, validate_aggregate
from runtime.telemetry.aggregates import (
    AggregateIdentity,
    AggregationPlan,
    Columns,
    MinuteAggregator,
    aggregate_record_id,
    columns_of_events,
    summarise,
)
from runtime.telemetry.event_filter import EventFilter, EventFilterConfig, FilterRule
from runtime.telemetry.histogram import (
    GENERIC_SCHEME,
    LATENCY_RELATIVE_ERROR,
    REFERENCE_MAX_EDGES,
    REFERENCE_SCHEME,
    bin_counts,
    block_summaries,
    count_above,
    dense_counts,
    edges_from_reference,
    generic_edges,
    latency_edges,
    quantile,
    spread,
)
from runtime.telemetry.records import TelemetryError, Vocabulary

START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC).timestamp()
DEVICE = "ab" * 16
LABELS = ("non-V", "V")
BUNDLE = SimpleNamespace(bundle_id="ecg-test-1", manifest_sha256="5" * 64, variant="fp32",
                         provider="CPUExecutionProvider", output=SimpleNamespace(task=TaskKind.BINARY))


def reference(values: np.ndarray, sample: int = 500) -> dict:
    return {"count": len(values), "mean": float(values.mean()), "std": float(values.std()),
            "decile_edges": np.percentile(values, np.linspace(0, 100, 11)).tolist(),
            "sample": np.sort(values)[:: max(1, len(values) // sample)].tolist()}


PROFILE = {
    "features": {"peak_to_peak": reference(np.random.default_rng(0).normal(6.8, 1.7, 5000)),
                 "skewness": reference(np.random.default_rng(1).normal(0.2, 1.2, 5000))},
    "predictions": {"class_counts": {"non-V": 93, "V": 7},
                    "confidence": reference(np.random.default_rng(2).uniform(0.5, 1.0, 5000))},
}


def assert_close(found, expected, path: str = "") -> None:
    """Equal structure and labels, numbers equal up to float summation order."""
    if isinstance(expected, dict):
        assert isinstance(found, dict) and set(found) == set(expected), path
        for key, value in expected.items():
            assert_close(found[key], value, f"{path}.{key}")
    elif isinstance(expected, float):
        assert found == pytest.approx(expected, rel=1e-12, abs=1e-9), path
    else:
        assert found == expected, path


def plan() -> AggregationPlan:
    return AggregationPlan.from_profile(PROFILE, "binary", LABELS)


def beat(time_s: float, label: str | None = "non-V", *, confidence: float = 0.97, latency_us: float = 1500.0,
         flags: tuple[str, ...] = (), low: bool = False, features: dict | None = None) -> BeatEvent:
    return BeatEvent(time_s, label, None if label is None else confidence, {}, 60.0, None, flags, low,
                     latency_us if label is not None else 0.0,
                     features if features is not None else {"peak_to_peak": 6.0 + time_s % 3, "skewness": 0.1,
                                                            "difference_rms": 0.4})


def aggregator(**options) -> MinuteAggregator:
    return MinuteAggregator(AggregateIdentity.of(BUNDLE, DEVICE), plan(), origin_s=START,
                            event_filter=EventFilter(LABELS), **options)


# -- bins ----------------------------------------------------------------------------------------------------------


def test_latency_bins_have_exact_powers_of_ten_and_left_closed_semantics() -> None:
    edges = latency_edges()
    assert edges[0] == 1.0 and edges[256] == 10_000.0 and edges[-1] == 1e8 and len(edges) == 513
    counts = bin_counts(edges, np.array([10_000.0, 10_000.0001, 0.0, 2e8]))
    assert counts == {"256": 1, "257": 1, "0": 1, "513": 1}  # a value on an edge belongs to the bin below it
    assert count_above(edges, dense_counts(counts, 514), 10_000.0) == (2, 2)  # exact on an edge
    assert count_above(edges, dense_counts(counts, 514), 10_000.00005) == (1, 2)  # bounds inside a bin


def test_latency_percentiles_are_within_the_stated_relative_error() -> None:
    rng = np.random.default_rng(3)
    for values in (rng.lognormal(7.5, 0.6, 5000), rng.uniform(900, 1100, 37), np.array([1234.5])):
        counts = dense_counts(bin_counts(latency_edges(), values), 514)
        for q in (0.5, 0.95, 0.99):
            estimate = quantile(latency_edges(), counts, q, values.min(), values.max())
            exact = float(np.quantile(values, q))
            assert abs(estimate - exact) <= LATENCY_RELATIVE_ERROR * exact + 1e-9
    assert 0.017 < LATENCY_RELATIVE_ERROR < 0.018


def test_reference_bins_hold_the_profile_deciles_and_fall_back_to_the_sample() -> None:
    distribution = PROFILE["features"]["peak_to_peak"]
    edges, source = edges_from_reference(distribution)
    assert source == "decile_edges" and set(distribution["decile_edges"]) <= set(edges.tolist())
    low, high = distribution["decile_edges"][0], distribution["decile_edges"][-1]
    assert edges[0] == pytest.approx(2 * low - high) and edges[-1] == pytest.approx(2 * high - low)
    assert 10 * 16 + 32 < len(edges) + 1 <= REFERENCE_MAX_EDGES + 1  # 16 equal sub-bins a decile, quantile cuts
    without = {key: value for key, value in distribution.items() if key != "decile_edges"}
    assert edges_from_reference(without)[1] == "sample deciles"
    assert edges_from_reference({"mean": 1.0}) is None
    hand_made = AggregationPlan.from_profile({"features": {"x": without, "y": {"mean": 1.0}}}, "binary", LABELS)
    assert hand_made.reference["x"].source == "sample deciles" and "y" not in hand_made.reference
    assert any(note.startswith("x:") for note in hand_made.notes) and any(note.startswith("y:") for note in
                                                                           hand_made.notes)


def test_spread_values_stay_in_their_bins() -> None:
    rng = np.random.default_rng(4)
    values = rng.normal(7.5, 2.5, 3000)  # some beyond the reference range on both sides
    edges, _ = edges_from_reference(PROFILE["features"]["peak_to_peak"])
    counts = dense_counts(bin_counts(edges, values), len(edges) + 1)
    stand_in = spread(edges, counts, values.min(), values.max())
    assert len(stand_in) == len(values) and stand_in.min() >= values.min() and stand_in.max() <= values.max()
    assert np.array_equal(dense_counts(bin_counts(edges, stand_in), len(edges) + 1), counts)


def test_block_summaries_equal_each_columns_own_count_sums_and_bins() -> None:
    """One bin layout per list of edges (worked out once and reused, also when an edges array's id is reused), one
    searchsorted per column: every column's count, sum, sum of squares, min, max and bins as if summarised alone."""
    random = np.random.default_rng(7)
    tracks = plan()
    for repeat in range(3):
        edges = [latency_edges(), tracks.track("peak_to_peak").edges, generic_edges(), generic_edges(),
                 np.sort(random.normal(0, 1, 40 + repeat))]  # a fresh array every time: its id may be reused
        values = np.column_stack([random.lognormal(7, 1, 90), random.normal(6.8, 2, 90), random.normal(0, 5, 90),
                                  random.normal(0, 1e-7, 90), random.normal(0, 1, 90)])
        values[random.random(values.shape) < 0.1] = np.nan
        values[:, 3] = np.nan if repeat == 2 else values[:, 3]  # a column without a value
        found = block_summaries(values, edges, [False, True, True, True, True])
        for column, column_edges in enumerate(edges):
            finite = values[:, column][np.isfinite(values[:, column])]
            if not finite.size:
                assert found[column] is None
                continue
            entry = found[column]
            assert entry["count"] == finite.size and entry["bins"] == bin_counts(column_edges, finite)
            assert entry["min"] == finite.min() and entry["max"] == finite.max()
            assert entry["sum"] == pytest.approx(finite.sum(), rel=1e-12) and ("sum_squares" in entry) == (column > 0)
        again = block_summaries(values, edges, [False, True, True, True, True])
        assert again == found


def test_feature_dicts_with_the_same_names_in_another_order_give_the_same_summary() -> None:
    events = [beat(float(second)) for second in range(40)]
    shuffled = [BeatEvent(*(vars(event)[name] if name != "features" else dict(reversed(event.features.items()))
                            for name in vars(event))) for event in events[:20]] + events[20:]
    tracks = plan()
    assert summarise(columns_of_events(shuffled, "binary"), tracks) == summarise(
        columns_of_events(events, "binary"), tracks)
    odd = [*events[:5], beat(5.0, features={"peak_to_peak": 1.0, "kurtosis": 3.0, "skewness": 0.0}), *events[6:]]
    summary = summarise(columns_of_events(odd, "binary"), tracks)  # other names: each counted where present
    assert summary["features"]["kurtosis"]["count"] == 1 and summary["features"]["difference_rms"]["count"] == 39
    assert summarise(Columns(), tracks)["records"] == 0


# -- the aggregator ------------------------------------------------------------------------------------------------


def test_a_minute_is_emitted_when_the_clock_passes_it_and_counts_every_event() -> None:
    events = [beat(t) for t in np.arange(0.5, 59.5, 1.0)]
    events += [beat(12.25, "V", confidence=0.995), beat(20.25, "non-V", confidence=0.55, low=True)]
    events += [beat(30.25, None, flags=("flat_line",)), QualityEvent(30.0, 2.5, "flat_line")]
    events.sort(key=lambda event: event.time_s)
    machine = aggregator()
    first = machine.add(events)
    assert first.aggregates == []  # the minute is still open
    assert machine.advance(START + 59.9) == []
    (minute,) = machine.advance(START + 60.0)
    assert minute["minute"] == "2026-01-01T12:00:00Z" and minute["records"] == 61
    assert minute["classes"] == {"non-V": 60, "V": 1} and minute["low_confidence"] == {"non-V": 1}
    assert minute["no_result"] == {"count": 1, "quality_flags": {"flat_line": 1}}
    assert minute["quality_events"] == {"flat_line": {"count": 1, "seconds": 2.5}}
    assert minute["latency_us"]["count"] == 61 and minute["latency_us"]["sum"] == pytest.approx(61 * 1500.0)
    features = minute["features"]
    assert features["peak_to_peak"]["scheme"] == REFERENCE_SCHEME
    assert features["difference_rms"]["scheme"] == GENERIC_SCHEME  # not in the profile
    values = np.array([event.features["peak_to_peak"] for event in events if getattr(event, "beat_class", None)])
    assert features["peak_to_peak"]["sum"] == pytest.approx(values.sum())
    assert features["peak_to_peak"]["sum_squares"] == pytest.approx(np.dot(values, values))
    assert minute["outputs"]["confidence"]["count"] == 61
    assert [event.beat_class for event, _ in first.individual] == ["V", "non-V"]  # the V beat, the low-confidence one
    assert minute["sent_individually"] == 2
    assert validate_aggregate(minute) == minute
    json.dumps(minute, allow_nan=False)


def test_minutes_follow_the_stream_clock_and_flush_ends_the_last() -> None:
    machine = aggregator()
    emitted = machine.add([beat(t) for t in (1.0, 59.0, 61.0, 125.0)]).aggregates
    assert [item["minute"][11:16] for item in emitted] == ["12:00", "12:01"]
    (last,) = machine.flush()
    assert last["minute"][11:16] == "12:02" and last["records"] == 1 and machine.flush() == []
    assert {item["record_id"] for item in [*emitted, last]} == {
        aggregate_record_id(item, item["minute"], 60, machine.session) for item in [*emitted, last]}


def test_an_event_arriving_after_its_minute_was_emitted_is_late_in_the_next_never_a_second_aggregate() -> None:
    """The device clock closed the minute (``advance``) before a beat of it was released (a batch waits): the beat
    counts as late in the following minute, so no two aggregates share a minute, session and record_id."""
    machine = aggregator()
    machine.add([beat(10.0), beat(50.0)])
    (closed,) = machine.advance(START + 61.0)
    assert closed["minute"][11:16] == "12:00" and closed["records"] == 2
    emitted = machine.add([beat(58.0), beat(59.5), beat(70.0)]).aggregates + machine.flush()
    assert [item["minute"][11:16] for item in emitted] == ["12:01"]
    (later,) = emitted
    assert later["records"] == 3 and later["late"] == 2 and later["record_id"] != closed["record_id"]
    machine = aggregator()  # a late beat after an emitted minute and a gap of minutes: the minute after the last one
    machine.add([beat(5.0)])
    machine.advance(START + 300.0)
    (alone,) = machine.add([beat(30.0)]).aggregates + machine.flush()
    assert alone["minute"][11:16] == "12:01" and alone["late"] == 1


def test_record_ids_are_stable_and_a_restarted_stream_gets_its_own() -> None:
    one = aggregator().add([beat(1.0), beat(61.0)]).aggregates[0]
    again = aggregator().add([beat(1.0), beat(61.0)]).aggregates[0]
    assert one["record_id"] == again["record_id"]  # a re-sent aggregate is stored once
    restarted = MinuteAggregator(AggregateIdentity.of(BUNDLE, DEVICE), plan(), origin_s=START + 30.0)
    later = restarted.add([beat(1.0), beat(61.0)]).aggregates[0]
    assert later["minute"] == one["minute"] and later["record_id"] != one["record_id"]


def test_row_predictions_of_every_kind_are_aggregated() -> None:
    clock = iter([START + 5.0, START + 65.0, START + 66.0])
    machine = MinuteAggregator(AggregateIdentity("cd" * 16, "kinds-1", "6" * 64, "fp32", "cpu", "anomaly"),
                               AggregationPlan.from_profile(None, "anomaly", ("normal", "anomalous")),
                               origin_s=START, event_filter=EventFilter(("normal", "anomalous")),
                               clock=lambda: next(clock))
    rows = [RowPrediction(0, "anomaly", AnomalyResult("anomalous", 2.5, True, 1.0), 80.0, features={"mean": 0.3}),
            RowPrediction(1, "anomaly", AnomalyResult("normal", 0.2, False, 1.0), 80.0, features={"mean": 0.1}),
            RowPrediction(2, "anomaly", None, 80.0, ("input_not_finite",), ("x",), {})]
    first = machine.add(rows)
    (minute,) = first.aggregates + machine.add([rows[0]]).aggregates
    assert minute["records"] == 3 and minute["unjudged"] == 1 and minute["alarms"] == 1
    assert minute["classes"] == {"anomalous": 1, "normal": 1}
    assert minute["outputs"]["score"]["count"] == 2 and minute["flagged"] == 1
    assert [event.row for event, _ in first.individual] == [0, 2]  # the alarm; the unjudged row (flags changed)
    validate_aggregate(minute)
    for task, result, key in (
        ("multilabel", LabelsResult(("af",), {"af": 0.9, "rbbb": 0.1}), "scores.af"),
        ("regression", ValuesResult({"qt": 410.0}, {"qt": "ms"}), "values.qt"),
        ("multiclass", ClassResult("b", 0.8, {"a": 0.2, "b": 0.8}), "confidence"),
    ):
        machine = MinuteAggregator(AggregateIdentity("cd" * 16, "kinds-1", "6" * 64, "fp32", "cpu", task),
                                   AggregationPlan(task, ("a", "b")), origin_s=START, clock=lambda: START)
        machine.add([RowPrediction(0, task, result, 50.0)])
        (minute,) = machine.flush()
        assert key in minute["outputs"]
        assert minute.get("labels", {"af": 1}) == {"af": 1}
        validate_aggregate(minute)


@dataclass(frozen=True)
class Window:
    """The shape of the windowed stream's ``WindowEvent`` the aggregator relies on (``kind``, ``start_s``, …)."""

    kind: ClassVar[str] = "window"
    start_s: float
    result: ClassResult | None
    quality_flags: tuple[str, ...] = ()
    latency_us: float = 300.0
    features: dict | None = None


def test_windows_judged_are_records_and_unjudged_ones_are_counted_by_flag() -> None:
    machine = MinuteAggregator(AggregateIdentity("cd" * 16, "eeg-1", "6" * 64, "fp32", "cpu", "multiclass"),
                               AggregationPlan("multiclass", ("clean", "artifact")), origin_s=START,
                               event_filter=EventFilter(("clean", "artifact")))
    windows = [Window(0.0, ClassResult("clean", 0.9, {})), Window(2.0, ClassResult("artifact", 0.8, {})),
               Window(4.0, None, ("flat_line",)), Window(62.0, ClassResult("clean", 0.9, {}))]
    out = machine.add(windows)
    (minute,) = out.aggregates
    assert minute["records"] == 2 and minute["classes"] == {"clean": 1, "artifact": 1}
    assert minute["no_result"] == {"count": 1, "quality_flags": {"flat_line": 1}}
    assert [event.start_s for event, _ in out.individual] == [2.0]  # the non-reference class
    assert validate_aggregate(minute) == minute


def test_the_event_filter_keeps_positives_low_confidence_and_quality_changes() -> None:
    keep = EventFilter(LABELS)
    events = [beat(0.0), beat(1.0, "V"), beat(2.0, low=True), beat(3.0, flags=("noisy",)), beat(4.0, flags=("noisy",)),
              beat(5.0), beat(6.0)]
    assert [event.time_s for event in keep.select(events)] == [1.0, 2.0, 3.0, 5.0]
    only_v = EventFilter(LABELS, EventFilterConfig(rules=(FilterRule.POSITIVE,)))
    assert [event.time_s for event in only_v.select(events)] == [1.0]
    custom = EventFilterConfig(positive_labels=("non-V",))
    assert custom.describe(LABELS) == {"version": 1, "rules": [rule.value for rule in FilterRule],
                                       "positive_labels": ["non-V"]}


# -- the schema-3 check and merging ---------------------------------------------------------------------------------


def minutes() -> list[dict]:
    machine = aggregator()
    rng = np.random.default_rng(5)
    events = [beat(float(t), "V" if rng.random() < 0.1 else "non-V", latency_us=float(rng.lognormal(7, 0.4)),
                   features={"peak_to_peak": float(rng.normal(7, 2)), "skewness": float(rng.normal())})
              for t in np.sort(rng.uniform(0, 180, 200))]
    return machine.add(events).aggregates + machine.flush()


def test_validation_refuses_what_a_record_may_not_carry() -> None:
    good = minutes()[0]
    cases = {
        "features.peak_to_peak.bins": lambda item: item["features"]["peak_to_peak"].update(bins=[1, 2, 3]),
        "patient_name": lambda item: item.update(patient_name="x"),
        "latency_us.bins": lambda item: item["latency_us"]["bins"].update({"999": 1}),
        "records": lambda item: item.update(records=item["records"] + 1),
        "extra": lambda item: item.update(extra=1),
        "minute": lambda item: item.update(minute="2026-01-01T12:00:30Z"),
    }
    for spoil in cases.values():
        bad = json.loads(json.dumps(good))
        spoil(bad)
        with pytest.raises(TelemetryError):
            validate_aggregate(bad)
    with pytest.raises(TelemetryError, match="bundle's labels"):
        validate_aggregate(good, vocabulary=Vocabulary(labels=frozenset({"N"})))
    validate_aggregate(good, vocabulary=Vocabulary(labels=frozenset(LABELS),
                                                   feature_names=frozenset({"peak_to_peak", "skewness"})))


def test_merging_halves_of_a_minute_gives_the_whole_minute() -> None:
    events = [beat(t, "V" if t % 7 < 1 else "non-V", latency_us=1000.0 + 37 * t) for t in np.arange(0.5, 60, 0.8)]
    machine = aggregator()
    machine.add(events)
    (whole,) = machine.flush()
    halves = []
    for part, origin in ((events[:40], START), (events[40:], START + 1.0)):
        piece = MinuteAggregator(AggregateIdentity.of(BUNDLE, DEVICE), plan(), origin_s=origin,
                                 event_filter=EventFilter(LABELS))
        piece.add(part, [START + event.time_s for event in part])
        halves += piece.flush()
    merged = merge_aggregates(*halves)
    assert merged == merge_aggregates(*halves)  # deterministic, record id included
    assert merged["minute"] == whole["minute"] and merged["seconds"] == 60
    for key in ("records", "classes", "latency_us", "features", "outputs", "flagged", "low_confidence"):
        assert_close(merged[key], whole[key])
    validate_aggregate(merged)


def test_merging_minutes_is_a_rollup() -> None:
    first, second, third = minutes()
    hour = merge_aggregates(merge_aggregates(first, second), third)
    assert hour["minute"] == first["minute"] and hour["seconds"] == 180
    assert hour["records"] == 200 == sum(item["records"] for item in (first, second, third))
    assert hour["latency_us"]["min"] == min(item["latency_us"]["min"] for item in (first, second, third))
    assert_close(merge_aggregates(first, merge_aggregates(second, third))["features"], hour["features"])
    validate_aggregate(hour)
    other = dict(first, bundle_sha256="7" * 64)
    with pytest.raises(TelemetryError, match="bundle_sha256"):
        merge_aggregates(first, other)
    switched = merge_aggregates(first, dict(second, variant="int8"))
    assert switched["variant"] == "mixed" and not math.isnan(switched["records"])
