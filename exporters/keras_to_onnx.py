"""Keras 3 → ONNX conversion (tf2onnx), with a dynamic batch axis and stable tensor names.

The model is wrapped in a fresh Functional model and converted with
``tf2onnx.convert.from_keras`` and an explicit input signature — one ``TensorSpec`` per
Keras input (traced as ``model(x, training=False)``). The wrapper matters: ``from_keras``
fails on Keras 3 Sequential models (``KeyError`` on ``keras_tensor_N`` output names), and
``from_function`` cannot be used instead because it turns tensors captured by value
(e.g. the adapted mean/variance of a ``Normalization`` layer) into extra graph inputs.

Names: a single-input model's graph input is ``ExportConfig.input_name``; a model with
several inputs keeps its ``keras.Input`` names (what ``exporters.inputs`` mappings are keyed
by), in ``model.inputs`` order. A single-output model's graph output is
``ExportConfig.output_name``; several outputs keep the Keras output names, in the model's
flattened output order. Every input and output has the dynamic first axis ``batch``.

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
    # Name of the graph input of a single-input model, which the device API feeds (a model with
    # several inputs keeps its keras.Input names).
    input_name: str = "input"
    # The graph output of a single-output model is renamed to this, whatever the Keras output layer is
    # called (several outputs keep their Keras names).
    output_name: str = "probabilities"


def export_keras_to_onnx(model: keras.Model, output_path: Path, config: ExportConfig) -> None:
    """Convert a Keras model to ONNX at ``output_path``.

    A single-input model's graph input is named ``config.input_name`` with shape
    ``("batch", *model.input_shape[1:])``; a model with several inputs gets one graph input per
    ``keras.Input``, under its Keras name, each with the dynamic first axis ``batch``. A
    single-output model's graph output is named ``config.output_name``; several outputs keep
    their Keras names. The file is written atomically: on any failure the destination is left
    absent or untouched.

    Raises:
        ExportError: an input axis other than the batch axis is unknown, two inputs share a
            name, the opset is outside what tf2onnx supports, or a layer could not be
            converted (the error names the layer).
    """
    output_path = Path(output_path)
    _check_backend()
    _check_opset(config.opset)
    specs = _input_specs(model, config)
    output_names = _output_names(model, config)

    with _captured_converter_errors() as converter_errors:
        model_proto = _convert(model, specs, config)
    _raise_for_unconverted_layers(model, model_proto, converter_errors, config.opset)

    _name_inputs(model_proto.graph, specs)
    if len(output_names) == len(model_proto.graph.output):
        for output, name in zip(list(model_proto.graph.output), output_names, strict=True):
            _rename_value(model_proto.graph, output.name, name)
    _make_batch_axis_dynamic(model_proto)
    _check_model(model_proto)

    import onnx

    with atomic_destination(output_path) as temporary_path:
        onnx.save_model(model_proto, str(temporary_path))
    logger.info(
        "exported %s to %s (opset %d, %d nodes, inputs %s, outputs %s)",
        model.name,
        output_path,
        config.opset,
        len(model_proto.graph.node),
        ", ".join(f"{spec.name!r} {(BATCH_AXIS_NAME, *spec.shape)}" for spec in specs),
        [output.name for output in model_proto.graph.output],
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


@dataclass(frozen=True)
class _InputSpec:
    name: str  # the graph input's name (and the wrapper's keras.Input name)
    keras_name: str  # the model's own keras.Input name
    shape: tuple[int, ...]  # without the batch axis
    dtype: str


def _input_specs(model: keras.Model, config: ExportConfig) -> list[_InputSpec]:
    """One spec per Keras input, in ``model.inputs`` order; reject unknown non-batch axes and duplicate names."""
    inputs = list(getattr(model, "inputs", None) or [])
    if not inputs:
        raise ExportError(
            f"model {model.name!r} has no symbolic inputs",
            expected="a Functional or Sequential model built on keras.Input",
            fix="build the model with keras.Input, e.g. keras.Input(shape=(64, 1))",
        )
    specs = []
    for tensor in inputs:
        full_shape = tuple(tensor.shape)
        if any(dimension is None for dimension in full_shape[1:]):
            raise ExportError(
                f"model {model.name!r} has input {tensor.name!r} of shape {full_shape} with unknown non-batch axes",
                expected="every axis except the first (batch) axis fixed",
                fix="give keras.Input a full shape, e.g. keras.Input(shape=(64, 1))",
            )
        name = config.input_name if len(inputs) == 1 else tensor.name
        specs.append(_InputSpec(name, tensor.name, tuple(int(axis) for axis in full_shape[1:]), str(tensor.dtype)))
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ExportError(
            f"model {model.name!r} has inputs with the same name: {names}",
            expected="a distinct name per keras.Input (they become the graph input names)",
            fix="name every input: keras.Input(shape, name='window'), keras.Input(shape, name='rr')",
        )
    return specs


def _output_names(model: keras.Model, config: ExportConfig) -> list[str]:
    """``config.output_name`` for one output; the Keras output names for several (when distinct)."""
    outputs = list(getattr(model, "outputs", None) or [])
    if len(outputs) <= 1:
        return [config.output_name]
    names = list(getattr(model, "output_names", None) or [])
    return names if len(names) == len(outputs) and len(set(names)) == len(names) else []


# ----------------------------------------------------------------------------- conversion


def _convert(model: keras.Model, specs: list[_InputSpec], config: ExportConfig) -> onnx.ModelProto:
    import keras
    import tensorflow as tf
    import tf2onnx

    signature = [tf.TensorSpec((None, *spec.shape), tf.as_dtype(spec.dtype), name=spec.name) for spec in specs]
    try:
        # A fresh Functional wrapper gives every model (Sequential, Functional, subclassed)
        # the plain inputs/named outputs structure tf2onnx.from_keras handles; Keras 3
        # Sequential models fail inside from_keras with a KeyError on their output names.
        wrapper_inputs = [keras.Input(spec.shape, dtype=spec.dtype, name=spec.name) for spec in specs]
        if len(specs) == 1:
            outputs = model(wrapper_inputs[0])
        else:  # the model's own input structure (list or dict), filled by Keras input name
            by_name = {spec.keras_name: tensor for spec, tensor in zip(specs, wrapper_inputs, strict=True)}
            outputs = model(keras.tree.map_structure(lambda tensor: by_name[tensor.name], model.input))
        wrapper = keras.Model(wrapper_inputs, outputs, name=f"{model.name}_export")
        model_proto, _ = tf2onnx.convert.from_keras(wrapper, input_signature=signature, opset=config.opset)
    except Exception as error:  # tracing/conversion can fail in many ways; re-raised typed below
        example = ", ".join(str((1, *spec.shape)) for spec in specs)
        raise ExportError(
            f"tf2onnx could not convert model {model.name!r} ({type(error).__name__}: {error})",
            expected="a model made of layers tf2onnx can trace and convert",
            fix=f"check that model(x, training=False) runs on a batch of shape {example}, and replace "
            "custom layers with standard Keras layers",
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
    hints: list[str] = []
    for problem in problems.values():
        layer = _layer_for_node(model, problem.node_name)
        where = (
            f"layer {layer.name!r} ({type(layer).__name__})"
            if layer is not None
            else f"TensorFlow node {problem.node_name!r}"
        )
        descriptions.append(f"{where}: op {problem.op_type} ({problem.reason}; node {problem.node_name})")
        hint = _known_fix(layer, problem)
        if hint is not None and hint not in hints:
            hints.append(hint)
    required_opsets = [problem.required_opset for problem in problems.values() if problem.required_opset]
    fix = "; ".join(hints) + "; otherwise " if hints else ""
    fix += (
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


def _known_fix(layer: keras.layers.Layer | None, problem: _ConverterProblem) -> str | None:
    """The specific fix for a layer setting TensorFlow lowers to an op tf2onnx cannot convert (None: no known one)."""
    if problem.op_type == "Erfc" and "gelu" in problem.node_name.lower():
        return ("GELU: Keras's exact GELU becomes Erfc, which tf2onnx cannot convert — use its tanh approximation "
                "(keras.activations.gelu(x, approximate=True), e.g. in a keras.layers.Activation) and retrain")
    config = layer.get_config() if layer is not None else {}
    groups = config.get("groups")
    if isinstance(groups, int) and groups > 1:  # a convolution's channel groups
        return (f"grouped convolution: {layer.name!r} has groups={groups}, which TensorFlow lowers to a "
                "function call tf2onnx cannot convert — split the channels and give each group its own "
                "convolution (keras.ops.split, then Concatenate), or use a DepthwiseConv1D followed by a 1×1 Conv1D")
    return None


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


def _name_inputs(graph: onnx.GraphProto, specs: list[_InputSpec]) -> None:
    """Give the graph inputs the spec names (tf2onnx takes them from the signature; this makes sure)."""
    initializers = {initializer.name for initializer in graph.initializer}
    inputs = [value for value in graph.input if value.name not in initializers]
    wanted = [spec.name for spec in specs]
    if len(inputs) == 1 and len(specs) == 1:
        _rename_value(graph, inputs[0].name, wanted[0])
    elif sorted(value.name for value in inputs) != sorted(wanted):
        raise ExportError(
            f"the converted graph has inputs {[value.name for value in inputs]}, the model {wanted}",
            expected="one graph input per keras.Input, under its name",
            fix="report the model to the exporters maintainers",
        )


def _make_batch_axis_dynamic(model_proto: onnx.ModelProto) -> None:
    """Name the first axis of every graph input ``batch`` (and every axis tf2onnx tied to one)."""
    graph = model_proto.graph
    old_symbols = set()
    for value in graph.input:
        dimensions = value.type.tensor_type.shape.dim
        if not dimensions:
            continue
        if dimensions[0].dim_param:
            old_symbols.add(dimensions[0].dim_param)
        dimensions[0].Clear()
        dimensions[0].dim_param = BATCH_AXIS_NAME
    for output in graph.output:
        output_dimensions = output.type.tensor_type.shape.dim
        if output_dimensions and not output_dimensions[0].HasField("dim_value"):
            output_dimensions[0].Clear()
            output_dimensions[0].dim_param = BATCH_AXIS_NAME
    if not old_symbols:
        return
    for value in (*graph.output, *graph.value_info):
        for dimension in value.type.tensor_type.shape.dim:
            if dimension.dim_param in old_symbols:
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
