"""ONNX Runtime helpers shared by the exporters (CPU execution provider only)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from runtime.errors import EdgemedError
from runtime.session import CPU_PROVIDER, onnxruntime_errors, open_session

if TYPE_CHECKING:
    import numpy as np
    import onnxruntime

PREDICTION_BATCH_SIZE = 256  # samples per session.run when a whole split is predicted


def cpu_session(
    model_path: Path,
    error_type: type[EdgemedError],
    options: onnxruntime.SessionOptions | None = None,
) -> onnxruntime.InferenceSession:
    """Open ``model_path`` on the CPU execution provider, turning failures into ``error_type``."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise error_type(
            f"ONNX model {model_path} does not exist",
            expected="the path of an .onnx file written by an earlier stage",
            fix="run the export stage first, or check the path",
        )
    try:
        return open_session(model_path, CPU_PROVIDER, options)
    except onnxruntime_errors() as error:
        raise error_type(
            f"ONNX Runtime cannot load {model_path}: {str(error).strip()}",
            expected="a valid ONNX model that ONNX Runtime's CPU execution provider can run",
            fix="re-run the stage that produced the file",
        ) from error


def run_in_batches(model_path: Path, inputs: np.ndarray, batch_size: int,
                   error_type: type[EdgemedError]) -> np.ndarray:
    """Outputs of the first graph output for ``inputs``, run ``batch_size`` samples at a time on the CPU."""
    return run_session_in_batches(cpu_session(model_path, error_type), inputs, batch_size)


def run_session_in_batches(session: onnxruntime.InferenceSession, inputs: np.ndarray, batch_size: int) -> np.ndarray:
    """Outputs of ``session``'s first graph output for ``inputs`` (fed to its first input), ``batch_size``
    samples at a time, concatenated along the batch axis. ONNX Runtime's errors propagate unchanged."""
    import numpy as np

    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: inputs[start : start + batch_size]})[0]
                           for start in range(0, len(inputs), batch_size)])
