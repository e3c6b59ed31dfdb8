"""Package-level rules: lazy TensorFlow import, dependency rule, no print() in library code."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import exporters

PACKAGE_FOLDER = Path(exporters.__file__).parent
REPOSITORY_ROOT = PACKAGE_FOLDER.parent


def test_importing_the_package_does_not_load_tensorflow() -> None:
    probe = (
        "import sys, exporters, exporters.quantization, exporters.variants, exporters.parity, "
        "exporters.keras_to_onnx; "
        "loaded = [name for name in ('tensorflow', 'tf2onnx', 'keras') if name in sys.modules]; "
        "print(','.join(loaded))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPOSITORY_ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    assert completed.stdout.strip() == ""


def _modules() -> list[Path]:
    return sorted(PACKAGE_FOLDER.rglob("*.py"))  # sub-packages too (quantization/, passes/, optimization/)


def test_exporters_never_import_pipeline_or_dashboard() -> None:
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                assert name.split(".")[0] not in {"pipeline", "dashboard"}, f"{path.name} imports {name}"


def test_library_code_never_prints() -> None:
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id != "print", f"{path.name}:{node.lineno} calls print()"


def test_public_names_are_exported() -> None:
    for name in exporters.__all__:
        assert hasattr(exporters, name), name
