"""Typed reads from one JSON object of the manifest; every refusal names the field.

``Fields(value)`` checks that ``value`` is a JSON object; its methods read one key each with
the type the contract needs (a finite number, a non-empty string, a list of strings …) and
``done()`` refuses any key that was not read, so a misspelt key is an error, not a default.
Field names here are relative to the object; ``errors.within`` adds the section's path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from runtime.contract.errors import MISSING, invalid, show, within

T = TypeVar("T")
_MAX_DEPTH = 64  # free-form sections nest at most this deep


def is_integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """A finite int or float (booleans are not numbers here)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def plain_json(value: object, field: str, depth: int = 0) -> Any:
    """A deep copy of ``value`` in plain JSON types (tuples become lists); anything else is refused."""
    if depth > _MAX_DEPTH:
        raise invalid(field, "nested too deeply", f"at most {_MAX_DEPTH} levels")
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list | tuple):
        return [plain_json(item, f"{field}[{index}]", depth + 1) for index, item in enumerate(value)]
    if isinstance(value, Mapping):
        copied = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise invalid(field, f"an object with the key {show(key)}", "string keys")
            copied[key] = plain_json(item, f"{field}.{key}", depth + 1)
        return copied
    raise invalid(field, f"a {type(value).__name__}", "JSON values (objects, lists, strings, numbers, booleans, null)")


def json_object(value: object, field: str) -> dict[str, Any]:
    """A free-form JSON object (validated and copied)."""
    if not isinstance(value, Mapping):
        raise invalid(field, show(value), "a JSON object")
    return plain_json(value, field)


class Fields:
    """The keys of one JSON object, read once each."""

    def __init__(self, value: object, what: str = "a JSON object") -> None:
        if not isinstance(value, dict):
            raise invalid("", show(value), what)
        self._data = value
        self._read: set[str] = set()

    def value(self, key: str, expected: str = "a value") -> object:
        self._read.add(key)
        value = self._data.get(key, MISSING)
        if value is MISSING:
            raise invalid(key, "missing", expected)
        return value

    def _check(self, key: str, check: Callable[[object], bool], expected: str, optional: bool) -> object:
        value = self._data.get(key, MISSING)
        self._read.add(key)
        if optional and value is None:  # optional values are null, never absent: every key is written
            return None
        if value is MISSING or not check(value):
            raise invalid(key, show(value), expected + (" or null" if optional else ""))
        return value

    def text(self, key: str, *, optional: bool = False, empty: bool = False) -> str | None:
        expected = "a string" if empty else "a non-empty string"
        return self._check(key, lambda v: isinstance(v, str) and (empty or bool(v.strip())), expected, optional)

    def integer(self, key: str, *, minimum: int | None = None, optional: bool = False) -> int | None:
        expected = "an integer" + (f" ≥ {minimum}" if minimum is not None else "")
        return self._check(key, lambda v: is_integer(v) and (minimum is None or v >= minimum), expected, optional)

    def number(self, key: str, *, optional: bool = False) -> float | None:
        value = self._check(key, is_number, "a finite number", optional)
        return None if value is None else float(value)

    def flag(self, key: str, *, optional: bool = False) -> bool | None:
        return self._check(key, lambda v: isinstance(v, bool), "true or false", optional)

    def texts(self, key: str, *, optional: bool = False) -> tuple[str, ...]:
        value = self._check(key, lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
                            "a list of strings", optional)
        return tuple(value or ())

    def numbers(self, key: str) -> tuple[float, ...]:
        value = self._check(key, lambda v: isinstance(v, list) and all(is_number(x) for x in v),
                            "a list of finite numbers", False)
        return tuple(float(x) for x in value)

    def choice(self, key: str, choices: Callable[[str], T], allowed: tuple[str, ...]) -> T:
        """A string that is one of ``allowed``, converted (an enum member)."""
        value = self._check(key, lambda v: isinstance(v, str) and v in allowed, f"one of {', '.join(allowed)}", False)
        return choices(value)

    def json_object(self, key: str) -> dict[str, Any]:
        return json_object(self.value(key, "a JSON object"), key)

    def section(self, key: str, parse: Callable[[Fields], T]) -> T:
        """A nested object parsed by ``parse``, its refusals reported under ``key``."""
        value = self.value(key, "a JSON object")
        with within(key):
            return parse(Fields(value))

    def optional_section(self, key: str, parse: Callable[[Fields], T]) -> T | None:
        """A nested object or null; absent counts as null only for keys added after their schema
        (manifests written before them lack the key)."""
        self._read.add(key)
        return None if self._data.get(key) is None else self.section(key, parse)

    def added_texts(self, key: str) -> tuple[str, ...]:
        """A list of strings, or () when the key is absent or null: for keys added after their schema, written only
        when set (manifests without them read on runtimes that predate the key)."""
        if self._data.get(key, MISSING) is MISSING:
            self._read.add(key)
            return ()
        return self.texts(key, optional=True)

    def sections(self, key: str, parse: Callable[[Fields], T]) -> tuple[T, ...]:
        """A non-empty list of objects, each parsed by ``parse`` (refusals under ``key[i]``)."""
        items = self._check(key, lambda v: isinstance(v, list) and len(v) > 0, "a non-empty list of objects", False)
        parsed = []
        for index, item in enumerate(items):
            with within(f"{key}[{index}]"):
                parsed.append(parse(Fields(item)))
        return tuple(parsed)

    def whole(self) -> dict:
        """The whole object, every key counted as read (a free-form section)."""
        self._read.update(self._data)
        return self._data

    def done(self) -> None:
        """Refuse every key that was not read (a typo must not become a silent default)."""
        unknown = sorted(set(self._data) - self._read, key=str)
        if unknown:
            raise invalid(str(unknown[0]), "not a field of this section", f"only {', '.join(sorted(self._read))}")
