"""The project's error hierarchy root.

Dependency rule: this module imports only the standard library. Every other
package (runtime, exporters, pipeline, dashboard) may import it; it imports none
of them.

Every message answers three questions: what happened, what was expected, and how
to fix it. Build errors with ``EdgemedError(what, expected=..., fix=...)``.
"""

from __future__ import annotations


class EdgemedError(Exception):
    """Base class of every error edgemed raises on purpose."""

    def __init__(self, what: str, *, expected: str | None = None, fix: str | None = None) -> None:
        self.what = what
        self.expected = expected
        self.fix = fix
        parts = [what.rstrip(".") + "."]
        if expected:
            parts.append(f"Expected: {expected.rstrip('.')}.")
        if fix:
            parts.append(f"Fix: {fix.rstrip('.')}.")
        super().__init__(" ".join(parts))


class IntegrityError(EdgemedError):
    """A file's content does not match the sha256 recorded for it."""
