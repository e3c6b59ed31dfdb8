"""Ctrl-C and SIGTERM end a device run cleanly: the output file is left as it was, no traceback, exit status 130.

SIGTERM (what a service manager or ``kill`` sends) would otherwise end the process at once, leaving the run's
temporary ``.partial`` file beside the output; here it is raised as ``KeyboardInterrupt`` in the main thread, like
Ctrl-C, so the writer's cleanup runs. Telemetry already in the outbox stays there (it is kill -9 safe anyway).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

INTERRUPTED_EXIT_STATUS = 130  # 128 + SIGINT, as shells report a run stopped by Ctrl-C


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises ``KeyboardInterrupt`` (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(number: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(number).name)

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interrupted_line(output: Path | None) -> str:
    """What an interrupted run tells its user: what happened, what was (not) written, what to do."""
    where = ("the events printed before it are complete up to the last full line" if output is None else
             f"{output} was not written (a file already there is as it was)")
    return (f"interrupted: the run was stopped (Ctrl-C or SIGTERM) before the end of its input; {where}. Run it again "
            "to judge the whole input")
