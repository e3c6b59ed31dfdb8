"""Option types shared by the commands: numbers that must be finite, output files that must be writable.

``click.FloatRange`` lets ``nan`` through any bounds and ``inf`` through an open upper bound; every float option of
the command line uses ``FiniteFloatRange`` instead, so ``--minutes nan`` is a usage error (exit 2) naming the option,
not a traceback after minutes of work. ``check_writable`` is called before a command starts its work, so an output
path it could not write is refused up front rather than after the work is done (and lost).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import click


class FiniteFloatRange(click.FloatRange):
    """``click.FloatRange`` that refuses ``nan`` and ``±inf`` whatever the bounds."""

    name = "finite float range"

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)  # the float itself, before the bounds
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number. Expected: {self._describe_range()}. Fix: give a plain "
                      "number such as 1.5.", param, ctx)
        return super().convert(number, param, ctx)


def check_writable(path: Path | str, option: str, *, folder: bool = False) -> None:
    """Refuse (``click.BadParameter``) an output ``path`` that cannot be written: the nearest existing folder above it
    (the writers create the missing ones) must be a writable folder, and the path itself must not be the other kind
    (a folder where a file goes, or a file where a folder goes)."""
    path = Path(path)
    kind = "folder" if folder else "file"
    if path.exists() and path.is_dir() != folder:
        raise click.BadParameter(f"{path} exists and is not a {kind}. Expected: a {kind} path. Fix: choose another "
                                 "path, or move that one away.", param_hint=option)
    existing = path.parent
    while not existing.exists():  # the writers create missing folders, so the nearest existing one must be writable
        existing = existing.parent
    if not existing.is_dir():
        raise click.BadParameter(f"{existing} is not a folder, so {path} cannot be written. Fix: choose another path.",
                                 param_hint=option)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise click.BadParameter(f"the folder {existing} is not writable by this user, so {path} cannot be written. "
                                 "Expected: a path you may write. Fix: choose another path, or fix the folder's "
                                 "permissions.", param_hint=option)


class OutputPath(click.Path):
    """``click.Path`` for what a command writes: ``check_writable`` when the option is parsed, so an unwritable path
    is a usage error (exit 2) before any work is done."""

    def __init__(self, *, folder: bool, path_type: type | None = None) -> None:
        super().__init__(file_okay=not folder, dir_okay=folder, path_type=path_type)
        self.folder = folder

    def convert(self, value, param, ctx):
        converted = super().convert(value, param, ctx)
        try:
            check_writable(converted, param.get_error_hint(ctx) if param is not None else "path", folder=self.folder)
        except click.BadParameter as error:
            self.fail(error.message, param, ctx)
        return converted
