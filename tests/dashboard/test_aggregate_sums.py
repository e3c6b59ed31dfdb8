"""Sums in columns against the row-by-row reference: ``aggregate_sums.summary_in_columns`` gives exactly
``aggregate_window.summary_by_rows``' summary, and the Fleet page's maths in columns (latency matrix, groups, flag
rates, device overview, series, prediction summaries) and the alert verdicts are those of the per-row functions kept
here as the reference — on varied frames: the mixed fleet (older devices folded), every task kind, NaN, -0.0, empty
histograms and windows, a single device, devices with no inferences, tracks on mismatched bins."""

from __future__ import annotations

import pickle
import struct
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from dashboard.data.bundles import read_catalog
from dashboard.data.telemetry import TelemetryReader
from dashboard.data.windows import Sources, WindowRequest, load_window
from dashboard.monitoring import aggregate_checks, aggregate_fleet, aggregate_predictions, aggregate_sums
from dashboard.monitoring.aggregate_entries import ENTRY_TYPES, counter_entries, latency_bins
from dashboard.monitoring.aggregate_sums import (
    counter_sum,
    loop_extreme,
    sequential_sum,
    summary_in_columns,
    summary_of,
)
from dashboard.monitoring.aggregate_window import (
    NUMBER_COLUMNS,
    PlanFor,
    TrackSum,
    WindowSummary,
    aggregate_frame,
    catalog_plans,
    compact_payload,
    frame_numbers,
    latency_entries,
    summary_by_rows,
    window_end,
)
from dashboard.monitoring.fleet import short_id
from dashboard.monitoring.record_fold import fold_records
from runtime.telemetry.aggregates import AggregationPlan
from runtime.telemetry.histogram import GENERIC_SCHEME, LATENCY_SCHEME, REFERENCE_SCHEME, latency_edges, quantile
from tests.dashboard.test_record_fold import mixed_records

# -- the per-row reference (the Fleet page's maths before they were summed in columns) ----------------------------


def reference_latency_matrix(frame: pd.DataFrame, groups, size: int) -> np.ndarray:
    matrix = np.zeros((size, len(latency_edges()) + 1), dtype=np.int64)
    for row, payload in enumerate(frame["payload"].tolist()):
        bins = payload["latency_us"]["bins"]
        indices, counts = ((bins.indices, bins.counts) if not isinstance(bins, dict)
                           else (np.array(list(map(int, bins)), dtype=np.int64),
                                 np.array(list(bins.values()), dtype=np.int64)))
        np.add.at(matrix[int(groups[row])], indices.astype(np.int64), counts)
    return matrix


def reference_quantile_rows(matrix: np.ndarray, lows, highs, q: float) -> np.ndarray:
    found = [quantile(latency_edges(), counts, q, float(low), float(high))
             for counts, low, high in zip(matrix, lows, highs, strict=True)]
    return np.array([np.nan if value is None else value for value in found], dtype=np.float64)


def reference_grouped(frame: pd.DataFrame, keys) -> tuple[pd.DataFrame, np.ndarray]:
    codes, uniques = pd.MultiIndex.from_frame(frame[list(keys)]).factorize()
    return uniques.to_frame(index=False), codes


def reference_payload_numbers(frame: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for payload in frame["payload"].tolist():
        refused = payload.get("no_result") or {}
        outside = Counter(payload.get("quality_flags") or ())["out_of_domain"]  # a refused row's only flag
        latency = payload["latency_us"]
        refused_flags = Counter(refused.get("quality_flags") or ())
        for_quality = sum(count for flag, count in refused_flags.items() if flag not in ("out_of_domain", "warming_up"))
        for_quality = max(0, min(refused.get("count", 0) - refused_flags["out_of_domain"], for_quality))
        rows.append((payload["flagged"] - outside + for_quality, payload["unjudged"],
                     *((latency["min"], latency["max"]) if latency["count"] else (np.inf, -np.inf)),
                     payload["records"] + refused.get("count", 0),
                     outside + Counter(refused.get("quality_flags") or ())["out_of_domain"]))
    return pd.DataFrame(rows, columns=["flagged", "unjudged", "low", "high", "inputs", "outside"], index=frame.index)


def reference_flag_rates(frame: pd.DataFrame) -> pd.DataFrame:
    columns = ["device_id", "device", "flag", "records", "rate"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for device_id, group in frame.groupby("device_id", sort=True):
        total = int(group["records"].sum())
        if not total:
            continue
        flags: Counter[str] = Counter()
        flagged = 0
        for payload in group["payload"].tolist():
            if payload["flagged"]:
                flags.update(payload["quality_flags"])
                flagged += payload["flagged"]
        rows.append({"device_id": device_id, "flag": "any", "records": flagged, "rate": flagged / total})
        rows += [{"device_id": device_id, "flag": flag, "records": int(count), "rate": count / total}
                 for flag, count in flags.most_common()]
    table = pd.DataFrame(rows, columns=[name for name in columns if name != "device"])
    return table.assign(device=table["device_id"].map(short_id))[columns]


def reference_bundle_labels(frame: pd.DataFrame, catalog) -> pd.Series:
    names, labels = {}, []
    for bundle_id, sha256 in zip(frame["bundle_id"].tolist(), frame["bundle_sha256"].tolist(), strict=True):
        key = (bundle_id, sha256)
        if key not in names:
            bundle = catalog.match(str(bundle_id), None if sha256 is None else str(sha256))
            names[key] = bundle.name if bundle else f"{bundle_id} (not published here)"
        labels.append(names[key])
    return pd.Series(labels, index=frame.index, dtype="object")


@pytest.fixture
def by_rows(monkeypatch: pytest.MonkeyPatch):
    """Within the context: every sum the pages take is the per-row reference's."""
    class Reference:
        def __enter__(self):
            monkeypatch.setattr(aggregate_sums, "ROWS_IN_COLUMNS", 10**12)
            monkeypatch.setattr(aggregate_fleet, "latency_matrix", reference_latency_matrix)
            monkeypatch.setattr(aggregate_fleet, "_grouped", reference_grouped)
            monkeypatch.setattr(aggregate_fleet, "_payload_numbers", reference_payload_numbers)
            monkeypatch.setattr(aggregate_fleet, "flag_rates", reference_flag_rates)
            monkeypatch.setattr(aggregate_fleet, "bundle_labels", reference_bundle_labels)
            monkeypatch.setattr(aggregate_fleet, "quantile_rows", reference_quantile_rows)

        def __exit__(self, *_):
            monkeypatch.undo()

    return Reference()


# -- exact comparison -------------------------------------------------------------------------------------------


def _bits(value: float) -> bytes:
    value = float(value)
    return b"nan" if np.isnan(value) else struct.pack("<d", value)  # 0.0 and -0.0 differ


def assert_same_track(found: TrackSum, expected: TrackSum, where: str) -> None:
    assert np.array_equal(found.edges, expected.edges), where
    assert found.counts.dtype == expected.counts.dtype and np.array_equal(found.counts, expected.counts), where
    assert found.count == expected.count and type(found.count) is type(expected.count), where
    for name in ("total", "squares", "low", "high"):
        assert _bits(getattr(found, name)) == _bits(getattr(expected, name)), (where, name)


def assert_same_summary(found: WindowSummary, expected: WindowSummary) -> None:
    for name in ("records", "unjudged", "flagged", "alarms"):
        assert getattr(found, name) == getattr(expected, name) and type(getattr(found, name)) is int, name
    for name in ("classes", "labels", "quality_flags"):  # keys, their order and counts
        assert list(getattr(found, name).items()) == list(getattr(expected, name).items()), name
    assert_same_track(found.latency, expected.latency, "latency")
    for section in ("features", "outputs"):
        assert list(getattr(found, section)) == list(getattr(expected, section)), section
        for name, track in getattr(found, section).items():
            assert_same_track(track, getattr(expected, section)[name], f"{section}.{name}")
    assert found.undecodable == expected.undecodable


def assert_every_summary(frame: pd.DataFrame, plan_for: PlanFor | None) -> None:
    for tracks in (True, False):
        for features in (True, False):
            for plans in (plan_for, None):
                expected = summary_by_rows(frame, plans, tracks=tracks, features=features)
                assert_same_summary(summary_in_columns(frame, plans, tracks=tracks, features=features), expected)
                assert_same_summary(summary_of(frame, plans, tracks=tracks, features=features), expected)


# -- varied frames ------------------------------------------------------------------------------------------------

DERIVED = [*NUMBER_COLUMNS, *ENTRY_TYPES]  # the columns aggregate_frame reads from the payloads
LABELS = ("N", "V", "S", "Q")
FLAGS = ("lead_off", "saturated", "noisy", "flat")


def _profile(rng: np.random.Generator) -> dict[str, Any]:
    def distribution(values: np.ndarray) -> dict[str, Any]:
        return {"decile_edges": np.percentile(values, np.linspace(0, 100, 11)).tolist()}

    return {"features": {"rr": distribution(rng.normal(0.8, 0.1, 400)), "qrs": distribution(rng.normal(90, 8, 400))},
            "predictions": {"confidence": distribution(rng.uniform(0.5, 1.0, 400)),
                            "score": distribution(rng.uniform(0.0, 1.0, 400)),
                            "values": {"target": distribution(rng.normal(3, 1, 400))},
                            "scores": {"N": distribution(rng.uniform(0, 1, 400))}}}


def plans_of(seed: int) -> PlanFor:
    profile = _profile(np.random.default_rng(seed))
    other = _profile(np.random.default_rng(seed + 1))  # the second bundle: the same names on other edges
    cache: dict[tuple, AggregationPlan] = {}

    def plan_for(bundle_id: str, sha256: str, task: str) -> AggregationPlan | None:
        if bundle_id == "unprofiled":
            return None
        key = (bundle_id, task)
        if key not in cache:
            cache[key] = AggregationPlan.from_profile(profile if bundle_id == "ecg" else other, task, LABELS)
        return cache[key]

    return plan_for


def _number(rng: np.random.Generator) -> float:
    """A float with the awkward ones among them: NaN, -0.0, 0.0, values whose sum depends on the order."""
    pick = rng.random()
    if pick < 0.05:
        return float("nan")
    if pick < 0.15:
        return -0.0
    if pick < 0.25:
        return 0.0
    return float(rng.choice([1e16, -1e16, 1.0, 0.1, 3.3])) * float(rng.uniform(0.5, 2))


def _histogram(rng: np.random.Generator, scheme: str, size: int, empty: bool = False) -> dict[str, Any]:
    if empty or rng.random() < 0.1:  # no value: count 0, and sometimes no min/max at all
        return {"scheme": scheme, "count": 0, "sum": 0, "bins": {}} | (
            {} if rng.random() < 0.5 else {"min": 0.0, "max": 0.0, "sum_squares": 0.0})
    chosen = rng.choice(size, size=int(rng.integers(1, 6)), replace=False)
    bins = {str(int(index)): int(rng.integers(0, 5)) for index in chosen}  # a zero count among them
    entry = {"scheme": scheme, "count": int(sum(bins.values())) or 1, "sum": _number(rng), "min": _number(rng),
             "max": _number(rng), "bins": bins}
    if rng.random() < 0.7:
        entry["sum_squares"] = _number(rng)
    return entry


def _counts(rng: np.random.Generator, names: tuple[str, ...]) -> dict[str, int]:
    chosen = rng.permutation(names)[: int(rng.integers(0, len(names) + 1))]  # a different order each row
    return {str(name): int(rng.integers(0, 40)) for name in chosen}


def synthetic_payloads(seed: int, rows: int, devices: int = 6) -> list[dict[str, Any]]:
    """Aggregates of every task kind, on three bundles (one without a profile), with sha256 given, None or NaN, bins
    that match the plan or not, tracks on reference, generic and mismatched bins, and devices with no inferences."""
    rng = np.random.default_rng(seed)
    plans = plans_of(seed)
    start = datetime(2026, 3, 1, tzinfo=UTC)
    payloads = []
    for row in range(rows):
        device = int(rng.integers(devices))
        bundle_id = ("ecg", "table", "unprofiled")[device % 3]
        task = ("multiclass", "binary", "anomaly", "regression", "multilabel")[(device + row // 7) % 5]
        plan = plans(bundle_id, "", task)
        idle = device == devices - 1  # a device that sends minutes without an inference
        features = {"rr": _histogram(rng, REFERENCE_SCHEME, 12), "qrs": _histogram(rng, REFERENCE_SCHEME, 12),
                    "extra": _histogram(rng, GENERIC_SCHEME, 40)}
        if rng.random() < 0.3:
            features["rr"] = _histogram(rng, GENERIC_SCHEME, 40)  # the same name on other bins
        if rng.random() < 0.2:
            features = dict(reversed(features.items()))
        outputs = {name: _histogram(rng, REFERENCE_SCHEME if rng.random() < 0.8 else GENERIC_SCHEME, 12)
                   for name in ("confidence", "score", "values.target", "scores.N", "unknown")
                   if rng.random() < 0.6}
        payload = {
            "kind": "aggregate", "device_id": f"device-{device:02d}", "bundle_id": bundle_id,
            "bundle_sha256": [f"{device % 3:064d}", None, float("nan")][int(rng.integers(3))] if device % 2 else
            f"{device % 3:064d}", "variant": "fp32" if rng.random() < 0.9 else None, "provider": "cpu",
            "task": task, "minute": (start + timedelta(minutes=row // 3)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "seconds": 60, "session": f"s{int(rng.integers(2))}",
            "bins_id": (plan.bins_id if plan is not None and rng.random() < 0.8 else "other-bins"),
            "records": 0 if idle else int(rng.integers(0, 90)), "unjudged": int(rng.integers(0, 3)),
            "flagged": 0 if idle or rng.random() < 0.5 else int(rng.integers(1, 9)),
            "classes": _counts(rng, LABELS), "low_confidence": {}, "quality_flags": _counts(rng, FLAGS),
            "latency_us": _histogram(rng, LATENCY_SCHEME, len(latency_edges()) + 1, empty=idle),
            "features": features, "outputs": outputs,
        }
        if payload["flagged"] and rng.random() < 0.3:  # rows refused as outside the input domain: their only flag
            payload["quality_flags"]["out_of_domain"] = int(rng.integers(1, payload["flagged"] + 1))
        if rng.random() < 0.5:  # beats or windows refused without a record, some outside the input domain
            refused = int(rng.integers(0, 12))
            payload["no_result"] = {"count": refused, "quality_flags": {"lead_off": refused // 2} | (
                {"out_of_domain": refused - refused // 2} if rng.random() < 0.5 else {})}
        if task == "multilabel":
            payload["labels"] = _counts(rng, LABELS)
        elif rng.random() < 0.3:
            payload["labels"] = None
        if task == "anomaly":
            payload["alarms"] = int(rng.integers(0, 5))
        elif rng.random() < 0.3:
            payload["alarms"] = None
        payloads.append(payload)
    return payloads


@pytest.mark.parametrize("rows", [0, 1, 47, 48, 400])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_summaries_in_columns_are_the_row_by_row_summaries(seed: int, rows: int) -> None:
    plans = plans_of(seed)
    payloads = synthetic_payloads(seed, rows)
    frame = aggregate_frame(payloads)
    assert_every_summary(frame, plans)
    compact = aggregate_frame([compact_payload(payload) for payload in payloads])  # what the pages read
    assert_every_summary(compact, plans)
    assert_every_summary(compact.drop(columns=DERIVED), plans)  # a frame made elsewhere: read from its payloads
    if rows:  # concatenated with a frame made elsewhere: its columns no longer typed, read from the payloads
        assert_every_summary(pd.concat([compact, compact.drop(columns=DERIVED).iloc[:1]], ignore_index=True), plans)
    if rows > 1:
        assert_every_summary(compact.iloc[::-1], plans)  # another order: other first rows, other sums
        one = compact[compact["device_id"] == compact["device_id"].iloc[0]]
        assert_every_summary(one, plans)  # a single device


def test_the_synthetic_frames_hold_the_awkward_cases() -> None:
    frame = aggregate_frame(synthetic_payloads(0, 400))
    summary = summary_in_columns(frame, plans_of(0))
    assert summary.undecodable >= {"unknown", "rr"}  # no reference bins; one name on two bin schemes
    assert {"rr", "qrs", "extra"} <= set(summary.features) and summary.outputs
    assert any(track.count and np.isnan(track.total) for track in summary.features.values())
    idle = frame[frame["device_id"] == "device-05"]
    assert len(idle) and idle["latency_count"].eq(0).all() and np.isinf(idle["latency_low"]).all()
    assert summary_in_columns(idle).latency.count == 0 and summary_in_columns(idle).latency.low == np.inf
    assert frame["bundle_sha256"].isna().any() and frame["variant"].isna().any()


def test_payloads_the_entry_columns_cannot_hold_are_summed_from_the_payloads() -> None:
    """A section that is not a {text: integer} object, a count beyond the packing: that row's entries are null, and
    a frame holding it is summed from its payloads (the same sums); a frame without them keeps its columns."""
    payloads = [compact_payload(payload) for payload in synthetic_payloads(4, 120)]
    plain = aggregate_frame(payloads)
    assert latency_bins(plain) is not None and counter_entries(plain, "classes") is not None
    odd = [dict(payload) for payload in payloads]
    odd[3]["classes"] = {7: 2}  # a key that is not text (Counter adds it all the same)
    odd[5]["quality_flags"] = ["lead_off", "lead_off"]  # a list: Counter counts its items
    odd[8]["labels"] = {"N": 1.5}  # a count that is not an integer
    odd[9] = odd[9] | {"latency_us": compact_payload({**odd[9], "latency_us": {  # a count beyond 32 bits
        **odd[9]["latency_us"], "bins": {"3": 2**40}, "count": 2**40, "min": 1.0, "max": 2.0}})["latency_us"]}
    frame = aggregate_frame(odd)
    assert latency_bins(frame) is None and counter_entries(frame, "classes") is None
    plans = plans_of(4)
    assert_every_summary(frame, plans)
    assert_every_summary(pd.concat([plain, frame], ignore_index=True), plans)
    assert_same_summary(summary_in_columns(pickle.loads(pickle.dumps(plain)), plans),  # columns travel with it
                        summary_by_rows(plain, plans))
    groups = pd.factorize(frame["device_id"])[0]
    assert np.array_equal(aggregate_fleet.latency_matrix(frame, groups, groups.max() + 1),
                          reference_latency_matrix(frame, groups, groups.max() + 1))
    pd.testing.assert_frame_equal(aggregate_fleet.flag_rates(frame), reference_flag_rates(frame))


@pytest.mark.parametrize("features", ["uniform", "ragged", "none"])
@pytest.mark.parametrize("seed", [0, 1])
def test_summaries_of_folded_records_are_the_row_by_row_summaries(features: str, seed: int) -> None:
    """Aggregates folded from every kind of older device's records (classifiers, anomaly, regression, schema 1)."""
    records = mixed_records(seed, features=features)
    plans = plans_of(seed)
    for compact in (False, True):
        frame = fold_records(records, plans, compact=compact)
        assert len(frame) > 10 and frame["task"].nunique() >= 3
        assert_every_summary(frame, plans)
        for _, group in frame.groupby(["bundle_id", "task"]):
            assert_every_summary(group, plans)


def test_the_column_helpers_are_the_loops_they_replace() -> None:
    values = np.array([0.1, 1e16, -1e16, 0.2, float("nan"), -0.0, 3.0])
    total = 0.0
    for value in values:
        total += value
    assert _bits(sequential_sum(values)) == _bits(total)
    assert _bits(sequential_sum(np.array([-0.0]))) == _bits(0.0 + -0.0) and sequential_sum(np.array([])) == 0.0
    for sequence in ([0.0, -0.0, 1.0], [-0.0, 0.0], [float("nan"), 2.0, 1.0, 1.0], [float("nan")], [], [np.inf]):
        low, high = np.inf, -np.inf
        for value in sequence:
            low, high = min(low, value), max(high, value)
        assert _bits(loop_extreme(np.array(sequence), np.inf, lowest=True)) == _bits(low), sequence
        assert _bits(loop_extreme(np.array(sequence), -np.inf, lowest=False)) == _bits(high), sequence
    dicts = [{"b": 1, "a": 0}, {}, {"a": 2, "c": 5}, {"b": 3}]
    expected: Counter = Counter()
    for entry in dicts:
        expected.update(entry)
    assert list(counter_sum(dicts).items()) == list(expected.items()) == [("b", 4), ("a", 2), ("c", 5)]
    odd = [{1: 2}, {True: 1, float("nan"): 3}, None]  # not text keys, a None section: as Counter.update
    expected = Counter()
    for entry in odd:
        expected.update(entry)
    assert list(counter_sum(odd).items()) == list(expected.items())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fleet_maths_in_columns_are_the_per_row_maths(seed: int) -> None:
    payloads = synthetic_payloads(seed, 400, devices=9)
    frame = aggregate_frame([compact_payload(payload) for payload in payloads])
    groups = pd.factorize(frame["device_id"])[0]
    for part in (frame, frame.iloc[:1], frame.iloc[:0], frame.drop(columns=DERIVED)):
        part_groups = groups[: len(part)]
        assert np.array_equal(aggregate_fleet.latency_matrix(part, part_groups, 9),
                              reference_latency_matrix(part, part_groups, 9))
        pd.testing.assert_frame_equal(aggregate_fleet._payload_numbers(part), reference_payload_numbers(part),
                                      check_dtype=len(part) > 0)  # no row: typed columns, where the loop had none
        pd.testing.assert_frame_equal(aggregate_fleet.flag_rates(part), reference_flag_rates(part))
    keyed = frame.assign(bucket=frame["minute"].dt.floor("5min"), group=frame["bundle_id"])
    table, codes = aggregate_fleet._grouped(keyed, ["group", "bucket"])
    expected_table, expected_codes = reference_grouped(keyed, ["group", "bucket"])
    pd.testing.assert_frame_equal(table, expected_table.set_axis(table.columns, axis=1))  # read by position
    assert np.array_equal(codes, expected_codes)
    rows, _, _ = latency_entries(frame)
    assert len(rows) and frame_numbers(frame)["latency_count"].sum() > 0
    with pytest.raises(IndexError):
        aggregate_fleet.latency_matrix(frame, groups, 2)  # a group number out of range, as numpy.add.at refuses


def test_percentiles_of_many_histograms_are_histogram_quantile_row_by_row() -> None:
    rng = np.random.default_rng(3)
    size = len(latency_edges()) + 1
    matrix = np.zeros((300, size), dtype=np.int64)
    for row in matrix[:-2]:  # the last two rows stay empty
        chosen = rng.choice(size, size=int(rng.integers(1, 40)), replace=False)
        row[chosen] = rng.integers(0, 10**int(rng.integers(1, 7)), size=len(chosen))
    matrix[0, :] = 0
    matrix[0, 5] = 1  # one value
    matrix[1, :] = 0
    matrix[1, [0, size - 1]] = [3, 4]  # the open outer bins
    edges = latency_edges()
    lows = rng.uniform(0, edges[-1], len(matrix)) * rng.choice([0.0, 1e-6, 1.0], len(matrix))
    highs = lows + rng.uniform(0, edges[-1] * 2, len(matrix))
    lows[2], highs[2] = 0.0, 0.0  # a zero latency
    for q in (0.0, 0.05, 0.5, 0.95, 1.0):
        found = aggregate_fleet.quantile_rows(matrix, lows, highs, q)
        expected = reference_quantile_rows(matrix, lows, highs, q)
        assert [_bits(value) for value in found] == [_bits(value) for value in expected], q
    assert np.isnan(found[-2:]).all() and not np.isnan(found[:-2]).any()


# -- the pages' data on the mixed fleet ---------------------------------------------------------------------------


def _assert_same_predictions(found, expected) -> None:
    for name in ("task", "records", "unjudged", "alarm_rate", "threshold", "message"):
        assert getattr(found, name) == getattr(expected, name), name
    for name in ("shares", "values", "statistics"):
        pd.testing.assert_frame_equal(getattr(found, name), getattr(expected, name), check_exact=True)


def _fleet_page(frame: pd.DataFrame, devices: pd.DataFrame, catalog, plans, now, span, bucket, start, end) -> dict:
    """What the Fleet page computes of a window (``dashboard/pages/fleet.py``)."""
    overview = aggregate_fleet.device_overview(devices, frame, catalog, now, span)
    series = aggregate_fleet.group_series(frame, bucket, aggregate_fleet.bundle_labels(frame, catalog), start, end)
    predictions = [(name, aggregate_predictions.summarise(part, bundle, plans))
                   for name, bundle, part in aggregate_predictions.by_bundle(frame, catalog)]
    timelines = [aggregate_predictions.timeline(part, bucket, "multiclass", plans, start, end)
                 for _, part in frame.groupby("device_id")]
    return {"overview": overview, "series": series, "rates": aggregate_fleet.flag_rates(frame),
            "counts": aggregate_fleet.status_counts(overview), "predictions": predictions, "timelines": timelines}


@pytest.mark.parametrize("span", [timedelta(hours=1), timedelta(hours=8)])
def test_the_fleet_pages_numbers_on_the_mixed_fleet_are_the_per_row_ones(mixed_fixture, by_rows,
                                                                         span: timedelta) -> None:
    """Minute aggregates, folded older devices' records and an upgraded device, summed in columns and row by row."""
    settings = mixed_fixture.mixed
    catalog = read_catalog(settings.bundles)
    plans = catalog_plans(catalog)
    end = window_end(mixed_fixture.now)
    view = load_window(WindowRequest(span, minutes_for=span, features=False), end,
                       Sources.for_reader(TelemetryReader(settings.database), plans), plans)
    assert view.folded and len(view.frame) >= aggregate_sums.ROWS_IN_COLUMNS
    cases = {"fleet": (view.frame, view.devices),
             "one device": (view.frame[view.frame["device_id"] == view.frame["device_id"].iloc[0]], view.devices),
             "empty window": (view.frame.iloc[:0], view.devices)}
    for name, (frame, devices) in cases.items():
        arguments = (frame, devices, catalog, plans, end, span, timedelta(minutes=5), view.start, view.end)
        found = _fleet_page(*arguments)
        with by_rows:
            expected = _fleet_page(*arguments)
        for key in ("overview", "series", "rates"):
            pd.testing.assert_frame_equal(found[key], expected[key], check_exact=True, obj=f"{name}: {key}")
        assert found["counts"] == expected["counts"]
        assert [label for label, _ in found["predictions"]] == [label for label, _ in expected["predictions"]]
        for (_, mine), (_, theirs) in zip(found["predictions"], expected["predictions"], strict=True):
            _assert_same_predictions(mine, theirs)
        for mine, theirs in zip(found["timelines"], expected["timelines"], strict=True):
            for one, other in zip(mine, theirs, strict=True):
                pd.testing.assert_frame_equal(one, other, check_exact=True)


def test_the_alert_verdicts_in_columns_are_the_per_row_verdicts(mixed_fixture, monkeypatch) -> None:
    """Every alert rule on the mixed fleet's window with each summary in columns (even a device's few minutes) and
    row by row: the same alerts, values and messages."""
    settings = mixed_fixture.mixed
    plans = catalog_plans(read_catalog(settings.bundles))
    end = window_end(mixed_fixture.now)
    view = load_window(WindowRequest(timedelta(hours=8), minutes_for=timedelta(hours=8)), end,
                       Sources.for_reader(TelemetryReader(settings.database), plans), plans)
    verdicts = [aggregate_checks.fleet_alerts(view.frame, end, plans)]  # as the pages run them
    monkeypatch.setattr(aggregate_sums, "ROWS_IN_COLUMNS", 0)  # every summary in columns, even a device's minutes
    verdicts.append(aggregate_checks.fleet_alerts(view.frame, end, plans))
    monkeypatch.setattr(aggregate_sums, "ROWS_IN_COLUMNS", 10**12)  # the reference: every summary row by row,
    monkeypatch.setattr(aggregate_checks, "_flags_by_device", lambda window: lambda device_id: summary_by_rows(
        window[window["device_id"] == device_id], tracks=False).quality_flags)  # each device's flags from its rows
    expected = aggregate_checks.fleet_alerts(view.frame, end, plans)
    assert verdicts[0] == verdicts[1] == expected
    assert {alert.kind for alert in expected} >= {"signal quality"}


def test_bins_beyond_a_tracks_edges_leave_that_entry_out_and_name_the_track() -> None:
    """An aggregate the collector accepts (bin keys up to the scheme's largest) whose bins lie beyond the edges its
    feature has here (a device on another profile than its bins_id says): left out and named, never a crash."""
    plans = plans_of(0)
    payloads = [compact_payload(payload) for payload in synthetic_payloads(0, 120)]
    decoded = summary_in_columns(aggregate_frame(payloads), plans)
    name = next(name for name in ("qrs", "extra") if name in decoded.features and name not in decoded.undecodable)
    row = next(index for index, payload in enumerate(payloads)
               if (payload["features"].get(name) or {}).get("count"))
    odd = [dict(payload) for payload in payloads]
    entry = odd[row]["features"][name]
    odd[row] = {**odd[row], "features": {**odd[row]["features"], name: compact_payload(
        {**odd[row], "features": {name: {**entry, "bins": {"5000": entry["count"]}}}})["features"][name]}}
    frame = aggregate_frame(odd)
    assert_every_summary(frame, plans)  # row by row, in columns and summary_of: the same sums, no exception
    summary = summary_of(frame, plans)
    assert name in summary.undecodable
    assert summary.features[name].count == decoded.features[name].count - entry["count"]


def test_throughput_compares_every_device_over_the_stretch_where_all_their_rows_are_complete(mixed_fixture) -> None:
    """A 6-hour window begins mid-hour: rollups cover it from the first whole hour, folded records from its start.
    Per minute counts each device's rows from ``coverage`` over the minutes from there (a device sending aggregates
    read 0.84/min at 1/min beside 0.997 for one sending records, before)."""
    settings = mixed_fixture.mixed
    catalog = read_catalog(settings.bundles)
    plans = catalog_plans(catalog)
    end = window_end(mixed_fixture.now)
    span = timedelta(hours=6)
    view = load_window(WindowRequest(span, minutes_for=timedelta(minutes=30), features=False), end,
                       Sources.for_reader(TelemetryReader(settings.database), plans), plans)
    assert view.coverage is not None and view.start <= view.coverage < view.end
    overview = aggregate_fleet.device_overview(view.devices, view.frame, catalog, end, span,
                                               rate_window=(view.coverage, view.end)).set_index("device_id")
    minutes = (view.end - view.coverage).total_seconds() / 60
    late = view.frame[view.frame["minute"] >= view.coverage].groupby("device_id")["records"].sum()
    for device_id, row in overview.iterrows():
        assert row["per_minute"] == pytest.approx(late.get(device_id, 0) / minutes), device_id
    assert (overview["records"] >= overview["per_minute"] * minutes - 1e-9).all()  # the records column is whole
