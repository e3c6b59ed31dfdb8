"""Folding older devices' records column-wise (``record_fold.fold_records``) gives exactly the aggregates the
record-by-record fold gave (kept here as ``per_record_fold``, the code it replaced): the same rows in the same order,
payloads equal down to key order and the last bit of every sum — classifier records of both schemas with flags,
unjudged rows, low confidence and features (one shape, or several), NaN confidences, and other tasks."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from dashboard.monitoring.aggregate_window import (
    FOLDED_SESSION,
    PlanFor,
    SparseBins,
    aggregate_frame,
    catalog_plans,
    compact_payload,
)
from dashboard.monitoring.record_fold import fold_records
from runtime.telemetry.aggregates import AggregationPlan, assemble, columns_of_records, summarise

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FLAGS = ("noisy", "saturated", "lead_off")


def per_record_fold(records: pd.DataFrame, plan_for: PlanFor | None = None) -> pd.DataFrame:
    """The fold before the column-wise one (commit 722252d), verbatim: a record dict per event, ``summarise``."""
    if records.empty:
        return aggregate_frame([])
    keys = ("device_id", "bundle_id", "bundle_sha256", "variant", "provider")
    columns = {name: records[name].tolist() for name in (*keys, "latency_us", "quality_flags", "result",
                                                           "predicted_class", "confidence")}
    columns["task"] = records["task"].tolist() if "task" in records else [None] * len(records)
    columns["features"] = records["features"].tolist() if "features" in records else [None] * len(records)
    minutes = records["time"].dt.floor("1min").dt.strftime("%Y-%m-%dT%H:%M:%SZ").tolist()
    groups: dict[tuple, list[int]] = {}
    for index, key in enumerate(zip(*(columns[name] for name in keys), minutes, strict=True)):
        groups.setdefault(key, []).append(index)
    payloads = []
    for key, indices in groups.items():
        rows = [_record_dict(columns, index) for index in indices]
        task = next((row["task"] for row in rows if "task" in row), "multiclass")
        identity = {**dict(zip(keys, map(str, key[:-1]), strict=True)), "task": task}
        plan = plan_for(identity["bundle_id"], identity["bundle_sha256"], task) if plan_for is not None else None
        plan = plan or AggregationPlan(task, ())
        summary = summarise(columns_of_records(rows), plan)
        summary |= {"no_result": {"count": 0, "quality_flags": {}}, "quality_events": {}, "sent_individually": 0,
                    "late": 0}
        payloads.append(assemble(identity, key[-1], FOLDED_SESSION, plan.bins_id, None, summary))
    return aggregate_frame(payloads)


def _record_dict(columns: Mapping[str, list], index: int) -> dict[str, Any]:
    flags = columns["quality_flags"][index] or []
    record = {"latency_us": columns["latency_us"][index], "quality_flags": flags,
              "features": columns["features"][index]}
    result, task = columns["result"][index], columns["task"][index]
    if isinstance(task, str):
        return record | {"task": task, "result": result if isinstance(result, Mapping) else None}
    return record | {"predicted_class": columns["predicted_class"][index], "confidence": columns["confidence"][index]}


def _profile(rng: np.random.Generator) -> dict[str, Any]:
    def distribution(values: np.ndarray) -> dict[str, Any]:
        return {"decile_edges": np.percentile(values, np.linspace(0, 100, 11)).tolist(), "sample": values.tolist()}

    return {"features": {"rr": distribution(rng.normal(0.8, 0.1, 400)), "qrs": distribution(rng.normal(90, 8, 400))},
            "predictions": {"confidence": distribution(rng.uniform(0.5, 1.0, 400)),
                            "score": distribution(rng.uniform(0.0, 1.0, 400))}}


def _plans(rng: np.random.Generator) -> PlanFor:
    profile = _profile(rng)
    return lambda bundle_id, sha256, task: (None if bundle_id == "unprofiled"
                                            else AggregationPlan.from_profile(profile, task, ("N", "V")))


def _result(task: str, rng: np.random.Generator) -> dict[str, Any] | None:
    if rng.random() < 0.1:
        return None  # an input the model could not judge
    if task in ("multiclass", "binary"):
        return {"class": str(rng.choice(["N", "V", "S"])), "confidence": round(float(rng.uniform(0.3, 1.0)), 6),
                "low_confidence": bool(rng.random() < 0.2)}
    if task == "anomaly":
        score = round(float(rng.uniform(0, 1)), 6)
        return {"score": score, "alarm": score > 0.8, **({"class": "anomalous"} if score > 0.8 else {})}
    return {"values": {"target": round(float(rng.normal(3, 1)), 6)}}  # regression


def mixed_records(seed: int = 0, *, features: str = "uniform") -> pd.DataFrame:
    """A reader's record frame: classifiers on schema 2 (two bundles interleaved) and schema 1, an anomaly
    detector and a regressor (the record-by-record path); ``features`` "uniform", "ragged" (names missing or reordered)
    or "none" (read without features)."""
    rng = np.random.default_rng(seed)
    devices = {"dev-a": ("multiclass", "bundle-1"), "dev-b": (None, "bundle-1"), "dev-c": ("anomaly", "bundle-2"),
               "dev-d": ("regression", "unprofiled"), "dev-e": ("binary", "unprofiled")}
    rows = []
    for number in range(1500):
        device = str(rng.choice(list(devices)))
        task, bundle = devices[device]
        if device == "dev-a" and rng.random() < 0.3:
            bundle = "bundle-3"  # a second bundle within the same minutes
        moment = START + timedelta(seconds=float(rng.uniform(0, 240)))
        flags = list(rng.choice(FLAGS, size=int(rng.choice([0, 0, 0, 1, 2])), replace=True))
        feature_values = {"rr": round(float(rng.normal(0.8, 0.15)), 6), "qrs": round(float(rng.normal(92, 9)), 6)}
        if features == "ragged" and rng.random() < 0.2:
            feature_values = dict(reversed(feature_values.items())) if rng.random() < 0.5 else {"rr": 0.7, "st": 1.0}
        row = {"device_id": device, "sequence": number, "time": moment, "bundle_id": bundle,
               "bundle_sha256": f"sha-{bundle}", "variant": "int8", "provider": "CPUExecutionProvider",
               "latency_us": round(float(rng.lognormal(6, 1)), 1), "quality_flags": flags}
        if task is None:  # schema 1
            confidence = np.nan if rng.random() < 0.05 else round(float(rng.uniform(0.3, 1.0)), 6)
            row |= {"task": None, "result": None, "predicted_class": str(rng.choice(["N", "V"])),
                    "confidence": confidence}
        else:
            result = _result(task, rng)
            row |= {"task": task, "result": result,
                    "predicted_class": (result or {}).get("class"), "confidence": (result or {}).get("confidence")}
        if features != "none":
            row["features"] = feature_values if rng.random() > 0.05 or features == "uniform" else {}
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    frame["confidence"] = pd.to_numeric(frame["confidence"], errors="coerce")
    return frame.sort_values(["time", "device_id", "sequence"], kind="stable").reset_index(drop=True)


def _plain(value: Any) -> Any:
    """``value`` with every ``SparseBins`` as [dtypes, indices, counts] (for ``json.dumps``)."""
    if isinstance(value, SparseBins):
        return [str(value.indices.dtype), str(value.counts.dtype), value.indices.tolist(), value.counts.tolist()]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _assert_identical(found: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert len(found) == len(expected) > 0
    pd.testing.assert_frame_equal(found.drop(columns="payload"), expected.drop(columns="payload"))
    for mine, theirs in zip(found["payload"], expected["payload"], strict=True):
        assert json.dumps(_plain(mine)) == json.dumps(_plain(theirs))  # key order and every float's repr


@pytest.mark.parametrize("features", ["uniform", "ragged", "none"])
@pytest.mark.parametrize("seed", [0, 1])
def test_column_fold_equals_the_record_by_record_fold(features: str, seed: int) -> None:
    records = mixed_records(seed, features=features)
    plans = _plans(np.random.default_rng(seed + 10))
    found = fold_records(records, plans)
    _assert_identical(found, per_record_fold(records, plans))
    assert {"dev-a", "dev-b", "dev-c", "dev-d", "dev-e"} <= set(found["device_id"])
    payloads = found["payload"].tolist()
    assert any(payload["unjudged"] for payload in payloads) and any(payload["low_confidence"] for payload in payloads)
    assert any(len(payload["quality_flags"]) > 1 for payload in payloads)
    assert any(payload["features"] for payload in payloads) == (features != "none")
    compact = per_record_fold(records, plans)
    compact["payload"] = [compact_payload(payload) for payload in compact["payload"]]
    _assert_identical(fold_records(records, plans, compact=True), compact)  # what the pages read


def test_column_fold_without_plans_and_of_one_record() -> None:
    records = mixed_records(3)
    _assert_identical(fold_records(records), per_record_fold(records))
    _assert_identical(fold_records(records.iloc[:1]), per_record_fold(records.iloc[:1]))
    assert fold_records(records.iloc[:0]).empty


def test_column_fold_of_the_dashboard_fleet_fixture() -> None:
    """The verdict tests' simulated ECG fleet (real beats, the catalog's bundle plans)."""
    from tests.dashboard.test_aggregate_verdicts import Catalog, raw_frame

    records, plans = raw_frame(), catalog_plans(Catalog())
    expected = per_record_fold(records, plans)
    _assert_identical(fold_records(records, plans), expected)
    expected["payload"] = [compact_payload(payload) for payload in expected["payload"]]
    _assert_identical(fold_records(records, plans, compact=True), expected)


def test_column_fold_of_long_minutes_and_signed_zeros() -> None:
    """Groups of very different lengths (padded reductions in several blocks) and values of ±0 (min, max, sums)."""
    records = mixed_records(4, features="uniform")
    records = pd.concat([records] * 9, ignore_index=True).sort_values(["time", "device_id"], kind="stable")
    records["features"] = [{"rr": -0.0 if index % 3 else 0.0, "qrs": float(index % 7) - 3.0}
                           for index in range(len(records))]
    records = records.reset_index(drop=True)
    plans = _plans(np.random.default_rng(5))
    _assert_identical(fold_records(records, plans), per_record_fold(records, plans))
    single = records[records["device_id"] == "dev-a"].iloc[:1]
    single.loc[:, "features"] = [{"rr": -0.0, "qrs": -0.0}]
    _assert_identical(fold_records(single, plans), per_record_fold(single, plans))
