"""ONNX Runtime helpers shared by the exporters (CPU execution provider only)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from runtime.errors import EdgemedError

if TYPE_CHECKING:
    import onnxruntime


def onnxruntime_errors() -> tuple[type[BaseException], ...]:
    """Exception types ONNX Runtime raises when loading or running a model.

    Its pybind11 exceptions (Fail, InvalidArgument, ...) derive from ``Exception`` only,
    not from ``RuntimeError``, so they have to be named one by one.
    """
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    names = (
        "Fail",
        "InvalidArgument",
        "NoSuchFile",
        "NoModel",
        "EngineError",
        "RuntimeException",
        "InvalidProtobuf",
        "ModelLoaded",
        "NotImplemented",
        "InvalidGraph",
        "EPFail",
    )
    errors = tuple(getattr(state, name) for name in names if hasattr(state, name))
    return (*errors, RuntimeError, ValueError)


def cpu_session(
    model_path: Path,
    error_type: type[EdgemedError],
    options: onnxruntime.SessionOptions | None = None,
) -> onnxruntime.InferenceSession:
    """Open ``model_path`` on the CPU execution provider, turning failures into ``error_type``."""
    import onnxruntime

    model_path = Path(model_path)
    if not model_path.is_file():
        raise error_type(
            f"ONNX model {model_path} does not exist",
            expected="the path of an .onnx file written by an earlier stage",
            fix="run the export stage first, or check the path",
        )
    try:
        return onnxruntime.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])
    except onnxruntime_errors() as error:
        raise error_type(
            f"ONNX Runtime cannot load {model_path}: {str(error).strip()}",
            expected="a valid ONNX model that ONNX Runtime's CPU execution provider can run",
            fix="re-run the stage that produced the file",
        ) from error


def run_in_batches(model_path: Path, inputs, batch_size: int, error_type: type[EdgemedError]):
    """Outputs of the first graph output for ``inputs``, run ``batch_size`` samples at a time on the CPU."""
    import numpy as np

    session = cpu_session(model_path, error_type)
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: inputs[start : start + batch_size]})[0]
                           for start in range(0, len(inputs), batch_size)])
