"""A user's own model: ``edgemed build --model my.keras --data my.npz``, no Python needed.

The ``.npz`` holds float32 arrays shaped like the model input (batch first) and
integer labels:

- ``calibration_inputs`` — int8 static calibration only (required)
- ``test_inputs`` and ``test_labels`` — parity, clinical metrics, reference profile (required)
- ``class_names`` — optional string array, one per model output (default ``class_0`` …)
- ``sample_rate_hz`` — scalar in Hz, required when the input is a waveform (not one row of features)

The model must end in a softmax over at least two classes (outputs are probabilities per class): the
bundle's output is a multiclass task decided by argmax.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.build.artifacts import Artifact, StageResult, run_stage
from pipeline.build.context import StageContext
from pipeline.build.stages.data import SPLITS_FILE, describe_splits
from pipeline.build.stages.train import MODEL_FILE
from pipeline.errors import DataError
from pipeline.scenarios.base import DeviceContract, multiclass_output
from pipeline.splits import SPLIT_NAMES, DataSplits, Split, save_splits, validate_split
from pipeline.training.keras_files import load_keras_model
from runtime.contract import InputSpec, ManifestError, Preprocessing
from runtime.features import FeatureKind
from runtime.hashing import sha256_file

REQUIRED_KEYS = ("calibration_inputs", "test_inputs", "test_labels")


@dataclass(frozen=True)
class CustomData:
    """What the user's .npz provides, checked."""

    calibration: np.ndarray
    test_inputs: np.ndarray
    test_labels: np.ndarray
    class_names: tuple[str, ...] | None
    sample_rate_hz: float | None


def read_user_data(path: Path) -> CustomData:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {path} does not exist", expected="an .npz file", fix="check the path")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            contents = {key: arrays[key] for key in arrays.files}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise DataError(
            f"{path} is not a readable .npz file: {error}",
            expected="a file written by numpy.savez with the documented keys",
            fix="numpy.savez('data.npz', calibration_inputs=..., test_inputs=..., test_labels=...)",
        ) from error
    missing = [key for key in REQUIRED_KEYS if key not in contents]
    if missing:
        raise DataError(
            f"{path} lacks the arrays {missing} (it has {sorted(contents)})",
            expected=f"the keys {list(REQUIRED_KEYS)}; optional: class_names, sample_rate_hz",
            fix="add the missing arrays with numpy.savez",
        )
    names = contents.get("class_names")
    rate = contents.get("sample_rate_hz")
    return CustomData(
        calibration=contents["calibration_inputs"],
        test_inputs=contents["test_inputs"],
        test_labels=contents["test_labels"].astype(np.int64)
        if contents["test_labels"].dtype.kind in "iu"
        else contents["test_labels"],
        class_names=tuple(str(name) for name in names) if names is not None else None,
        sample_rate_hz=float(rate) if rate is not None else None,
    )


def model_signature(model_path: Path) -> tuple[tuple[int, ...], int]:
    """(per-sample input shape, number of outputs) of a ``.keras`` model."""
    model = load_keras_model(model_path)
    input_shape = tuple(int(dimension) for dimension in model.input_shape[1:])
    return input_shape, int(model.output_shape[-1])


def custom_contract(
    input_shape: tuple[int, ...], class_names: tuple[str, ...], sample_rate_hz: float | None
) -> DeviceContract:
    """The device contract of a user's softmax model: one input, a multiclass output decided by argmax."""
    tabular = len(input_shape) == 1
    if not tabular and sample_rate_hz is None:
        raise DataError(
            f"the model takes waveform windows of shape {input_shape} but the .npz has no sample_rate_hz",
            expected="sample_rate_hz (a scalar in Hz) for a model whose input is not one row of features",
            fix="numpy.savez(..., sample_rate_hz=360.0) with the rate the windows were sampled at",
        )
    try:
        spec = InputSpec(
            "input",
            (None, *input_shape),
            FeatureKind.TABULAR if tabular else FeatureKind.WAVEFORM,
            sample_rate_hz=None if tabular else sample_rate_hz,
            feature_names=tuple(f"feature_{index}" for index in range(input_shape[0])) if tabular else (),
        )
        output = multiclass_output(class_names, "softmax probabilities over the labels, in label order")
    except ManifestError as error:
        raise DataError(
            f"the model and .npz do not make a valid device contract: {error.what}",
            expected=error.expected,
            fix="a softmax model over at least 2 classes, distinct class_names, and a positive sample_rate_hz "
            "for waveform inputs",
        ) from error
    return DeviceContract(
        inputs=(spec,),
        output=output,
        preprocessing=Preprocessing(
            in_graph="whatever the user's Keras model does in its layers",
            runtime="feed inputs exactly as in the .npz used to build this bundle",
        ),
    )


@dataclass(frozen=True)
class ImportRequest:
    """A user's ``.keras`` + ``.npz``, read and checked before any stage runs."""

    name: str  # the bundle's name
    model_path: Path
    data_path: Path
    splits: DataSplits  # calibration and test from the .npz; train and validation empty
    contract: DeviceContract


def read_import(model_path: Path, data_path: Path, name: str) -> ImportRequest:
    """Read the user's model signature and data, and check they fit together (``DataError`` if not)."""
    model_path, data_path = Path(model_path), Path(data_path)
    input_shape, outputs = model_signature(model_path)
    user = read_user_data(data_path)
    class_names = user.class_names or tuple(f"class_{index}" for index in range(outputs))
    if len(class_names) != outputs:
        raise DataError(
            f"{len(class_names)} class names for a model with {outputs} outputs",
            expected="one class name per model output",
            fix="fix class_names in the .npz",
        )
    empty = Split(np.zeros((0, *input_shape), np.float32), np.zeros(0, np.int64))
    dummy_labels = np.zeros(len(user.calibration), np.int64)
    splits = DataSplits(
        train=empty,
        validation=empty,
        calibration=Split(user.calibration, dummy_labels),
        test=Split(user.test_inputs, user.test_labels),
        class_names=class_names,
        provenance={"synthetic": None, "source": f"user-supplied {data_path.name}", "licence": "user's own"},
    )
    for split in SPLIT_NAMES:
        validate_split(split, splits.split(split), input_shape, outputs)
    contract = custom_contract(input_shape, class_names, user.sample_rate_hz)
    return ImportRequest(name, model_path, data_path, splits, contract)


def run_import_data_stage(request: ImportRequest, context: StageContext) -> tuple[Artifact, bool]:
    """The ``data`` stage for a user model: their arrays as splits (keyed by the .npz's sha256)."""

    def produce(work: Path) -> StageResult:
        save_splits(request.splits, work / SPLITS_FILE)
        return StageResult(describe_splits(request.splits, seed=0))

    stage_config = {
        "name": request.name,
        "data_sha256": sha256_file(request.data_path),
        "class_names": request.splits.class_names,
    }
    return run_stage("data", stage_config, None, context.root, produce)


def run_import_stage(request: ImportRequest, data: Artifact, context: StageContext) -> tuple[Artifact, bool]:
    """The ``import`` stage, in ``train``'s place: the user's ``.keras`` file, copied (keyed by its sha256)."""

    def produce(work: Path) -> StageResult:
        (work / MODEL_FILE).write_bytes(request.model_path.read_bytes())
        return StageResult({"source": request.model_path.name, "trained_by": "user"})

    stage_config = {"model_sha256": sha256_file(request.model_path)}
    return run_stage("import", stage_config, data, context.root, produce)
