"""The manifest's smaller sections: preprocessing, selection, export, data and the file table.

Each is a frozen dataclass whose constructor validates it and whose ``from_fields`` reads it
from a ``Fields``; the free-form parts are copied as plain JSON objects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from runtime.contract.errors import invalid, show
from runtime.contract.fields import Fields, is_integer, json_object

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def is_text(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _require_texts(section: object, names: tuple[str, ...]) -> None:
    for name in names:
        if not is_text(getattr(section, name)):
            raise invalid(name, show(getattr(section, name)), "a non-empty string")


@dataclass(frozen=True)
class Preprocessing:
    """What the graph does to its input itself, and what the device must do before calling it."""

    in_graph: str
    runtime: str

    def __post_init__(self) -> None:
        _require_texts(self, ("in_graph", "runtime"))

    def to_dict(self) -> dict:
        return {"in_graph": self.in_graph, "runtime": self.runtime}

    @classmethod
    def from_fields(cls, fields: Fields) -> Preprocessing:
        return cls(fields.text("in_graph"), fields.text("runtime"))


@dataclass(frozen=True)
class Selection:
    """Why the shipped variant was chosen, and on which machine it was measured."""

    rule: str
    reason: str
    measured_on: dict[str, Any] = field(default_factory=dict)  # free-form: CPU, cores, onnxruntime version

    def __post_init__(self) -> None:
        _require_texts(self, ("rule", "reason"))
        object.__setattr__(self, "measured_on", json_object(self.measured_on, "measured_on"))

    def to_dict(self) -> dict:
        return {"rule": self.rule, "reason": self.reason, "measured_on": self.measured_on}

    @classmethod
    def from_fields(cls, fields: Fields) -> Selection:
        return cls(fields.text("rule"), fields.text("reason"), fields.json_object("measured_on"))


@dataclass(frozen=True)
class ExportSummary:
    """The ONNX export: opset (checked against the device's onnxruntime), parity with Keras, op census."""

    opset: int
    parity: dict[str, Any] = field(default_factory=dict)  # free-form: max_abs_diff, samples, batch sizes …
    op_census: dict[str, Any] = field(default_factory=dict)  # op type → count
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not is_integer(self.opset) or self.opset < 1:
            raise invalid("opset", show(self.opset), "a positive integer")
        object.__setattr__(self, "parity", json_object(self.parity, "parity"))
        object.__setattr__(self, "op_census", json_object(self.op_census, "op_census"))
        object.__setattr__(self, "warnings", tuple(self.warnings))
        if not all(isinstance(warning, str) for warning in self.warnings):
            raise invalid("warnings", show(list(self.warnings)), "a list of strings")

    def to_dict(self) -> dict:
        return {"opset": self.opset, "parity": self.parity, "op_census": self.op_census,
                "warnings": list(self.warnings)}

    @classmethod
    def from_fields(cls, fields: Fields) -> ExportSummary:
        return cls(fields.integer("opset", minimum=1), fields.json_object("parity"), fields.json_object("op_census"),
                   fields.texts("warnings"))


@dataclass(frozen=True)
class DataSummary:
    """Where the data came from; ``synthetic`` says whether the figures describe a simulation."""

    synthetic: bool | None  # None: not known (a user's own data)
    provenance: dict[str, Any] = field(default_factory=dict)  # free-form: source, generator, licence
    seed: int | None = None
    sizes: dict[str, Any] = field(default_factory=dict)  # split → samples
    class_balance: dict[str, Any] = field(default_factory=dict)  # split → label → count

    def __post_init__(self) -> None:
        if self.synthetic is not None and not isinstance(self.synthetic, bool):
            raise invalid("synthetic", show(self.synthetic), "true, false or null (unknown)")
        if self.seed is not None and not is_integer(self.seed):
            raise invalid("seed", show(self.seed), "an integer or null")
        for name in ("provenance", "sizes", "class_balance"):
            object.__setattr__(self, name, json_object(getattr(self, name), name))

    def to_dict(self) -> dict:
        return {"synthetic": self.synthetic, "provenance": self.provenance, "seed": self.seed, "sizes": self.sizes,
                "class_balance": self.class_balance}

    @classmethod
    def from_fields(cls, fields: Fields) -> DataSummary:
        return cls(fields.flag("synthetic", optional=True), fields.json_object("provenance"),
                   fields.integer("seed", optional=True), fields.json_object("sizes"),
                   fields.json_object("class_balance"))


@dataclass(frozen=True)
class FileEntry:
    """A bundle file's recorded content."""

    sha256: str  # 64 hex digits, stored lowercase
    bytes: int

    def __post_init__(self) -> None:
        if not isinstance(self.sha256, str) or not _SHA256.fullmatch(self.sha256):
            raise invalid("sha256", show(self.sha256), "64 hex digits")
        object.__setattr__(self, "sha256", self.sha256.lower())
        if not is_integer(self.bytes) or self.bytes < 0:
            raise invalid("bytes", show(self.bytes), "the file's size, an integer ≥ 0")

    def to_dict(self) -> dict:
        return {"sha256": self.sha256, "bytes": self.bytes}

    @classmethod
    def from_fields(cls, fields: Fields) -> FileEntry:
        return cls(fields.text("sha256"), fields.integer("bytes", minimum=0))
