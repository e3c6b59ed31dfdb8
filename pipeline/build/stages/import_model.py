"""A user's own model: ``edgemed build --model my.keras --data my.npz [--task KIND]``, no Python needed.

``read_import`` reads and checks everything before any stage runs (the ``.npz`` key scheme is in
``pipeline.build.user_data``): the model's inputs and its one output, what it predicts
(``exporters.task_detection.detect_task`` on the model and the labels, or the kind named with
``--task``), the labels against that kind, the device contract, and — for kinds decided by a
threshold — that the threshold rule can be met by the Keras model's own scores on the data it is
chosen on. Every problem is a ``UsageError`` (exit 2) and nothing is written.

The ``data`` stage then keeps the user's arrays as splits and the ``import`` stage, in ``train``'s
place, keeps the ``.keras`` file and records the detected task (kind, logits, the head the export
appends, why) for the stages after it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from exporters.errors import TaskDetectionError
from exporters.heads import HeadKind, head_reference
from exporters.task_detection import TaskDetection, detect_task
from pipeline.build.artifacts import Artifact, StageResult, run_stage
from pipeline.build.context import StageContext
from pipeline.build.stages.data import SPLITS_FILE, describe_splits
from pipeline.build.stages.train import MODEL_FILE
from pipeline.build.user_data import (
    LABEL_KEYS,
    ModelSignature,
    check_keys,
    detection_labels,
    label_names,
    model_signature,
    output_units,
    read_npz,
    sample_rate,
    test_leads,
    user_splits,
)
from pipeline.clinical.operating_points import choose_operating_threshold, choose_operating_thresholds
from pipeline.clinical.task_evaluation import DEFAULT_DECISION_CONFIG, DecisionConfig
from pipeline.errors import DataError, TaskKindError, ThresholdRuleError
from pipeline.scenarios.base import DEFAULT_OUTPUT_NAME, DeviceContract
from pipeline.splits import DataSplits, SplitInputs, labelled_split, normal_split, save_splits
from pipeline.training.keras_files import load_keras_model
from runtime.contract import (
    AnomalyRule,
    BinaryRule,
    InputSpec,
    ManifestError,
    MulticlassRule,
    MultilabelRule,
    OutputSpec,
    Preprocessing,
    RegressionRule,
    TaskKind,
)
from runtime.features import FeatureKind
from runtime.hashing import sha256_file

SINGLE_INPUT_NAME = "input"  # the graph input of a single-input export (exporters ExportConfig.input_name)
# A threshold the contract carries until the bundle stage writes the one the evaluate stage chose.
SET_BY_BUILD = "set by the build: chosen on held-out data by the evaluate stage"
# What a scenario's trained model is: a softmax classifier (train artefacts record no task).
SCENARIO_TASK = {"kind": TaskKind.MULTICLASS.value, "logits": False, "head": None,
                 "reason": "a scenario's softmax classifier", "output_activation": "softmax", "output_width": None}


def task_record(artifact: Artifact) -> dict:
    """The task a ``train``/``import`` (or later) artefact records: kind, logits, head, reason."""
    return artifact.metrics.get("task") or SCENARIO_TASK


def _placeholder_rule(kind: TaskKind, names: tuple[str, ...], units: tuple[str, ...], decision: DecisionConfig):
    return {
        TaskKind.MULTICLASS: lambda: MulticlassRule(None),
        TaskKind.BINARY: lambda: BinaryRule(0.5, SET_BY_BUILD),
        TaskKind.MULTILABEL: lambda: MultilabelRule((0.5,) * len(names), SET_BY_BUILD),
        TaskKind.REGRESSION: lambda: RegressionRule(units),
        TaskKind.ANOMALY: lambda: AnomalyRule(0.0, decision.false_alarm_rate, SET_BY_BUILD),
    }[kind]()


def _semantics(kind: TaskKind, names: tuple[str, ...], head: HeadKind | None) -> str:
    text = {
        TaskKind.MULTICLASS: "softmax probabilities over the labels, in label order",
        TaskKind.BINARY: f"the sigmoid probability of '{names[-1]}'",
        TaskKind.MULTILABEL: "one sigmoid probability per label, in label order",
        TaskKind.REGRESSION: "the predicted values, one per target, in their units",
        TaskKind.ANOMALY: "an anomaly score per sample (higher = more anomalous)",
    }[kind]
    if head is HeadKind.RECONSTRUCTION_ERROR:
        return text + ": the autoencoder's mean squared reconstruction error, computed in the graph"
    if head is not None:
        return text + f" (the model outputs logits; edgemed appended the {head.value} in the graph)"
    return text


def _input_specs(signature: ModelSignature, rate: float | None, leads: tuple[str, ...] = ()
                 ) -> tuple[InputSpec, ...]:
    if leads and all(len(shape) == 1 for shape in signature.input_shapes):
        raise DataError(f"the .npz names test_leads ({len(leads)}), but the model takes no waveform input",
                        expected="test_leads only for a model that takes signal windows",
                        fix="leave test_leads out of the .npz")
    specs = []
    for name, shape in zip(signature.input_names, signature.input_shapes, strict=True):
        tabular = len(shape) == 1
        if not tabular and rate is None:
            raise DataError(
                f"the model takes waveform windows of shape {shape} (input {name!r}) but the .npz has no "
                "sample_rate_hz",
                expected="sample_rate_hz (a scalar in Hz) for a model whose input is not one row of features",
                fix="numpy.savez(..., sample_rate_hz=360.0) with the rate the windows were sampled at",
            )
        specs.append(InputSpec(
            name if signature.several_inputs else SINGLE_INPUT_NAME,
            (None, *shape),
            FeatureKind.TABULAR if tabular else FeatureKind.WAVEFORM,
            sample_rate_hz=None if tabular else rate,
            feature_names=tuple(f"feature_{index}" for index in range(shape[0])) if tabular else (),
            leads=() if tabular else leads,
        ))
    return tuple(specs)


def custom_contract(signature: ModelSignature, splits: DataSplits, rate: float | None, detection: TaskDetection,
                    decision: DecisionConfig = DEFAULT_DECISION_CONFIG, leads: tuple[str, ...] = ()
                    ) -> DeviceContract:
    """The device contract of a user's model: one input spec per model input and the output of its kind.
    Thresholds of binary, multilabel and anomaly outputs are placeholders the bundle stage replaces."""
    kind, names = splits.task, splits.class_names
    try:
        inputs = _input_specs(signature, rate, leads)
        output = OutputSpec(
            names=(DEFAULT_OUTPUT_NAME,),
            task=kind,
            labels=names,
            decision=_placeholder_rule(kind, names, splits.units, decision),
            semantics=_semantics(kind, names, detection.head),
        )
    except ManifestError as error:
        raise DataError(
            f"the model and .npz do not make a valid device contract: {error.what}",
            expected=error.expected,
            fix="distinct class_names, units for every regression output, and a positive sample_rate_hz for "
            "waveform inputs",
        ) from error
    return DeviceContract(
        inputs=inputs,
        output=output,
        preprocessing=Preprocessing(
            in_graph="whatever the user's Keras model does in its layers"
            + (f", then the {detection.head.value} head edgemed appended" if detection.head else ""),
            runtime="feed inputs exactly as in the .npz used to build this bundle",
        ),
    )


@dataclass(frozen=True)
class ImportRequest:
    """A user's ``.keras`` + ``.npz``, read and checked before any stage runs."""

    name: str  # the bundle's name
    model_path: Path
    data_path: Path
    splits: DataSplits  # calibration, test (and validation, normal) from the .npz; train empty
    contract: DeviceContract
    detection: TaskDetection  # what the model predicts, and the head the export appends
    task: str | None = None  # the kind named with --task (None: detected)
    data_sha256: str = ""  # the .npz's sha256, hashed once: the data stage's key and the provenance text


def detect(model, contents: dict[str, np.ndarray], signature: ModelSignature, task: str | None) -> TaskDetection:
    """``detect_task`` on the model and the .npz's labels; its errors as ``TaskKindError`` (exit 2).

    When the labels contradict the model, the kind the model alone says is tried: labels that do not
    fit it raise the ``DataError`` that names their key (``test_labels has values outside 0..1``)."""
    try:
        return detect_task(model, detection_labels(contents), task)
    except TaskDetectionError as error:
        try:
            alone = TaskKind(detect_task(model, None, task).kind.value)
        except TaskDetectionError:
            alone = None
        if alone is not None:
            names = label_names(alone, contents, signature.output_width)
            user_splits(contents, signature, alone, names, (), "")
        key = next((key for key in LABEL_KEYS if key in contents), None)
        raise TaskKindError(error.what + (f" (labels read from {key})" if key and task is None else ""),
                            expected=error.expected, fix=error.fix) from error


def keras_scores(model, inputs: SplitInputs, head: HeadKind | None) -> np.ndarray:
    """The Keras model's outputs on ``inputs``, through ``head`` as the exported graph applies it."""
    feed = inputs
    if isinstance(inputs, Mapping) and not isinstance(model.input, Mapping):
        feed = [inputs[tensor.name] for tensor in model.inputs]
    outputs = np.asarray(model.predict(feed, batch_size=256, verbose=0), dtype=np.float32)
    return head_reference(head, outputs, inputs) if head is not None else outputs


def check_decision_data(model, splits: DataSplits, detection: TaskDetection, decision: DecisionConfig) -> None:
    """Prove the kind's threshold rule can be met on the data it is chosen on (``ThresholdRuleError``,
    naming the keys, if not): the number of normal samples for an anomaly rate; for binary and
    multilabel, the rule on the Keras model's own scores (fp32 matches them within the parity tolerance)."""
    kind = splits.task
    if kind is TaskKind.ANOMALY:
        where, split = normal_split(splits)
        needed = math.ceil(1.0 / decision.false_alarm_rate - 1e-9)
        if len(split) < needed:
            raise ThresholdRuleError(
                f"{len(split)} normal samples ({where}) cannot resolve the false-alarm rate "
                f"{decision.false_alarm_rate:g}: not even one alarm would be allowed",
                expected=f"at least ⌈1/rate⌉ = {needed} normal samples",
                fix=f"add normal_inputs with at least {needed} normal samples (or more calibration_inputs)",
            )
        return
    if kind not in (TaskKind.BINARY, TaskKind.MULTILABEL):
        return
    found = labelled_split(splits)
    if found is None:
        raise ThresholdRuleError(
            f"a {kind.value} model's thresholds are chosen on labelled held-out data, and the .npz has none",
            expected="validation_inputs + validation_labels, or calibration_labels",
            fix="add validation_inputs and validation_labels (never the test data) to the .npz",
        )
    name, split = found
    values = keras_scores(model, split.inputs, detection.head)
    try:
        if kind is TaskKind.BINARY:
            choose_operating_threshold(split.labels, values[:, 0], decision.rule(), label_name=splits.class_names[1])
        else:
            choose_operating_thresholds(split.labels, values, decision.rule(), splits.class_names)
    except ThresholdRuleError as error:
        raise ThresholdRuleError(f"{name}_labels: {error.what}", expected=error.expected, fix=error.fix) from error


def read_import(model_path: Path, data_path: Path, name: str, task: str | None = None,
                decision: DecisionConfig = DEFAULT_DECISION_CONFIG, model=None) -> ImportRequest:
    """Read the user's model (``model``: already loaded from ``model_path``) and data, and check they fit
    together (``UsageError`` subclasses if not)."""
    model_path, data_path = Path(model_path), Path(data_path)
    model = model if model is not None else load_keras_model(model_path)
    signature = model_signature(model)
    contents = read_npz(data_path)
    check_keys(contents, signature)
    detection = detect(model, contents, signature, task)
    kind = TaskKind(detection.kind.value)
    names = label_names(kind, contents, signature.output_width)
    units = output_units(kind, contents, names)
    # named by content, not by file name: the data stage is keyed by the file's sha256, so a renamed copy reuses it
    digest = sha256_file(data_path)
    splits = user_splits(contents, signature, kind, names, units, f".npz (sha256 {digest[:16]}…)")
    contract = custom_contract(signature, splits, sample_rate(contents), detection, decision, test_leads(contents))
    check_decision_data(model, splits, detection, decision)
    return ImportRequest(name, model_path, data_path, splits, contract, detection, task, digest)


def run_import_data_stage(request: ImportRequest, context: StageContext) -> tuple[Artifact, bool]:
    """The ``data`` stage for a user model: their arrays as splits (keyed by the .npz's sha256 and the kind)."""

    def produce(work: Path) -> StageResult:
        save_splits(request.splits, work / SPLITS_FILE)
        return StageResult(describe_splits(request.splits, seed=0))

    stage_config = {
        "name": request.name,
        "data_sha256": request.data_sha256 or sha256_file(request.data_path),
        "class_names": request.splits.class_names,
        "task": request.splits.task,
        "units": request.splits.units,
    }
    return run_stage("data", stage_config, None, context.root, produce)


def run_import_stage(request: ImportRequest, data: Artifact, context: StageContext) -> tuple[Artifact, bool]:
    """The ``import`` stage, in ``train``'s place: the user's ``.keras`` file, copied, and its detected task
    (keyed by the file's sha256 and the task named with --task)."""

    model_sha256 = sha256_file(request.model_path)

    def produce(work: Path) -> StageResult:
        (work / MODEL_FILE).write_bytes(request.model_path.read_bytes())
        return StageResult({"source": f"the user's .keras file (sha256 {model_sha256[:16]}…)", "trained_by": "user",
                            "task": request.detection.to_dict(), "task_named": request.task})

    stage_config = {"model_sha256": model_sha256, "task": request.task}
    return run_stage("import", stage_config, data, context.root, produce)
