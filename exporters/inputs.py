"""Model inputs as the exporters take them: one array, or a mapping from input name to array.

A single-input model takes a plain ``(samples, *input_shape)`` array, as it always did. A
model with several inputs (an ECG window and its RR-interval features) takes a mapping
from each input name — the Keras ``Input`` names, which the export keeps as the ONNX graph
input names — to a ``(samples, *input_shape)`` array, every array with the same number of
samples. Every helper keeps the samples of all inputs aligned: a slice, a selection of rows
or a batch takes the same rows of every array.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeAlias

import numpy as np

from runtime.errors import EdgemedError

ModelInputs: TypeAlias = np.ndarray | Mapping[str, np.ndarray]


def is_mapping(inputs: ModelInputs) -> bool:
    return isinstance(inputs, Mapping)


def arrays(inputs: ModelInputs) -> list[np.ndarray]:
    """Every input array (one for a plain array)."""
    return [np.asarray(value) for value in inputs.values()] if is_mapping(inputs) else [np.asarray(inputs)]


def sample_count(inputs: ModelInputs) -> int:
    """Samples along the first axis (the first input's, for a mapping; ``check_inputs`` proves they agree)."""
    values = arrays(inputs)
    return len(values[0]) if values and values[0].ndim else 0


def select(inputs: ModelInputs, rows: slice | np.ndarray) -> ModelInputs:
    """The same rows of every input (a slice or an index array), in the same structure."""
    if is_mapping(inputs):
        return {name: np.asarray(value)[rows] for name, value in inputs.items()}
    return np.asarray(inputs)[rows]


def as_float32(inputs: ModelInputs) -> ModelInputs:
    """A plain array as float32 (as before); in a mapping, every floating array as float32 and
    integer arrays (token ids, class indices fed as inputs) unchanged."""
    if not is_mapping(inputs):
        return np.asarray(inputs, dtype=np.float32)
    return {
        name: np.asarray(value, dtype=np.float32) if np.issubdtype(np.asarray(value).dtype, np.floating)
        else np.asarray(value)
        for name, value in inputs.items()
    }


def describe(inputs: ModelInputs) -> str:
    """``shape (n, 64, 1)`` or ``window (n, 64, 1), rr (n, 4)``: for messages."""
    if is_mapping(inputs):
        return ", ".join(f"{name} {np.shape(value)}" for name, value in inputs.items()) or "an empty mapping"
    return f"shape {np.shape(inputs)}"


def check_inputs(inputs: ModelInputs, error_type: type[EdgemedError], what: str, fix: str) -> None:
    """Reject empty, scalar-per-sample, non-finite or misaligned inputs.

    ``what`` names the inputs in the message (e.g. "parity inputs"); ``fix`` says where good ones come from.

    Raises:
        error_type: an array is empty or has fewer than 2 axes, a value is NaN or inf, or the
            arrays of a mapping hold different numbers of samples.
    """
    values = arrays(inputs)
    if not values or any(value.ndim < 2 or len(value) == 0 for value in values):
        raise error_type(
            f"{what} have {describe(inputs)}",
            expected="a non-empty array of shape (samples, *input_shape), or a mapping from each model input "
            "name to such an array",
            fix=fix,
        )
    counts = {len(value) for value in values}
    if len(counts) > 1:
        raise error_type(
            f"{what} hold different numbers of samples per input: {describe(inputs)}",
            expected="the same samples (first axis) in every input array",
            fix="take every input from the same rows of the same split",
        )
    if not all(np.all(np.isfinite(value)) for value in values if np.issubdtype(value.dtype, np.number)):
        raise error_type(f"{what} contain NaN or inf", expected=f"finite {what}", fix="clean the data first")


def feeds(inputs: ModelInputs, names: Sequence[str], error_type: type[EdgemedError]) -> dict[str, np.ndarray]:
    """``inputs`` keyed by the model's input ``names``.

    A plain array feeds a single-input model. A mapping must name every model input, and no
    other; a one-entry mapping also feeds a single-input model under any key (a single-input
    export renames its input to ``ExportConfig.input_name``).

    Raises:
        error_type: a plain array for a model with several inputs, or names that do not match.
    """
    names = list(names)
    if not is_mapping(inputs):
        if len(names) != 1:
            raise error_type(
                f"one input array was given to a model with {len(names)} inputs ({', '.join(names)})",
                expected="a mapping from each input name to its (samples, *input_shape) array",
                fix=f"pass {{{', '.join(repr(name) + ': ...' for name in names)}}}",
            )
        return {names[0]: np.asarray(inputs)}
    if len(names) == 1 and len(inputs) == 1:
        return {names[0]: np.asarray(next(iter(inputs.values())))}
    if set(inputs) != set(names):
        missing, unknown = sorted(set(names) - set(inputs)), sorted(set(inputs) - set(names))
        raise error_type(
            f"the input mapping names {sorted(inputs)}, the model's inputs are {names}"
            + (f" (missing {missing})" if missing else "") + (f" (not model inputs: {unknown})" if unknown else ""),
            expected="exactly one array per model input, keyed by the input's name",
            fix="key the arrays by the Keras Input names (the exported graph keeps them)",
        )
    return {name: np.asarray(inputs[name]) for name in names}
