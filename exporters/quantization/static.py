"""int8 static variant: calibrated activation ranges, by default in the QDQ format.

By default QuantizeLinear/DequantizeLinear pairs (which ORT fuses into QLinear kernels) with
signed int8 per-channel weights and *unsigned* int8 activations — U8S8 is the combination
ORT's x86 kernels are built for. Every one of those settings (format, activation type,
per-channel, ``reduce_range``, nodes kept in float) is a field of ``QuantizationConfig``, and
``exporters.quantization.tuning.choose_quantization`` picks them per model by measurement.
The input preprocessing nodes are never quantized: one per-tensor scale cannot hold raw
features of scale 0.01 next to features of scale 100. Before quantizing, the
``channels-last-boundaries`` graph pass lets ORT run the int8 convolution stack without
layout Transposes (see ``exporters.passes.channels_last``).
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from exporters._files import atomic_destination, load_onnx_model, scratch_directory
from exporters._graph import head_node_names, input_preprocessing_node_names
from exporters.errors import QuantizationError
from exporters.heads import nodes_kept_in_float, read_float_head_inputs
from exporters.inputs import ModelInputs, feeds, sample_count
from exporters.quantization.calibration import (
    CalibrationReader,
    calibration_options,
    calibration_subset,
    entropy_calibration_cache,
    ort_calibration_method,
)
from exporters.quantization.checks import check_loads, onnx_tooling_errors
from exporters.quantization.preprocess import onnxruntime_advice_demoted, preprocess
from exporters.quantization.settings import (
    ActivationType,
    CalibrationMethod,
    QuantizationConfig,
    QuantizationFormat,
)

if TYPE_CHECKING:
    import onnx

logger = logging.getLogger(__name__)


def prepare_for_static_quantization(source: Path, destination: Path, channels_last: bool = True) -> None:
    """The graph quantization starts from: the channels-last pass (optional), then ORT's pre-processing.

    ``exporters.quantization.tuning`` prepares once and quantizes the prepared file many times;
    node names in ``QuantizationConfig.excluded_nodes`` refer to this prepared graph.
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
        preprocess(laid_out, destination)


def quantizable_node_names(prepared: Path) -> list[str]:
    """Nodes of a prepared graph int8 static quantization would quantize (Conv, MatMul, Gemm)."""
    graph = load_onnx_model(Path(prepared), QuantizationError).graph
    skipped = set(_always_float(graph))
    return [node.name for node in graph.node if node.op_type in ("Conv", "MatMul", "Gemm") and node.name not in skipped]


def _always_float(graph: onnx.GraphProto) -> list[str]:
    # The input standardisation; the final Softmax (quantized, the probabilities no longer sum
    # to 1); and the in-graph head (exporters.heads): a reconstruction error quantized to 8 bits
    # loses the small differences that make an anomaly score.
    softmax = [node.name for node in graph.node if node.op_type == "Softmax" and node.name]
    return list(dict.fromkeys(input_preprocessing_node_names(graph) + softmax + nodes_kept_in_float(graph)))


def quantize_int8_static(
    source: Path,
    destination: Path,
    calibration_inputs: ModelInputs,
    config: QuantizationConfig,
    progress: Callable[[int, int], None] | None = None,
    *,
    prepared: Path | None = None,
    ranges_cache: Path | None = None,
) -> None:
    """Write an int8 statically quantized copy of ``source``, calibrated on ``calibration_inputs``.

    ``calibration_inputs``: one array for a single-input model, or a mapping from every graph
    input name to its array (every input is fed, batched with the same rows).

    ``calibration_inputs`` must come from the calibration split (never the test split);
    at most ``config.calibration_samples`` of them are used, spread evenly. ``progress``
    is called with (samples done, samples total) as calibration proceeds. ``prepared``:
    ``source`` already run through ``prepare_for_static_quantization`` with this config's
    ``channels_last``; ``ranges_cache``: a JSON file of activation ranges, read when it
    exists (the calibration method must match) and written when it does not — both let
    ``exporters.quantization.tuning`` calibrate once for many candidate settings.

    Raises:
        QuantizationError: bad calibration data or settings, a missing or invalid
            ``source``, a failed pre-processing/calibration/quantization step, or a result
            that does not load in ONNX Runtime. Temporary files are removed in every case.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    source, destination = Path(source), Path(destination)
    extra_options = calibration_options(config)
    if config.float_linear_outputs:
        extra_options["OpTypesToExcludeOutputQuantization"] = ["Gemm", "MatMul"]
    samples = calibration_subset(calibration_inputs, config)
    expected_shapes = _model_inputs(load_onnx_model(source, QuantizationError), source)
    named = feeds(samples, list(expected_shapes), QuantizationError)
    wrong = {name: value.shape[1:] for name, value in named.items() if value.shape[1:] != expected_shapes[name]}
    if wrong:
        described = "; ".join(f"{name!r} has sample shape {shape}, the model expects {expected_shapes[name]}"
                              for name, shape in wrong.items())
        raise QuantizationError(
            f"calibration inputs do not fit {source.name}: {described}",
            expected="calibration inputs of shape "
            + ", ".join(f"{name} (samples, {', '.join(map(str, shape))})" for name, shape in expected_shapes.items()),
            fix="pass the calibration split's features, windowed like the training data",
        )

    searching = prepared is not None  # many candidates from one preparation: log each at debug level
    with scratch_directory(destination) as scratch, atomic_destination(destination) as temporary_path:
        if prepared is None:
            prepared = scratch / "prepared.onnx"
            prepare_for_static_quantization(source, prepared, config.channels_last)
        reader = CalibrationReader(list(expected_shapes), named, progress)
        try:
            graph = load_onnx_model(prepared, QuantizationError).graph
            unknown = sorted(set(config.excluded_nodes) - {node.name for node in graph.node})
            if unknown:
                raise QuantizationError(
                    f"excluded_nodes names {', '.join(unknown)}, not in the prepared graph of {source.name}",
                    expected=f"names from quantizable_node_names(): {', '.join(quantizable_node_names(prepared))}",
                    fix="take the node names from exporters.quantization.quantizable_node_names",
                )
            excluded = _always_float(graph) + list(config.excluded_nodes)
            logger.debug("not quantizing %d node(s): %s", len(excluded), excluded)
            # ORT's histogram calibrators print to stdout and its advice goes to the root logger;
            # a library must not do either.
            with contextlib.redirect_stdout(io.StringIO()) as printed, onnxruntime_advice_demoted():
                calibration: dict[str, object] = {"calibration_data_reader": reader,
                                                  "calibration_cache_path": ranges_cache}
                if CalibrationMethod(config.calibration_method) is CalibrationMethod.ENTROPY:
                    cache = ranges_cache if ranges_cache is not None else scratch / "entropy-ranges.json"
                    if not cache.is_file():
                        entropy_calibration_cache(prepared, reader, cache)
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
                    calibrate_method=ort_calibration_method(config.calibration_method),
                    extra_options=extra_options,
                )
            if printed.getvalue().strip():
                logger.debug("onnxruntime calibration: %s", printed.getvalue().strip())
            _head_reads_float(temporary_path)
        except QuantizationError:
            raise
        except onnx_tooling_errors() as error:
            raise QuantizationError(
                f"int8 static quantization of {source.name} ({config.settings_label()}, "
                f"{config.calibration_method} calibration) failed ({type(error).__name__}: {error})",
                expected="an fp32 model and calibration data ONNX Runtime can quantize",
                fix="try calibration method minmax or fewer calibration_samples; "
                "otherwise ship the int8 dynamic or fp16 variant",
            ) from error
        check_loads(temporary_path, "int8 static")
    logger.log(
        logging.DEBUG if searching else logging.INFO,
        "int8 static variant of %s written to %s (%s, %s calibration on %d samples)",
        source.name,
        destination,
        config.settings_label(),
        config.calibration_method,
        sample_count(named),
    )


def _head_reads_float(path: Path) -> None:
    """An in-graph head computes on the float tensors, not on their QDQ copies (``exporters.heads``)."""
    import onnx

    model = onnx.load_model(str(path))
    if head_node_names(model.graph) and read_float_head_inputs(model):
        onnx.save_model(model, str(path))


def _model_inputs(model: onnx.ModelProto, source: Path) -> dict[str, tuple[int, ...]]:
    """Every graph input's name and non-batch shape, in graph order (symbolic axes are rejected)."""
    initializers = {initializer.name for initializer in model.graph.initializer}
    shapes = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dimensions = value.type.tensor_type.shape.dim[1:]
        if any(not dimension.HasField("dim_value") for dimension in dimensions):
            raise QuantizationError(
                f"{source.name}'s input {value.name!r} has unknown non-batch axes",
                expected="every input axis except the batch axis fixed",
                fix="re-export the model with exporters.keras_to_onnx.export_keras_to_onnx",
            )
        shapes[value.name] = tuple(int(dimension.dim_value) for dimension in dimensions)
    return shapes
