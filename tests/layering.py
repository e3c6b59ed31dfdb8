"""The dependency table of edgemed, checked over the source tree by one AST walk.

Rooms are top-level packages and the sub-packages of ``pipeline``; a module may import
only from its own room and the rooms the table lists for it. Every import counts: lazy
imports inside functions run all the same, and imports under ``if TYPE_CHECKING:`` are
design dependencies too (a type-only cycle is still a cycle between two files).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ("runtime", "exporters", "pipeline", "dashboard")

# room → the rooms it may import (besides itself). Ordered from the device up.
ALLOWED: dict[str, frozenset[str]] = {
    "runtime": frozenset(),
    "exporters": frozenset({"runtime"}),
    "dashboard": frozenset({"runtime"}),  # reads runtime's contracts and the artefacts on disk
    "pipeline.errors": frozenset({"runtime"}),
    "pipeline.splits": frozenset({"runtime", "pipeline.errors"}),
    "pipeline.clinical": frozenset({"runtime", "exporters", "pipeline.errors"}),
    "pipeline.config": frozenset({"runtime", "exporters", "pipeline.errors", "pipeline.clinical"}),
    "pipeline.training": frozenset({"runtime", "pipeline.errors", "pipeline.splits", "pipeline.config"}),
    # Validation on real recordings (EC57 matching, the device stream on records): scenarios cut their
    # training beats with it and the build gates on it, so it sits low.
    "pipeline.validation": frozenset({"runtime", "pipeline.errors", "pipeline.clinical"}),
    "pipeline.scenarios": frozenset({"runtime", "pipeline.errors", "pipeline.splits", "pipeline.clinical",
                                     "pipeline.config", "pipeline.training", "pipeline.validation"}),
    "pipeline.build": frozenset({"runtime", "exporters", "pipeline.errors", "pipeline.splits", "pipeline.clinical",
                                 "pipeline.config", "pipeline.training", "pipeline.scenarios",
                                 "pipeline.validation"}),
    "pipeline.benchmark": frozenset({"runtime", "exporters", "pipeline.errors", "pipeline.splits",
                                     "pipeline.clinical", "pipeline.config", "pipeline.training",
                                     "pipeline.scenarios", "pipeline.build", "pipeline.validation"}),
    "pipeline.fleet": frozenset({"runtime", "pipeline.errors", "pipeline.validation"}),
    # Archive validation on Ray Data: the device runtime per recording, the build's EC57 scoring and gate floors.
    "pipeline.archive": frozenset({"runtime", "pipeline.errors", "pipeline.clinical", "pipeline.validation"}),
    # The device runtime on emulated CPUs: the device command per target, the scenarios' real inputs, EC57 counts.
    "pipeline.portability": frozenset({"runtime", "pipeline.errors", "pipeline.build", "pipeline.scenarios",
                                       "pipeline.validation"}),
    # The composition root: every room, and the only one that may import the dashboard.
    "pipeline.cli": frozenset({"runtime", "exporters", "dashboard", "pipeline.errors", "pipeline.splits",
                               "pipeline.clinical", "pipeline.config", "pipeline.training", "pipeline.scenarios",
                               "pipeline.build", "pipeline.validation", "pipeline.benchmark", "pipeline.fleet",
                               "pipeline.archive", "pipeline.portability"}),
    # The ``edgemed`` script: the command line when the build tools are installed, else one line (a device install).
    "pipeline.command": frozenset({"pipeline.cli"}),
}
# Third-party packages a room may import besides the standard library; None = no limit.
THIRD_PARTY: dict[str, frozenset[str] | None] = {
    # h5py only inside the .h5 reader, lazily; cryptography verifies bundle signatures (runtime/trust).
    "runtime": frozenset({"numpy", "onnxruntime", "h5py", "cryptography"}),
}


@dataclass(frozen=True)
class Violation:
    module: str
    imported: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.imported}: {self.reason}"


def room_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "pipeline" and len(parts) > 1:
        return ".".join(parts[:2])
    return parts[0]


def module_names(root: Path) -> dict[str, Path]:
    """Dotted module name → file, for every first-party package under ``root``."""
    names = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            names[".".join(parts)] = path
    return names


def imports_of(module: str, path: Path, known: Iterable[str]) -> list[tuple[str, int]]:
    """(imported module, line) for every import in ``path``; ``from a import b`` resolves to ``a.b``
    when that is a module of the tree."""
    known = set(known)
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.append((candidate if candidate in known else base, node.lineno))
    return found


def check_tree(root: Path) -> tuple[list[Violation], list[list[str]]]:
    """Every import that breaks the table, and every file-level import cycle."""
    names = module_names(root)
    violations: list[Violation] = []
    graph: dict[str, set[str]] = {name: set() for name in names}
    standard_library = set(sys.stdlib_module_names) | {"__future__"}
    for module, path in names.items():
        room = room_of(module)
        for imported, line in imports_of(module, path, names):
            top = imported.split(".")[0]
            if top in PACKAGES:
                target_room = room_of(imported)
                if target_room not in ALLOWED:
                    violations.append(Violation(module, imported, line, f"{target_room} is not a room of the table"))
                elif target_room != room and target_room not in ALLOWED.get(room, frozenset()):
                    violations.append(Violation(module, imported, line, f"{room} may not import {target_room}"))
                target = imported
                while target not in names and "." in target:
                    target = target.rpartition(".")[0]
                if target in names and target != module:
                    graph[module].add(target)
            elif top not in standard_library:
                limit = THIRD_PARTY.get(room.split(".")[0])
                if limit is not None and top not in limit:
                    violations.append(Violation(module, imported, line, f"{room} may import only "
                                                f"{', '.join(sorted(limit))} and the standard library"))
    return list(dict.fromkeys(violations)), _cycles(graph)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    lowest: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = lowest[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                lowest[node] = min(lowest[node], lowest[successor])
            elif successor in on_stack:
                lowest[node] = min(lowest[node], index[successor])
        if lowest[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components
