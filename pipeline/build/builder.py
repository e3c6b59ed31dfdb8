"""Run the stages in order, reusing every cached artefact, and publish the bundle.

``build_scenario`` and ``build_custom`` stop after any stage (``until``) so the
CLI's ``train``/``export``/``quantize``/``evaluate`` commands share one path.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from pipeline.build.artifacts import Artifact
from pipeline.build.context import StageContext
from pipeline.build.stages.bundle import BUNDLE_FOLDER, BundleInputs, BundleRequest, run_bundle_stage
from pipeline.build.stages.data import run_data_stage
from pipeline.build.stages.evaluate import run_evaluate_stage
from pipeline.build.stages.export import run_export_stage
from pipeline.build.stages.import_model import run_import_stages
from pipeline.build.stages.train import run_train_stage
from pipeline.build.stages.variants import run_variants_stage
from pipeline.config import BuildConfig
from pipeline.scenarios.base import Scenario

logger = logging.getLogger(__name__)


class StageName(StrEnum):
    DATA = "data"
    TRAIN = "train"
    EXPORT = "export"
    VARIANTS = "variants"
    EVALUATE = "evaluate"
    BUNDLE = "bundle"


_ORDER = list(StageName)


@dataclass
class BuildOutcome:
    """Artefacts produced or reused, in stage order, and where the bundle was published."""

    artifacts: dict[str, Artifact] = field(default_factory=dict)
    reused: dict[str, bool] = field(default_factory=dict)
    bundle_directory: Path | None = None

    def record(self, stage: StageName, result: tuple[Artifact, bool]) -> Artifact:
        self.artifacts[stage.value], self.reused[stage.value] = result
        return result[0]

    @property
    def bundle_manifest(self) -> dict | None:
        bundle = self.artifacts.get(StageName.BUNDLE.value)
        return bundle.metrics if bundle else None


def publish_bundle(bundle: Artifact, destination: Path) -> Path:
    """Copy the bundle folder to ``destination``, replacing any previous one in one rename."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    retired = destination.parent / f".{destination.name}.retired"
    try:
        shutil.copytree(bundle.path(BUNDLE_FOLDER), staging, dirs_exist_ok=True)
        shutil.rmtree(retired, ignore_errors=True)
        if destination.exists():
            os.replace(destination, retired)
        os.replace(staging, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(retired, ignore_errors=True)
    return destination


def _downstream(
    outcome: BuildOutcome,
    config: BuildConfig,
    request: BundleRequest,
    until: StageName,
    context: StageContext,
) -> BuildOutcome:
    data, model = outcome.artifacts[StageName.DATA.value], outcome.artifacts[StageName.TRAIN.value]
    export = outcome.record(StageName.EXPORT, run_export_stage(config.export, model, data, context))
    if _ORDER.index(until) <= _ORDER.index(StageName.EXPORT):
        return outcome
    variants = outcome.record(StageName.VARIANTS, run_variants_stage(config.variants, export, data, context,
                                                                         config.evaluate.gate))
    if until is StageName.VARIANTS:
        return outcome
    evaluate = outcome.record(StageName.EVALUATE, run_evaluate_stage(config.evaluate, variants, data, context))
    if until is StageName.EVALUATE:
        return outcome
    inputs = BundleInputs(data=data, model=model, export=export, variants=variants, evaluate=evaluate)
    outcome.record(StageName.BUNDLE, run_bundle_stage(request, inputs, context))
    return outcome


def build_scenario(
    scenario: Scenario,
    config: BuildConfig,
    context: StageContext,
    bundles_root: Path | None = None,
    until: StageName = StageName.BUNDLE,
) -> BuildOutcome:
    """Every stage for a registered scenario, up to ``until``."""
    outcome = BuildOutcome()
    data = outcome.record(StageName.DATA, run_data_stage(scenario, config, context))
    if until is StageName.DATA:
        return outcome
    outcome.record(StageName.TRAIN, run_train_stage(scenario, config, data, context))
    if until is StageName.TRAIN:
        return outcome
    request = BundleRequest(scenario.name, scenario.description, scenario.input_spec(config.data), config.bundle)
    _downstream(outcome, config, request, until, context)
    return _publish(outcome, scenario.name, bundles_root)


def build_custom(
    model_path: Path,
    data_path: Path,
    name: str,
    config: BuildConfig,
    context: StageContext,
    bundles_root: Path | None = None,
    until: StageName = StageName.BUNDLE,
) -> BuildOutcome:
    """The same stages for a user's ``.keras`` + ``.npz`` (no training: the import replaces it)."""
    outcome = BuildOutcome()
    data, model, spec, reused = run_import_stages(model_path, data_path, name, context)
    outcome.artifacts[StageName.DATA.value], outcome.reused[StageName.DATA.value] = data, reused
    outcome.artifacts[StageName.TRAIN.value], outcome.reused[StageName.TRAIN.value] = model, reused
    if until in (StageName.DATA, StageName.TRAIN):
        return outcome
    request = BundleRequest(name, f"user model {Path(model_path).name}", spec, config.bundle)
    _downstream(outcome, config, request, until, context)
    return _publish(outcome, name, bundles_root)


def _publish(outcome: BuildOutcome, name: str, bundles_root: Path | None) -> BuildOutcome:
    bundle = outcome.artifacts.get(StageName.BUNDLE.value)
    if bundle is not None and bundles_root is not None:
        outcome.bundle_directory = publish_bundle(bundle, Path(bundles_root) / name)
        logger.info("bundle for %s published at %s", name, outcome.bundle_directory)
    return outcome
