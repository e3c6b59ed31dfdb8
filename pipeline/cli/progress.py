"""Progress for the CLI (library code only calls the progress callback).

On a terminal: one tqdm bar per task. Elsewhere (CI logs, files, pipes): plain lines,
one when a task starts, at most one per ``_PLAIN_STEP`` of progress and one when it ends,
so a log stays readable instead of filling with carriage returns.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm import tqdm

_PLAIN_STEP = 0.25  # a plain line at every quarter of a task
_PLAIN_MIN_SECONDS = 2.0  # ... but no more often than this, except for the first and last line


class ProgressBars:
    """Progress per task name: tqdm bars on a terminal, plain lines otherwise."""

    def __init__(self, prefix: str = "", enabled: bool = True, stream: TextIO | None = None) -> None:
        self.prefix = prefix
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.plain = not self.stream.isatty()
        self.bars: dict[str, tqdm] = {}
        self.reported: dict[str, tuple[float, float]] = {}  # task → (fraction, time) of its last plain line

    def __call__(self, task: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.plain:
            self._line(task, done, total)
            return
        bar = self.bars.get(task)
        if bar is None:
            bar = tqdm(total=total, desc=f"{self.prefix}{task}", file=self.stream, leave=False, dynamic_ncols=True)
            self.bars[task] = bar
        bar.total = total
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()
            del self.bars[task]

    def _line(self, task: str, done: int, total: int) -> None:
        fraction = done / total if total else 1.0
        now = time.monotonic()
        last = self.reported.get(task)
        finished = done >= total
        due = last is None or (fraction - last[0] >= _PLAIN_STEP and now - last[1] >= _PLAIN_MIN_SECONDS)
        if finished or due:
            print(f"{self.prefix}{task}: {done}/{total}", file=self.stream, flush=True)
            self.reported[task] = (fraction, now)
        if finished:
            self.reported.pop(task, None)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()
        self.reported.clear()
