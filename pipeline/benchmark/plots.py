"""Plots of a results document: latency distributions and accuracy-vs-latency Pareto fronts."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime.session import short_provider_name


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _label(row: dict) -> str:
    provider = short_provider_name(row["provider"] or "")
    return f"{row['engine']} {row['variant']}" + (f" {provider}" if provider and provider != "CPU" else "")


def latency_distribution(scenario: dict, path: Path, threads: int = 1) -> None:
    """Empirical CDF of batch-1 latency, one curve per model, at ``threads`` threads."""
    plt = _figure()
    figure, axis = plt.subplots(figsize=(8, 5))
    for row in scenario["rows"]:
        if row["status"] == "ok" and row["threads"] == threads and row["latency"].get("quantiles_us"):
            axis.plot(row["latency"]["quantiles_us"], np.arange(101) / 100.0, label=_label(row))
    axis.set_xscale("log")
    axis.set_xlabel("batch-1 latency (µs, log scale)")
    axis.set_ylabel("fraction of runs")
    axis.set_title(f"{scenario['name']}: latency distribution, {threads} thread(s)")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=110)
    plt.close(figure)


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points no other point beats on both latency (lower) and accuracy (higher), by latency."""
    front, best = [], -np.inf
    for latency, accuracy in sorted(points, key=lambda point: (point[0], -point[1])):
        if accuracy > best:
            front.append((latency, accuracy))
            best = accuracy
    return front


def accuracy_pareto(scenario: dict, path: Path, threads: int = 1) -> None:
    """Macro-F1 against batch-1 p50 for every model with an accuracy, Pareto front drawn."""
    plt = _figure()
    figure, axis = plt.subplots(figsize=(8, 5))
    points = []
    for row in scenario["rows"]:
        if row["status"] == "ok" and row["threads"] == threads and row.get("macro_f1") is not None:
            point = (row["latency"]["median_of_windows_us"], row["macro_f1"])
            points.append(point)
            axis.scatter(*point)
            axis.annotate(_label(row), point, fontsize=7, xytext=(3, 3), textcoords="offset points")
    front = pareto_front(points)
    if front:
        axis.step(*zip(*front, strict=True), where="post", linestyle="--", color="grey", label="Pareto front")
        axis.legend(fontsize=7)
    axis.set_xscale("log")
    axis.set_xlabel("batch-1 p50 latency (µs, log scale)")
    axis.set_ylabel("macro-F1 (test split)")
    axis.set_title(f"{scenario['name']}: accuracy vs latency, {threads} thread(s)")
    axis.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=110)
    plt.close(figure)


def render_plots(document: dict, folder: Path) -> list[Path]:
    """Write every plot into ``folder``; return their paths."""
    written = []
    for scenario in document["scenarios"]:
        for kind, draw in (("latency", latency_distribution), ("pareto", accuracy_pareto)):
            path = Path(folder) / f"{kind}_{scenario['name']}.png"
            draw(scenario, path)
            written.append(path)
    return written
