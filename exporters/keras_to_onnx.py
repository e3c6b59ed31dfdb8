"""Keras 3 → ONNX conversion (tf2onnx), with a dynamic batch axis and stable tensor names.

The model is wrapped in a fresh one-input Functional model and converted with
``tf2onnx.convert.from_keras`` and an explicit input signature (traced as
``model(x, training=False)``). The wrapper matters: ``from_keras`` fails on Keras 3
Sequential models (``KeyError`` on ``keras_tensor_N`` output names), and
``from_function`` cannot be used instead because it turns tensors captured by value
(e.g. the adapted mean/variance of a ``Normalization`` layer) into extra graph inputs.

tf2onnx does not raise when it meets a TensorFlow op it cannot convert: it logs an
error and leaves the TensorFlow op in the ONNX graph. This module captures those log
records, checks every node against the ONNX operator schemas for the requested
opset, and turns any problem into an ``ExportError`` that names the Keras layer the
op came from (best effort: TensorFlow op names are prefixed by the layer's name scope,
e.g. ``functional_1/warp_1/erfinv/Erfinv`` comes from the layer ``warp``).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from exporters._files import atomic_destination
from exporters._graph import DEFAULT_DOMAINS, iterate_nodes
from exporters.errors import ExportError

if TYPE_CHECKING:
    import keras
    import onnx

logger = logging.getLogger(__name__)

BATCH_AXIS_NAME = "batch"  # symbolic name of the dynamic first axis of the graph input and output

# The opsets an export accepts (also the CLI's --opset range). tf2onnx registers handlers up to
# opset 18; below 13 per-channel QDQ quantization and several Keras 3 lowerings (ReduceSum with
# axes as input, Squeeze/Unsqueeze) are unavailable.
MIN_OPSET = 13
MAX_OPSET = 18


@dataclass(frozen=True)
class ExportConfig:
    """How a Keras model is written as ONNX."""

    # ONNX opset 17: LayerNormalization is a standard op and every ONNX Runtime since 1.14 runs it.
    opset: int = 17
    # Name of the single graph input that the device API feeds.
    input_name: str = "input"
    # The single graph output is renamed to this, whatever the Keras output layer is called.
    output_name: str = "probabilities"


def export_keras_to_onnx(model: keras.Model, output_path: Path, config: ExportConfig) -> None:
    """Convert a single-input, single-output Keras model to ONNX at ``output_path``.

    The graph input is named ``config.input_name`` with shape ``("batch", *model.input_shape[1:])``
    (dynamic first axis, every other axis fixed); the graph output is named
    ``config.output_name``. The file is written atomically: on any failure the
    destination is left absent or untouched.

    Raises:
        ExportError: the model has several inputs or outputs, an input axis other
            than the batch axis is unknown, the opset is outside what tf2onnx supports,
            or a layer could not be converted (the error names the layer).
    """
    output_path = Path(output_path)
    _check_backend()
    _check_opset(config.opset)
    input_shape, input_dtype = _single_input_spec(model)
    _check_single_output(model)

    with _captured_converter_errors() as converter_errors:
        model_proto = _convert(model, input_shape, input_dtype, config)
    _raise_for_unconverted_layers(model, model_proto, converter_errors, config.opset)

    _rename_value(model_proto.graph, model_proto.graph.input[0].name, config.input_name)
    _rename_value(model_proto.graph, model_proto.graph.output[0].name, config.output_name)
    _make_batch_axis_dynamic(model_proto)
    _check_model(model_proto)

    import onnx

    with atomic_destination(output_path) as temporary_path:
        onnx.save_model(model_proto, str(temporary_path))
    logger.info(
        "exported %s to %s (opset %d, %d nodes, input %r %s, output %r)",
        model.name,
        output_path,
        config.opset,
        len(model_proto.graph.node),
        config.input_name,
        (BATCH_AXIS_NAME, *input_shape),
        config.output_name,
    )


# ----------------------------------------------------------------------------- preconditions


def _check_backend() -> None:
    import keras

    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise ExportError(
            f"Keras is running on the {backend!r} backend; tf2onnx can only trace TensorFlow",
            expected="KERAS_BACKEND=tensorflow",
            fix="set the environment variable KERAS_BACKEND=tensorflow before importing keras",
        )


def _check_opset(opset: int) -> None:
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(
            f"ONNX opset {opset} is not supported",
            expected=f"an opset between {MIN_OPSET} and {MAX_OPSET} (tf2onnx's supported range)",
            fix="use the default ExportConfig.opset (17) unless the device runtime needs another",
        )


def _single_input_spec(model: keras.Model) -> tuple[tuple[int, ...], str]:
    """Return the non-batch input shape and dtype; reject multi-input or partly unknown shapes."""
    inputs = list(getattr(model, "inputs", None) or [])
    if len(inputs) != 1:
        raise ExportError(
            f"model {model.name!r} has {len(inputs)} inputs",
            expected="exactly one input (only single-input models are supported)",
            fix="concatenate the features into one input tensor, or build the model with one keras.Input",
        )
    full_shape = tuple(inputs[0].shape)
    feature_shape = full_shape[1:]
    if any(dimension is None for dimension in feature_shape):
        raise ExportError(
            f"model {model.name!r} has input shape {full_shape} with unknown non-batch axes",
            expected="every axis except the first (batch) axis fixed",
            fix="give keras.Input a full shape, e.g. keras.Input(shape=(64, 1))",
        )
    return tuple(int(dimension) for dimension in feature_shape), str(inputs[0].dtype)


def _check_single_output(model: keras.Model) -> None:
    outputs = list(getattr(model, "outputs", None) or [])
    if len(outputs) != 1:
        raise ExportError(
            f"model {model.name!r} has {len(outputs)} outputs",
            expected="exactly one output tensor",
            fix="export a model that returns one tensor (wrap the others out with keras.Model(inputs, output))",
        )


# ----------------------------------------------------------------------------- conversion


def _convert(
    model: keras.Model, input_shape: tuple[int, ...], input_dtype: str, config: ExportConfig
) -> onnx.ModelProto:
    import keras
    import tensorflow as tf
    import tf2onnx

    signature = [tf.TensorSpec((None, *input_shape), tf.as_dtype(input_dtype), name=config.input_name)]
    try:
        # A fresh Functional wrapper gives every model (Sequential, Functional, subclassed)
        # the one-input/one-named-output structure tf2onnx.from_keras handles; Keras 3
        # Sequential models fail inside from_keras with a KeyError on their output names.
        wrapper_input = keras.Input(input_shape, dtype=input_dtype, name=config.input_name)
        wrapper = keras.Model(wrapper_input, model(wrapper_input), name=f"{model.name}_export")
        model_proto, _ = tf2onnx.convert.from_keras(wrapper, input_signature=signature, opset=config.opset)
    except Exception as error:  # tracing/conversion can fail in many ways; re-raised typed below
        raise ExportError(
            f"tf2onnx could not convert model {model.name!r} ({type(error).__name__}: {error})",
            expected="a model made of layers tf2onnx can trace and convert",
            fix="check that model(x, training=False) runs on a batch of shape "
            f"{(1, *input_shape)}, and replace custom layers with standard Keras layers",
        ) from error
    return model_proto


@dataclass(frozen=True)
class _ConverterProblem:
    node_name: str  # TensorFlow node name, e.g. "functional_1/warp_1/erfinv/Erfinv"
    op_type: str  # TensorFlow or ONNX op type
    reason: str  # short human description
    required_opset: int | None = None  # the lowest opset that would convert it, when one would


class _ConverterErrorCollector(logging.Handler):
    """Collects tf2onnx's "op is not supported" / "failed to convert node" error records."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.problems: list[_ConverterProblem] = []

    def emit(self, record: logging.LogRecord) -> None:
        arguments = record.args if isinstance(record.args, tuple) else ()
        if record.msg.startswith("Tensorflow op [") and len(arguments) >= 2:
            self.problems.append(
                _ConverterProblem(str(arguments[0]), str(arguments[1]), "tf2onnx has no converter for it")
            )
        elif record.msg.startswith("Failed to convert node") and arguments:
            node_name = str(arguments[0])
            exception_text = str(record.exc_info[1]) if record.exc_info else ""
            self.problems.append(
                _ConverterProblem(
                    node_name,
                    node_name.rsplit("/", 1)[-1],
                    f"tf2onnx's converter failed: {exception_text}" if exception_text else "converter failed",
                )
            )


@contextlib.contextmanager
def _captured_converter_errors() -> Iterator[list[_ConverterProblem]]:
    collector = _ConverterErrorCollector()
    tf2onnx_logger = logging.getLogger("tf2onnx")
    tf2onnx_logger.addHandler(collector)
    try:
        yield collector.problems
    finally:
        tf2onnx_logger.removeHandler(collector)


def _schema_problems(model_proto: onnx.ModelProto, opset: int) -> list[_ConverterProblem]:
    """Default-domain nodes whose op type does not exist in ONNX at ``opset``."""
    import onnx

    problems = []
    for node in iterate_nodes(model_proto.graph):
        if node.domain not in DEFAULT_DOMAINS:
            continue
        if not onnx.defs.has(node.op_type):
            problems.append(_ConverterProblem(node.name, node.op_type, "not an ONNX operator"))
            continue
        try:
            onnx.defs.get_schema(node.op_type, opset)
        except onnx.defs.SchemaError:
            first_version = onnx.defs.get_schema(node.op_type).since_version
            problems.append(
                _ConverterProblem(node.name, node.op_type, f"needs ONNX opset {first_version} or later", first_version)
            )
    return problems


def _raise_for_unconverted_layers(
    model: keras.Model,
    model_proto: onnx.ModelProto,
    converter_problems: list[_ConverterProblem],
    opset: int,
) -> None:
    problems = {problem.node_name: _with_opset_hint(problem, opset) for problem in converter_problems}
    for problem in _schema_problems(model_proto, opset):
        problems.setdefault(problem.node_name, problem)
    if not problems:
        return
    descriptions = []
    for problem in problems.values():
        layer = _layer_for_node(model, problem.node_name)
        where = (
            f"layer {layer.name!r} ({type(layer).__name__})"
            if layer is not None
            else f"TensorFlow node {problem.node_name!r}"
        )
        descriptions.append(f"{where}: op {problem.op_type} ({problem.reason}; node {problem.node_name})")
    required_opsets = [problem.required_opset for problem in problems.values() if problem.required_opset]
    fix = (
        "replace the layer with standard Keras layers built from supported ops "
        "(e.g. keras.ops functions tf2onnx converts), or move that computation outside the model"
    )
    if required_opsets and max(required_opsets) <= MAX_OPSET:
        fix = f"raise ExportConfig.opset from {opset} to {max(required_opsets)}, or " + fix
    raise ExportError(
        f"model {model.name!r} contains ops tf2onnx cannot convert to ONNX opset {opset}: " + "; ".join(descriptions),
        expected="every layer lowered to standard ONNX operators",
        fix=fix,
    )


def _with_opset_hint(problem: _ConverterProblem, opset: int) -> _ConverterProblem:
    """Say so when tf2onnx does convert the op, but only from a higher opset than requested."""
    from tf2onnx import constants
    from tf2onnx.handler import tf_op

    handlers_by_opset = tf_op.get_opsets().get(constants.ONNX_DOMAIN, [])
    first_opset = next(
        (version for version, handlers in enumerate(handlers_by_opset) if handlers and problem.op_type in handlers),
        None,
    )
    if first_opset is None or first_opset <= opset:
        return problem
    return _ConverterProblem(
        problem.node_name, problem.op_type, f"tf2onnx converts it only from opset {first_opset} on", first_opset
    )


_SCOPE_SUFFIX = re.compile(r"^(?P<base>.+)_\d+$")


def _layer_for_node(model: keras.Model, node_name: str) -> keras.layers.Layer | None:
    """Best-effort map from a TensorFlow node name to the Keras layer whose name scope holds it.

    Keras 3 traces each layer under a uniquified name scope (layer ``dense`` → scope
    ``dense_1``; layer ``dense_1`` → ``dense_1_2``), so a scope is matched first with one
    ``_N`` suffix removed, then exactly. The innermost matching scope wins.
    """
    layers_by_name = {layer.name: layer for layer in _all_layers(model)}
    scopes = node_name.split("/")[:-1]
    for scope in reversed(scopes):
        suffix_match = _SCOPE_SUFFIX.match(scope)
        if suffix_match and suffix_match["base"] in layers_by_name:
            return layers_by_name[suffix_match["base"]]
        if scope in layers_by_name:
            return layers_by_name[scope]
    return None


def _all_layers(model: keras.Model) -> Iterator[keras.layers.Layer]:
    """Every layer of ``model``, descending into nested models."""
    pending = list(getattr(model, "layers", []))
    while pending:
        layer = pending.pop(0)
        yield layer
        pending.extend(getattr(layer, "layers", []) or [])


# ----------------------------------------------------------------------------- graph surgery


def _rename_value(graph: onnx.GraphProto, old_name: str, new_name: str) -> None:
    """Rename a tensor everywhere it appears (graph IO, node IO incl. subgraphs, value_info)."""
    if old_name == new_name:
        return
    existing_names = {output for node in iterate_nodes(graph) for output in node.output}
    existing_names.update(initializer.name for initializer in graph.initializer)
    existing_names.update(value.name for value in graph.input)
    existing_names.discard(old_name)
    if new_name in existing_names:
        raise ExportError(
            f"cannot rename graph tensor {old_name!r} to {new_name!r}: the name is already used in the graph",
            expected="input and output names that no internal tensor uses",
            fix="choose another ExportConfig.input_name / output_name",
        )
    for value in (*graph.input, *graph.output, *graph.value_info):
        if value.name == old_name:
            value.name = new_name
    for node in iterate_nodes(graph):
        for index, name in enumerate(node.input):
            if name == old_name:
                node.input[index] = new_name
        for index, name in enumerate(node.output):
            if name == old_name:
                node.output[index] = new_name


def _make_batch_axis_dynamic(model_proto: onnx.ModelProto) -> None:
    """Name the first axis of the graph input ``batch`` (and every axis tf2onnx tied to it)."""
    graph = model_proto.graph
    input_batch = graph.input[0].type.tensor_type.shape.dim[0]
    old_symbol = input_batch.dim_param
    input_batch.Clear()
    input_batch.dim_param = BATCH_AXIS_NAME
    for output in graph.output:
        output_dimensions = output.type.tensor_type.shape.dim
        if output_dimensions and not output_dimensions[0].HasField("dim_value"):
            output_dimensions[0].Clear()
            output_dimensions[0].dim_param = BATCH_AXIS_NAME
    if not old_symbol:
        return
    for value in (*graph.output, *graph.value_info):
        for dimension in value.type.tensor_type.shape.dim:
            if dimension.dim_param == old_symbol:
                dimension.Clear()
                dimension.dim_param = BATCH_AXIS_NAME


def _check_model(model_proto: onnx.ModelProto) -> None:
    import onnx

    try:
        onnx.checker.check_model(model_proto)
    except onnx.checker.ValidationError as error:
        raise ExportError(
            f"the converted ONNX graph is invalid: {error}",
            expected="a graph that passes onnx.checker.check_model",
            fix="report the model to the exporters maintainers; meanwhile try another ExportConfig.opset",
        ) from error
