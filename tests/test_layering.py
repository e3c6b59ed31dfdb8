"""The one-way dependency rule is enforced, not written: runtime ← exporters ← pipeline; the dashboard reads
runtime's contracts; only ``pipeline.cli`` imports the dashboard; no file-level import cycles."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.layering import ALLOWED, PACKAGES, check_tree, module_names, room_of

REPOSITORY = Path(__file__).resolve().parents[1]


def test_the_source_tree_follows_the_dependency_table() -> None:
    violations, cycles = check_tree(REPOSITORY)
    assert not violations, "imports against the dependency table:\n" + "\n".join(map(str, violations))
    assert not cycles, f"file-level import cycles: {cycles}"


def test_every_room_of_the_tree_is_in_the_table() -> None:
    rooms = {room_of(module) for module in module_names(REPOSITORY)} - {"pipeline"}
    assert rooms <= set(ALLOWED), f"rooms without a line in the table: {sorted(rooms - set(ALLOWED))}"


def _copy_tree(destination: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(REPOSITORY / package, destination / package, ignore=shutil.ignore_patterns("__pycache__"))
    return destination


def test_a_deliberate_back_edge_is_caught(tmp_path) -> None:
    root = _copy_tree(tmp_path)
    with (root / "runtime" / "features.py").open("a") as handle:
        handle.write("\n\ndef _back_edge():\n    from exporters.parity import compare_outputs  # noqa\n")
    with (root / "dashboard" / "data" / "files.py").open("a") as handle:
        handle.write("\nimport pipeline.config  # noqa\n")
    violations, _ = check_tree(root)
    described = {(violation.module, violation.imported) for violation in violations}
    assert ("runtime.features", "exporters.parity") in described
    assert ("dashboard.data.files", "pipeline.config") in described


def test_a_third_party_import_in_the_runtime_is_caught(tmp_path) -> None:
    root = _copy_tree(tmp_path)
    with (root / "runtime" / "events.py").open("a") as handle:
        handle.write("\nimport scipy.signal  # noqa\n")
    violations, _ = check_tree(root)
    assert any(violation.imported == "scipy.signal" for violation in violations)


def test_a_file_level_cycle_is_caught(tmp_path) -> None:
    root = _copy_tree(tmp_path)
    with (root / "runtime" / "hashing.py").open("a") as handle:
        handle.write("\nfrom runtime.bundle import load_bundle  # noqa\n")
    _, cycles = check_tree(root)
    assert any({"runtime.hashing", "runtime.bundle"} <= set(cycle) for cycle in cycles)
