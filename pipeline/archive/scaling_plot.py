"""The archive-validation scaling curve as a picture: recordings/s against workers, each run, the ideal and the
plain-process control beside the Ray pipeline's medians (``archive_scaling.png``)."""

from __future__ import annotations

import os
from pathlib import Path


def plot_scaling(result: dict, path: Path) -> Path:
    """Draw ``result`` (``measure_scaling``'s document) into ``path`` (PNG; a temporary file renamed into place)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = result["curve"]
    workers = [point["workers"] for point in curve]
    base = curve[0]["recordings_per_s"] / curve[0]["workers"]
    figure, axis = plt.subplots(figsize=(7, 4.5))
    axis.plot(workers, [base * count for count in workers], linestyle="--", color="grey",
              label="ideal (linear from the first count)")
    axis.plot(workers, [point["recordings_per_s"] for point in curve], marker="o", label="Ray pipeline (median)")
    runs = result.get("runs", [])
    axis.scatter([run["workers"] - 0.03 for run in runs], [run["recordings_per_s"] for run in runs], s=18,
                 facecolors="none", edgecolors="tab:blue", zorder=4, label="Ray pipeline (each run)")
    if all("bare_recordings_per_s" in point for point in curve):
        axis.plot(workers, [point["bare_recordings_per_s"] for point in curve], marker="s",
                  label="plain processes, same work (median)")
    target = result.get("target", {})
    if target.get("speedup_1_to_2") and 1 in workers and 2 in workers:
        axis.scatter([2], [curve[workers.index(1)]["recordings_per_s"] * target["speedup_1_to_2"]], marker="_",
                     s=400, color="red", label=f"target at 2 workers ({target['speedup_1_to_2']}×)")
    axis.set_xticks(workers)
    axis.set_ylim(bottom=0)
    axis.set_xlabel("workers (one onnxruntime thread each)")
    axis.set_ylabel("recordings per second")
    archive = result["archive"]
    axis.set_title(f"Archive validation on Ray: {archive['recordings']} recordings, "
                   f"{result['machine']['cpus_available']} CPUs", fontsize=10)
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    path = Path(path)
    temporary = path.with_name(f".{path.name}.partial-{os.getpid()}")
    figure.savefig(temporary, format="png", dpi=110)
    plt.close(figure)
    os.replace(temporary, path)
    return path
