"""The comparison record (``comparison.run_comparison``) as a Markdown report."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _estimate(value: dict) -> str:
    return f"{value['value']:.3f} [{value['low']:.3f}, {value['high']:.3f}]"


def _events_cell(events: dict) -> str:
    parts = []
    for name, summary in events.items():
        detected = summary["anomaly_detected"]
        mark = "" if detected is None else (" anomaly ✓" if detected else " anomaly ✗")
        parts.append(f"{name}: {summary['false_alarm_events']} in {summary['normal_signal_s']:.1f} s{mark}")
    return "; ".join(parts)


def _design_summary(runs: list[dict]) -> dict:
    events = [summary for run in runs for summary in run["events"].values()]
    false_events = sum(summary["false_alarm_events"] for summary in events)
    seconds = sum(summary["normal_signal_s"] for summary in events)
    return {
        "detected": sum(bool(run["events"]["test"]["anomaly_detected"]) for run in runs),
        "seeds": len(runs),
        "false_events": false_events,
        "seconds": seconds,
        "window_far": float(np.median([run["window_metrics"]["false_alarm_rate"]["value"] for run in runs])),
        "sensitivity": float(np.median([run["window_metrics"]["sensitivity"]["value"] for run in runs])),
        "margin": float(np.median([run["separation"]["lowest_anomalous_score_over_threshold"] for run in runs])),
    }


def _seed_lines(record: dict) -> list[str]:
    lines = ["| design | seed | params | epochs | AUROC [95 % CI] | sensitivity | window FAR (test) | lowest anomalous "
             "/ threshold | highest normal / threshold | false-alarm events (normal s) |",
             "|---|---:|---:|---:|---|---|---|---:|---:|---|"]
    for run in record["seeds"]:
        metrics, separation = run["window_metrics"], run["separation"]
        lines.append(
            f"| {run['design']} | {run['seed']} | {run['parameters']} | {run['epochs_run']} | "
            f"{_estimate(metrics['auroc'])} | {_estimate(metrics['sensitivity'])} | "
            f"{_estimate(metrics['false_alarm_rate'])} | {separation['lowest_anomalous_score_over_threshold']:.2f} | "
            f"{separation['highest_normal_test_score_over_threshold']:.2f} | {_events_cell(run['events'])} |")
    lines += ["", "| design | anomaly detected (seeds) | median sensitivity | median window FAR (test) | median lowest "
              "anomalous / threshold | false-alarm events, all seeds (normal s) |", "|---|---|---:|---:|---:|---|"]
    by_design: dict[str, list[dict]] = {}
    for run in record["seeds"]:
        by_design.setdefault(run["design"], []).append(run)
    for design, runs in by_design.items():
        summary = _design_summary(runs)
        lines.append(f"| {design} | {summary['detected']}/{summary['seeds']} | {summary['sensitivity']:.3f} | "
                     f"{summary['window_far']:.4f} | {summary['margin']:.2f} | {summary['false_events']} "
                     f"({summary['seeds']} seeds × the same {summary['seconds'] / summary['seeds']:.1f} s) |")
    return lines


def _bundle_lines(record: dict) -> list[str]:
    lines = ["| design | variant | size (KiB) | batch-1 p50 (µs, its build) | × fp32 | threshold | AUROC | "
             "sensitivity | FAR (test) | gate | shipped |", "|---|---|---:|---:|---:|---:|---|---|---|---|---|"]
    for design, figures in record["bundles"].items():
        for name, variant in figures["variants"].items():
            lines.append(
                f"| {design} | {name} | {variant['size_bytes'] / 1024:.1f} | {variant['latency_p50_us']:.1f} | "
                f"{variant['latency_ratio_to_fp32']:.2f} | {variant['alarm_threshold']:.4g} | "
                f"{_estimate(variant['auroc'])} | {_estimate(variant['sensitivity'])} | "
                f"{_estimate(variant['false_alarm_rate'])} | {'pass' if variant['gate_passed'] else 'FAIL'} | "
                f"{'✓' if name == figures['shipped_variant'] else ''} |")
    lines.append("")
    for design, figures in record["bundles"].items():
        lines.append(f"- **{design}** ({figures['scenario']}): {figures['parameters']} parameters, "
                     f"{figures['epochs_run']} epochs; parity with Keras max |Δ| {figures['parity_max_abs_diff']:.2e} "
                     f"at batch sizes {figures['parity_batch_sizes']}; shipped {figures['shipped_variant']} "
                     f"({figures['selection']})")
    return lines


def favoured(record: dict) -> tuple[str, str]:
    """The design the measurements favour, and why: the anomaly detected in every seed first, then the fewest
    false-alarm events over the seeds, then the faster shipped model (interleaved timing)."""
    by_design: dict[str, list[dict]] = {}
    for run in record["seeds"]:
        by_design.setdefault(run["design"], []).append(run)
    latency = record["latency_interleaved"]
    candidates = [name for name in latency if name in by_design]
    summaries = {name: _design_summary(by_design[name]) for name in candidates}
    ranked = sorted(candidates, key=lambda name: (-summaries[name]["detected"] / summaries[name]["seeds"],
                                                  summaries[name]["false_events"],
                                                  latency[name]["median_of_round_medians_us"]))
    best = ranked[0]
    reason = "; ".join(
        f"{name}: anomaly detected in {summaries[name]['detected']}/{summaries[name]['seeds']} seeds, "
        f"{summaries[name]['false_events']} false-alarm events over the seeds, "
        f"{latency[name]['median_of_round_medians_us']:.1f} µs" for name in ranked)
    return best, reason


def latency_lines(latency: dict) -> list[str]:
    """The shipped models timed together: one row per design, and what they were timed on (synthetic inputs)."""
    inputs = next((value.get("inputs") for value in latency.values() if value.get("inputs")), None)
    return [
        f"Timed on {inputs or 'inputs not recorded (an older record)'}.",
        "",
        "| design | median of round medians (µs) | × autoencoder |",
        "|---|---:|---:|",
        *[f"| {name} | {value['median_of_round_medians_us']:.1f} | {value['ratio_to_autoencoder']:.2f} |"
          for name, value in latency.items()],
    ]


def write_report(record: dict, path: Path) -> None:
    latency = record["latency_interleaved"]
    lines = [
        "# Self-attention vs convolutional autoencoder — vitals-anomaly (UCR InternalBleeding16)",
        "",
        f"Written by `python -m pipeline.scenarios.vitals_anomaly.comparison`. Sample rate "
        f"{record['sample_rate_hz']:g} Hz is {record['sample_rate_note']}. One labelled anomaly: window "
        "sensitivity counts ~16 overlapping windows of one 48 ms event (its interval treats them as independent "
        "and is too narrow); the event result is one yes/no per model; false alarms per hour extrapolate from "
        "seconds of signal. Read every figure as what it is: a measurement on 30 s of one animal's pressure.",
        "",
        f"**Favoured: {favoured(record)[0]}** (rule: the anomaly detected in every seed, then the fewest false-alarm "
        f"events over the seeds, then the faster shipped model) — {favoured(record)[1]}. The per-window z-score "
        "ablation (autoencoder-zscore) is in the seed tables.",
        "",
        f"Machine: {record.get('machine', 'not recorded')}.",
        "",
        "## Seeds (Keras, the build's training path; threshold at 1 % false alarms on the normal block)",
        "",
        "Event blocks: test (holds the anomaly) and the validation and calibration blocks (normal; no threshold "
        "was set there — validation chose the early-stopping epoch).",
        "",
        *_seed_lines(record),
        "",
        "## Bundles (the two builds: parity, every variant's latency and gate)",
        "",
        "Latencies in this table come from each build's own interleaved rounds (the variants of one design "
        "against each other); compare designs with the next section.",
        "",
        *_bundle_lines(record),
        "",
        "## Shipped models timed together (batch 1, one thread, same interleaved rounds, SYNTHETIC inputs)",
        "",
        *latency_lines(latency),
        "",
        "## Device view: the shipped model and threshold on every window the device would score",
        "",
        *[f"- **{design}**: {_events_cell(events)}; delay of the first alarm after onset "
          f"{events['test']['detection_delay_s']} s; false alarms per hour on the test block "
          f"{events['test']['false_alarms_per_hour']:.0f} (exact 95 % interval "
          f"{events['test']['false_alarms_per_hour_interval'][0]:.0f}–"
          f"{events['test']['false_alarms_per_hour_interval'][1]:.0f})"
          for design, events in record["device_view_events"].items()],
        "",
    ]
    path.write_text("\n".join(lines))
