"""Fixture telemetry and benchmark results for the dashboard tests (and for trying the dashboard by hand).

``fleet_records`` simulates a few devices around ``now``: healthy ones (a small and a large drift
window), one whose inputs and predictions drifted, one whose latency regressed in the last 90 minutes,
one with a burst of signal-quality flags, one running a bundle that is not published and one running a
bundle without a reference profile.
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
    return {
        "sequence": sequence, "time": utc_timestamp(moment), "device_id": device_id,
        "bundle_id": bundle.bundle_id, "bundle_sha256": bundle.manifest_sha256, "variant": bundle.shipped_variant,
        "provider": "CPUExecutionProvider", "latency_us": round(latency, 1), "predicted_class": label,
        "confidence": round(confidence, 6), "quality_flags": flags, "features": features,
    }


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
    fleet[DEVICES["orphan"]] = orphan
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
        "p95_us": quantiles[95], "p99_us": quantiles[99], "min_us": quantiles[0], "max_us": quantiles[100],
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
        name: {"median_us": float(np.median(values)), "spread": (max(values) - min(values)) / float(np.median(values)),
               "window_medians_us": values} for name, values in windows.items()}}]
    return {
        "schema_version": 1, "started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:03:00Z",
        "settings": settings, "machine": machine,
        "scenarios": [{"name": scenario, "lineage": {}, "gate_passed": {"fp32": True}, "would_ship": "fp16",
                       "rows": rows, "head_to_head": head_to_head, "targets": targets}],
    }
