"""``edgemed build | train | export | quantize | evaluate | bundle | scenarios``: scenarios or a user's
model through the build stages into device bundles.

Usage errors exit with status 2, failures with status 1; messages go to stderr.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import time
from pathlib import Path

import click

from exporters.keras_to_onnx import MAX_OPSET, MIN_OPSET, ExportConfig
from exporters.quantization import CalibrationMethod
from pipeline.build.builder import BuildOutcome, StageName, build_custom, build_scenario
from pipeline.build.bundle_report import summary_table
from pipeline.build.context import StageContext
from pipeline.cli.keys import load_sign_key, report_signing, sign_key_option
from pipeline.cli.logging_setup import configure_logging
from pipeline.cli.progress import ProgressBars
from pipeline.config import BuildConfig, Profile, VariantName
from pipeline.errors import UsageError
from pipeline.splits import data_kind
from runtime.contract import TaskKind
from runtime.errors import EdgemedError

_BUNDLE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # a published bundle's folder name


def _apply_overrides(config: BuildConfig, options: dict) -> BuildConfig:
    if options.get("seed") is not None:
        config = dataclasses.replace(config, seed=options["seed"])
    if options.get("epochs") is not None:
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, epochs=options["epochs"]))
    if options.get("opset") is not None:
        export = dataclasses.replace(config.export.export, opset=options["opset"])
        config = dataclasses.replace(config, export=dataclasses.replace(config.export, export=export))
    if options.get("calibration_method"):
        quantization = dataclasses.replace(
            config.variants.quantization, calibration_method=CalibrationMethod(options["calibration_method"])
        )
        config = dataclasses.replace(config, variants=dataclasses.replace(config.variants, quantization=quantization))
    if options.get("variant"):
        bundle = dataclasses.replace(config.bundle, required_variant=VariantName(options["variant"]))
        config = dataclasses.replace(config, bundle=bundle)
    if options.get("allow_unvalidated"):
        evidence = dataclasses.replace(config.bundle.evidence, enforced=False)
        config = dataclasses.replace(config, bundle=dataclasses.replace(config.bundle, evidence=evidence))
    return config


def data_note(outcome: BuildOutcome) -> str:
    """What the build's data are, from the data stage's provenance: ``SYNTHETIC data (every split, the test split
    included)`` (ecg-arrhythmia), ``real data`` (with the training splits' synthetic parts named, as ppg-quality's
    motion artefacts), or not recorded (a user's own data)."""
    data = outcome.artifacts.get("data")
    provenance = (data.metrics.get("provenance") or {}) if data is not None else {}
    kind = data_kind(provenance)
    if provenance.get("synthetic") is True:
        return f"{kind} (every split, the test split included)"
    if provenance.get("synthetic_training_data"):
        return f"{kind} in the test split; the training splits add SYNTHETIC data"
    return kind


def _report(name: str, outcome: BuildOutcome, seconds: float) -> None:
    reused = [stage for stage, flag in outcome.reused.items() if flag]
    click.echo(f"\n{name}: {len(outcome.artifacts)} stages in {seconds:.1f} s (reused: {', '.join(reused) or 'none'}); "
               f"{data_note(outcome)}")
    for stage, artifact in outcome.artifacts.items():
        click.echo(f"  {stage:<9} {artifact.id}  {artifact.directory}")
    manifest = outcome.bundle_manifest
    if manifest:
        click.echo(f"  bundle → {outcome.bundle_directory}")
        click.echo("\n" + summary_table(manifest["variants"], manifest["variant"]))
        click.echo(f"\nshipped: {manifest['variant']} — {manifest['reason']}")


def _run(until: StageName, scenarios: tuple[str, ...], options: dict) -> None:
    from pipeline.scenarios import default_scenario_names, get_scenario

    configure_logging(options["verbose"])
    context_root = Path(options["artifacts"])
    bundles = Path(options["bundles"])
    show = sys.stderr.isatty() or options["progress"]
    for folder, option in ((context_root, "--artifacts"), (bundles, "--bundles")):  # before any stage runs
        existing = folder.absolute()
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent  # the folder is made when the stage writes: nothing is created here
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise click.UsageError(f"{option} {folder} cannot be made: {existing} is "
                                   f"{'not a folder' if not existing.is_dir() else 'not writable'}; pass a folder "
                                   "that exists or can be created")
    try:
        signing_key = load_sign_key(options.get("sign_key"))
        if options.get("name") is not None and not _BUNDLE_NAME.fullmatch(options["name"]):
            raise click.UsageError(f"--name {options['name']!r} is not a folder name: use letters, digits, '.', '_' "
                                   "and '-', starting with a letter or digit (at most 100)")
        if options.get("task") and not options.get("model"):
            raise click.UsageError("--task names what a user's model predicts: use it with --model and --data")
        if options.get("model") or options.get("data"):
            if not (options.get("model") and options.get("data")):
                raise click.UsageError("--model and --data go together: give both, or neither")
            name = options.get("name") or Path(options["model"]).stem
            base = BuildConfig(scenario=name, data={}, model={})
            if Profile(options["profile"]) is Profile.TINY:
                from pipeline.config import shrink_for_tests

                base = shrink_for_tests(base)
            config = _apply_overrides(base, options)
            bars = ProgressBars(f"{name} ", show)
            started = time.perf_counter()
            outcome = build_custom(
                Path(options["model"]),
                Path(options["data"]),
                name,
                config,
                StageContext(context_root, bars),
                bundles,
                until,
                task=options.get("task"),
                signing_key=signing_key,
            )
            bars.close()
            _report(name, outcome, time.perf_counter() - started)
            report_signing(outcome.bundle_directory, signing_key)
            return
        published_name = options.get("name")
        if published_name is not None and len(scenarios) != 1:
            raise click.UsageError("--name publishes one scenario's bundle under another name: name one scenario")
        for name in scenarios or tuple(default_scenario_names()):
            scenario = get_scenario(name)
            config = _apply_overrides(scenario.build_config(Profile(options["profile"])), options)
            bars = ProgressBars(f"{name} ", show)
            started = time.perf_counter()
            outcome = build_scenario(scenario, config, StageContext(context_root, bars), bundles, until,
                                     signing_key=signing_key, name=published_name)
            bars.close()
            _report(name, outcome, time.perf_counter() - started)
            report_signing(outcome.bundle_directory, signing_key)
    except UsageError as error:
        raise click.UsageError(str(error)) from error
    except EdgemedError as error:
        raise click.ClickException(str(error)) from error


def _build_options(function):
    decorators = [
        click.argument("scenarios", nargs=-1),
        click.option(
            "--profile",
            type=click.Choice([p.value for p in Profile]),
            default=Profile.FULL.value,
            show_default=True,
            help="full: real bundles; tiny: seconds-long smoke build.",
        ),
        click.option("--seed", type=int, default=None, help="Seed for splits, initialisation and shuffling."),
        click.option("--epochs", type=click.IntRange(min=1), default=None, help="Maximum training epochs."),
        click.option(
            "--opset",
            type=click.IntRange(MIN_OPSET, MAX_OPSET),
            default=None,
            help=f"ONNX opset, {MIN_OPSET}–{MAX_OPSET} (default {ExportConfig.opset}).",
        ),
        click.option(
            "--calibration-method",
            type=click.Choice([method.value for method in CalibrationMethod]),
            default=None,
            help="int8 static calibration (default minmax).",
        ),
        click.option(
            "--variant",
            type=click.Choice([v.value for v in VariantName]),
            default=None,
            help="Ship exactly this variant; fails if it did not pass the clinical gate.",
        ),
        click.option(
            "--allow-unvalidated",
            is_flag=True,
            default=False,
            help="Build a bundle even when a class lacks the real test evidence the rule asks (30 real test examples "
                 "from 2 recordings or subjects not in training): for development only; the manifest and report say "
                 "it is not validated.",
        ),
        click.option(
            "--model",
            type=click.Path(dir_okay=False),
            default=None,
            help="Your own Keras 3 model (.keras) instead of a scenario.",
        ),
        click.option(
            "--data",
            type=click.Path(dir_okay=False),
            default=None,
            help="With --model: .npz with calibration_inputs, test_inputs, test_labels (see README: Your own model).",
        ),
        click.option(
            "--task",
            type=click.Choice([kind.value for kind in TaskKind]),
            default=None,
            help="With --model: what the model predicts, when it cannot be detected (see 'edgemed inspect').",
        ),
        click.option("--name", default=None,
                     help="The published bundle's folder name: with --model (default: the model file's stem), or for "
                          "one scenario (default: its name; e.g. a second build with another --seed beside the "
                          "first)."),
        click.option(
            "--artifacts",
            type=click.Path(file_okay=False),
            default="artifacts",
            show_default=True,
            help="Cache of hash-addressed stage artefacts.",
        ),
        click.option(
            "--bundles",
            type=click.Path(file_okay=False),
            default="bundles",
            show_default=True,
            help="Where finished bundles are published.",
        ),
        click.option("--progress/--no-progress", default=False, help="Force progress bars when not on a terminal."),
        click.option("-v", "--verbose", is_flag=True, help="Log every stage's decisions."),
    ]
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


def _stage_command(name: str, until: StageName, summary: str):
    @_build_options
    def command(scenarios: tuple[str, ...], **options) -> None:
        _run(until, scenarios, options)

    command.__doc__ = summary + ("\n\nSCENARIOS: names from 'edgemed scenarios' (default: the shipped ones, "
                                 "those not marked 'built only when named').")
    if until is StageName.BUNDLE:  # only the commands that publish a bundle sign it
        command = sign_key_option(command)
    return click.command(name)(command)


BUILD_COMMANDS = [
    _stage_command("build", StageName.BUNDLE, "Run every stage and publish the bundle (cached stages are reused)."),
    _stage_command("train", StageName.TRAIN, "Make the data splits and train the Keras model."),
    _stage_command("export", StageName.EXPORT, "Export to ONNX and check parity with Keras."),
    _stage_command("quantize", StageName.VARIANTS, "Make the fp32/fp16/int8-dynamic/int8-static variants."),
    _stage_command("evaluate", StageName.EVALUATE, "Clinical metrics with CIs and gate verdicts for every variant."),
    _stage_command("bundle", StageName.BUNDLE, "Time the variants and bundle the fastest one that passed the gate."),
]


@click.command("scenarios")
def list_scenarios() -> None:
    """List the registered scenarios."""
    from pipeline.scenarios import get_scenario, scenario_names

    for name in scenario_names():
        scenario = get_scenario(name)
        shipped = "" if scenario.shipped_by_default else " [built only when named]"
        click.echo(f"{name:<16} {', '.join(scenario.class_names):<24} {scenario.description}{shipped}")
