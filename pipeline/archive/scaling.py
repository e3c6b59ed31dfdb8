"""How archive-validation throughput scales with Ray workers (``edgemed bench-archive``).

Every run is the real command's path (``run.validate_archive``: the bundle checked by the driver, an actor pool of N
workers that each verify the bundle and run recordings, the driver collecting rows), without writing outputs. One
local Ray, started once with as many CPUs as the largest worker count, serves every run (Ray's CPU count only gates
how many actors it schedules; the operating system gives every process all the machine's cores either way), so runs
are seconds apart instead of a Ray start apart; a short warm-up pipeline runs first and is not recorded. The clock is
the pipeline's: from the dataset's start to its last row, actor start-up and bundle verification in every worker
included. Worker counts are interleaved and their order alternates from repeat to repeat (1, 2, 2, 1, 1, 2 …): a
shared machine's speed drifts, and a comparison should not meet only one of its states. A worker count's figure is
the median over its runs; the speed-up is also given per repeat (the two runs of a repeat are back to back), so the
spread shows.

Control: right after each Ray run, the same recordings run through the same worker code in as many plain processes
(``bare``: a spawned ``multiprocessing`` pool, no Ray). Its speed-up is what the machine itself gave at that moment;
on a shared machine other processes' load caps both alike, and Ray's own cost is the gap between the two.

Beside the wall clock, the runs record where the CPU went during the pipeline: the whole machine's busy CPU seconds
(``/proc/stat``), the workers' CPU inside recordings (``time.process_time`` per recording, from the rows), the
driver's (``getrusage``), the local Ray's long-lived daemons' (raylet, GCS, agents: ``/proc``, per process); the
rest is worker start-up and per-task work, and whatever else runs on the machine. The workers' wall time inside
recordings says how much of the pipeline they were busy, and their CPU over that wall time how much of a core they
got while busy (under 100 %: they waited for one).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pipeline.archive.bare import bare_run
from pipeline.archive.layout import Archive
from pipeline.archive.run import ArchiveRunConfig, Progress, ray_session, validate_archive
from pipeline.archive.scaling_plot import plot_scaling
from pipeline.archive.worker import TrustSettings, WorkerConfig
from runtime.version import EDGEMED_VERSION

TARGET_SPEEDUP = 1.7  # issue 14: 1 → 2 workers on 2 cores
SCALING_JSON = "archive_scaling.json"
SCALING_MARKDOWN = "archive_scaling.md"
SCALING_PLOT = "archive_scaling.png"


@dataclass(frozen=True)
class ScalingConfig:
    worker_counts: tuple[int, ...] = (1, 2)
    repeats: int = 3  # runs per worker count, interleaved
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    control: bool = True  # also time the same work in plain processes (no Ray) after every run


def machine() -> dict:
    """The CPU, its limits as this process sees them, memory and versions."""
    import onnxruntime
    import ray

    model = ""
    with contextlib.suppress(OSError):
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), "")
    quota = None
    try:
        limit, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        quota = None if limit == "max" else round(int(limit) / int(period), 2)
    except (OSError, ValueError):
        pass
    try:
        memory_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 1)
    except (OSError, ValueError):
        memory_gib = None
    return {"cpu": model or platform.processor(), "logical_cpus": os.cpu_count(),
            "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "cgroup_cpu_quota": quota, "memory_gib": memory_gib, "system": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "ray": ray.__version__, "onnxruntime": onnxruntime.__version__,
            "edgemed": EDGEMED_VERSION}


def processes() -> dict[int, tuple[int, int]] | None:
    """pid → (parent pid, CPU clock ticks used) of every process (Linux ``/proc``; None elsewhere)."""
    table = {}
    try:
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                    table[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    except OSError:
        return None
    return table


def daemons_cpu_s(before: dict | None, after: dict | None) -> float | None:
    """CPU seconds the local Ray's long-lived processes (raylet, GCS, agents: this process's descendants alive at both
    ends) used in between; workers that started and ended in between are not among them."""
    if before is None or after is None:
        return None
    tree, frontier = {os.getpid()}, [os.getpid()]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, (ppid, _) in after.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier += children
    ticks = sum(after[pid][1] - before[pid][1] for pid in tree - {os.getpid()} if pid in before)
    return round(ticks / os.sysconf("SC_CLK_TCK"), 2)


def _run_figures(report: dict, rows: Sequence[dict], workers: int, repeat: int) -> dict:
    run, total = report["run"], report["totals"]
    worker_s = sum((row["read_s"] or 0) + (row["stream_s"] or 0) for row in rows)
    worker_cpu = sum(row["cpu_s"] or 0 for row in rows)
    busy = run["machine_busy_cpu_s"]
    after_first = run["pipeline_s"] - (run["first_result_s"] or 0)
    return {"workers": workers, "repeat": repeat, "pipeline_s": run["pipeline_s"],
            "first_result_s": run["first_result_s"], "recordings_per_s": run["recordings_per_s"],
            "steady_recordings_per_s": round((len(rows) - 1) / after_first, 3) if after_first > 0 else None,
            "signal_s_per_s": run["signal_s_per_s"], "failed": total["failed"],
            "refused": sum(total.get("refused", {}).values()),
            "worker_recording_s": round(worker_s, 2), "worker_recording_cpu_s": round(worker_cpu, 2),
            "cpu_share_in_recordings": round(worker_cpu / worker_s, 3) if worker_s else None,
            "driver_cpu_s": run["driver_cpu_s"], "machine_busy_cpu_s": busy,
            "rest_cpu_s": None if busy is None else round(busy - worker_cpu - run["driver_cpu_s"], 2),
            "worker_utilisation": round(worker_s / (workers * run["pipeline_s"]), 3),
            "rows_per_worker": sorted(run["rows_per_worker"].values(), reverse=True)}


def _median(values) -> float | None:
    known = [value for value in values if value is not None]
    return round(statistics.median(known), 3) if known else None


def _bare_point(runs: Sequence[dict], mine: Sequence[dict], first: int) -> dict:
    """The control's median throughput and speed-up (per repeat as well) for one worker count; {} without it."""
    if not all("bare" in run for run in runs):
        return {}
    base = statistics.median(run["bare"]["recordings_per_s"] for run in runs if run["workers"] == first)
    throughput = statistics.median(run["bare"]["recordings_per_s"] for run in mine)
    paired = [run["bare"]["recordings_per_s"] / other["bare"]["recordings_per_s"] for run in mine for other in runs
              if other["workers"] == first and other["repeat"] == run["repeat"]]
    return {"bare_recordings_per_s": round(throughput, 3), "bare_speedup": round(throughput / base, 3),
            "bare_speedup_per_repeat": [round(value, 3) for value in paired]}


def _curve(runs: Sequence[dict], counts: Sequence[int]) -> list[dict]:
    base = statistics.median(run["recordings_per_s"] for run in runs if run["workers"] == counts[0])
    curve = []
    for workers in counts:
        mine = [run for run in runs if run["workers"] == workers]
        throughput = statistics.median(run["recordings_per_s"] for run in mine)
        speedup = throughput / base
        paired = [run["recordings_per_s"] / other["recordings_per_s"] for run in mine for other in runs
                  if other["workers"] == counts[0] and other["repeat"] == run["repeat"]]
        curve.append({
            "workers": workers, "runs": len(mine),
            "pipeline_s": round(statistics.median(run["pipeline_s"] for run in mine), 3),
            "recordings_per_s": round(throughput, 3),
            "signal_s_per_s": round(statistics.median(run["signal_s_per_s"] for run in mine), 1),
            "speedup": round(speedup, 3), "efficiency": round(speedup / (workers / counts[0]), 3),
            "steady_recordings_per_s": _median(run["steady_recordings_per_s"] for run in mine),
            "cpu_share_in_recordings": _median(run["cpu_share_in_recordings"] for run in mine),
            "speedup_per_repeat": [round(value, 3) for value in paired],
            "worker_utilisation": round(statistics.median(run["worker_utilisation"] for run in mine), 3),
            "first_result_s": round(statistics.median(run["first_result_s"] or 0 for run in mine), 3),
            **_bare_point(runs, mine, counts[0]),
        })
    return curve


def measure_scaling(bundle_path: Path | str, archive: Archive, trust: TrustSettings,
                    config: ScalingConfig = ScalingConfig(), progress: Progress | None = None) -> dict:
    """Every run's figures, the curve (median per worker count, speed-up against the first count) and the machine."""
    counts = tuple(config.worker_counts)
    runs = []
    with ray_session(ArchiveRunConfig(workers=max(counts))):
        # Warm-up, not recorded: the first pipeline after Ray starts also pays for Ray's idle workers' start-up.
        warm_up = Archive(archive.folder, archive.entries[: 2 * max(counts)], archive.indexed)
        validate_archive(bundle_path, warm_up, None, trust, ArchiveRunConfig(workers=max(counts), worker=config.worker))
        for repeat in range(config.repeats):
            for workers in counts if repeat % 2 == 0 else tuple(reversed(counts)):
                before = processes()
                outcome = validate_archive(bundle_path, archive, None, trust,
                                           ArchiveRunConfig(workers=workers, worker=config.worker),
                                           progress=None if progress is None else
                                           (lambda task, done, total, n=workers, r=repeat:
                                            progress(f"{n} worker(s), run {r + 1}", done, total)))
                figures = _run_figures(outcome.report, outcome.rows, workers, repeat)
                figures["ray_daemons_cpu_s"] = daemons_cpu_s(before, processes())
                if figures["rest_cpu_s"] is not None and figures["ray_daemons_cpu_s"] is not None:
                    figures["rest_cpu_s"] = round(figures["rest_cpu_s"] - figures["ray_daemons_cpu_s"], 2)
                if config.control:
                    figures["bare"] = bare_run(str(Path(bundle_path).absolute()), archive, trust, config.worker,
                                               workers)
                runs.append(figures)
                last = outcome.report
    curve = _curve(runs, counts)
    pair = next((point for point in curve if point["workers"] == 2 * counts[0]), None) if counts[0] == 1 else None
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "benchmark": "edgemed archive validation: throughput against Ray workers",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "bundle": last["bundle"],
        "archive": {key: last["archive"][key] for key in ("folder", "description", "recordings")},
        "signal_s": last["totals"]["signal_s"],
        "method": __doc__.split("\n\n", 1)[1].replace("\n", " ").strip(),
        "settings": {"worker_counts": list(counts), "repeats": config.repeats, "control": config.control,
                     "threads_per_worker": config.worker.threads, "provider": config.worker.provider},
        "machine": machine(),
        "curve": curve,
        "target": {"speedup_1_to_2": TARGET_SPEEDUP, "measured": None if pair is None else pair["speedup"],
                   "met": None if pair is None else pair["speedup"] >= TARGET_SPEEDUP},
        "runs": runs,
        "reading": reading(curve, runs, cpus or 1),
    }


def reading(curve: Sequence[dict], runs: Sequence[dict], cpus: int) -> list[str]:
    """What the numbers say, in sentences made from them (no judgement that the numbers do not carry)."""
    lines = []
    base = curve[0]
    for point in curve[1:]:
        steady = (None if not point["steady_recordings_per_s"] or not base["steady_recordings_per_s"]
                  else point["steady_recordings_per_s"] / base["steady_recordings_per_s"])
        paired = ", ".join(f"{value:.2f}" for value in point["speedup_per_repeat"])
        lines.append(f"{base['workers']} → {point['workers']} workers: {point['speedup']:.2f}× end to end (median "
                     f"of {point['runs']} runs; per repeat {paired})"
                     + (f", {steady:.2f}× counted from each run's first result (actor start-up and bundle "
                        "verification left out)" if steady else "") + ".")
        if "bare_speedup" in point:
            bare = ", ".join(f"{value:.2f}" for value in point["bare_speedup_per_repeat"])
            lines.append("Control, the same work in plain processes right after each Ray run: "
                         f"{point['bare_speedup']:.2f}× (per repeat {bare}); Ray's speed-up over the control's: "
                         f"{point['speedup'] / point['bare_speedup']:.2f}.")
    for workers in (point["workers"] for point in curve):
        mine = [run for run in runs if run["workers"] == workers and run["machine_busy_cpu_s"] is not None]
        if not mine:
            continue
        capacity = sum(cpus * run["pipeline_s"] for run in mine)
        share = {name: sum(run.get(name) or 0 for run in mine) / capacity
                 for name in ("machine_busy_cpu_s", "worker_recording_cpu_s", "driver_cpu_s", "ray_daemons_cpu_s",
                              "rest_cpu_s")}
        inside = sum(run["worker_recording_s"] for run in mine) / sum(workers * run["pipeline_s"] for run in mine)
        got = sum(run["worker_recording_cpu_s"] for run in mine) / sum(run["worker_recording_s"] for run in mine)
        lines.append(f"{workers} worker(s): the machine's {cpus} CPUs were {share['machine_busy_cpu_s']:.0%} busy "
                     f"during the pipeline — the recordings' own work {share['worker_recording_cpu_s']:.0%}, the "
                     f"driver {share['driver_cpu_s']:.0%}, the local Ray's daemons {share['ray_daemons_cpu_s']:.0%}, "
                     f"and {share['rest_cpu_s']:.0%} everything else (worker start-up and per-task work, and the "
                     f"other processes on the machine). The workers were inside recordings {inside:.0%} of the "
                     f"pipeline's wall time and got {got:.0%} of a CPU while there (100%: never waiting for a core).")
    first = [point["first_result_s"] for point in curve]
    lines.append(f"The first result arrives {', '.join(f'{value:.1f}' for value in first)} s after the pipeline "
                 "starts (worker processes start, import the runtime and verify the bundle): a cost that more workers "
                 "do not shrink, and that weighs less on a larger archive.")
    return lines


def render_markdown(result: dict) -> str:
    computer, target = result["machine"], result["target"]
    lines = [
        "# Archive validation: scaling with Ray workers",
        "",
        f"Bundle `{result['bundle']['path']}` (variant {result['bundle']['variant']}) on "
        f"`{result['archive']['folder']}`: {result['archive']['recordings']} recordings, "
        f"{result['signal_s'] / 3600:.2f} h of signal. {result['archive']['description']}",
        "",
        f"Machine: {computer['cpu']}, {computer['cpus_available']} CPUs available of {computer['logical_cpus']}"
        f" (cgroup quota {computer['cgroup_cpu_quota']}), {computer['memory_gib']} GiB; {computer['system']}; "
        f"Python {computer['python']}, Ray {computer['ray']}, onnxruntime {computer['onnxruntime']}. "
        f"{result['settings']['threads_per_worker']} onnxruntime thread per worker, provider "
        f"{result['settings']['provider']}; {result['settings']['repeats']} runs per worker count, interleaved.",
        "",
        "| workers | runs | pipeline s (median) | recordings/s | s of signal/s | speed-up | efficiency | speed-up per "
        "repeat | worker utilisation | first result s | control: plain processes, recordings/s | control speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {point['workers']} | {point['runs']} | {point['pipeline_s']:.2f} | {point['recordings_per_s']:.2f} | "
              f"{point['signal_s_per_s']:.0f} | {point['speedup']:.2f}× | {point['efficiency']:.0%} | "
              f"{', '.join(f'{value:.2f}' for value in point['speedup_per_repeat'])} | "
              f"{point['worker_utilisation']:.0%} | {point['first_result_s']:.2f} | "
              + (f"{point['bare_recordings_per_s']:.2f} | {point['bare_speedup']:.2f}× |" if "bare_speedup" in point
                 else "– | – |")
              for point in result["curve"]]
    if target["measured"] is not None:
        lines += ["", f"Target: 1 → 2 workers ≥ {target['speedup_1_to_2']}×: measured {target['measured']:.2f}× — "
                      f"**{'met' if target['met'] else 'not met'}**."]
    lines += ["", "## Runs", "",
              "| workers | repeat | pipeline s | first result s | recordings/s | workers' time in recordings s "
              "| their CPU s | driver CPU s | Ray daemons CPU s | machine busy CPU s | utilisation | rows per worker "
              "| failed | refused (lead) |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {run['workers']} | {run['repeat'] + 1} | {run['pipeline_s']:.2f} | "
              f"{run['first_result_s'] or 0:.2f} | {run['recordings_per_s']:.2f} | "
              f"{run['worker_recording_s']:.1f} | {run['worker_recording_cpu_s']:.1f} | {run['driver_cpu_s']:.1f} | "
              f"{run.get('ray_daemons_cpu_s')} | {run['machine_busy_cpu_s']} | "
              f"{run['worker_utilisation']:.0%} | "
              f"{run['rows_per_worker']} | {run['failed']} | {run.get('refused', 0)} |" for run in result["runs"]]
    lines += ["", "## Method", "", result["method"], ""]
    if result.get("reading"):
        lines += ["## Reading", ""] + [f"- {line}" for line in result["reading"]] + [""]
    return "\n".join(lines)


def write_scaling(result: dict, folder: Path) -> list[Path]:
    """archive_scaling.json, .md and .png (the curve) into ``folder``, each written to a temporary file and renamed
    into place."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in ((SCALING_JSON, json.dumps(result, indent=1, allow_nan=False) + "\n"),
                       (SCALING_MARKDOWN, render_markdown(result))):
        temporary = folder / f".{name}.partial-{os.getpid()}"
        temporary.write_text(text)
        os.replace(temporary, folder / name)
        written.append(folder / name)
    written.append(plot_scaling(result, folder / SCALING_PLOT))
    return written
