"""Reading JSON files the dashboard depends on, with messages a page can show as they are."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runtime.errors import EdgemedError


class DataUnavailableError(EdgemedError):
    """Something a page needs is missing or unreadable; the message is meant for the page."""


def read_json(path: Path, what: str) -> Any:
    """The parsed JSON at ``path``, or ``DataUnavailableError`` saying what is wrong with it."""
    if not path.is_file():
        raise DataUnavailableError(f"{what} is missing: {path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise DataUnavailableError(
            f"{what} at {path} cannot be read ({type(error).__name__}: {error})",
            fix="rebuild or rewrite the file",
        ) from None


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """Like ``read_json`` but the document must be a JSON object."""
    document = read_json(path, what)
    if not isinstance(document, dict):
        raise DataUnavailableError(f"{what} at {path} is a JSON {type(document).__name__}, not an object")
    return document
