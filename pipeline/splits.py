"""Labelled data splits: the one shape every scenario and user model hands to the build stages.

A ``DataSplits`` has four seed-fixed splits: ``train`` (fit), ``validation`` (early stopping;
where decision thresholds are chosen), ``calibration`` (int8 static quantization) and ``test``
(parity, clinical evaluation, reference profile), plus ``normal`` — held-out normal samples an
anomaly detector's false-alarm threshold is set on (optional).

Inputs are one float array ``(samples, *input_shape)``, or for a model with several inputs a
mapping graph input name → array, every array with the same samples (rows). Labels depend on
the task kind (``TaskKind``) and may be absent (``None``) where the kind allows it:

| kind | labels of one split |
|---|---|
| multiclass | integer class indices ``(n,)`` in 0..k-1 |
| binary | integer 0/1 ``(n,)`` (1 = the positive, second label) |
| multilabel | integer 0/1 ``(n, labels)``, one column per label |
| regression | float targets ``(n,)`` or ``(n, outputs)`` |
| anomaly | integer 0/1 ``(n,)`` (1 = anomalous), or none |

``label_names`` — the field is called ``class_names`` — are the classes, labels, regression
targets, or (normal, anomalous).

A split may carry ``groups``: one cluster id per sample, saying which samples are correlated (overlapping windows
of one recording, the beats of one record). The test split's groups make the evaluation's bootstrap draw whole
groups instead of samples (``pipeline.clinical.bootstrap_intervals``); ``DataSplits.group_unit`` says in words what
one group is (``recording × 10-s block``). Without them the test samples are taken as independent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

import numpy as np

from pipeline.errors import DataError
from runtime.contract import TaskKind

SPLIT_NAMES = ("train", "validation", "calibration", "test")
NORMAL_SPLIT = "normal"
INPUT_SEPARATOR = "__"  # <split>_inputs__<input name>: one array per input of a multi-input model

SplitInputs: TypeAlias = np.ndarray | Mapping[str, np.ndarray]


def input_arrays(inputs: SplitInputs) -> dict[str, np.ndarray]:
    """Every input array by name; a plain array is the one input ``""``."""
    if isinstance(inputs, Mapping):
        return {str(name): np.asarray(value) for name, value in inputs.items()}
    return {"": np.asarray(inputs)}


def input_rows(inputs: SplitInputs) -> int:
    """Samples of the first input (``check_rows`` proves every input has as many)."""
    arrays = list(input_arrays(inputs).values())
    return int(arrays[0].shape[0]) if arrays and arrays[0].ndim else 0


def select_rows(inputs: SplitInputs, rows: slice | np.ndarray) -> SplitInputs:
    """The same rows of every input, in the same structure."""
    if isinstance(inputs, Mapping):
        return {name: np.asarray(value)[rows] for name, value in inputs.items()}
    return np.asarray(inputs)[rows]


def join_inputs(parts: list[SplitInputs]) -> SplitInputs:
    """The rows of ``parts`` one after the other (every part of the same structure)."""
    if isinstance(parts[0], Mapping):
        return {name: np.concatenate([np.asarray(part[name]) for part in parts]) for name in parts[0]}
    return np.concatenate([np.asarray(part) for part in parts])


@dataclass(frozen=True)
class Split:
    """Model inputs (float32, batch first; or name → array) and labels (``None``: unlabelled)."""

    inputs: SplitInputs
    labels: np.ndarray | None = None
    groups: np.ndarray | None = None  # one cluster id (text) per sample: correlated samples share one

    def __len__(self) -> int:
        return input_rows(self.inputs)

    @property
    def labelled(self) -> bool:
        return self.labels is not None and len(self) > 0


@dataclass(frozen=True)
class DataSplits:
    """The four splits plus what the labels mean and where the data came from.

    ``provenance`` is copied verbatim into manifests; it must say whether the
    data is synthetic (key ``synthetic``: bool), its source and licence.
    """

    train: Split
    validation: Split
    calibration: Split
    test: Split
    class_names: tuple[str, ...]  # classes, labels, regression targets, or (normal, anomalous)
    provenance: dict = field(default_factory=dict)
    task: TaskKind = TaskKind.MULTICLASS
    units: tuple[str, ...] = ()  # regression: one unit per target
    normal: Split | None = None  # anomaly: held-out normal samples for the false-alarm threshold
    group_unit: str = ""  # what one of the test split's groups is, in words ("recording × 10-s block")

    def __post_init__(self) -> None:
        if self.test.groups is not None and not self.group_unit.strip():
            raise DataError("the test split has groups but no group_unit",
                            expected="a few words saying what one group is, e.g. 'recording × 10-s block'",
                            fix="set DataSplits.group_unit where the groups are made")

    def split(self, name: str) -> Split:
        return getattr(self, name)

    def class_balance(self) -> dict[str, dict[str, int]]:
        """Samples per label name in every labelled split: per class (multiclass, binary, anomaly), per
        label carrying it (multilabel); none for regression."""
        balance: dict[str, dict[str, int]] = {}
        for name in SPLIT_NAMES:
            labels = self.split(name).labels
            if labels is None or self.task is TaskKind.REGRESSION:
                continue
            if self.task is TaskKind.MULTILABEL:
                counts = np.asarray(labels).reshape(len(labels), -1).sum(axis=0)
            else:
                counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(self.class_names))
            balance[name] = {label: int(count) for label, count in zip(self.class_names, counts)}
        return balance


def data_kind(provenance: Mapping[str, object]) -> str:
    """Whether the data ``provenance`` describes is synthetic, in words, from its ``synthetic`` flag:
    ``SYNTHETIC data``, ``real data``, or ``synthetic or real: not recorded`` (a user's own data)."""
    flag = provenance.get("synthetic")
    if flag is True:
        return "SYNTHETIC data"
    return "real data" if flag is False else "synthetic or real: not recorded"


def resampling_summary(splits: DataSplits) -> dict:
    """How the evaluation's bootstrap resamples the test split, for manifests and reports: whole groups (how many,
    what one is) or single samples, taken as independent."""
    test = splits.test
    if test.groups is None:
        return {"unit": "sample", "groups": len(test), "samples": len(test),
                "note": "test samples resampled one by one: taken as independent"}
    groups = int(np.unique(np.asarray(test.groups)).shape[0])
    return {"unit": splits.group_unit, "groups": groups, "samples": len(test),
            "note": f"whole groups resampled ({splits.group_unit}): the samples of one group are correlated"}


def labelled_split(splits: DataSplits) -> tuple[str, Split] | None:
    """Where decision thresholds are chosen (and int8 tuning is checked): the validation split when it
    has labelled samples, else the calibration split when it is labelled, else None."""
    for name in ("validation", "calibration"):
        if splits.split(name).labelled:
            return name, splits.split(name)
    return None


def normal_split(splits: DataSplits) -> tuple[str, Split]:
    """Normal samples an anomaly threshold is set on: ``normal`` when given, else the validation samples
    labelled 0, else the calibration samples labelled 0, else every calibration sample (taken as normal:
    an autoencoder is calibrated on the normal data it reconstructs)."""
    if splits.normal is not None and len(splits.normal):
        return "normal inputs", splits.normal
    for name in ("validation", "calibration"):
        split = splits.split(name)
        if split.labelled:
            rows = np.flatnonzero(np.asarray(split.labels).reshape(len(split), -1)[:, 0] == 0)
            return f"{name} samples labelled normal", Split(select_rows(split.inputs, rows))
    return "calibration inputs (taken as normal)", Split(splits.calibration.inputs)


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


def _shapes(input_shape: tuple[int, ...] | Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    if isinstance(input_shape, Mapping):
        return {str(name): tuple(shape) for name, shape in input_shape.items()}
    return {"": tuple(input_shape)}


def check_inputs(name: str, inputs: SplitInputs, input_shape: tuple[int, ...] | Mapping[str, tuple[int, ...]],
                 npz: bool = False) -> None:
    """Raise ``DataError`` unless ``inputs`` fit a model with ``input_shape`` (per input name for several):
    the right inputs and shapes, floating point, finite, and the same rows in every input. ``npz``: ``name``
    is a user's .npz key (``test_inputs``; per input ``test_inputs__<input>``), which messages name."""
    arrays, shapes = input_arrays(inputs), _shapes(input_shape)
    if set(arrays) != set(shapes):
        raise DataError(
            f"split '{name}' has inputs {sorted(arrays)} for a model with inputs {sorted(shapes)}",
            expected="one array per model input, keyed by the input's name",
            fix="give every model input its array",
        )
    for key, array in arrays.items():
        if npz:
            what = name + (f"{INPUT_SEPARATOR}{key}" if key else "")
        else:
            what = f"split '{name}'" + (f" input '{key}'" if key else "")
        shape = shapes[key]
        if array.ndim != len(shape) + 1 or tuple(array.shape[1:]) != shape:
            raise DataError(
                f"{what} has inputs of shape {tuple(array.shape)}",
                expected=f"(batch, {', '.join(str(d) for d in shape)}) to match the model input",
                fix="reshape the arrays or pick the model that was trained on this data",
            )
        if not np.issubdtype(array.dtype, np.floating):
            raise DataError(
                f"{what} has inputs of dtype {array.dtype}",
                expected="a floating-point dtype (float32)",
                fix="convert with array.astype('float32')",
            )
        bad = ~np.isfinite(array)
        if bad.any():
            rows = np.flatnonzero(bad.reshape(len(array), -1).any(axis=1))
            raise DataError(
                f"{what} has {int(bad.sum())} NaN/inf values in {len(rows)} rows (first rows: {rows[:5].tolist()})",
                expected="finite values only",
                fix="drop or impute those rows before building",
            )
    rows = {key: len(array) for key, array in arrays.items()}
    if len(set(rows.values())) > 1:
        raise DataError(
            f"{name if npz else f'split {name!r}'} has different numbers of rows per input: {rows}",
            expected="the same samples (rows) in every input array",
            fix="take every input from the same rows of the same data",
        )


def check_labels(name: str, labels: np.ndarray, rows: int, task: TaskKind, width: int, npz: bool = False) -> None:
    """Raise ``DataError`` unless ``labels`` are ``rows`` labels of the kind ``task`` (module table) for a
    model with ``width`` output columns (classes for multiclass). ``npz``: ``name`` is the .npz key."""
    labels = np.asarray(labels)
    what = f"{name} has values" if npz else f"split '{name}' has labels"
    integral = labels.dtype == bool or np.issubdtype(labels.dtype, np.integer)
    if task is TaskKind.REGRESSION:
        allowed = {(rows, width)} | ({(rows,)} if width == 1 else set())
        if labels.shape not in allowed:
            shapes = " or ".join(str(shape) for shape in sorted(allowed, key=len))
            raise DataError(f"{what} of shape {tuple(labels.shape)} for {rows} inputs",
                            expected=f"float targets of shape {shapes}, one per model output",
                            fix="pass one row of targets per input row")
        if not np.issubdtype(labels.dtype, np.floating):
            raise DataError(f"{what} of dtype {labels.dtype} for a regression",
                            expected="floating-point targets (integer labels mean a classifier)",
                            fix="save measured values as float (targets.astype('float32')), or name the task "
                            "(--task multiclass or binary) if these are classes")
        if not np.all(np.isfinite(labels)):
            raise DataError(f"{what} with NaN/inf targets", expected="finite targets",
                            fix="drop or impute those rows before building")
        return
    if task is TaskKind.MULTILABEL:
        expected_shape, kind = (rows, width), f"0/1 integers of shape ({rows}, {width}), one column per label"
    elif task is TaskKind.MULTICLASS:
        expected_shape, kind = (rows,), f"integer class indices in 0..{width - 1}"
    else:
        expected_shape, kind = (rows,), "0/1 integers (1 = " + ("anomalous)" if task is TaskKind.ANOMALY else
                                                                 "the positive class)")
    if labels.shape != expected_shape:
        raise DataError(f"{what} of shape {tuple(labels.shape)} for {rows} inputs", expected=kind,
                        fix="pass class indices, not one-hot vectors" if task is TaskKind.MULTICLASS
                        else "pass one label (row) per input row")
    if not integral:
        raise DataError(f"{what} of dtype {labels.dtype} for a {task.value} task", expected=kind,
                        fix="save class labels as integers (labels.astype('int64')); float targets mean a "
                        "regression (--task regression)")
    top = width - 1 if task is TaskKind.MULTICLASS else 1
    if labels.size and (labels.min() < 0 or labels.max() > top):
        raise DataError(f"{what} outside 0..{top} or not integers (dtype {labels.dtype})", expected=kind,
                        fix="map class names to indices in the order of the labels" if task is TaskKind.MULTICLASS
                        else "binarise the labels: 1 for positive (or anomalous), 0 for the rest")


def validate_split(
    name: str,
    split: Split,
    input_shape: tuple[int, ...] | Mapping[str, tuple[int, ...]],
    num_classes: int,
    task: TaskKind = TaskKind.MULTICLASS,
) -> None:
    """Raise ``DataError`` if a split does not fit a model with ``input_shape`` (no batch axis; per input
    name for several) and ``num_classes`` output columns (classes) of kind ``task``."""
    check_inputs(name, split.inputs, input_shape)
    if split.labels is not None:
        check_labels(name, split.labels, len(split), task, num_classes)
    if split.groups is not None:
        check_groups(name, split.groups, len(split))


def check_groups(name: str, groups: np.ndarray, rows: int, npz: bool = False) -> None:
    """Raise ``DataError`` unless ``groups`` is one text or integer cluster id per sample (``rows``)."""
    groups = np.asarray(groups)
    what = f"{name} has" if npz else f"split '{name}' has groups"
    if groups.shape != (rows,):
        raise DataError(f"{what} of shape {tuple(groups.shape)} for {rows} inputs",
                        expected=f"one group id per input row: shape ({rows},)",
                        fix="give every sample the id of its recording (or recording block)")
    if not (np.issubdtype(groups.dtype, np.str_) or np.issubdtype(groups.dtype, np.integer)):
        raise DataError(f"{what} of dtype {groups.dtype}", expected="text or integer group ids",
                        fix="name each group, e.g. 'record-200' or 'subject-7:block-3'")


def _put_inputs(arrays: dict, key: str, inputs: SplitInputs) -> None:
    if isinstance(inputs, Mapping):
        for name, value in inputs.items():
            arrays[f"{key}{INPUT_SEPARATOR}{name}"] = value
    else:
        arrays[key] = inputs


def _get_inputs(arrays, key: str, input_names: tuple[str, ...]) -> SplitInputs | None:
    if key in arrays.files:
        return arrays[key]
    if input_names and f"{key}{INPUT_SEPARATOR}{input_names[0]}" in arrays.files:
        return {name: arrays[f"{key}{INPUT_SEPARATOR}{name}"] for name in input_names}
    return None


def save_splits(splits: DataSplits, path: Path) -> None:
    """Write all splits to one ``.npz``: ``<split>_inputs`` (``<split>_inputs__<input>`` per input of a
    multi-input model), ``<split>_labels`` for labelled splits, and what the labels mean."""
    arrays: dict = {}
    for name in (*SPLIT_NAMES, NORMAL_SPLIT):
        split = splits.split(name)
        if split is None:
            continue
        _put_inputs(arrays, f"{name}_inputs", split.inputs)
        if split.labels is not None:
            arrays[f"{name}_labels"] = split.labels
        if split.groups is not None:
            arrays[f"{name}_groups"] = np.asarray(split.groups).astype(str)
    if isinstance(splits.test.inputs, Mapping):
        arrays["input_names"] = np.array(list(splits.test.inputs))
    arrays["class_names"] = np.array(splits.class_names)
    arrays["task"] = np.array(splits.task.value)
    arrays["units"] = np.array(splits.units, dtype=str)
    arrays["group_unit"] = np.array(splits.group_unit)
    with Path(path).open("wb") as handle:
        np.savez_compressed(handle, **arrays)


def load_splits(path: Path, provenance: dict | None = None) -> DataSplits:
    """Read what ``save_splits`` wrote."""
    with np.load(path, allow_pickle=False) as arrays:
        input_names = tuple(str(name) for name in arrays["input_names"]) if "input_names" in arrays.files else ()
        task = TaskKind(str(arrays["task"])) if "task" in arrays.files else TaskKind.MULTICLASS

        def read(name: str) -> Split | None:
            inputs = _get_inputs(arrays, f"{name}_inputs", input_names)
            if inputs is None:
                return None
            labels = arrays[f"{name}_labels"] if f"{name}_labels" in arrays.files else None
            if labels is not None and task is not TaskKind.REGRESSION:
                labels = labels.astype(np.int64)
            groups = arrays[f"{name}_groups"] if f"{name}_groups" in arrays.files else None
            return Split(inputs, labels, groups)

        parts = {name: read(name) for name in SPLIT_NAMES}
        normal = read(NORMAL_SPLIT)
        class_names = tuple(str(name) for name in arrays["class_names"])
        units = tuple(str(unit) for unit in arrays["units"]) if "units" in arrays.files else ()
        group_unit = str(arrays["group_unit"]) if "group_unit" in arrays.files else ""
    return DataSplits(**parts, class_names=class_names, provenance=provenance or {}, task=task, units=units,
                      normal=normal, group_unit=group_unit)


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
