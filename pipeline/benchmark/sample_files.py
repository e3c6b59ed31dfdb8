"""Model inputs handed to a benchmark worker, and the batches cut from them.

Inputs are what ``exporters.inputs`` takes: one float array for a single-input model, or input
name → array for a model with several (every array with the same rows). A worker gets them as
one file: ``.npy`` for an array, ``.npz`` keyed by input name for a mapping.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from exporters.inputs import ModelInputs, as_float32, is_mapping


def save_inputs(stem: Path, inputs: ModelInputs) -> Path:
    """Write ``inputs`` to ``stem``.npy (one array) or ``stem``.npz (by input name); return the file."""
    if is_mapping(inputs):
        path = Path(stem).with_suffix(".npz")
        np.savez(path, **{name: np.asarray(value) for name, value in inputs.items()})
        return path
    path = Path(stem).with_suffix(".npy")
    np.save(path, np.asarray(inputs))
    return path


def load_inputs(path: Path | str) -> ModelInputs:
    """What ``save_inputs`` wrote, as float32."""
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path) as arrays:
            return as_float32({name: arrays[name] for name in arrays.files})
    return as_float32(np.load(path))


def tiled(inputs: ModelInputs, rows: int) -> ModelInputs:
    """``rows`` samples, the inputs' own repeated in order (the same rows of every input)."""
    if is_mapping(inputs):
        return {name: np.resize(np.asarray(value), (rows, *np.shape(value)[1:])) for name, value in inputs.items()}
    return np.resize(np.asarray(inputs), (rows, *np.shape(inputs)[1:]))


def contiguous(inputs: ModelInputs) -> ModelInputs:
    """Every array C-contiguous float32 (what an interpreter or a bound session copies from)."""
    if is_mapping(inputs):
        return {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in inputs.items()}
    return np.ascontiguousarray(inputs, dtype=np.float32)
