"""The bundle's error classes, and how a refused manifest field is reported.

Every refusal of the manifest names the field (``inputs[0].sample_rate_hz``), what was found
and what was expected. Nested sections report relative names; ``within`` prefixes them with
the section's own name on the way out, so a message always carries the full path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from runtime.errors import EdgemedError

REBUILD = "rebuild the bundle with 'edgemed build'"


class BundleError(EdgemedError):
    """The bundle cannot be used; nothing was run."""


class ManifestError(BundleError):
    """manifest.json is unreadable or lacks what the runtime needs.

    ``field`` is the dotted path of the refused field (None when the whole document is refused),
    ``found`` a short description of what was there.
    """

    def __init__(
        self,
        what: str,
        *,
        expected: str | None = None,
        fix: str | None = None,
        field: str | None = None,
        found: str | None = None,
    ) -> None:
        super().__init__(what, expected=expected, fix=fix)
        self.field = field
        self.found = found


class UnsupportedSchemaError(BundleError):
    """The manifest's schema version is not one this runtime reads."""


class UnsupportedBundleError(BundleError):
    """The bundle is valid, but this part of the runtime cannot run it (several inputs, another task kind)."""


MISSING = object()  # a field that is absent (not null)


def show(value: object, limit: int = 60) -> str:
    """A short description of a found value for a message."""
    if value is MISSING:
        return "missing"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def invalid(field: str, found: str, expected: str) -> ManifestError:
    """The error for one refused field; ``found`` is already described (see ``show``)."""
    return ManifestError(
        f"manifest field '{field}' is {found}",
        expected=expected,
        fix=REBUILD,
        field=field,
        found=found,
    )


def join(prefix: str, field: str) -> str:
    if not prefix:
        return field
    if not field:
        return prefix
    return f"{prefix}{field}" if field.startswith("[") else f"{prefix}.{field}"


@contextlib.contextmanager
def within(prefix: str) -> Iterator[None]:
    """Report a field refused inside this block under ``prefix`` (``inputs[1]`` + ``shape``)."""
    try:
        yield
    except ManifestError as error:
        if error.field is None or error.expected is None:
            raise
        raise invalid(join(prefix, error.field), error.found or "invalid", error.expected) from None
