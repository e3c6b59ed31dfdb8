"""Reduced-precision variants of an fp32 ONNX model: fp16, int8 dynamic, int8 static (QDQ).

Choices, for ONNX Runtime on x86-64 CPUs:

* fp16 keeps float32 graph inputs and outputs (``keep_io_types``) so the device API does
  not change, and keeps the model's input preprocessing (Normalization, z-scoring: every
  node before the first Conv/MatMul/Gemm/LSTM) in float32 — raw sensor values with large
  offsets lose their digits in float16 (see ``exporters._fp16``). ORT's CPU provider has
  few fp16 kernels and inserts Casts around the rest: fp16 halves the file, it rarely
  speeds up a CPU.
* int8 dynamic quantizes weights to signed int8 (per channel) and activations on the
  fly (DynamicQuantizeLinear → MatMulInteger / ConvInteger). No calibration data.
* int8 static: by default the QDQ format (QuantizeLinear/DequantizeLinear pairs, which
  ORT fuses into QLinear kernels) with signed int8 per-channel weights and *unsigned* int8
  activations — U8S8 is the combination ORT's x86 kernels are built for. Every one of
  those settings (format, activation type, per-channel, ``reduce_range``, nodes kept in
  float) is a field of ``QuantizationConfig``, and ``exporters.tuning.choose_quantization``
  picks them per model by measurement: on x86 CPUs without VNNI, ORT's u8×s8 kernels sum
  pairs of products in saturating int16, so full-range 8-bit weights can overflow and
  cost accuracy that ``reduce_range`` (7-bit weights) gets back. The input preprocessing
  nodes are never quantized, for the same reason as in fp16: one per-tensor scale cannot
  hold raw features of scale 0.01 next to features of scale 100. Before quantizing, the
  ``channels-last-boundaries`` graph pass lets ORT run the int8 convolution stack without
  layout Transposes (see ``exporters.passes.channels_last``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from exporters._files import atomic_destination, load_onnx_model, scratch_directory
from exporters._fp16 import convert_to_float16_keeping_float32_input_path
from exporters._graph import input_preprocessing_node_names
from exporters._onnxruntime import cpu_session
from exporters.errors import QuantizationError

if TYPE_CHECKING:
    import onnx

logger = logging.getLogger(__name__)

# Samples per calibration inference. Every batch has this size: ORT's entropy and
# percentile calibrators stack the batches into one array and fail on a partial last batch.
_CALIBRATION_BATCH = 32
# Entropy calibration: histogram bins, and the bins of the quantized range (128 = 8-bit
# magnitude, as in TensorRT). The KL search tries (bins − quantized bins)/2 + 1 thresholds.
_ENTROPY_HISTOGRAM_BINS = 512
_ENTROPY_QUANTIZED_BINS = 128
# Files onnxruntime's symbolic shape inference leaves in the current directory when it fails.
_SYMBOLIC_INFERENCE_DUMP = "sym_shape_infer_temp.onnx"
_EXTERNAL_DATA_DUMP = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.data$")


class CalibrationMethod(StrEnum):
    """How static quantization derives activation ranges from calibration data."""

    MINMAX = "minmax"  # observed min/max: cheapest, sensitive to outliers
    ENTROPY = "entropy"  # KL-divergence-optimal clipping (512-bin histograms): slower
    PERCENTILE = "percentile"  # clip at a percentile of |x|: histogram per tensor, slower


class QuantizationFormat(StrEnum):
    """How quantized operators are written into the ONNX file."""

    QDQ = "qdq"  # float ops wrapped in QuantizeLinear/DequantizeLinear; ORT fuses them
    QOPERATOR = "qoperator"  # explicit QLinearConv/QLinearMatMul/QGemm nodes


class ActivationType(StrEnum):
    """Integer type of the quantized activations (weights are always signed int8)."""

    UINT8 = "uint8"  # asymmetric; the type ORT's x86 kernels are built for
    INT8 = "int8"  # symmetric; preferred by ARM kernels


@dataclass(frozen=True)
class QuantizationConfig:
    """How ``quantize_int8_static`` calibrates and quantizes."""

    # MinMax is fast and deterministic; try the others when int8 accuracy drops.
    calibration_method: CalibrationMethod = CalibrationMethod.MINMAX
    # One scale per output channel of each weight: much better accuracy for small models.
    per_channel: bool = True
    # Cap on calibration samples (spread evenly over the calibration split, rounded down to a
    # multiple of 32): entropy and percentile keep every activation of every sample in memory
    # before building histograms.
    calibration_samples: int = 512
    # Percentile of |activation| kept by PERCENTILE calibration (ORT's default).
    percentile: float = 99.999
    quant_format: QuantizationFormat = QuantizationFormat.QDQ
    activation_type: ActivationType = ActivationType.UINT8
    # 7-bit weights: avoids int16 saturation in u8×s8 kernels on x86 CPUs without VNNI.
    reduce_range: bool = False
    # Nodes (names in the pre-processed graph) kept in float besides input preprocessing/Softmax.
    excluded_nodes: tuple[str, ...] = ()
    # Run the channels-last-boundaries pass first (no layout Transposes in ORT's int8 graph).
    channels_last: bool = True
    # Gemm/MatMul outputs are not re-quantized: the last layer hands float logits straight to
    # the float Softmax (one DequantizeLinear less, no rounding of the logits).
    float_linear_outputs: bool = False

    def settings_label(self) -> str:
        """Short description of the int8 settings, e.g. ``qdq u8s8 per-channel reduce-range``."""
        parts = [QuantizationFormat(self.quant_format).value,
                 "u8s8" if ActivationType(self.activation_type) is ActivationType.UINT8 else "s8s8",
                 "per-channel" if self.per_channel else "per-tensor"]
        if self.reduce_range:
            parts.append("reduce-range")
        if not self.channels_last:
            parts.append("no-channels-last")
        if self.float_linear_outputs:
            parts.append("float-linear-out")
        if self.excluded_nodes:
            parts.append(f"{len(self.excluded_nodes)} node(s) float")
        return " ".join(parts)


class UnknownCalibrationMethodError(QuantizationError, ValueError):
    """An unknown calibration method name; also a ValueError so CLI/argument parsers accept it."""


def parse_calibration_method(name: str) -> CalibrationMethod:
    """Return the calibration method called ``name`` (case and surrounding spaces ignored).

    Raises:
        UnknownCalibrationMethodError: a ``QuantizationError`` that is also a ``ValueError``,
            whose message lists the valid names.
    """
    valid_names = ", ".join(method.value for method in CalibrationMethod)
    try:
        return CalibrationMethod(str(name).strip().lower())
    except ValueError:
        raise UnknownCalibrationMethodError(
            f"unknown calibration method {name!r}",
            expected=f"one of: {valid_names}",
            fix=f"choose one of {valid_names}",
        ) from None


# ----------------------------------------------------------------------------- fp16


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
    except Exception as error:  # ORT/ONNX tooling raises many types; re-raised typed below
        raise QuantizationError(
            f"fp16 conversion of {source.name} failed ({type(error).__name__}: {error})",
            expected="an fp32 model ONNX shape inference understands",
            fix="ship the fp32 variant, or re-export the model",
        ) from error
    _check_float32_io(converted, source)
    with atomic_destination(destination) as temporary_path:
        onnx.save_model(converted, str(temporary_path))
        _check_loads(temporary_path, "fp16")
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


# ----------------------------------------------------------------------------- int8 dynamic


def quantize_int8_dynamic(source: Path, destination: Path) -> None:
    """Write an int8 dynamically quantized copy of ``source`` (int8 per-channel weights).

    Raises:
        QuantizationError: ``source`` is missing or invalid, quantization failed, or the
            result does not load in ONNX Runtime.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source, destination = Path(source), Path(destination)
    load_onnx_model(source, QuantizationError)
    with scratch_directory(destination) as scratch, atomic_destination(destination) as temporary_path:
        preprocessed = scratch / "preprocessed.onnx"
        _preprocess(source, preprocessed)  # shape inference + basic optimizations, as ORT recommends
        try:
            with _onnxruntime_advice_demoted():
                quantize_dynamic(preprocessed, temporary_path, per_channel=True, weight_type=QuantType.QInt8)
        except Exception as error:  # ORT/ONNX tooling raises many types; re-raised typed below
            raise QuantizationError(
                f"int8 dynamic quantization of {source.name} failed ({type(error).__name__}: {error})",
                expected="an fp32 model whose MatMul/Gemm/Conv weights are constant initializers",
                fix="ship the fp32 or fp16 variant for this model",
            ) from error
        _check_loads(temporary_path, "int8 dynamic")
    logger.info("int8 dynamic variant of %s written to %s", source.name, destination)


# ----------------------------------------------------------------------------- int8 static


def prepare_for_static_quantization(source: Path, destination: Path, channels_last: bool = True) -> None:
    """The graph quantization starts from: the channels-last pass (optional), then ORT's pre-processing.

    ``exporters.tuning`` prepares once and quantizes the prepared file many times; node
    names in ``QuantizationConfig.excluded_nodes`` refer to this prepared graph.
    """
    import onnx

    from exporters.passes import QUANTIZATION_PASSES, run_passes

    source, destination = Path(source), Path(destination)
    model = load_onnx_model(source, QuantizationError)
    with scratch_directory(destination) as scratch:
        laid_out = scratch / "laid-out.onnx"
        if channels_last:
            counts = run_passes(model, QUANTIZATION_PASSES)
            logger.debug("quantization passes on %s: %s", source.name, counts)
        onnx.save_model(model, str(laid_out))
        _preprocess(laid_out, destination)


def quantizable_node_names(prepared: Path) -> list[str]:
    """Nodes of a prepared graph int8 static quantization would quantize (Conv, MatMul, Gemm)."""
    graph = load_onnx_model(Path(prepared), QuantizationError).graph
    skipped = set(_always_float(graph))
    return [node.name for node in graph.node if node.op_type in ("Conv", "MatMul", "Gemm") and node.name not in skipped]


def _always_float(graph: onnx.GraphProto) -> list[str]:
    # The input standardisation, and the final Softmax: quantizing it makes the output
    # probabilities no longer sum to 1.
    return input_preprocessing_node_names(graph) + [node.name for node in graph.node if node.op_type == "Softmax"]


def quantize_int8_static(
    source: Path,
    destination: Path,
    calibration_inputs: np.ndarray,
    config: QuantizationConfig,
    progress: Callable[[int, int], None] | None = None,
    *,
    prepared: Path | None = None,
    ranges_cache: Path | None = None,
) -> None:
    """Write an int8 statically quantized copy of ``source``, calibrated on ``calibration_inputs``.

    ``calibration_inputs`` must come from the calibration split (never the test split);
    at most ``config.calibration_samples`` of them are used, spread evenly. ``progress``
    is called with (samples done, samples total) as calibration proceeds. ``prepared``:
    ``source`` already run through ``prepare_for_static_quantization`` with this config's
    ``channels_last``; ``ranges_cache``: a JSON file of activation ranges, read when it
    exists (the calibration method must match) and written when it does not — both let
    ``exporters.tuning`` calibrate once for many candidate settings.

    Raises:
        QuantizationError: bad calibration data or settings, a missing or invalid
            ``source``, a failed pre-processing/calibration/quantization step, or a result
            that does not load in ONNX Runtime. Temporary files are removed in every case.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    source, destination = Path(source), Path(destination)
    extra_options = _calibration_options(config)
    if config.float_linear_outputs:
        extra_options["OpTypesToExcludeOutputQuantization"] = ["Gemm", "MatMul"]
    samples = _calibration_subset(calibration_inputs, config)
    input_name, expected_shape = _model_input(load_onnx_model(source, QuantizationError), source)
    if samples.shape[1:] != expected_shape:
        raise QuantizationError(
            f"calibration inputs have sample shape {samples.shape[1:]}, the model expects {expected_shape}",
            expected=f"calibration inputs of shape (samples, {', '.join(map(str, expected_shape))})",
            fix="pass the calibration split's features, windowed like the training data",
        )

    searching = prepared is not None  # many candidates from one preparation: log each at debug level
    with scratch_directory(destination) as scratch, atomic_destination(destination) as temporary_path:
        if prepared is None:
            prepared = scratch / "prepared.onnx"
            prepare_for_static_quantization(source, prepared, config.channels_last)
        reader = _CalibrationReader(input_name, samples, progress)
        try:
            graph = load_onnx_model(prepared, QuantizationError).graph
            unknown = sorted(set(config.excluded_nodes) - {node.name for node in graph.node})
            if unknown:
                raise QuantizationError(
                    f"excluded_nodes names {', '.join(unknown)}, not in the prepared graph of {source.name}",
                    expected=f"names from quantizable_node_names(): {', '.join(quantizable_node_names(prepared))}",
                    fix="take the node names from exporters.quantize.quantizable_node_names",
                )
            excluded = _always_float(graph) + list(config.excluded_nodes)
            logger.debug("not quantizing %d node(s): %s", len(excluded), excluded)
            # ORT's histogram calibrators print to stdout and its advice goes to the root logger;
            # a library must not do either.
            with contextlib.redirect_stdout(io.StringIO()) as printed, _onnxruntime_advice_demoted():
                calibration: dict[str, object] = {"calibration_data_reader": reader,
                                                  "calibration_cache_path": ranges_cache}
                if CalibrationMethod(config.calibration_method) is CalibrationMethod.ENTROPY:
                    cache = ranges_cache if ranges_cache is not None else scratch / "entropy-ranges.json"
                    if not cache.is_file():
                        _entropy_calibration_cache(prepared, reader, cache)
                    calibration = {"calibration_data_reader": None, "calibration_cache_path": cache}
                quantize_static(
                    prepared,
                    temporary_path,
                    **calibration,
                    quant_format=(QuantFormat.QDQ if QuantizationFormat(config.quant_format) is QuantizationFormat.QDQ
                                  else QuantFormat.QOperator),
                    per_channel=config.per_channel,
                    reduce_range=config.reduce_range,
                    activation_type=(QuantType.QUInt8 if ActivationType(config.activation_type) is ActivationType.UINT8
                                     else QuantType.QInt8),
                    weight_type=QuantType.QInt8,
                    nodes_to_exclude=excluded,
                    calibrate_method=_ort_calibration_method(config.calibration_method),
                    extra_options=extra_options,
                )
            if printed.getvalue().strip():
                logger.debug("onnxruntime calibration: %s", printed.getvalue().strip())
        except QuantizationError:
            raise
        except Exception as error:  # ORT/ONNX tooling raises many types; re-raised typed below
            raise QuantizationError(
                f"int8 static quantization of {source.name} ({config.settings_label()}, "
                f"{config.calibration_method} calibration) failed ({type(error).__name__}: {error})",
                expected="an fp32 model and calibration data ONNX Runtime can quantize",
                fix="try calibration method minmax or fewer calibration_samples; "
                "otherwise ship the int8 dynamic or fp16 variant",
            ) from error
        _check_loads(temporary_path, "int8 static")
    logger.log(
        logging.DEBUG if searching else logging.INFO,
        "int8 static variant of %s written to %s (%s, %s calibration on %d samples)",
        source.name,
        destination,
        config.settings_label(),
        config.calibration_method,
        len(samples),
    )


class _DemoteToDebug(logging.Filter):
    """Drops a root-logger record from onnxruntime.quantization and re-logs it at debug level here."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "root" and record.pathname.replace(os.sep, "/").find("onnxruntime/quantization") >= 0:
            logger.debug("onnxruntime: %s", record.getMessage())
            return False
        return True


@contextlib.contextmanager
def _onnxruntime_advice_demoted():
    """onnxruntime.quantization warns through the root logger ("Please use QuantFormat.QDQ …",
    "Please consider to run pre-processing …") even where the choice was deliberate and
    measured; keep that on our debug log instead of the user's console."""
    root, demote = logging.getLogger(), _DemoteToDebug()
    root.addFilter(demote)
    try:
        yield
    finally:
        root.removeFilter(demote)


def _preprocess(source: Path, destination: Path) -> None:
    """ORT's quantization pre-processing: symbolic + ONNX shape inference and BASIC optimizations.

    Symbolic shape inference gives up on some graphs (Keras MultiHeadAttention's
    Shape/Gather/Reshape chains: "Incomplete symbolic shape inference"); then ONNX shape
    inference alone is used — on every model family tested it yields the same
    quantized graph. When it gives up, onnxruntime dumps ``sym_shape_infer_temp.onnx``
    (plus a ``<uuid>.data`` file for large tensors) into the current directory; those
    are removed.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    working_directory = Path.cwd()
    entries_before = set(os.listdir(working_directory))
    try:
        quant_pre_process(source, destination)
        return
    except Exception as error:  # noqa: BLE001 - symbolic inference raises bare Exception; retried below
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
    except Exception as error:  # ORT/ONNX tooling raises many types; re-raised typed below
        raise QuantizationError(
            f"quantization pre-processing of {source.name} failed ({type(error).__name__}: {error})",
            expected="an fp32 model that ONNX Runtime and ONNX shape inference accept",
            fix="re-export the model; otherwise ship the fp32 or fp16 variant",
        ) from error


def _entropy_calibration_cache(model_path: Path, reader: _CalibrationReader, cache_path: Path) -> None:
    """Run entropy (KL) calibration with a histogram finer than the quantized range; cache the ranges.

    ``quantize_static`` builds its entropy calibrator with 128 histogram bins and 128
    quantized bins, and forwards no option to change them; with equal counts the KL
    search has a single candidate threshold — the full range — so "entropy" silently
    equals MinMax. Calibrating here with ``_ENTROPY_HISTOGRAM_BINS`` bins and handing
    the ranges to ``quantize_static`` through its calibration cache gives a real search.
    """
    import inspect

    from onnxruntime.quantization import CalibrationMethod as OrtCalibrationMethod
    from onnxruntime.quantization import quantize_static
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    if "calibration_cache_path" not in inspect.signature(quantize_static).parameters:
        raise QuantizationError(
            "this onnxruntime's quantize_static cannot take precomputed calibration ranges",
            expected="an onnxruntime whose quantize_static accepts calibration_cache_path",
            fix="upgrade onnxruntime, or use calibration method minmax or percentile",
        )
    calibrator = create_calibrator(
        model_path,
        sorted(set(QLinearOpsRegistry) | set(QDQRegistry)),
        augmented_model_path=str(cache_path.with_name(cache_path.stem + "-augmented.onnx")),
        calibrate_method=OrtCalibrationMethod.Entropy,
        extra_options={"num_bins": _ENTROPY_HISTOGRAM_BINS, "num_quantized_bins": _ENTROPY_QUANTIZED_BINS},
    )
    calibrator.collect_data(reader)
    save_tensors_data(calibrator.compute_data(), cache_path)
    cache_path.with_name(cache_path.stem + "-augmented.onnx").unlink(missing_ok=True)


def _calibration_subset(calibration_inputs: np.ndarray, config: QuantizationConfig) -> np.ndarray:
    """At most ``config.calibration_samples`` samples, evenly spaced so every part of the split counts."""
    samples = np.asarray(calibration_inputs, dtype=np.float32)
    if config.calibration_samples < 1:
        raise QuantizationError(
            f"calibration_samples is {config.calibration_samples}",
            expected="a positive cap such as 512",
            fix="set QuantizationConfig.calibration_samples to a positive number",
        )
    if samples.ndim < 2 or len(samples) == 0:
        raise QuantizationError(
            f"calibration inputs have shape {samples.shape}",
            expected="a non-empty array of shape (samples, *input_shape) from the calibration split",
            fix="pass the calibration split's features",
        )
    if not np.all(np.isfinite(samples)):
        raise QuantizationError(
            "calibration inputs contain NaN or inf",
            expected="finite calibration inputs",
            fix="clean the calibration split before quantizing",
        )
    count = min(len(samples), config.calibration_samples)
    if count >= _CALIBRATION_BATCH:
        count -= count % _CALIBRATION_BATCH  # equal-size batches (see _CALIBRATION_BATCH)
    if count < len(samples):
        samples = samples[np.linspace(0, len(samples) - 1, count).round().astype(int)]
    return samples


def _model_input(model: onnx.ModelProto, source: Path) -> tuple[str, tuple[int, ...]]:
    """The single input's name and its non-batch shape (symbolic axes are rejected)."""
    initializers = {initializer.name for initializer in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in initializers]
    if len(inputs) != 1:
        raise QuantizationError(
            f"{source.name} has {len(inputs)} inputs",
            expected="a single-input model",
            fix="quantize single-input models only",
        )
    dimensions = inputs[0].type.tensor_type.shape.dim[1:]
    if any(not dimension.HasField("dim_value") for dimension in dimensions):
        raise QuantizationError(
            f"{source.name}'s input {inputs[0].name!r} has unknown non-batch axes",
            expected="every input axis except the batch axis fixed",
            fix="re-export the model with exporters.keras_to_onnx.export_keras_to_onnx",
        )
    return inputs[0].name, tuple(int(dimension.dim_value) for dimension in dimensions)


def _ort_calibration_method(method: CalibrationMethod) -> object:
    from onnxruntime.quantization import CalibrationMethod as OrtCalibrationMethod

    return {
        CalibrationMethod.MINMAX: OrtCalibrationMethod.MinMax,
        CalibrationMethod.ENTROPY: OrtCalibrationMethod.Entropy,
        CalibrationMethod.PERCENTILE: OrtCalibrationMethod.Percentile,
    }[CalibrationMethod(method)]


def _calibration_options(config: QuantizationConfig) -> dict[str, object]:
    method = CalibrationMethod(config.calibration_method)
    if method is CalibrationMethod.PERCENTILE:
        if not 0.0 < config.percentile <= 100.0:
            raise QuantizationError(
                f"percentile is {config.percentile}",
                expected="a percentile in (0, 100], typically 99.9 to 99.999",
                fix="set QuantizationConfig.percentile to e.g. 99.999",
            )
        return {"CalibPercentile": config.percentile}
    # No CalibMaxIntermediateOutputs for MinMax: onnxruntime 1.32 *discards* the collected
    # batches when that cap is reached instead of merging their ranges, so ranges would come
    # from the last few batches only (and a batch count that is a multiple of the cap fails
    # with "No data is collected"). calibration_samples bounds the memory instead.
    return {}


class _CalibrationReader:
    """Feeds calibration samples to ORT in batches and reports progress.

    Implements ``onnxruntime.quantization.CalibrationDataReader`` (checked structurally
    by its ``__subclasshook__``): ``get_next`` returns one input dict per call, then None.
    """

    def __init__(self, input_name: str, samples: np.ndarray, progress: Callable[[int, int], None] | None) -> None:
        self._input_name = input_name
        self._samples = samples
        self._progress = progress
        self._position = 0
        self._finished = False

    def get_next(self) -> dict[str, np.ndarray] | None:
        total = len(self._samples)
        if self._position > 0 and not self._finished:
            self._report(self._position, total)  # the previous batch has been run by now
        if self._position >= total:
            self._finished = True
            return None
        batch = self._samples[self._position : self._position + _CALIBRATION_BATCH]
        self._position += len(batch)
        return {self._input_name: batch}

    def __len__(self) -> int:
        return -(-len(self._samples) // _CALIBRATION_BATCH)

    def rewind(self) -> None:
        self._position = 0
        self._finished = False

    def _report(self, done: int, total: int) -> None:
        logger.debug("calibration: %d/%d samples", done, total)
        if self._progress is not None:
            self._progress(done, total)


# ----------------------------------------------------------------------------- shared checks


def _check_loads(model_path: Path, variant: str) -> None:
    """The written variant must open in ONNX Runtime's CPU provider before it is moved into place."""
    try:
        cpu_session(model_path, QuantizationError)
    except QuantizationError as error:
        raise QuantizationError(
            f"the {variant} variant does not load in ONNX Runtime: {error.what}",
            expected="a variant ONNX Runtime's CPU execution provider can run",
            fix="ship the fp32 variant for this model and report the failure",
        ) from error
