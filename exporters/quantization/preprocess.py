"""ONNX Runtime's quantization pre-processing, and keeping its advice off the user's console."""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

from exporters.errors import QuantizationError
from exporters.quantization.checks import onnx_tooling_errors

logger = logging.getLogger(__name__)

# Files onnxruntime's symbolic shape inference leaves in the current directory when it fails.
_SYMBOLIC_INFERENCE_DUMP = "sym_shape_infer_temp.onnx"
_EXTERNAL_DATA_DUMP = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.data$")


def preprocess(source: Path, destination: Path) -> None:
    """ORT's quantization pre-processing: symbolic + ONNX shape inference and BASIC optimizations.

    Symbolic shape inference gives up on some graphs (Keras MultiHeadAttention's
    Shape/Gather/Reshape chains: "Incomplete symbolic shape inference"); then ONNX shape
    inference alone is used — on every model family tested it yields the same
    quantized graph. When it gives up, onnxruntime dumps ``sym_shape_infer_temp.onnx``
    (plus a ``<uuid>.data`` file for large tensors) into the current directory; those
    are removed.

    Raises:
        QuantizationError: the pre-processing failed without symbolic shape inference too.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    working_directory = Path.cwd()
    entries_before = set(os.listdir(working_directory))
    try:
        quant_pre_process(source, destination)
        return
    # The exporters' one broad catch, on purpose: ORT's symbolic shape inference gives up by raising
    # a bare ``Exception("Incomplete symbolic shape inference")``, which no narrower type catches.
    # Whatever failed is retried below without it, and that retry reports real failures typed.
    except Exception as error:  # noqa: BLE001
        logger.warning(
            "symbolic shape inference failed on %s (%s); retrying with ONNX shape inference only",
            source.name,
            error,
        )
    finally:
        for name in set(os.listdir(working_directory)) - entries_before:
            if name == _SYMBOLIC_INFERENCE_DUMP or _EXTERNAL_DATA_DUMP.match(name):
                (working_directory / name).unlink(missing_ok=True)
    try:
        quant_pre_process(source, destination, skip_symbolic_shape=True)
    except onnx_tooling_errors() as error:
        raise QuantizationError(
            f"quantization pre-processing of {source.name} failed ({type(error).__name__}: {error})",
            expected="an fp32 model that ONNX Runtime and ONNX shape inference accept",
            fix="re-export the model; otherwise ship the fp32 or fp16 variant",
        ) from error


class _DemoteToDebug(logging.Filter):
    """Drops a root-logger record from onnxruntime.quantization and re-logs it at debug level here."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "root" and record.pathname.replace(os.sep, "/").find("onnxruntime/quantization") >= 0:
            logger.debug("onnxruntime: %s", record.getMessage())
            return False
        return True


@contextlib.contextmanager
def onnxruntime_advice_demoted() -> Iterator[None]:
    """onnxruntime.quantization warns through the root logger ("Please use QuantFormat.QDQ …",
    "Please consider to run pre-processing …") even where the choice was deliberate and
    measured; keep that on our debug log instead of the user's console."""
    root, demote = logging.getLogger(), _DemoteToDebug()
    root.addFilter(demote)
    try:
        yield
    finally:
        root.removeFilter(demote)
