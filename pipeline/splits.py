"""Labelled data splits: the one shape every scenario hands to training and evaluation.

A scenario produces a ``DataSplits`` with four seed-fixed splits:
``train`` (fit), ``validation`` (early stopping), ``calibration`` (int8 static
quantization only) and ``test`` (parity, clinical evaluation, reference profile).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.errors import DataError

SPLIT_NAMES = ("train", "validation", "calibration", "test")


@dataclass(frozen=True)
class Split:
    """Model inputs (float32, batch first) and integer class labels (int64)."""

    inputs: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.inputs.shape[0])


@dataclass(frozen=True)
class DataSplits:
    """The four splits plus where the data came from.

    ``provenance`` is copied verbatim into manifests; it must say whether the
    data is synthetic (key ``synthetic``: bool), its source and licence.
    """

    train: Split
    validation: Split
    calibration: Split
    test: Split
    class_names: tuple[str, ...]
    provenance: dict = field(default_factory=dict)

    def split(self, name: str) -> Split:
        return getattr(self, name)

    def class_balance(self) -> dict[str, dict[str, int]]:
        """Counts per split and per class name, for manifests and reports."""
        balance: dict[str, dict[str, int]] = {}
        for name in SPLIT_NAMES:
            counts = np.bincount(self.split(name).labels, minlength=len(self.class_names))
            balance[name] = {label: int(count) for label, count in zip(self.class_names, counts)}
        return balance


def split_indices(labels: np.ndarray, fractions: dict[str, float], seed: int) -> dict[str, np.ndarray]:
    """Stratified, seed-fixed partition of ``range(len(labels))`` into named splits.

    ``fractions`` maps split name → fraction; they must sum to 1. Every class is
    shuffled with ``seed`` and cut in the same proportions, so each split keeps
    the class balance.
    """
    total = sum(fractions.values())
    if not np.isclose(total, 1.0):
        raise DataError(
            f"split fractions sum to {total:.3f}",
            expected="fractions for train/validation/calibration/test that sum to 1",
            fix="adjust the fractions in the scenario's data config",
        )
    rng = np.random.default_rng(seed)
    names = list(fractions)
    chosen: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        cuts = np.round(np.cumsum([fractions[name] for name in names]) * len(members)).astype(int)
        for name, part in zip(names, np.split(members, cuts[:-1])):
            chosen[name].append(part)
    return {name: np.sort(np.concatenate(parts)) for name, parts in chosen.items()}


def validate_split(name: str, split: Split, input_shape: tuple[int, ...], num_classes: int) -> None:
    """Raise ``DataError`` if a split does not fit a model with ``input_shape`` (no batch axis)."""
    inputs, labels = split.inputs, split.labels
    if inputs.ndim != len(input_shape) + 1 or tuple(inputs.shape[1:]) != tuple(input_shape):
        raise DataError(
            f"split '{name}' has inputs of shape {tuple(inputs.shape)}",
            expected=f"(batch, {', '.join(str(d) for d in input_shape)}) to match the model input",
            fix="reshape the arrays or pick the model that was trained on this data",
        )
    if not np.issubdtype(inputs.dtype, np.floating):
        raise DataError(
            f"split '{name}' has inputs of dtype {inputs.dtype}",
            expected="a floating-point dtype (float32)",
            fix="convert with array.astype('float32')",
        )
    bad = ~np.isfinite(inputs)
    if bad.any():
        rows = np.flatnonzero(bad.reshape(len(inputs), -1).any(axis=1))
        raise DataError(
            f"split '{name}' has {int(bad.sum())} NaN/inf values in {len(rows)} rows (first rows: {rows[:5].tolist()})",
            expected="finite values only",
            fix="drop or impute those rows before building",
        )
    if labels.shape != (len(inputs),):
        raise DataError(
            f"split '{name}' has labels of shape {tuple(labels.shape)} for {len(inputs)} inputs",
            expected=f"a 1-D array of {len(inputs)} integer class indices",
            fix="pass class indices, not one-hot vectors",
        )
    if not np.issubdtype(labels.dtype, np.integer) or labels.min(initial=0) < 0 or labels.max(initial=0) >= num_classes:
        raise DataError(
            f"split '{name}' has labels outside 0..{num_classes - 1} or not integers (dtype {labels.dtype})",
            expected=f"integer class indices in 0..{num_classes - 1}",
            fix="map class names to indices in the order of the scenario's labels",
        )


def save_splits(splits: DataSplits, path: Path) -> None:
    """Write all splits to one ``.npz`` (keys ``<split>_inputs`` / ``<split>_labels``)."""
    arrays = {}
    for name in SPLIT_NAMES:
        arrays[f"{name}_inputs"] = splits.split(name).inputs
        arrays[f"{name}_labels"] = splits.split(name).labels
    arrays["class_names"] = np.array(splits.class_names)
    with Path(path).open("wb") as handle:
        np.savez_compressed(handle, **arrays)


def load_splits(path: Path, provenance: dict | None = None) -> DataSplits:
    """Read what ``save_splits`` wrote."""
    with np.load(path, allow_pickle=False) as arrays:
        parts = {
            name: Split(arrays[f"{name}_inputs"], arrays[f"{name}_labels"].astype(np.int64)) for name in SPLIT_NAMES
        }
        class_names = tuple(str(name) for name in arrays["class_names"])
    return DataSplits(**parts, class_names=class_names, provenance=provenance or {})


def split_by_group(groups: np.ndarray, fractions: dict[str, float], seed: int) -> dict[str, np.ndarray]:
    """Seed-fixed partition that keeps every group (record, patient) inside one split.

    Beats of one synthetic patient never appear in both training and test data,
    so test metrics measure generalisation to unseen patients.
    """
    unique_groups = np.unique(groups)
    if len(unique_groups) < len(fractions):
        raise DataError(
            f"{len(unique_groups)} groups cannot fill {len(fractions)} splits",
            expected=f"at least {len(fractions)} distinct records",
            fix="generate more records",
        )
    order = np.random.default_rng(seed).permutation(unique_groups)
    counts = np.maximum(1, np.round(np.array(list(fractions.values())) * len(order)).astype(int))
    counts[0] = len(order) - counts[1:].sum()
    cuts = np.cumsum(counts)[:-1]
    return {name: np.flatnonzero(np.isin(groups, members)) for name, members in zip(fractions, np.split(order, cuts))}
