"""Stage ``train``: fit the scenario's Keras model and save it with its history."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from exporters.heads import HeadKind
from pipeline.build.artifacts import Artifact, StageResult, run_stage
from pipeline.build.context import StageContext
from pipeline.build.machine import training_machine
from pipeline.build.stages.data import load_data
from pipeline.config import BuildConfig, TrainConfig
from pipeline.errors import StageError
from pipeline.scenarios.base import Scenario
from pipeline.training.fit import seed_everything, train_model
from runtime.contract import TaskKind

MODEL_FILE = "model.keras"
HISTORY_FILE = "history.json"


def scenario_task(kind: TaskKind) -> dict:
    """What a binary or anomaly scenario's trained model is (the export reads it from the train artefact); a
    multiclass scenario records none (``import_model.SCENARIO_TASK``: a softmax classifier)."""
    if kind is TaskKind.BINARY:
        return {"kind": kind.value, "logits": False, "head": None, "reason": "a scenario's sigmoid classifier",
                "output_activation": "sigmoid", "output_width": 1}
    if kind is TaskKind.ANOMALY:  # the export appends the reconstruction error: the device gets one score
        return {"kind": kind.value, "logits": False, "head": HeadKind.RECONSTRUCTION_ERROR.value,
                "reason": "a scenario's autoencoder: the device gets its reconstruction error per sample",
                "output_activation": "linear", "output_width": None}
    raise StageError(f"a scenario of task kind {kind.value}", expected="multiclass, binary or anomaly",
                     fix="train other kinds outside edgemed and build them with --model/--data")


@dataclass(frozen=True)
class TrainRequest:
    """What the ``train`` stage fits (all but the scenario, which builds the model, is its cache key)."""

    scenario: Scenario
    model: object  # the scenario's own frozen model-architecture dataclass
    train: TrainConfig
    seed: int  # fixes weight initialisation and shuffling

    @classmethod
    def for_build(cls, scenario: Scenario, config: BuildConfig) -> TrainRequest:
        return cls(scenario, config.model, config.train, config.seed)


def run_train_stage(request: TrainRequest, data: Artifact, context: StageContext) -> tuple[Artifact, bool]:
    """The scenario's Keras model trained on ``data``'s training split, with its history."""

    def produce(work: Path) -> StageResult:
        splits = load_data(data)
        seed_everything(request.seed)
        model = request.scenario.build_model(request.model, splits.train.inputs)
        summary = train_model(
            model,
            splits,
            request.train,
            request.seed,
            lambda epoch, total, logs: context.progress("train", epoch, total),
        )
        model.save(work / MODEL_FILE)
        (work / HISTORY_FILE).write_text(json.dumps(summary["history"], indent=2))
        summary.pop("history")
        summary["parameters"] = int(model.count_params())
        summary["machine"] = training_machine()  # the report says where the model (and its figures) came from
        if request.scenario.task is not TaskKind.MULTICLASS:  # the export reads the kind from here
            summary["task"] = scenario_task(request.scenario.task)
        return StageResult(summary)

    stage_config = {"train": request.train, "model": request.model, "seed": request.seed,
                    "task": request.scenario.task}
    return run_stage("train", stage_config, data, context.root, produce)
