"""Terminal progress bars for the CLI (library code only calls the progress callback)."""

from __future__ import annotations

import sys

from tqdm import tqdm


class ProgressBars:
    """One tqdm bar per task name, created on first report and closed when done."""

    def __init__(self, prefix: str = "", enabled: bool = True) -> None:
        self.prefix = prefix
        self.enabled = enabled
        self.bars: dict[str, tqdm] = {}

    def __call__(self, task: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        bar = self.bars.get(task)
        if bar is None:
            bar = tqdm(total=total, desc=f"{self.prefix}{task}", file=sys.stderr, leave=False, dynamic_ncols=True)
            self.bars[task] = bar
        bar.total = total
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()
            del self.bars[task]

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()
