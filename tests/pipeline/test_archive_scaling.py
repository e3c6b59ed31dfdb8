"""The scaling benchmark's arithmetic (``pipeline.archive.scaling``) on hand-made runs: no Ray, no timing."""

from __future__ import annotations

import json

import pytest

from pipeline.archive.scaling import _curve, reading, render_markdown, write_scaling


def run(workers: int, repeat: int, pipeline_s: float, first_s: float = 1.0) -> dict:
    return {"workers": workers, "repeat": repeat, "pipeline_s": pipeline_s,
            "first_result_s": first_s, "recordings_per_s": 100 / pipeline_s,
            "steady_recordings_per_s": 99 / (pipeline_s - first_s), "signal_s_per_s": 30000 / pipeline_s,
            "failed": 0, "worker_recording_s": 18.0, "worker_recording_cpu_s": 17.0, "cpu_share_in_recordings": 0.94,
            "driver_cpu_s": 1.0, "machine_busy_cpu_s": 20.0, "rest_cpu_s": 2.0,
            "worker_utilisation": 18.0 / (workers * pipeline_s), "rows_per_worker": [100]}


RUNS = [run(1, 0, 20.0), run(2, 0, 11.0), run(2, 1, 12.0), run(1, 1, 22.0), run(1, 2, 21.0), run(2, 2, 10.0)]


def test_the_curve_takes_medians_and_pairs_runs_of_one_repeat():
    one, two = _curve(RUNS, (1, 2))
    assert one["speedup"] == 1.0 and one["pipeline_s"] == 21.0
    assert two["pipeline_s"] == 11.0 and two["speedup"] == pytest.approx((100 / 11) / (100 / 21), abs=1e-3)
    assert two["efficiency"] == pytest.approx(two["speedup"] / 2, abs=1e-3)
    assert two["speedup_per_repeat"] == pytest.approx([20 / 11, 22 / 12, 21 / 10], abs=1e-3)


def test_the_reading_is_made_of_the_numbers_and_the_files_are_written(tmp_path):
    curve = _curve(RUNS, (1, 2))
    lines = reading(curve, RUNS, cpus=2)
    assert lines[0].startswith("1 → 2 workers: 1.91× end to end")
    assert "of a CPU while there" in lines[1]
    result = {"bundle": {"path": "b", "variant": "fp32"}, "archive": {"folder": "a", "recordings": 100,
                                                                      "description": "d"},
              "signal_s": 30000.0, "machine": {"cpu": "x", "cpus_available": 2, "logical_cpus": 2,
                                               "cgroup_cpu_quota": None, "memory_gib": 24, "system": "Linux",
                                               "python": "3.11", "ray": "2.60", "onnxruntime": "1"},
              "settings": {"threads_per_worker": 1, "provider": "cpu", "repeats": 3}, "curve": curve,
              "target": {"speedup_1_to_2": 1.7, "measured": curve[1]["speedup"], "met": True}, "runs": RUNS,
              "method": "m", "reading": lines}
    assert "**met**" in render_markdown(result)
    json_path, markdown_path, plot_path = write_scaling(result, tmp_path)
    assert json.loads(json_path.read_text())["curve"][1]["workers"] == 2 and markdown_path.is_file()
    assert plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot_path.stat().st_size > 10_000
    assert sorted(path.name for path in tmp_path.iterdir()) == ["archive_scaling.json", "archive_scaling.md",
                                                                "archive_scaling.png"]


def test_the_plain_process_control_is_paired_like_the_ray_runs():
    runs = [{**item, "bare": {"workers": item["workers"], "recordings_per_s": 10.0 * item["workers"] ** 0.9}}
            for item in RUNS]
    one, two = _curve(runs, (1, 2))
    assert one["bare_speedup"] == 1.0 and two["bare_speedup"] == pytest.approx(2**0.9, abs=1e-3)
    assert two["bare_speedup_per_repeat"] == pytest.approx([2**0.9] * 3, abs=1e-3)
    control = next(line for line in reading([one, two], runs, cpus=2) if line.startswith("Control"))
    assert f"{two['speedup'] / two['bare_speedup']:.2f}." in control


@pytest.mark.parametrize(("recordings", "workers", "per_task"), [
    (600, 2, 12),  # a large archive: the configured most per task
    (600, 8, 9),  # 8 tasks per worker where 12 per task would leave fewer
    (40, 2, 2),
    (5, 2, 1),  # never under one
    (0, 1, 1),
])
def test_a_task_holds_fewer_recordings_where_workers_would_get_few_tasks(recordings, workers, per_task):
    from pipeline.archive.run import TASKS_PER_WORKER, ArchiveRunConfig, recordings_per_task

    config = ArchiveRunConfig(workers=workers)
    assert recordings_per_task(recordings, config) == per_task
    if per_task > 1:
        assert -(-recordings // per_task) >= workers * TASKS_PER_WORKER  # every worker gets its share of tasks
