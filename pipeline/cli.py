"""The ``edgemed`` command line: build scenarios or a user's model into device bundles.

Usage errors exit with status 2, failures with status 1; messages go to stderr.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

import click

from pipeline.build import BuildOutcome, StageName, build_custom, build_scenario
from pipeline.config import BuildConfig, Profile, VariantName
from pipeline.errors import UsageError
from pipeline.progress import ProgressBars
from pipeline.report import summary_table
from pipeline.stages.context import StageContext
from runtime.errors import EdgemedError

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("tensorflow", "tf2onnx", "absl", "h5py"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def _apply_overrides(config: BuildConfig, options: dict) -> BuildConfig:
    from exporters.quantize import parse_calibration_method

    if options.get("seed") is not None:
        config = dataclasses.replace(config, seed=options["seed"])
    if options.get("epochs") is not None:
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, epochs=options["epochs"]))
    if options.get("opset") is not None:
        export = dataclasses.replace(config.export.export, opset=options["opset"])
        config = dataclasses.replace(config, export=dataclasses.replace(config.export, export=export))
    if options.get("calibration_method"):
        quantization = dataclasses.replace(
            config.variants.quantization, calibration_method=parse_calibration_method(options["calibration_method"])
        )
        config = dataclasses.replace(config, variants=dataclasses.replace(config.variants, quantization=quantization))
    if options.get("variant"):
        bundle = dataclasses.replace(config.bundle, required_variant=VariantName(options["variant"]))
        config = dataclasses.replace(config, bundle=bundle)
    return config


def _report(name: str, outcome: BuildOutcome, seconds: float) -> None:
    reused = [stage for stage, flag in outcome.reused.items() if flag]
    click.echo(f"\n{name}: {len(outcome.artifacts)} stages in {seconds:.1f} s (reused: {', '.join(reused) or 'none'})")
    for stage, artifact in outcome.artifacts.items():
        click.echo(f"  {stage:<9} {artifact.id}  {artifact.directory}")
    manifest = outcome.bundle_manifest
    if manifest:
        click.echo(f"  bundle → {outcome.bundle_directory}")
        table_input = {"variants": manifest["variants"], "variant": manifest["variant"]}
        click.echo("\n" + summary_table(table_input))
        click.echo(f"\nshipped: {manifest['variant']} — {manifest['reason']}")


def _run(until: StageName, scenarios: tuple[str, ...], options: dict) -> None:
    from pipeline.scenarios import get_scenario, scenario_names

    _configure_logging(options["verbose"])
    context_root = Path(options["artifacts"])
    bundles = Path(options["bundles"])
    show = sys.stderr.isatty() or options["progress"]
    try:
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
            )
            bars.close()
            _report(name, outcome, time.perf_counter() - started)
            return
        for name in scenarios or tuple(scenario_names()):
            scenario = get_scenario(name)
            config = _apply_overrides(scenario.build_config(Profile(options["profile"])), options)
            bars = ProgressBars(f"{name} ", show)
            started = time.perf_counter()
            outcome = build_scenario(scenario, config, StageContext(context_root, bars), bundles, until)
            bars.close()
            _report(name, outcome, time.perf_counter() - started)
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
        click.option("--opset", type=click.IntRange(13, 21), default=None, help="ONNX opset (default 17)."),
        click.option(
            "--calibration-method",
            type=click.Choice(CALIBRATION_METHODS),
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
            "--model",
            type=click.Path(dir_okay=False),
            default=None,
            help="Your own Keras 3 model (.keras) instead of a scenario.",
        ),
        click.option(
            "--data",
            type=click.Path(dir_okay=False),
            default=None,
            help="With --model: .npz with calibration_inputs, test_inputs, test_labels[, class_names].",
        ),
        click.option("--name", default=None, help="With --model: bundle name (default: the model file's stem)."),
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


@click.group()
@click.version_option("0.1.0", prog_name="edgemed")
def main() -> None:
    """edgemed: Keras model → validated ONNX variants → clinical gate → device bundle."""


def _stage_command(name: str, until: StageName, summary: str):
    @_build_options
    def command(scenarios: tuple[str, ...], **options) -> None:
        _run(until, scenarios, options)

    command.__doc__ = summary + "\n\nSCENARIOS: names from 'edgemed scenarios' (default: all)."
    return main.command(name)(command)


_stage_command("build", StageName.BUNDLE, "Run every stage and publish the bundle (cached stages are reused).")
_stage_command("train", StageName.TRAIN, "Make the data splits and train the Keras model.")
_stage_command("export", StageName.EXPORT, "Export to ONNX and check parity with Keras.")
_stage_command("quantize", StageName.VARIANTS, "Make the fp32/fp16/int8-dynamic/int8-static variants.")
_stage_command("evaluate", StageName.EVALUATE, "Clinical metrics with CIs and gate verdicts for every variant.")
_stage_command("bundle", StageName.BUNDLE, "Time the variants and bundle the fastest one that passed the gate.")


@main.command("scenarios")
def list_scenarios() -> None:
    """List the registered scenarios."""
    from pipeline.scenarios import get_scenario, scenario_names

    for name in scenario_names():
        scenario = get_scenario(name)
        click.echo(f"{name:<16} {', '.join(scenario.class_names):<24} {scenario.description}")


@main.command("collector")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind (loopback by default).")
@click.option("--port", type=click.IntRange(1, 65535), default=8787, show_default=True)
@click.option(
    "--database",
    type=click.Path(dir_okay=False),
    default="telemetry.sqlite3",
    show_default=True,
    help="SQLite file (WAL mode) the collector writes and the dashboard reads.",
)
def collector(host: str, port: int, database: str) -> None:
    """Receive device telemetry over HTTP (POST /v1/telemetry) into a SQLite store."""
    from dashboard.collector.app import serve

    _configure_logging(verbose=True)
    serve(host=host, port=port, database=database)


def _register_commands() -> None:
    """Commands that live in their own modules (benchmarks, device runtime)."""
    from pipeline.cli_bench import bench_command
    from pipeline.cli_dashboard import dashboard_command
    from pipeline.cli_run import run_command
    from pipeline.cli_simulate import simulate_command

    main.add_command(bench_command)
    main.add_command(run_command)
    main.add_command(dashboard_command)
    main.add_command(simulate_command)


_register_commands()


@main.command("real-ecg")
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--output",
    type=click.Path(dir_okay=False),
    default="benchmarks/results/real_ecg.json",
    show_default=True,
    help="Where the figures are written (JSON).",
)
def real_ecg(bundle: str, output: str) -> None:
    """Run BUNDLE through the device stream on the real ECG recordings biosignalsnotebooks ships.

    Reports R-peak sensitivity and positive predictivity against the device's own R-peaks
    (150 ms tolerance, AAMI EC57 matching), per-minute heart-rate agreement, and the beat-class
    distribution. The recordings carry no beat labels, so no class accuracy is claimed.
    """
    from pipeline.real_signals import evaluate_real_ecg

    _configure_logging(verbose=False)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    try:
        report = evaluate_real_ecg(Path(bundle), Path(output))
    except UsageError as error:
        raise click.UsageError(str(error)) from error
    except EdgemedError as error:
        raise click.ClickException(str(error)) from error
    headline = {key: value for key, value in report.items() if key != "files"}
    click.echo(json.dumps(headline, indent=2))
    for name, figures in report["files"].items():
        shown = {key: figures.get(key) for key in ("beats", "class_counts", "sensitivity", "positive_predictivity")}
        click.echo(f"{name}: {json.dumps({key: value for key, value in shown.items() if value is not None})}")
    click.echo(f"\nwritten to {output}")


@main.command("bench-stream")
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--hours",
    type=click.FloatRange(min=0.01),
    default=24.0,
    show_default=True,
    help="Length of the synthetic recording.",
)
@click.option("--no-telemetry", is_flag=True, help="Leave the SQLite outbox appends out of the path.")
@click.option(
    "--output", type=click.Path(dir_okay=False), default="benchmarks/results/stream_speed.json", show_default=True
)
def bench_stream(bundle: str, hours: float, no_telemetry: bool, output: str) -> None:
    """Real-time factor of the device stream path (R-peaks, windows, inference, telemetry) on one core."""
    from pipeline.artifacts import write_json_atomic
    from pipeline.benchmark.stream_speed import StreamSpeedConfig, measure_stream_speed

    _configure_logging(verbose=False)
    config = StreamSpeedConfig(hours=hours, profiled_hours=min(1.0, hours), telemetry=not no_telemetry)
    try:
        report = measure_stream_speed(Path(bundle), config)
    except EdgemedError as error:
        raise click.ClickException(str(error)) from error
    write_json_atomic(Path(output), report)
    click.echo(
        f"{report['recording_s'] / 3600:.1f} h of ECG in {report['wall_s']:.2f} s on {config.threads} thread: "
        f"{report['real_time_factor']:,.0f}× real time ({report['beats']:,} beats, "
        f"{report['microseconds_per_beat']} µs/beat; target {report['target_real_time_factor']:,}×)"
    )
    click.echo("time share: " + ", ".join(f"{k} {v:.0%}" for k, v in report["time_share_by_stage"].items()))
    click.echo(f"written to {output}")
