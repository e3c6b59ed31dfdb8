"""What the comparison reads from two built bundles: their manifests' figures, a shared latency run, and the
shipped model scored on the series as the device would (``runtime`` only; the bundles are files).

The build times each bundle's variants against each other; two builds ran at different moments on a
shared machine, so their microseconds are not comparable. ``interleaved_latency`` times the shipped models
of both bundles in the same rounds of one process (batch 1, one thread), which is, on SYNTHETIC inputs
(``TIMING_INPUTS``: one seeded N(70, 13) window, not the series; the record and the report say so).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from pipeline.scenarios.vitals_anomaly.data import NOMINAL_RATE_HZ, VitalsDataConfig, input_spec, load_series
from pipeline.scenarios.vitals_anomaly.events import summarise_events
from runtime.contract import MANIFEST_NAME, MODEL_NAME
from runtime.session import SessionSettings, create_session
from runtime.windows import model_windows

TIMING_MEAN, TIMING_STD, TIMING_SEED = 70.0, 13.0, 0  # pressure-like values for the shared latency run
TIMING_INPUTS = (f"synthetic: one seeded normal N({TIMING_MEAN:g}, {TIMING_STD:g}) window (seed {TIMING_SEED}, "
                 "pressure-like values) per model, fed every run; not the UCR series, not real data — latency only")


def read_manifest(bundle: Path) -> dict:
    return json.loads((Path(bundle) / MANIFEST_NAME).read_text())


def manifest_figures(bundle: Path) -> dict:
    """Parity, size, latency, gate and test metrics of every variant, as the build recorded them."""
    manifest = read_manifest(bundle)
    variants = {}
    for name, variant in manifest["variants"].items():
        latency = variant.get("latency", {})
        variants[name] = {
            "size_bytes": variant["size_bytes"],
            "latency_p50_us": latency.get("p50_us"),
            "latency_ratio_to_fp32": latency.get("ratio_to_fp32"),
            "alarm_threshold": variant["alarm_threshold"]["threshold"],
            **{metric: variant[metric] for metric in ("auroc", "sensitivity", "false_alarm_rate")},
            "gate_passed": variant["gate"]["passed"],
            "gate_reason": variant["gate"]["reason"],
        }
    return {
        "scenario": manifest["scenario"],
        "shipped_variant": manifest["variant"],
        "selection": manifest["selection"]["reason"],
        "parameters": manifest["training"]["parameters"],
        "epochs_run": manifest["training"]["epochs_run"],
        "parity_max_abs_diff": manifest["export"]["parity"]["max_abs_diff"],
        "parity_batch_sizes": manifest["export"]["parity"]["batch_sizes"],
        "op_census": manifest["export"]["op_census"],
        "threshold": manifest["output"]["decision"]["threshold"],
        "variants": variants,
    }


def _session(model: Path):
    return create_session(model, SessionSettings(provider="cpu", intra_op_threads=1))


def interleaved_latency(models: dict[str, Path], rounds: int = 21, runs_per_round: int = 200,
                        warmup_runs: int = 50) -> dict[str, dict]:
    """Batch-1 latency of each model, all timed in the same rounds (order rotated each round), one thread, on
    ``TIMING_INPUTS`` (synthetic; each entry's ``inputs`` says so)."""
    sessions = {name: _session(path) for name, path in models.items()}
    feeds = {}
    for name, session in sessions.items():
        spec = session.get_inputs()[0]
        shape = [1 if not isinstance(axis, int) else axis for axis in spec.shape]
        window = np.random.default_rng(TIMING_SEED).normal(TIMING_MEAN, TIMING_STD, shape)
        feeds[name] = {spec.name: window.astype(np.float32)}
        for _ in range(warmup_runs):
            session.run(None, feeds[name])
    medians: dict[str, list[float]] = {name: [] for name in sessions}
    names = list(sessions)
    for round_index in range(rounds):
        for name in names[round_index % len(names):] + names[:round_index % len(names)]:
            times = []
            for _ in range(runs_per_round):
                begin = time.perf_counter_ns()
                sessions[name].run(None, feeds[name])
                times.append((time.perf_counter_ns() - begin) / 1000.0)
            medians[name].append(float(np.median(times)))
    reference = float(np.median(medians[names[0]]))
    return {name: {"median_of_round_medians_us": float(np.median(values)),
                   "ratio_to_" + names[0]: float(np.median(values)) / reference,
                   "rounds": rounds, "runs_per_round": runs_per_round, "threads": 1, "batch": 1,
                   "inputs": TIMING_INPUTS, "inputs_synthetic": True}
            for name, values in medians.items()}


def device_view_events(bundle: Path, config: VitalsDataConfig, block_names: tuple[str, ...]) -> dict[str, dict]:
    """The shipped model run on every window the device would score in each block, at the manifest's threshold."""
    manifest = read_manifest(bundle)
    threshold = manifest["output"]["decision"]["threshold"]
    session = _session(Path(bundle) / MODEL_NAME)
    series = load_series()
    spec = input_spec(config)
    results = {}
    for name in block_names:
        start, end = getattr(config.blocks, name)
        cut = model_windows(series.values[start:end], spec)
        judged = cut.judged
        scores = session.run(None, {spec.name: cut.inputs[judged]})[0][:, 0]
        summary = summarise_events(cut.starts[judged] + start, scores >= threshold, spec.window_samples,
                                   NOMINAL_RATE_HZ, series.anomaly_range, config.labels.boundary_margin_samples)
        results[name] = {**summary.to_dict(), "quality_flagged": int((~judged).sum())}
    return results
