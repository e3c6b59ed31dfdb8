"""What every stage receives besides its config: where the cache lives and how to report progress."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# progress(task, done, total): the CLI draws bars with it; library code never prints.
ProgressCallback = Callable[[str, int, int], None]


def no_progress(task: str, done: int, total: int) -> None:
    """Default progress sink: nothing."""


@dataclass(frozen=True)
class StageContext:
    root: Path  # artefact cache: <root>/<stage>/<id>/
    progress: ProgressCallback = no_progress
