"""A device run stopped by SIGTERM or Ctrl-C leaves its output as it was, prints no traceback and exits 130.

Before: SIGTERM (a service manager stopping the device program) killed the process with its ``.partial`` file left
beside the output, and Ctrl-C printed a traceback. The signal here is a real one, sent by the run to itself after
its third event.
"""

from __future__ import annotations

import os
import signal

import pytest
from click.testing import CliRunner

import runtime.__main__ as device_command
from pipeline.cli import main as edgemed
from runtime.contract import TaskKind
from runtime.interrupts import INTERRUPTED_EXIT_STATUS
from tests.runtime.hand_built import build_bundle
from tests.runtime.test_row_runner import plain_rows, write_csv


@pytest.fixture
def stopping_run(monkeypatch):
    """``run`` as it is, but the process sends itself ``signal_number`` after the third event."""
    real_run = device_command.run

    def install(signal_number: int) -> None:
        def run(*arguments, **keywords):
            for index, event in enumerate(real_run(*arguments, **keywords)):
                if index == 3:
                    os.kill(os.getpid(), signal_number)
                yield event

        monkeypatch.setattr(device_command, "run", run)

    return install


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("command", ["python -m runtime", "edgemed run"])
def test_an_interrupted_run_leaves_the_output_as_it_was(tmp_path, capsys, stopping_run, signal_number, command):
    bundle = build_bundle(tmp_path / "bundle", TaskKind.MULTICLASS)
    rows = write_csv(tmp_path / "rows.csv", plain_rows() * 3)
    output = tmp_path / "events.jsonl"
    output.write_text("the previous run's events\n")
    stopping_run(signal_number)
    before = signal.getsignal(signal.SIGTERM)
    arguments = [str(bundle), "--input", str(rows), "--output", str(output), "--allow-unsigned"]
    if command == "python -m runtime":
        status = device_command.main(arguments)
        message = capsys.readouterr().err
    else:
        result = CliRunner().invoke(edgemed, ["run", *arguments])
        status, message = result.exit_code, result.output
    assert status == INTERRUPTED_EXIT_STATUS, message
    assert "interrupted: the run was stopped" in message and "Traceback" not in message
    assert output.read_text() == "the previous run's events\n"  # not replaced by a third of a run
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bundle", "events.jsonl", "rows.csv"]  # no .partial
    assert signal.getsignal(signal.SIGTERM) == before  # the run's handler is gone with the run
