"""Run a build's declared stages in order, reusing every cached artefact, and publish the bundle.

A build is a plan: a sequence of ``Step``s, each a stage name and how that stage runs on the
artefacts of the steps before it. Every stage module exposes ``run_<stage>_stage(config, parent
artefact(s), context) -> (artefact, reused)``. A scenario's plan trains its model; a user's plan
imports theirs in ``train``'s place; the rest is shared. ``run_plan`` stops after any stage
(``until``) so the CLI's ``train``/``export``/``quantize``/``evaluate`` commands share one path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from pipeline.build.artifacts import Artifact
from pipeline.build.context import StageContext
from pipeline.build.device_manifest import TestSources
from pipeline.build.publish import publish
from pipeline.build.signing import SigningKey
from pipeline.build.stages.bundle import (
    BUNDLE_FOLDER,
    BundleInputs,
    BundleRequest,
    judge_test_evidence,
    run_bundle_stage,
)
from pipeline.build.stages.data import DataRequest, run_data_stage
from pipeline.build.stages.evaluate import run_evaluate_stage
from pipeline.build.stages.export import run_export_stage
from pipeline.build.stages.import_model import ImportRequest, read_import, run_import_data_stage, run_import_stage
from pipeline.build.stages.train import TrainRequest, run_train_stage
from pipeline.build.stages.validate import ValidateRequest, run_validate_stage
from pipeline.build.stages.variants import run_variants_stage
from pipeline.build.user_sources import user_test_sources
from pipeline.clinical.evidence import refuse_unvalidated
from pipeline.config import BuildConfig
from pipeline.scenarios.base import Scenario

logger = logging.getLogger(__name__)


class StageName(StrEnum):
    """Every stage, in build order. ``import`` (a user's own model) takes ``train``'s place; ``validate`` runs only
    for scenarios with held-out recordings."""

    DATA = "data"
    TRAIN = "train"
    IMPORT = "import"
    EXPORT = "export"
    VARIANTS = "variants"
    EVALUATE = "evaluate"
    VALIDATE = "validate"
    BUNDLE = "bundle"


_ORDER = list(StageName)


def _position(stage: StageName) -> int:
    """Where ``stage`` stands in a build; ``import`` stands where ``train`` does."""
    return _ORDER.index(StageName.TRAIN if stage is StageName.IMPORT else stage)


@dataclass
class BuildOutcome:
    """Artefacts produced or reused, in stage order, and where the bundle was published."""

    artifacts: dict[str, Artifact] = field(default_factory=dict)
    reused: dict[str, bool] = field(default_factory=dict)
    bundle_directory: Path | None = None

    def record(self, stage: StageName, result: tuple[Artifact, bool]) -> Artifact:
        self.artifacts[stage.value], self.reused[stage.value] = result
        return result[0]

    def artifact(self, stage: StageName) -> Artifact:
        """What ``stage`` produced (or reused) in this build."""
        return self.artifacts[stage.value]

    @property
    def model(self) -> Artifact:
        """The Keras model the later stages start from: the trained one, or the user's import."""
        return self.artifacts.get(StageName.TRAIN.value) or self.artifact(StageName.IMPORT)

    @property
    def bundle_manifest(self) -> dict | None:
        bundle = self.artifacts.get(StageName.BUNDLE.value)
        return bundle.metrics if bundle else None


@dataclass(frozen=True)
class Step:
    """One stage of a plan: its name and how it runs on the artefacts of the steps before it."""

    stage: StageName
    run: Callable[[BuildOutcome, StageContext], tuple[Artifact, bool]]


def scenario_plan(scenario: Scenario, config: BuildConfig) -> tuple[Step, ...]:
    """data → train → the shared stages (with ``validate`` when the scenario has held-out recordings)."""
    data, train = DataRequest.for_build(scenario, config), TrainRequest.for_build(scenario, config)
    bundle = BundleRequest(scenario.name, scenario.description, scenario.device_contract(config.data), config.bundle)
    validate = None
    if scenario.recording_source(config.data) is not None:
        validate = ValidateRequest(scenario, config.data, bundle, config.validate)

    def trained(built: BuildOutcome, context: StageContext) -> tuple[Artifact, bool]:
        # the evidence rule needs only the data: a build that cannot ship stops before training, not after it
        evidence = judge_test_evidence(bundle, built.artifact(StageName.DATA), scenario.test_sources)
        refuse_unvalidated(evidence, f"the bundle for {scenario.name}")
        return run_train_stage(train, built.artifact(StageName.DATA), context)

    return (
        Step(StageName.DATA, lambda built, context: run_data_stage(data, context)),
        Step(StageName.TRAIN, trained),
        *_shared_steps(config, bundle, validate, scenario.test_sources),
    )


def custom_plan(source: ImportRequest, config: BuildConfig) -> tuple[Step, ...]:
    """data → import → the shared stages, for a user's ``.keras`` + ``.npz`` (no training)."""
    bundle = BundleRequest(source.name, f"user model {source.model_path.name}", source.contract, config.bundle)

    def imported(built: BuildOutcome, context: StageContext) -> tuple[Artifact, bool]:
        # as for a scenario: a build the evidence rule refuses stops here, not after the export and variants
        evidence = judge_test_evidence(bundle, built.artifact(StageName.DATA), user_test_sources)
        refuse_unvalidated(evidence, f"the bundle {source.name}")
        return run_import_stage(source, built.artifact(StageName.DATA), context)

    return (
        Step(StageName.DATA, lambda built, context: run_import_data_stage(source, context)),
        Step(StageName.IMPORT, imported),
        *_shared_steps(config, bundle, test_sources=user_test_sources),
    )


def _shared_steps(config: BuildConfig, bundle: BundleRequest, validate: ValidateRequest | None = None,
                  test_sources: TestSources | None = None) -> tuple[Step, ...]:
    """export → variants → evaluate → [validate] → bundle: every build's stages once it has data and a Keras model
    (``test_sources``: where the build's test examples come from, for the evidence rule)."""
    data, export, variants, evaluate = StageName.DATA, StageName.EXPORT, StageName.VARIANTS, StageName.EVALUATE

    def lineage(built: BuildOutcome) -> BundleInputs:
        return BundleInputs(data=built.artifact(data), model=built.model, export=built.artifact(export),
                            variants=built.artifact(variants), evaluate=built.artifact(evaluate),
                            validate=built.artifacts.get(StageName.VALIDATE.value), test_sources=test_sources)

    recordings = () if validate is None else (
        Step(StageName.VALIDATE, lambda built, context: run_validate_stage(validate, lineage(built), context)),)
    return (
        Step(export, lambda built, context: run_export_stage(
            config.export, built.model, built.artifact(data), context)),
        # The gate rides along: int8 tuning applies the task's gate on held-out data.
        Step(variants, lambda built, context: run_variants_stage(
            config.variants, built.artifact(export), built.artifact(data), context, config.evaluate)),
        Step(evaluate, lambda built, context: run_evaluate_stage(
            config.evaluate, built.artifact(variants), built.artifact(data), context)),
        *recordings,
        Step(StageName.BUNDLE, lambda built, context: run_bundle_stage(bundle, lineage(built), context)),
    )


def run_plan(plan: Sequence[Step], context: StageContext, until: StageName = StageName.BUNDLE) -> BuildOutcome:
    """Run ``plan``'s steps in order, recording each artefact, and stop after ``until``."""
    outcome = BuildOutcome()
    for step in plan:
        outcome.record(step.stage, step.run(outcome, context))
        if _position(step.stage) >= _position(until):
            break
    return outcome


def publish_bundle(bundle: Artifact, destination: Path, signing_key: SigningKey | None = None) -> Path:
    """Publish the bundle stage's folder at ``destination``: stamped with its ``bundle_version``, signed with
    ``signing_key`` (unsigned without one), and swapped in as a link in one rename, so a complete bundle is
    there at every moment (``pipeline/build/publish.py``). The cached artefact itself stays unsigned."""
    return publish(bundle.path(BUNDLE_FOLDER), Path(destination), signing_key)


def build_scenario(
    scenario: Scenario,
    config: BuildConfig,
    context: StageContext,
    bundles_root: Path | None = None,
    until: StageName = StageName.BUNDLE,
    signing_key: SigningKey | None = None,
    name: str | None = None,
) -> BuildOutcome:
    """Every stage for a registered scenario, up to ``until``; the bundle published signed with ``signing_key`` at
    ``bundles_root / name`` (default: the scenario's name; another name publishes a second build of a scenario, say
    with another seed, beside the first)."""
    outcome = run_plan(scenario_plan(scenario, config), context, until)
    return _publish(outcome, name or scenario.name, bundles_root, signing_key)


def build_custom(
    model_path: Path,
    data_path: Path,
    name: str,
    config: BuildConfig,
    context: StageContext,
    bundles_root: Path | None = None,
    until: StageName = StageName.BUNDLE,
    signing_key: SigningKey | None = None,
    task: str | None = None,
) -> BuildOutcome:
    """The same stages for a user's ``.keras`` + ``.npz``, checked before any stage runs; ``task``: the kind
    named with ``--task`` (None: detected from the model and its labels)."""
    source = read_import(model_path, data_path, name, task, config.evaluate.decision)
    outcome = run_plan(custom_plan(source, config), context, until)
    return _publish(outcome, name, bundles_root, signing_key)


def _publish(outcome: BuildOutcome, name: str, bundles_root: Path | None,
             signing_key: SigningKey | None) -> BuildOutcome:
    bundle = outcome.artifacts.get(StageName.BUNDLE.value)
    if bundle is not None and bundles_root is not None:
        outcome.bundle_directory = publish_bundle(bundle, Path(bundles_root) / name, signing_key)
        logger.info("bundle for %s published at %s", name, outcome.bundle_directory)
    return outcome
