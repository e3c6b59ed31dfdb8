"""Bad numbers and unwritable outputs are usage errors (exit 2) before any work, never a traceback after it.

Found by a command-line audit: ``simulate --minutes nan`` and ``1e12``, ``bench-stream --hours nan/inf`` and
``export-record --start-s inf`` ended in tracebacks (``click.FloatRange`` lets ``nan`` through any bounds and ``inf``
through an open one), ``bench-stream --hours 100000`` asked for a recording larger than any memory, and an output
path that could not be written failed after the work was done.
"""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.cli.parameters import FiniteFloatRange, OutputPath


def _options(command: click.Command, path: tuple[str, ...] = ()):
    if isinstance(command, click.Group):
        for name, child in command.commands.items():
            yield from _options(child, (*path, name))
        return
    for parameter in command.params:
        yield " ".join(path), parameter


def test_every_float_option_of_the_command_line_refuses_nan_and_infinity():
    floats = [(command, parameter) for command, parameter in _options(main)
              if isinstance(parameter.type, click.types.FloatParamType)]
    assert len(floats) >= 9  # simulate, bench-stream, run, make-archive, validate-archive, export-record …
    loose = [f"{command} --{parameter.name}" for command, parameter in floats
             if not isinstance(parameter.type, FiniteFloatRange)]
    assert loose == [], f"float options that accept nan/inf: {loose}"


@pytest.mark.parametrize("arguments", [
    ["simulate", "--collector", "http://127.0.0.1:1/v1/telemetry", "--minutes", "nan"],
    ["bench-stream", "--hours", "nan"],
    ["bench-stream", "--hours", "inf"],
    ["export-record", "100", "--output", "excerpt.npy", "--start-s", "inf"],
    ["make-archive", "--output", "archive", "--seconds", "nan"],
    ["dashboard", "--latency-objective-us", "inf"],
])
def test_a_number_that_is_not_finite_is_a_usage_error_naming_the_option(arguments, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, arguments)
    option = next(argument for argument in reversed(arguments) if argument.startswith("--"))
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert f"'{option}'" in result.output and "is not a finite number" in result.output and "Fix:" in result.output
    assert list(tmp_path.iterdir()) == []  # nothing was written


@pytest.mark.parametrize(("arguments", "option"), [
    (["simulate", "--collector", "http://127.0.0.1:1/v1/telemetry", "--minutes", "1e12"], "--minutes"),
    (["bench-stream", "--hours", "100000"], "--hours"),
])
def test_lengths_beyond_what_a_machine_can_run_are_refused(arguments, option):
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 2 and f"'{option}'" in result.output and "is not in the range" in result.output


def _blocked(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    return blocker


@pytest.mark.parametrize(("arguments", "option"), [
    (["bench-stream", "--output", "{blocked}/speed.json"], "--output"),
    (["simulate", "--collector", "http://127.0.0.1:1/v1/telemetry", "--summary", "{blocked}/fleet.json"],
     "--summary"),
    (["simulate", "--collector", "http://127.0.0.1:1/v1/telemetry", "--outbox-dir", "{blocked}/outboxes"],
     "--outbox-dir"),
    (["make-archive", "--output", "{blocked}/archive"], "--output"),
    (["validate-archive", "bundle", "--archive", ".", "--output", "{blocked}/results"], "--output"),
    (["bench-archive", "bundle", "--archive", ".", "--output", "{blocked}/results"], "--output"),
    (["export-record", "100", "--output", "{blocked}/excerpt.npy"], "--output"),
    (["real-ecg", ".", "--output", "{blocked}/real.json"], "--output"),
    (["bench", "--output", "{blocked}/results"], "--output"),
    (["cpu-check", "--output", "{blocked}/results"], "--output"),
    (["run", ".", "--input", "x.npy", "--output", "{blocked}/events.jsonl"], "--output"),
    (["run", ".", "--input", "x.npy", "--telemetry-outbox", "{blocked}/outbox"], "--telemetry-outbox"),
])
def test_an_output_that_cannot_be_written_is_refused_before_any_work(arguments, option, tmp_path):
    blocked = _blocked(tmp_path)
    result = CliRunner().invoke(main, [argument.format(blocked=blocked) for argument in arguments])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert f"'{option}'" in result.output and f"{blocked} is not a folder" in result.output
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a-file"]


def test_an_output_of_the_wrong_kind_is_refused(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["bench-stream", "--output", str(tmp_path)])  # a folder where a file goes
    assert result.exit_code == 2 and "is a directory" in result.output, result.output
    result = runner.invoke(main, ["make-archive", "--output", str(_blocked(tmp_path))])  # a file where a folder goes
    assert result.exit_code == 2 and "is a file" in result.output, result.output


def test_missing_folders_above_an_output_are_fine_they_are_created(tmp_path):
    """The writers create missing folders (a fresh clone has no benchmarks/results/), so only the nearest existing
    folder has to be writable."""
    kind = OutputPath(folder=False)
    assert kind.convert(str(tmp_path / "new" / "deeper" / "out.json"), None, None) == str(tmp_path / "new" / "deeper"
                                                                                           / "out.json")
    assert not (tmp_path / "new").exists()  # checked, not created


def test_an_empty_record_list_is_refused():
    result = CliRunner().invoke(main, ["make-archive", "--output", "unused", "--records", " , "])
    assert result.exit_code == 2 and "names no record" in result.output and "100,119" in result.output
