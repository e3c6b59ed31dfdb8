"""The archive commands refuse, before any work, what this machine cannot do: an archive larger than the free disk
(100 000 recordings of 30 min wrote 53 GB in 90 s before the check), more local Ray workers than its cores can run
(--workers 100000 kept starting processes)."""

from __future__ import annotations

import os
import shutil
from collections import namedtuple

import click
import pytest
from click.testing import CliRunner

from pipeline.cli import main

Usage = namedtuple("Usage", "total used free")


def test_an_archive_larger_than_the_free_disk_is_refused_before_a_byte_is_written(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10 * 2**30, 9 * 2**30, 2**30))  # 1 GiB free
    output = tmp_path / "archive"
    result = CliRunner().invoke(main, ["make-archive", "--output", str(output), "--recordings", "1000",
                                       "--seconds", "1800"])
    assert result.exit_code == 2 and "GiB free" in result.output and "--recordings" in result.output, result.output
    assert "Traceback" not in result.output and not output.exists() and list(tmp_path.iterdir()) == []


def test_more_local_workers_than_the_cores_can_run_are_refused(tmp_path):
    limit = 2 * (os.cpu_count() or 1)
    runner = CliRunner()
    for command in (["validate-archive", "bundle", "--archive", str(tmp_path), "--workers", str(limit + 1)],
                    ["bench-archive", "bundle", "--archive", str(tmp_path), "--workers", f"1,{limit + 1}"]):
        result = runner.invoke(main, command)
        assert result.exit_code == 2 and f"at most {limit} here" in result.output, result.output
        assert "Traceback" not in result.output


def test_the_free_space_estimate_counts_what_a_csv_sample_costs(tmp_path, monkeypatch):
    """A .csv sample takes up to 8 bytes ("-12.345\\n"), a .npy one 4: the same archive fits as .npy and not as
    .csv on a disk between the two."""
    from pipeline.cli.archive import _check_free_space

    recordings, seconds = 100, 1000.0
    npy_bytes = recordings * seconds * (360 * 4 + 160) * 1.1
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10**12, 0, int(npy_bytes * 1.5)))
    _check_free_space(tmp_path, recordings, seconds, "npy")
    with pytest.raises(click.BadParameter, match="GiB free"):
        _check_free_space(tmp_path, recordings, seconds, "csv")
