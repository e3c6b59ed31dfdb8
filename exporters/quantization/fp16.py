"""fp16 variant: a float16 copy of an fp32 model whose graph inputs and outputs stay float32.

``keep_io_types`` keeps the device API unchanged, and the model's input preprocessing
(Normalization, z-scoring: every node before the first Conv/MatMul/Gemm/LSTM) stays in
float32 — raw sensor values with large offsets lose their digits in float16 (see
``exporters.quantization.fp16_graph``). ORT's CPU provider has few fp16 kernels and
inserts Casts around the rest: fp16 halves the file, it rarely speeds up a CPU.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from exporters._files import atomic_destination, load_onnx_model
from exporters.errors import QuantizationError
from exporters.quantization.checks import check_loads, onnx_tooling_errors
from exporters.quantization.fp16_graph import convert_to_float16_keeping_float32_input_path

if TYPE_CHECKING:
    import onnx

logger = logging.getLogger(__name__)


def convert_fp16(source: Path, destination: Path) -> None:
    """Write a float16 copy of ``source`` whose inputs and outputs stay float32.

    Raises:
        QuantizationError: ``source`` is missing or invalid, or the result does not load.
    """
    import onnx

    source, destination = Path(source), Path(destination)
    model = load_onnx_model(source, QuantizationError)
    try:
        converted = convert_to_float16_keeping_float32_input_path(model)
    except onnx_tooling_errors() as error:
        raise QuantizationError(
            f"fp16 conversion of {source.name} failed ({type(error).__name__}: {error})",
            expected="an fp32 model ONNX shape inference understands",
            fix="ship the fp32 variant, or re-export the model",
        ) from error
    _check_float32_io(converted, source)
    with atomic_destination(destination) as temporary_path:
        onnx.save_model(converted, str(temporary_path))
        check_loads(temporary_path, "fp16")
    logger.info("fp16 variant of %s written to %s", source.name, destination)


def _check_float32_io(model: onnx.ModelProto, source: Path) -> None:
    import onnx

    not_float32 = [
        value.name
        for value in (*model.graph.input, *model.graph.output)
        if value.type.tensor_type.elem_type != onnx.TensorProto.FLOAT
    ]
    if not_float32:
        raise QuantizationError(
            f"the fp16 variant of {source.name} changed the type of {', '.join(not_float32)}",
            expected="float32 graph inputs and outputs (keep_io_types)",
            fix="report this to the exporters maintainers; ship the fp32 variant meanwhile",
        )
