"""A user's ``.npz`` read against their Keras model: the key scheme, every check, and the splits.

Keys (``numpy.savez``), for a model with one input:

| key | content |
|---|---|
| ``calibration_inputs`` | float32, batch first: int8 calibration (required) |
| ``test_inputs`` | float32, batch first: parity, clinical metrics, reference profile (required) |
| ``test_labels`` | the labels of the task kind (``pipeline.splits``); required, except for anomaly |
| ``validation_inputs`` + ``validation_labels`` | optional: decision thresholds and int8 tuning are set here |
| ``calibration_labels`` | optional: labels of the calibration inputs, used for thresholds without validation data |
| ``normal_inputs`` | optional, anomaly: normal samples the false-alarm threshold is set on |
| ``class_names`` | optional: one name per class / label / target; (negative, positive); (normal, anomalous) |
| ``output_units`` | regression (required): one unit per output, e.g. ``mmHg``; ``1`` when unitless |
| ``sample_rate_hz`` | the rate in Hz, required when an input is a waveform (not one row of features) |
| ``test_leads`` | optional, waveforms: the leads the test recordings are, e.g. ``['MLII']`` (standard names, |
| | ``runtime.leads``); the device then refuses a recording that names another lead |
| ``test_sources`` | optional: each test row's recording or subject (``user_sources``); intervals resample sources |
| ``train_sources`` | optional, with ``test_sources``: every recording or subject that trained the model |

A model with several inputs takes one array per input under ``<split>_inputs__<input name>``
(the ``keras.Input`` names), e.g. ``test_inputs__window`` and ``test_inputs__rr``, for every split
given; the plain ``<split>_inputs`` key is then an error (it cannot say which input it is).
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.build.user_sources import PROVENANCE_KEY, SOURCE_KEYS, opaque_test_groups, sources_provenance
from pipeline.errors import DataError, UsageError
from pipeline.splits import (
    INPUT_SEPARATOR,
    DataSplits,
    Split,
    SplitInputs,
    check_inputs,
    check_labels,
    input_rows,
)
from runtime.contract import TaskKind
from runtime.leads import recorded_channel
from runtime.readers import InputError, parse_npy_header

INPUT_SPLITS = ("calibration", "test", "validation", "normal")
LABEL_KEYS = ("test_labels", "validation_labels", "calibration_labels")
OTHER_KEYS = ("class_names", "output_units", "sample_rate_hz", "test_leads", *SOURCE_KEYS)
_TEMPLATE = "numpy.savez('data.npz', calibration_inputs=..., test_inputs=..., test_labels=...)"


@dataclass(frozen=True)
class ModelSignature:
    """What the ``.npz`` must fit: the model's inputs (Keras names and sample shapes) and output width."""

    input_names: tuple[str, ...]  # keras.Input names, in model.inputs order
    input_shapes: tuple[tuple[int, ...], ...]
    output_shape: tuple[int, ...]  # one sample's output shape
    output_width: int  # values per sample of the output

    @property
    def several_inputs(self) -> bool:
        return len(self.input_names) > 1

    def shapes(self) -> tuple[int, ...] | dict[str, tuple[int, ...]]:
        """The sample shape (one input) or name → sample shape (several): what ``check_inputs`` takes."""
        if self.several_inputs:
            return dict(zip(self.input_names, self.input_shapes, strict=True))
        return self.input_shapes[0]


def model_signature(model) -> ModelSignature:
    """The model's inputs and its one output; ``UsageError`` for several outputs or unknown axes."""
    inputs, outputs = list(model.inputs), list(model.outputs)
    if len(outputs) != 1:
        raise UsageError(
            f"model {model.name!r} has {len(outputs)} outputs",
            expected="a model with one output (a bundle has one decision rule)",
            fix="export one model per output: keras.Model(model.inputs, model.outputs[i])",
        )
    shapes = []
    for tensor in inputs:
        if str(tensor.dtype) != "float32":  # float64/float16 passed here, then failed export's parity check
            raise UsageError(
                f"model input {tensor.name!r} has dtype {tensor.dtype}",
                expected="float32 inputs: the device's readers and the .npz checks give float32 (a mixed-precision "
                         "model keeps float32 inputs)",
                fix="declare keras.Input(..., dtype='float32'); an Embedding casts float indices itself",
            )
        shape = tuple(tensor.shape[1:])
        if any(axis is None for axis in shape):
            raise UsageError(
                f"model input {tensor.name!r} has shape {tuple(tensor.shape)} with unknown axes besides the batch",
                expected="every axis except the first (batch) fixed",
                fix="give keras.Input a full shape, e.g. keras.Input(shape=(64, 1))",
            )
        shapes.append(tuple(int(axis) for axis in shape))
    output_shape = tuple(outputs[0].shape[1:])
    if any(axis is None for axis in output_shape):
        raise UsageError(f"the model output has shape {tuple(outputs[0].shape)} with unknown axes",
                         expected="a fixed output shape per sample", fix="end the model in a layer of fixed width")
    return ModelSignature(tuple(tensor.name for tensor in inputs), tuple(shapes),
                          tuple(int(axis) for axis in output_shape), int(np.prod(output_shape, dtype=np.int64)))


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` at ``path`` (``DataError`` if missing or unreadable)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {path} does not exist", expected="an .npz file", fix="check the path")
    try:
        declared = _declared_bytes(path)
        if declared > MAX_DATA_BYTES:
            raise DataError(f"{path}'s arrays decode to {declared} bytes, over {MAX_DATA_BYTES // 1024**3} GiB",
                            expected=f"data of at most {MAX_DATA_BYTES // 1024**3} GiB (checked on the array headers "
                            "before anything is loaded)", fix="pass a sample of the splits")
        with np.load(path, allow_pickle=False) as arrays:
            return {key: arrays[key] for key in arrays.files}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise DataError(
            f"{path} is not a readable .npz file: {error}",
            expected="a file written by numpy.savez with the documented keys",
            fix=_TEMPLATE,
        ) from error


MAX_DATA_BYTES = 4 * 1024**3  # a user's .npz: every split's arrays together, as declared in their headers


def _declared_bytes(path: Path) -> int:
    """The bytes the ``.npz``'s arrays decode to, from their headers alone (a deflated member may claim GiB)."""
    total = 0
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with archive.open(info) as member:
                try:
                    shape, _, dtype = parse_npy_header(member, f"array {info.filename[:-4]!r}")
                except InputError as error:  # refused below as an unreadable .npz (a DataError)
                    raise ValueError(error.what) from None
            total += math.prod(shape) * dtype.itemsize
    return total


def _input_keys(split: str, signature: ModelSignature) -> list[str]:
    if signature.several_inputs:
        return [f"{split}_inputs{INPUT_SEPARATOR}{name}" for name in signature.input_names]
    return [f"{split}_inputs"]


def check_keys(contents: dict[str, np.ndarray], signature: ModelSignature) -> None:
    """``DataError`` for a required key missing, a key of the other input scheme, or a key edgemed does not know."""
    known = {key for split in INPUT_SPLITS for key in _input_keys(split, signature)} | set(LABEL_KEYS) | set(OTHER_KEYS)
    names = ", ".join(signature.input_names)
    for split in ("calibration", "test"):
        missing = [key for key in _input_keys(split, signature) if key not in contents]
        if missing:
            plain = signature.several_inputs and f"{split}_inputs" in contents
            raise DataError(
                f"the .npz lacks the arrays {missing} (it has {sorted(contents)})"
                + (f": the model has {len(signature.input_names)} inputs ({names}), so one "
                   f"'{split}_inputs' array cannot feed it" if plain else ""),
                expected=f"{', '.join(_input_keys(split, signature))}: one array per model input"
                if signature.several_inputs else "the keys calibration_inputs, test_inputs and test_labels",
                fix=f"numpy.savez(..., {', '.join(key + '=...' for key in _input_keys(split, signature))})",
            )
    unknown = sorted(set(contents) - known)
    if unknown:
        raise DataError(
            f"the .npz has keys edgemed does not know: {unknown}",
            expected=f"input keys {', '.join(_input_keys('<split>', signature))} for the splits "
            f"{', '.join(INPUT_SPLITS)}, and {', '.join(LABEL_KEYS + OTHER_KEYS)}",
            fix="rename or drop those arrays (a typo in a key would otherwise silently drop data)",
        )


def gather_inputs(contents: dict[str, np.ndarray], split: str, signature: ModelSignature) -> SplitInputs | None:
    """The ``split``'s inputs (an array, or input name → array for several inputs), checked; None if absent."""
    keys = _input_keys(split, signature)
    present = [key for key in keys if key in contents]
    if not present:
        return None
    if len(present) != len(keys):
        missing = sorted(set(keys) - set(present))
        raise DataError(f"the .npz has {present} but lacks {missing}",
                        expected=f"every input of the {split} split: {keys}",
                        fix=f"add {missing}, or drop the {split} split's other arrays")
    inputs = (dict(zip(signature.input_names, (contents[key] for key in keys), strict=True))
              if signature.several_inputs else contents[keys[0]])
    check_inputs(f"{split}_inputs", inputs, signature.shapes(), npz=True)
    if input_rows(inputs) == 0:  # an empty split would pass every check and fail deep in the export or calibration
        raise DataError(f"the .npz's {split} inputs hold no rows", expected=f"at least one {split} sample",
                        fix=f"fill {', '.join(keys)}, or leave the {split} split out where it is optional")
    return inputs


def label_names(kind: TaskKind, contents: dict[str, np.ndarray], width: int) -> tuple[str, ...]:
    """The names of the classes / labels / targets: ``class_names`` from the .npz, or the kind's defaults."""
    defaults = {
        TaskKind.MULTICLASS: tuple(f"class_{index}" for index in range(width)),
        TaskKind.BINARY: ("negative", "positive"),
        TaskKind.MULTILABEL: tuple(f"label_{index}" for index in range(width)),
        TaskKind.REGRESSION: ("value",) if width == 1 else tuple(f"value_{index}" for index in range(width)),
        TaskKind.ANOMALY: ("normal", "anomalous"),
    }[kind]
    if "class_names" not in contents:
        return defaults
    given = np.asarray(contents["class_names"])
    if given.ndim > 1 or given.dtype.kind not in "UO":
        raise DataError(f"class_names is a {given.dtype} array of shape {given.shape}",
                        expected="a 1-D array of strings, one name per output", fix="numpy.array(['a', 'b', ...])")
    names = tuple(str(name) for name in np.atleast_1d(given))
    what = {TaskKind.BINARY: "(negative, positive)", TaskKind.ANOMALY: "(normal, anomalous)",
            TaskKind.REGRESSION: "one per output"}.get(kind, "one per model output")
    if len(names) != len(defaults) or len(set(names)) != len(names) or not all(name.strip() for name in names):
        raise DataError(
            f"class_names is {list(names)} for a {kind.value} model with {width} output column(s)",
            expected=f"{len(defaults)} distinct, non-empty names {what}",
            fix=f"fix class_names in the .npz (or leave it out for {list(defaults)})",
        )
    return names


def output_units(kind: TaskKind, contents: dict[str, np.ndarray], names: tuple[str, ...]) -> tuple[str, ...]:
    """Regression: one unit per output from ``output_units`` (required); other kinds have none."""
    if kind is not TaskKind.REGRESSION:
        if "output_units" in contents:
            raise DataError(f"the .npz gives output_units for a {kind.value} model",
                            expected="output_units only for a regression model",
                            fix="drop output_units, or name the task (--task regression) if the model predicts values")
        return ()
    if "output_units" not in contents:
        raise DataError(f"the .npz has no output_units for a regression model with outputs {list(names)}",
                        expected=f"output_units: one unit per output ({len(names)}), e.g. 'mmHg'; '1' when unitless",
                        fix=f"numpy.savez(..., output_units=numpy.array({['mmHg'] * len(names)}))")
    units = tuple(str(unit) for unit in np.atleast_1d(contents["output_units"]))
    if len(units) != len(names) or not all(unit.strip() for unit in units):
        raise DataError(f"output_units is {list(units)} for the outputs {list(names)}",
                        expected=f"{len(names)} non-empty units, one per output ('1' when unitless)",
                        fix="fix output_units in the .npz")
    return units


def sample_rate(contents: dict[str, np.ndarray]) -> float | None:
    if "sample_rate_hz" not in contents:
        return None
    value = np.asarray(contents["sample_rate_hz"])
    if value.size != 1 or value.dtype.kind not in "iuf" or not np.isfinite(value).all() or value <= 0:
        raise DataError(f"sample_rate_hz is {value.tolist()!r}", expected="one positive number in Hz",
                        fix="numpy.savez(..., sample_rate_hz=360.0)")
    return float(value.reshape(()))


def test_leads(contents: dict[str, np.ndarray]) -> tuple[str, ...]:
    """The standard names of ``test_leads`` ('lead II' → II), in first-seen order; () when the key is absent. A value
    that is no lead name is refused by its position, never shown (a user's array may hold anything)."""
    if "test_leads" not in contents:
        return ()
    values = np.atleast_1d(np.asarray(contents["test_leads"]))
    names = [recorded_channel(value) if isinstance(value, str) else None for value in values.tolist()]
    unknown = [index for index, name in enumerate(names) if name is None]
    if values.ndim != 1 or not names or unknown:
        raise DataError(
            f"test_leads has {values.size} value(s)" + (f"; entries {unknown[:5]} are no standard lead name"
                                                       if unknown else ""),
            expected="one or more lead or electrode names, e.g. MLII, II, V5 or Fp1-F7 (runtime.leads)",
            fix="numpy.savez(..., test_leads=numpy.array(['MLII'])) with the lead of the test recordings",
        )
    return tuple(dict.fromkeys(names))


def _labels(contents: dict[str, np.ndarray], key: str, kind: TaskKind, rows: int, width: int) -> np.ndarray:
    labels = np.asarray(contents[key])
    if kind in (TaskKind.BINARY, TaskKind.ANOMALY) and labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    check_labels(key, labels, rows, kind, width, npz=True)
    if kind is TaskKind.REGRESSION:
        return labels.astype(np.float64)
    labels = labels.astype(np.int64)
    classes = 2 if kind is TaskKind.BINARY else width
    if key == "test_labels" and kind in (TaskKind.MULTICLASS, TaskKind.BINARY):
        absent = sorted(set(range(classes)) - set(np.unique(labels).tolist()))
        if absent:  # the gate would pass a class whose sensitivity it never measured
            raise DataError(f"test_labels hold no sample of class {absent[0]}"
                            + (f" (nor of {absent[1:]})" if len(absent) > 1 else ""),
                            expected="every class in the test split: a class the gate never saw is a claim nobody "
                            "validated", fix="add test samples of that class, or train a model without it")
    return labels


def user_splits(contents: dict[str, np.ndarray], signature: ModelSignature, kind: TaskKind,
                names: tuple[str, ...], units: tuple[str, ...], source: str) -> DataSplits:
    """The user's arrays as ``DataSplits`` of ``kind`` (train empty: nothing is trained), every mismatch a
    ``DataError`` naming the key."""
    inputs = {split: gather_inputs(contents, split, signature) for split in INPUT_SPLITS}
    width = signature.output_width

    def labelled(split: str, required: bool) -> np.ndarray | None:
        key = f"{split}_labels"
        if key not in contents:
            if required:
                raise DataError(f"the .npz has no {key} for a {kind.value} model",
                                expected=f"{key}: {_LABEL_TEXT[kind]}, one per {split} input",
                                fix=f"add {key} to the .npz")
            return None
        if inputs[split] is None:
            raise DataError(f"the .npz has {key} but no {split} inputs",
                            expected=f"{', '.join(_input_keys(split, signature))} beside {key}",
                            fix=f"add the {split} inputs, or drop {key}")
        return _labels(contents, key, kind, input_rows(inputs[split]), width)

    test_labels = labelled("test", kind is not TaskKind.ANOMALY)
    validation_labels = labelled("validation", inputs["validation"] is not None and kind is not TaskKind.ANOMALY)
    calibration_labels = labelled("calibration", False)
    empty = _empty(signature)
    provenance = {"synthetic": None, "source": f"user-supplied {source}", "licence": "user's own"}
    sources = sources_provenance(contents, kind, test_labels, names, input_rows(inputs["test"]))
    if sources is not None:
        provenance[PROVENANCE_KEY] = sources
    groups = opaque_test_groups(contents, input_rows(inputs["test"]))
    return DataSplits(
        train=Split(empty),
        validation=Split(inputs["validation"], validation_labels) if inputs["validation"] is not None
        else Split(empty),
        calibration=Split(inputs["calibration"], calibration_labels),
        test=Split(inputs["test"], test_labels, groups),
        class_names=names,
        provenance=provenance,
        task=kind,
        units=units,
        normal=Split(inputs["normal"]) if inputs["normal"] is not None else None,
        group_unit="recording or subject (test_sources)" if groups is not None else "",
    )


_LABEL_TEXT = {
    TaskKind.MULTICLASS: "integer class indices 0..k-1",
    TaskKind.BINARY: "0/1 integers (1 = positive)",
    TaskKind.MULTILABEL: "0/1 integers, one column per label",
    TaskKind.REGRESSION: "float targets, one column per output",
    TaskKind.ANOMALY: "0/1 integers (1 = anomalous)",
}


def _empty(signature: ModelSignature) -> SplitInputs:
    arrays = {name: np.zeros((0, *shape), np.float32)
              for name, shape in zip(signature.input_names, signature.input_shapes, strict=True)}
    return arrays if signature.several_inputs else next(iter(arrays.values()))


def detection_labels(contents: dict[str, np.ndarray]) -> np.ndarray | None:
    """The labels task detection reads: the test labels, else the validation or calibration labels."""
    return next((contents[key] for key in LABEL_KEYS if key in contents), None)
