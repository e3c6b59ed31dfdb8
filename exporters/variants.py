"""One entry point for making a variant of an fp32 ONNX model: ``make_variant(name, ...)``.

Behind it, a registry (``VariantName`` → maker function), as ONNX Runtime's
``quantization/registry.py`` maps op types to quantizers: a new variant is a maker, a
``VariantName`` member and one line in ``_MAKERS``. Every maker starts from the same graph
— the fp32 model after portable ONNX Runtime optimization and our graph passes, with 1-D
convolutions (``prepare_variant_source``) — writes one file, and returns what its making
measured (a dict recorded in the variant's sidecar) or None.

Inputs flow through as one array for a single-input model, or a mapping from every graph
input name to its array (``exporters.inputs``): calibration, tuning checks and the graph
passes' parity checks feed every input. ``VariantRequest.task`` (``exporters.task_detection``)
tells the parity checks which decision to compare (argmax, a 0.5 threshold, or none).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from exporters.errors import QuantizationError
from exporters.inputs import ModelInputs
from exporters.optimization.conv_layout import choose_conv_layout
from exporters.optimization.graph_passes import optimize_for_speed
from exporters.optimization.portable import optimize_portable
from exporters.quantization.dynamic import quantize_int8_dynamic
from exporters.quantization.fp16 import convert_fp16
from exporters.quantization.settings import QuantizationConfig
from exporters.quantization.static import quantize_int8_static
from exporters.quantization.tuning import AccuracyCheck, Progress, TuningConfig, choose_quantization
from exporters.task_detection import TaskKind


class VariantName(StrEnum):
    """The ONNX variants ``make_variant`` can make, in order of preference on a tie."""

    FP32 = "fp32"
    FP16 = "fp16"
    INT8_DYNAMIC = "int8-dynamic"
    INT8_STATIC = "int8-static"


REFERENCE_VARIANT = VariantName.FP32  # every other variant is compared with it


class UnknownVariantError(QuantizationError, ValueError):
    """An unknown variant name; also a ValueError so CLI/argument parsers accept it."""


@dataclass(frozen=True)
class TuningCheck:
    """What int8 tuning judges its candidates on (never the test split)."""

    inputs: ModelInputs  # the inputs ``accuracy_check`` judges the candidates' outputs on (array or name → array)
    accuracy_check: AccuracyCheck
    description: str  # where ``inputs`` come from; recorded as the tuning report's ``checked_on``


@dataclass(frozen=True)
class VariantRequest:
    """What the makers need besides the source and destination paths."""

    calibration_inputs: ModelInputs  # the calibration split (never the test split): array, or name → array
    quantization: QuantizationConfig = field(default_factory=QuantizationConfig)  # int8-static settings
    # int8-static settings chosen by measurement within this search; None = ``quantization`` as given.
    tuning: TuningConfig | None = None
    # Called with the fp32 source, only when int8-static is tuned (it costs fp32 predictions).
    tuning_check: Callable[[Path], TuningCheck] | None = None
    progress: Progress | None = None  # progress(task, done, total)
    choose_conv_layout: bool = True  # fp32: ship 2-D convolutions (ORT's NCHWc kernels) when measured faster
    # What the outputs mean: the decision the graph-pass parity checks compare (None: argmax, as before).
    task: TaskKind | None = None


Maker = Callable[[Path, Path, VariantRequest], dict | None]


def parse_variant_name(name: VariantName | str) -> VariantName:
    """The ``VariantName`` called ``name`` (case and surrounding spaces ignored).

    Raises:
        UnknownVariantError: a ``QuantizationError`` that is also a ``ValueError``, listing the valid names.
    """
    valid_names = ", ".join(variant.value for variant in VariantName)
    try:
        return VariantName(str(name).strip().lower())
    except ValueError:
        raise UnknownVariantError(
            f"unknown variant {name!r}",
            expected=f"one of: {valid_names}",
            fix=f"choose one of {valid_names}",
        ) from None


def make_variant(name: VariantName | str, source: Path, destination: Path, request: VariantRequest) -> dict | None:
    """Write variant ``name`` of the prepared fp32 graph ``source`` to ``destination``.

    Returns what its making measured (e.g. the conv layout choice, the int8 tuning report) or None.

    Raises:
        UnknownVariantError: ``name`` is not a ``VariantName``.
        QuantizationError: the variant could not be made (see each maker).
    """
    return _MAKERS[parse_variant_name(name)](Path(source), Path(destination), request)


def prepare_variant_source(export_model: Path, destination: Path, calibration_inputs: ModelInputs,
                           task: TaskKind | str | None = None) -> dict:
    """The graph every variant starts from: portable ORT basic optimization, then our graph passes
    (parity-checked on ``calibration_inputs`` for ``task``'s decision). Returns ``{"graph_passes": what
    the passes changed}``."""
    optimize_portable(export_model, destination)
    return {"graph_passes": optimize_for_speed(destination, destination, calibration_inputs, task=task)}


def _make_fp32(source: Path, destination: Path, request: VariantRequest) -> dict | None:
    """fp32: the faster convolution layout of ``source`` (or ``source`` as it is)."""
    if request.choose_conv_layout:
        return {"conv_layout": choose_conv_layout(source, destination, request.calibration_inputs,
                                                  task=request.task)}
    shutil.copyfile(source, destination)
    return None


def _make_fp16(source: Path, destination: Path, request: VariantRequest) -> None:
    convert_fp16(source, destination)


def _make_int8_dynamic(source: Path, destination: Path, request: VariantRequest) -> None:
    quantize_int8_dynamic(source, destination)


def _make_int8_static(source: Path, destination: Path, request: VariantRequest) -> dict | None:
    """int8 static: settings chosen by measurement when ``request.tuning`` is set, else ``request.quantization``."""
    if request.tuning is None:
        progress = request.progress
        quantize_int8_static(source, destination, request.calibration_inputs, request.quantization,
                             (lambda done, total: progress("calibration", done, total)) if progress else None)
        return None
    if request.tuning_check is None:
        raise QuantizationError(
            "int8 tuning was requested without a tuning check",
            expected="VariantRequest.tuning_check: the accuracy check candidates are judged by",
            fix="pass tuning_check, or tuning=None to quantize with the given settings",
        )
    check = request.tuning_check(source)
    tuning = choose_quantization(source, destination, request.calibration_inputs, check.inputs,
                                 check.accuracy_check, request.quantization, request.tuning, request.progress)
    return {"int8_tuning": {**tuning, "checked_on": check.description}}


_MAKERS: dict[VariantName, Maker] = {
    VariantName.FP32: _make_fp32,
    VariantName.FP16: _make_fp16,
    VariantName.INT8_DYNAMIC: _make_int8_dynamic,
    VariantName.INT8_STATIC: _make_int8_static,
}
