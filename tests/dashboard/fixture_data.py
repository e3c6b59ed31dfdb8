"""Fixture telemetry and benchmark results for the dashboard tests (and for trying the dashboard by hand).

``fleet_records`` simulates a few devices around ``now``: healthy ones (a small and a large drift
window), one whose inputs and predictions drifted, one whose latency regressed in the last 90 minutes,
one with a burst of signal-quality flags, one running a bundle that is not published (an older device sending
telemetry schema 1) and one running a bundle without a reference profile. ``kind_fleet`` adds devices on
hand-built multilabel, regression and anomaly bundles, and one sending a task kind no dashboard knows yet.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from dashboard.data.bundles import BundleInfo
from runtime.telemetry.records import pseudonymous_device_id, utc_timestamp

SALT = "dashboard-tests"
HISTORY = timedelta(hours=7)  # every device reports over the last seven hours
HEALTHY_LATENCY_US = 2_000.0  # median latency of a healthy device, far under the 10 ms objective
SLOW_LATENCY_US = 25_000.0  # the regressed device's slow inferences, over the objective


def device(name: str) -> str:
    return pseudonymous_device_id(f"SN-{name}", SALT)


DEVICES = {name: device(name) for name in ("healthy", "busy", "drifted", "regressed", "noisy", "orphan", "bare")}


@dataclass(frozen=True)
class DeviceBehaviour:
    """How one simulated device behaves."""

    name: str
    interval: timedelta  # time between inferences
    feature_shift_std: float = 0.0  # every feature moved by this many reference standard deviations
    class_skew: float = 0.0  # share of predictions forced to the first class
    drift_since: timedelta | None = None  # the feature shift and class skew start this long before now (None: always)
    slow_since: timedelta | None = None  # slow inferences start this long before now
    slow_share: float = 0.0  # share of slow inferences after slow_since
    flagged_since: timedelta | None = None  # quality flags start this long before now
    flagged_share: float = 0.0  # share of flagged records after flagged_since


BEHAVIOURS = (
    DeviceBehaviour("healthy", timedelta(seconds=30)),
    DeviceBehaviour("busy", timedelta(seconds=10)),  # 2 520 records: the large-window drift path
    DeviceBehaviour(
        "drifted", timedelta(seconds=30), feature_shift_std=1.5, class_skew=0.8, drift_since=timedelta(hours=4)
    ),
    DeviceBehaviour("regressed", timedelta(seconds=10), slow_since=timedelta(minutes=90), slow_share=0.6),
    DeviceBehaviour("noisy", timedelta(seconds=30), flagged_since=timedelta(hours=1), flagged_share=0.35),
)


def _record(bundle: BundleInfo, device_id: str, moment: datetime, sequence: int, latency: float, label: str,
            confidence: float, flags: list[str], features: dict[str, float]) -> dict[str, Any]:
    """A schema-2 record of a classifier bundle."""
    return {
        "sequence": sequence, "time": utc_timestamp(moment), "device_id": device_id,
        "bundle_id": bundle.bundle_id, "bundle_sha256": bundle.manifest_sha256, "variant": bundle.shipped_variant,
        "provider": "CPUExecutionProvider", "latency_us": round(latency, 1), "task": bundle.manifest.output.task.value,
        "result": {"class": label, "confidence": round(confidence, 6), "low_confidence": confidence < 0.6},
        "quality_flags": flags, "features": features,
    }


def schema_1(record: dict[str, Any]) -> dict[str, Any]:
    """The same record as an older device sends it (schema 1: predicted_class and confidence)."""
    result = record["result"]
    legacy = {key: value for key, value in record.items() if key not in ("task", "result")}
    return legacy | {"predicted_class": result["class"], "confidence": result["confidence"]}


def device_records(
    behaviour: DeviceBehaviour, bundle: BundleInfo, profile: dict[str, Any], now: datetime, seed: int
) -> list[dict[str, Any]]:
    """One simulated device's records over ``HISTORY`` up to ``now``, oldest first."""
    rng = np.random.default_rng(seed)
    device_id = DEVICES[behaviour.name]
    count = int(HISTORY / behaviour.interval)
    moments = [now - HISTORY + (index + 1) * behaviour.interval for index in range(count)]
    ages = np.array([(now - moment).total_seconds() for moment in moments])
    drifting = np.ones(count, dtype=bool)
    if behaviour.drift_since is not None:
        drifting = ages <= behaviour.drift_since.total_seconds()
    columns = {}
    for name, reference in profile["features"].items():
        std = reference["std"] or 1.0
        values = rng.choice(np.asarray(reference["sample"]), count) + rng.normal(0, 0.05 * std, count)
        columns[name] = np.round(values + drifting * behaviour.feature_shift_std * reference["std"], 6)
    fractions = profile["predictions"]["class_fractions"]
    labels = np.array(list(fractions))
    shares = np.array(list(fractions.values()), dtype=np.float64)
    predicted = rng.choice(labels, count, p=shares / shares.sum())
    predicted[drifting & (rng.random(count) < behaviour.class_skew)] = labels[0]
    latency = rng.lognormal(math.log(HEALTHY_LATENCY_US), 0.25, count)
    if behaviour.slow_since is not None:
        slow = (ages <= behaviour.slow_since.total_seconds()) & (rng.random(count) < behaviour.slow_share)
        latency[slow] = rng.lognormal(math.log(SLOW_LATENCY_US), 0.2, int(slow.sum()))
    if behaviour.flagged_since is not None:
        flagged = (ages <= behaviour.flagged_since.total_seconds()) & (rng.random(count) < behaviour.flagged_share)
    else:
        flagged = rng.random(count) < 0.005
    flag_names = rng.choice(["flat_line", "clipped", "gap"] if behaviour.flagged_since else ["partial_window"], count)
    reference_confidence = profile["predictions"]["confidence"]
    confidence = rng.choice(np.asarray(reference_confidence["sample"]), count)
    confidence = np.clip(confidence + rng.normal(0, 0.05 * reference_confidence["std"], count), 0.0, 1.0)
    return [
        _record(bundle, device_id, moments[index], index + 1, float(latency[index]), str(predicted[index]),
                float(confidence[index]), [str(flag_names[index])] if flagged[index] else [],
                {name: float(values[index]) for name, values in columns.items()})
        for index in range(count)
    ]


def fleet_records(bundle: BundleInfo, bare_bundle: BundleInfo, now: datetime) -> dict[str, list[dict[str, Any]]]:
    """Records per device id: every behaviour on ``bundle``, plus the orphan and bare-bundle devices."""
    assert bundle.profile is not None
    fleet = {
        DEVICES[behaviour.name]: device_records(behaviour, bundle, bundle.profile, now, seed)
        for seed, behaviour in enumerate(BEHAVIOURS)
    }
    orphan = device_records(DeviceBehaviour("orphan", timedelta(minutes=2)), bundle, bundle.profile, now, 11)
    for record in orphan:
        record["bundle_id"], record["bundle_sha256"] = "0123456789ab", "0" * 64
    fleet[DEVICES["orphan"]] = [schema_1(record) for record in orphan]  # an older device on an unpublished bundle
    fleet[DEVICES["bare"]] = device_records(DeviceBehaviour("bare", timedelta(minutes=2)), bare_bundle,
                                            bundle.profile, now, 12)
    return fleet


def batches(records: list[dict[str, Any]], size: int = 500) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(records), size):
        yield records[start:start + size]


def _latency(rng: np.random.Generator, median: float) -> dict[str, Any]:
    runs = np.sort(rng.lognormal(math.log(median), 0.15, 2_000))
    windows = [float(np.median(chunk)) for chunk in np.array_split(runs[rng.permutation(len(runs))], 5)]
    quantiles = [float(value) for value in np.percentile(runs, np.arange(101))]
    return {
        "mean_us": float(runs.mean()), "p50_us": float(np.median(runs)), "p90_us": quantiles[90],
        "p95_us": quantiles[95], "p99_us": quantiles[99], "minimum_us": quantiles[0], "max_us": quantiles[100],
        "std_us": float(runs.std()), "iterations": len(runs), "warmup_iterations": 50,
        "window_medians_us": windows, "median_of_windows_us": float(np.median(windows)),
        "spread": (max(windows) - min(windows)) / float(np.median(windows)), "stable": True,
        "quantiles_us": quantiles,
    }


def _row(rng: np.random.Generator, engine: str, variant: str, provider: str | None, threads: int | None,
         median: float, macro_f1: float) -> dict[str, Any]:
    return {
        "engine": engine, "variant": variant, "provider": provider, "threads": threads, "status": "ok",
        "reason": None, "model_file": f"{variant}.onnx", "model_size_bytes": 10_240, "session_creation_ms": 12.5,
        "first_inference_us": median * 4, "latency": _latency(rng, median),
        "throughput": {"1": {"samples_per_second": 1e6 / median, "batch_latency": _latency(rng, median)}},
        "peak_rss_bytes": 80 * 2**20, "macro_f1": macro_f1, "gate_passed": True if engine == "onnxruntime" else None,
        "runtime": {},
    }


def bench_document(scenario: str = "breast-cancer") -> dict[str, Any]:
    """A schema-valid ``bench.json`` with ONNX variants on CPU at 1 and 2 threads, CUDA missing, Keras, LiteRT."""
    rng = np.random.default_rng(0)
    rows = []
    for threads in (1, 2):
        for variant, median in (("fp32", 40.0), ("fp16", 30.0), ("int8-dynamic", 33.0), ("int8-static", 28.0)):
            rows.append(_row(rng, "onnxruntime", variant, "CPUExecutionProvider", threads, median / threads**0.3, 0.87))
        rows.append(_row(rng, "keras", "call", None, threads, 900.0, 0.87))
        rows.append(_row(rng, "litert", "int8", None, threads, 35.0, 0.86))
    rows.append({"engine": "onnxruntime", "variant": "*", "provider": "CUDAExecutionProvider", "threads": None,
                 "status": "not available", "reason": "onnxruntime-gpu is not installed"})
    machine = {
        "cpu_model": "Fixture CPU @ 2.0GHz", "architecture": "x86_64", "isa_flags": ["avx2", "fma"],
        "logical_cpus_host": 8, "affinity_cpus": 2, "cgroup_cpu_limit": 2, "usable_cores": 2, "os": "Linux",
        "packages": {"onnxruntime": "1.32.0", "numpy": "2.4.6"},
        "onnxruntime": {"version": "1.32.0", "device": "CPU", "available_providers": ["CPUExecutionProvider"]},
    }
    settings = {"quick": True, "stability": {}, "batch_sizes": [1], "threads": [1, 2],
                "providers": ["CPUExecutionProvider"], "session": {}, "peers": True, "litert_runtime": "fixture"}
    targets = [{"target": "shipped p50 ≤ LiteRT int8", "threads": 1, "onnx": 30.0, "peer": 35.0, "ratio": 0.86,
                "met": True, "source": "head-to-head"}]
    windows = {"onnxruntime fp32": [40.0, 44.0, 41.0], "onnxruntime fp16": [30.0, 33.0, 31.0],
               "litert int8": [35.0, 36.0, 34.0]}
    head_to_head = [{"threads": 1, "rounds": 3, "runs_per_round": 100, "models": {
        name: {"median_of_windows_us": float(np.median(values)),
               "spread": (max(values) - min(values)) / float(np.median(values)),
               "window_medians_us": values} for name, values in windows.items()}}]
    return {
        "schema_version": 2, "started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:03:00Z",
        "settings": settings, "machine": machine,
        "scenarios": [{"name": scenario, "lineage": {}, "gate_passed": {"fp32": True}, "would_ship": "fp16",
                       "inputs": f"{scenario} test split: its first 64 of 2,000 samples, cycled (SYNTHETIC data)",
                       "inputs_synthetic": True,
                       "rows": rows, "head_to_head": head_to_head, "targets": targets}],
    }


# -- bundles of the other task kinds -------------------------------------------------------------------------

KIND_DEVICES = {name: device(name) for name in ("kind-multilabel", "kind-regression", "kind-anomaly", "kind-future")}
KIND_INTERVAL = timedelta(seconds=30)  # 840 records over HISTORY: enough for drift and a 30 % baseline of 200+
UNJUDGED_EVERY = 50  # every 50th record had a non-finite input: no result, flagged


def _distribution(values: np.ndarray) -> dict[str, Any]:
    return {"count": len(values), "mean": float(values.mean()), "std": float(values.std()),
            "decile_edges": [float(edge) for edge in np.percentile(values, np.linspace(0, 100, 11))],
            "sample": [round(float(value), 6) for value in np.sort(values)[::4]]}


def _kind_inputs(rng: np.random.Generator, count: int) -> np.ndarray:
    return rng.normal([70.0, 0.1, 0.0], [10.0, 0.02, 0.1], size=(count, 3))


def _kind_outputs(task: str, rows: np.ndarray, rng: np.random.Generator) -> list[dict[str, Any]]:
    """The result of each row for a hand-built bundle of ``task`` (same labels, targets and rules)."""
    from tests.runtime.hand_built import OUTPUTS

    spec = OUTPUTS[next(kind for kind in OUTPUTS if kind.value == task)]
    results = []
    for row in rows:
        if task == "multilabel":
            scores = dict(zip(spec.labels, rng.beta([2.0, 1.0, 1.0], [2.0, 4.0, 3.0]).round(6).tolist(),
                              strict=True))
            present = [label for label, threshold in zip(spec.labels, spec.decision.thresholds, strict=True)
                       if scores[label] >= threshold]
            results.append({"labels": present, "scores": scores})
        elif task == "regression":
            values = {"qt_interval": round(400.0 + 0.5 * (row[0] - 70.0) + rng.normal(0, 5), 3),
                      "heart_rate_estimate": round(row[0] + rng.normal(0, 1), 3)}
            results.append({"values": values, "units": dict(zip(spec.labels, spec.decision.units, strict=True))})
        else:
            score = round(float(rng.normal(0.0, 0.5) + abs(row[2]) * 2), 6)
            threshold = spec.decision.threshold
            results.append({"class": spec.labels[score >= threshold], "score": score, "alarm": score >= threshold,
                            "threshold": threshold})
    return results


def kind_profile(task: str, seed: int = 0) -> dict[str, Any]:
    """A reference profile for a hand-built bundle, shaped as ``dashboard.monitoring.predictions`` reads it."""
    rng = np.random.default_rng(seed)
    rows = _kind_inputs(rng, 2_000)
    results = _kind_outputs(task, rows, rng)
    from tests.runtime.hand_built import FEATURES

    predictions: dict[str, Any] = {}
    if task == "multilabel":
        labels = list(results[0]["scores"])
        predictions["scores"] = {label: _distribution(np.array([r["scores"][label] for r in results]))
                                 for label in labels}
    elif task == "regression":
        predictions["values"] = {name: _distribution(np.array([r["values"][name] for r in results]))
                                 for name in results[0]["values"]}
    else:
        predictions["score"] = _distribution(np.array([r["score"] for r in results]))
        counts = {label: sum(r["class"] == label for r in results) for label in ("normal", "anomalous")}
        predictions["class_counts"] = counts
        predictions["class_fractions"] = {label: count / len(results) for label, count in counts.items()}
    return {"schema_version": 1, "split": "test", "samples": len(rows), "feature_kind": "tabular",
            "features": {name: _distribution(rows[:, index]) for index, name in enumerate(FEATURES)},
            "predictions": predictions}


def kind_records(task: str, bundle: BundleInfo | None, device_id: str, now: datetime, seed: int
                 ) -> list[dict[str, Any]]:
    """A device on a bundle of ``task`` over HISTORY; every UNJUDGED_EVERY-th record flagged without a result."""
    from tests.runtime.hand_built import FEATURES

    rng = np.random.default_rng(seed)
    count = int(HISTORY / KIND_INTERVAL)
    rows = _kind_inputs(rng, count)
    results: list[Any] = (_kind_outputs(task, rows, rng) if task != "segmentation"
                          else [{"mask_area": float(value)} for value in rng.random(count)])
    records = []
    for index in range(count):
        unjudged = index % UNJUDGED_EVERY == UNJUDGED_EVERY - 1
        features = {name: float(value) for name, value in zip(FEATURES, rows[index], strict=True)}
        if unjudged:
            features.pop(FEATURES[0])  # that input was NaN: the device leaves the feature out
        records.append({
            "sequence": index + 1, "time": utc_timestamp(now - HISTORY + (index + 1) * KIND_INTERVAL),
            "device_id": device_id, "bundle_id": bundle.bundle_id if bundle else "future-bundle",
            "bundle_sha256": bundle.manifest_sha256 if bundle else "f" * 64, "variant": "fp32",
            "provider": "CPUExecutionProvider", "latency_us": round(float(rng.lognormal(math.log(300.0), 0.2)), 1),
            "task": task, "result": None if unjudged else results[index],
            "quality_flags": ["input_not_finite"] if unjudged else [], "features": features,
        })
    return records


# -- the same fleet as aggregates (telemetry schema 3) -------------------------------------------------------------

AGGREGATE_SENDERS = ("healthy", "busy", "drifted", "regressed", "noisy")  # send schema-3 aggregates throughout
UPGRADED = "bare"  # sends schema-2 records for the first half of HISTORY, aggregates after (an upgraded device)
CHUNK = 20  # events per aggregator call, as a device's stream hands them over


def _typed_result(task: str, result: dict[str, Any] | None):
    from runtime.results import AnomalyResult, ClassResult, LabelsResult, ValuesResult

    if result is None:
        return None
    if task in ("multiclass", "binary"):
        return ClassResult(result["class"], result["confidence"], {}, bool(result.get("low_confidence")))
    if task == "multilabel":
        return LabelsResult(tuple(result["labels"]), dict(result["scores"]))
    if task == "regression":
        return ValuesResult(dict(result["values"]), dict(result["units"]))
    return AnomalyResult(result["class"], result["score"], result["alarm"], result["threshold"])


def device_outbox(records: list[dict[str, Any]], bundle: BundleInfo | None, session_start: datetime
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What a schema-3 device sends for ``records`` (schema 2, one device and bundle): its minute aggregates as the
    store keeps them (``device_id``, ``bundle_id``, ``minute``, ``record_id``, ``payload``), made by the device's own
    ``MinuteAggregator`` fed the same rows, and the records its event filter also sends on their own (renumbered)."""
    from runtime.events import RowPrediction
    from runtime.telemetry.aggregates import AggregateIdentity, AggregationPlan, MinuteAggregator
    from runtime.telemetry.event_filter import EventFilter

    first = records[0]
    task = first["task"]
    labels = tuple(bundle.labels) if bundle is not None else ()
    plan = AggregationPlan.from_profile(bundle.profile if bundle is not None else None, task, labels)
    identity = AggregateIdentity(first["device_id"], first["bundle_id"], first["bundle_sha256"], first["variant"],
                                 first["provider"], task)
    aggregator = MinuteAggregator(identity, plan, origin_s=session_start.timestamp(),
                                  event_filter=EventFilter(labels or ("first", "second")))
    events = [RowPrediction(index, task, _typed_result(task, record["result"]), record["latency_us"],
                            tuple(record["quality_flags"]), features=record["features"])
              for index, record in enumerate(records)]
    moments = [datetime.fromisoformat(record["time"]).timestamp() for record in records]
    payloads, kept = [], []
    for start in range(0, len(events), CHUNK):
        emitted = aggregator.add(events[start:start + CHUNK], moments[start:start + CHUNK])
        payloads += emitted.aggregates
        kept += [event.row for event, _ in emitted.individual]
    payloads += aggregator.flush()
    stored = [{"device_id": payload["device_id"], "bundle_id": payload["bundle_id"], "minute": payload["minute"],
               "record_id": payload["record_id"], "payload": payload} for payload in payloads]
    return stored, [records[index] for index in kept]


def mixed_fleet(records: dict[str, list[dict[str, Any]]], bundles: dict[str, BundleInfo | None], now: datetime
                ) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    """``fleet_records`` as a mixed fleet sends it: (schema-1/2 records per device id, aggregates). The
    ``AGGREGATE_SENDERS`` send aggregates and the records their filter keeps; the orphan (schema 1) only records;
    the ``UPGRADED`` device records for the first half of HISTORY, then aggregates."""
    sent: dict[str, list[dict[str, Any]]] = {}
    aggregates: list[dict[str, Any]] = []
    halfway = now - HISTORY / 2
    for name, device_id in DEVICES.items():
        device_records = records[device_id]
        if name in AGGREGATE_SENDERS or name == UPGRADED:
            before = [record for record in device_records
                      if name == UPGRADED and datetime.fromisoformat(record["time"]) < halfway]
            after = device_records[len(before):]
            stored, individual = device_outbox(after, bundles[name], datetime.fromisoformat(after[0]["time"]))
            aggregates += stored
            device_records = before + individual
        sent[device_id] = [record | {"sequence": sequence} for sequence, record in enumerate(device_records, start=1)]
    return sent, aggregates
