"""Stage ``data``: make the scenario's seed-fixed splits once and keep them as an artefact."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.build.artifacts import Artifact, StageResult, run_stage
from pipeline.build.context import StageContext
from pipeline.config import BuildConfig
from pipeline.scenarios.base import Scenario
from pipeline.splits import SPLIT_NAMES, DataSplits, load_splits, resampling_summary, save_splits, validate_split

SPLITS_FILE = "splits.npz"


def describe_splits(splits: DataSplits, seed: int) -> dict:
    """Sizes, class balance, what the labels mean and provenance: what manifests say about the data."""
    sizes = {name: len(splits.split(name)) for name in SPLIT_NAMES}
    if splits.normal is not None:
        sizes["normal"] = len(splits.normal)
    return {
        "seed": seed,
        "task": splits.task.value,
        "class_names": list(splits.class_names),
        "units": list(splits.units),
        "sizes": sizes,
        "class_balance": splits.class_balance(),
        # copied into the manifest with the provenance: how the test figures' intervals were resampled
        "provenance": {**splits.provenance, "test_resampling": resampling_summary(splits)},
    }


@dataclass(frozen=True)
class DataRequest:
    """What the ``data`` stage makes its splits from (the scenario's name and version, the data
    config and the seed are its cache key)."""

    scenario: Scenario
    data: object  # the scenario's own frozen data-config dataclass
    seed: int  # fixes the splits

    @classmethod
    def for_build(cls, scenario: Scenario, config: BuildConfig) -> DataRequest:
        return cls(scenario, config.data, config.seed)


def run_data_stage(request: DataRequest, context: StageContext) -> tuple[Artifact, bool]:
    """The scenario's seed-fixed splits, validated against its device input (the first stage: no parent)."""
    scenario = request.scenario
    contract = scenario.device_contract(request.data)
    shapes = ({spec.name: spec.sample_shape for spec in contract.inputs} if len(contract.inputs) > 1
              else contract.inputs[0].sample_shape)

    def produce(work: Path) -> StageResult:
        splits = scenario.make_data(request.data, request.seed,
                                    lambda done, total: context.progress("data", done, total))
        for name in SPLIT_NAMES:
            validate_split(name, splits.split(name), shapes, contract.output.columns, splits.task)
        save_splits(splits, work / SPLITS_FILE)
        return StageResult(describe_splits(splits, request.seed))

    stage_config = {
        "scenario": scenario.name,
        "scenario_version": scenario.version,
        "data": request.data,
        "seed": request.seed,
    }
    return run_stage("data", stage_config, None, context.root, produce)


def load_data(artifact: Artifact) -> DataSplits:
    """The splits a ``data`` (or ``import-data``) artefact holds."""
    return load_splits(artifact.path(SPLITS_FILE), artifact.metrics.get("provenance", {}))
