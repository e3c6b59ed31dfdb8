"""Offline graph optimization that keeps the model portable (standard ONNX ops only).

ONNX Runtime optimizes a graph when it opens a session and can save the result
(``SessionOptions.optimized_model_filepath``). Which level is saved matters:

* ``ORT_ENABLE_BASIC`` — constant folding, redundant-node elimination (Identity,
  Dropout, duplicate Cast/Reshape), and fusions whose result is still a standard ONNX
  op (Conv+BatchNormalization, Conv+Add, Conv+Mul, MatMul+Add → Gemm, Reshape
  chains). Provider-independent: the saved file runs on any ONNX runtime.
* ``ORT_ENABLE_EXTENDED`` — adds fusions into ``com.microsoft`` contrib ops
  (FusedConv, FusedMatMul, FusedGemm, BiasGelu, SkipLayerNormalization, Attention,
  ...). Those run only on ONNX Runtime's CPU/CUDA providers, so a file saved at this
  level is no longer portable — e.g. a Dense+ReLU (MatMul+Add+Relu) becomes
  ``com.microsoft.FusedGemm`` and the scaled dot products of MultiHeadAttention become
  ``com.microsoft.FusedMatMul``.
* ``ORT_ENABLE_LAYOUT`` / ``ORT_ENABLE_ALL`` — additionally rewrite to hardware-specific
  layouts (NCHWc), which must never be saved into a deployable file.

This module therefore saves at BASIC, and then verifies that the saved graph contains
only default-domain ops, kept its input/output names and shapes (including the
dynamic batch axis), and passes ``onnx.checker``. The device runtime applies the
extended, hardware-specific optimizations itself when it opens the file.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from exporters._files import atomic_destination, load_onnx_model
from exporters._graph import non_standard_op_types
from exporters._onnxruntime import cpu_session
from exporters.errors import ExportError

if TYPE_CHECKING:
    import onnx

logger = logging.getLogger(__name__)


def optimize_portable(source: Path, destination: Path) -> None:
    """Write a portable, ORT-BASIC-optimized copy of ``source`` to ``destination`` (atomically).

    Raises:
        ExportError: ``source`` is missing or invalid, or the optimized graph would not
            be portable (a non-standard op or a changed input/output signature).
    """
    import onnx
    import onnxruntime

    source = Path(source)
    destination = Path(destination)
    source_model = load_onnx_model(source, ExportError)

    with atomic_destination(destination) as temporary_path:
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(temporary_path)
        session = cpu_session(source, ExportError, options)
        del session  # the optimized model is written when the session is created

        optimized_model = load_onnx_model(temporary_path, ExportError)
        _check_portable(source, source_model, optimized_model)
        try:
            onnx.checker.check_model(optimized_model)
        except onnx.checker.ValidationError as error:
            raise ExportError(
                f"the optimized model of {source.name} fails onnx.checker: {error}",
                expected="a valid ONNX model",
                fix="ship the unoptimized model; the device runtime optimizes it when loading",
            ) from error

    logger.info(
        "optimized %s → %s: %d → %d nodes",
        source.name,
        destination.name,
        len(source_model.graph.node),
        len(optimized_model.graph.node),
    )


def _check_portable(source: Path, source_model: onnx.ModelProto, optimized_model: onnx.ModelProto) -> None:
    non_standard = non_standard_op_types(optimized_model)
    if non_standard:
        raise ExportError(
            f"optimizing {source.name} produced non-standard ops: {', '.join(non_standard)}",
            expected="only standard ONNX (ai.onnx domain) ops in a portable model",
            fix="ship the unoptimized model; the device runtime optimizes it when loading",
        )
    if _signature(source_model) != _signature(optimized_model):
        raise ExportError(
            f"optimizing {source.name} changed its inputs/outputs from {_signature(source_model)} "
            f"to {_signature(optimized_model)}",
            expected="the same input and output names, types and shapes",
            fix="ship the unoptimized model; the device runtime optimizes it when loading",
        )


def _signature(model: onnx.ModelProto) -> list[tuple[str, str, int, tuple[str | int, ...]]]:
    """(direction, name, element type, shape) of every graph input and output."""
    described = []
    for direction, values in (("input", model.graph.input), ("output", model.graph.output)):
        for value in values:
            tensor_type = value.type.tensor_type
            shape = tuple(
                dimension.dim_param if dimension.dim_param else dimension.dim_value
                for dimension in tensor_type.shape.dim
            )
            described.append((direction, value.name, tensor_type.elem_type, shape))
    return described
