"""ONNX Runtime helpers shared by the exporters (CPU execution provider only)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from exporters.errors import ParityError
from exporters.inputs import ModelInputs, feeds, sample_count
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


def session_feeds(session: onnxruntime.InferenceSession, inputs: ModelInputs,
                  error_type: type[EdgemedError] = ParityError) -> dict[str, np.ndarray]:
    """``inputs`` keyed by ``session``'s input names (see ``exporters.inputs.feeds``); float arrays
    fed to a float graph input are cast to float32."""
    import numpy as np

    declared = {value.name: value.type for value in session.get_inputs()}
    named = feeds(inputs, list(declared), error_type)
    return {name: np.asarray(value, dtype=np.float32) if declared[name] == "tensor(float)" else value
            for name, value in named.items()}


def run_in_batches(model_path: Path, inputs: ModelInputs, batch_size: int,
                   error_type: type[EdgemedError]) -> np.ndarray:
    """Outputs of the first graph output for ``inputs``, run ``batch_size`` samples at a time on the CPU."""
    return run_session_in_batches(cpu_session(model_path, error_type), inputs, batch_size, error_type)


def run_session_in_batches(session: onnxruntime.InferenceSession, inputs: ModelInputs, batch_size: int,
                           error_type: type[EdgemedError] = ParityError) -> np.ndarray:
    """Outputs of ``session``'s first graph output for ``inputs`` (one array for a single-input model, or a
    mapping input name → array), ``batch_size`` samples at a time, concatenated along the batch axis.
    Every input is batched with the same rows. ONNX Runtime's errors propagate unchanged; inputs that
    do not match the model's input names raise ``error_type``."""
    return run_session_outputs_in_batches(session, inputs, batch_size, error_type)[0]


def run_session_outputs_in_batches(session: onnxruntime.InferenceSession, inputs: ModelInputs, batch_size: int,
                                   error_type: type[EdgemedError] = ParityError) -> list[np.ndarray]:
    """Like ``run_session_in_batches``, for every graph output (in graph order)."""
    import numpy as np

    named = session_feeds(session, inputs, error_type)
    samples = sample_count(named)
    batches = [session.run(None, {name: value[start : start + batch_size] for name, value in named.items()})
               for start in range(0, samples, batch_size)]
    return [np.concatenate([batch[index] for batch in batches]) for index in range(len(session.get_outputs()))]
