"""Stage ``train``: fit the scenario's Keras model and save it with its history."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.build.artifacts import Artifact, StageResult, run_stage
from pipeline.build.context import StageContext
from pipeline.build.stages.data import load_data
from pipeline.config import BuildConfig
from pipeline.scenarios.base import Scenario
from pipeline.training.fit import seed_everything, train_model

MODEL_FILE = "model.keras"
HISTORY_FILE = "history.json"


def run_train_stage(
    scenario: Scenario, config: BuildConfig, data: Artifact, context: StageContext
) -> tuple[Artifact, bool]:
    def produce(work: Path) -> StageResult:
        splits = load_data(data)
        seed_everything(config.seed)
        model = scenario.build_model(config.model, splits.train.inputs)
        summary = train_model(
            model,
            splits,
            config.train,
            config.seed,
            lambda epoch, total, logs: context.progress("train", epoch, total),
        )
        model.save(work / MODEL_FILE)
        (work / HISTORY_FILE).write_text(json.dumps(summary["history"], indent=2))
        summary.pop("history")
        summary["parameters"] = int(model.count_params())
        return StageResult(summary)

    stage_config = {"train": config.train, "model": config.model, "seed": config.seed}
    return run_stage("train", stage_config, data, context.root, produce)
