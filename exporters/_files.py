"""File helpers shared by the exporters: atomic writes and checked ONNX loading.

Every exporter writes its result to a temporary file in the destination's own
folder and then moves it into place with ``os.replace``, which is atomic on the
same filesystem. A crash or a failed conversion therefore never leaves a partial
file at the destination, and never touches a file that is already there.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.errors import EdgemedError

if TYPE_CHECKING:
    import onnx

logger = logging.getLogger(__name__)

_TEMPORARY_PREFIX = ".edgemed-partial-"


@contextlib.contextmanager
def atomic_destination(destination: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``destination``; move it into place on success.

    The temporary file does not exist yet: the caller (onnx.save_model, ONNX Runtime, a
    quantizer) creates it, so it gets the usual permissions (``mkstemp`` would make it
    0600). If the ``with`` body raises, the temporary file is removed and
    ``destination`` is left exactly as it was (absent, or with its previous content).
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary_path = destination.with_name(f"{_TEMPORARY_PREFIX}{uuid.uuid4().hex}-{destination.name}")
    try:
        yield temporary_path
        os.replace(temporary_path, destination)
    finally:
        temporary_path.unlink(missing_ok=True)
    logger.debug("wrote %s", destination)


@contextlib.contextmanager
def scratch_directory(near: Path) -> Iterator[Path]:
    """Yield a temporary folder next to ``near`` (same filesystem), removed afterwards."""
    folder = Path(near).parent
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=_TEMPORARY_PREFIX, dir=folder) as name:
        yield Path(name)


def load_onnx_model(path: Path, error_type: type[EdgemedError]) -> onnx.ModelProto:
    """Load an ONNX file, turning a missing or unparsable file into ``error_type``."""
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.is_file():
        raise error_type(
            f"ONNX model {path} does not exist",
            expected="the path of an .onnx file written by the export stage",
            fix="run the export stage first, or check the path",
        )
    try:
        model = onnx.load_model(str(path))
    except (DecodeError, OSError, ValueError) as error:
        raise error_type(
            f"ONNX model {path} could not be read ({type(error).__name__}: {error})",
            expected="a complete, valid ONNX protobuf file",
            fix="re-run the export stage to regenerate the file",
        ) from error
    if not model.graph.input or not model.graph.output:
        # An empty or truncated file parses as an empty ModelProto instead of failing.
        raise error_type(
            f"ONNX model {path} has no graph inputs or outputs (empty or truncated file)",
            expected="a complete ONNX model with one input and one output",
            fix="re-run the export stage to regenerate the file",
        )
    return model
