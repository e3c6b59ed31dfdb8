"""``edgemed bench``: benchmark every variant of every scenario, with Keras and LiteRT peers;
``edgemed bench-stream``: real-time factor of the device stream path.

Usage errors
(unknown scenario, missing model path, provider not installed, bad batch size) exit 2,
failures exit 1; no results file is written unless every measurement succeeded.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import click

from pipeline.cli.logging_setup import configure_logging
from pipeline.cli.parameters import FiniteFloatRange, OutputPath
from pipeline.errors import UsageError
from runtime.errors import EdgemedError

DEFAULT_OUTPUT = Path("benchmarks") / "results"


def _split_list(value: str | None) -> tuple[str, ...]:
    return tuple(item.strip() for item in (value or "").split(",") if item.strip())


def _parse_threads(value: str | None) -> tuple[int, ...]:
    from pipeline.build.machine import usable_cores

    counts = []
    for item in _split_list(value):
        if item == "all":
            counts.append(usable_cores())
        elif item.isdigit() and int(item) > 0:
            counts.append(int(item))
        else:
            raise click.BadParameter(f"{item!r} is not a thread count; expected positive integers or 'all'")
    return tuple(counts)


def _parse_batch_sizes(value: str) -> tuple[int, ...]:
    sizes = _split_list(value)
    if not sizes or not all(item.lstrip("-").isdigit() for item in sizes):
        raise click.BadParameter(f"{value!r}: expected comma-separated integers such as 1,32,256")
    return tuple(int(item) for item in sizes)


def _collect_inputs(scenarios: tuple[str, ...], models: tuple[str, ...], options: dict, bars) -> list:
    from pipeline.benchmark.scenario_inputs import from_build, from_model_path

    inputs = [from_model_path(Path(model)) for model in models]
    if models and not scenarios:
        return inputs
    from pipeline.build.builder import StageName, build_scenario
    from pipeline.build.context import StageContext
    from pipeline.config import Profile
    from pipeline.scenarios import default_scenario_names, get_scenario

    root = Path(options["artifacts"])
    for name in scenarios or tuple(default_scenario_names()):
        scenario = get_scenario(name)
        config = scenario.build_config(Profile(options["profile"]))
        # Up to the last gate: validate where the scenario has held-out recordings (the peers face it too).
        until = StageName.VALIDATE if scenario.recording_source(config.data) is not None else StageName.EVALUATE
        outcome = build_scenario(scenario, config, StageContext(root, bars), None, until)
        inputs.append(from_build(name, outcome.artifacts, root, scenario, config))
    return inputs


@click.command("bench")
@click.argument("scenarios", nargs=-1)
@click.option("--quick", is_flag=True, help="Seconds-long measurements (tests, smoke runs).")
@click.option("--model", "models", multiple=True, help="Also benchmark this bundle folder or .onnx file (timed on "
              "seeded N(0,1) random inputs: synthetic, not real data).")
@click.option("--artifacts", type=click.Path(file_okay=False), default="artifacts", show_default=True)
@click.option("--output", type=OutputPath(folder=True), default=str(DEFAULT_OUTPUT), show_default=True)
@click.option("--providers", default=None, help="Comma-separated EPs (cpu,cuda,tensorrt); default: all, "
              "missing ones reported as not available.")
@click.option("--threads", default=None, help="Comma-separated intra-op thread counts or 'all' (default: 1,all).")
@click.option("--batch-sizes", default="1,32,256", show_default=True, help="Throughput batch sizes.")
@click.option("--profile", type=click.Choice(["full", "tiny"]), default="full", show_default=True,
              help="Build profile of the scenarios (tiny: smoke builds).")
@click.option("--peers/--no-peers", default=True, help="Keras and LiteRT rows from the same Keras model, "
              "each judged by the build's own gate.")
@click.option("--ablation/--no-ablation", default=False, help="Also measure what each speed pass buys.")
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots.")
@click.option("--progress/--no-progress", default=None, help="Progress bars (default: when stderr is a terminal).")
@click.option("-v", "--verbose", is_flag=True)
def bench_command(scenarios: tuple[str, ...], models: tuple[str, ...], **options) -> None:
    """Benchmark ONNX variants (every EP, 1 and all threads) against Keras and LiteRT.

    SCENARIOS: names from 'edgemed scenarios' (default: the shipped ones, multi-input models included). Each is
    built, or taken from the cache, up to its last gate (evaluate; validate where it has held-out recordings).
    Every peer is judged by that same gate; the head-to-head peer is the fastest LiteRT variant that passes.
    A scenario is timed on its test split (SYNTHETIC for ecg-arrhythmia); a --model file on seeded N(0,1) random
    inputs (synthetic, not real data). Results: OUTPUT/bench.json, bench.md (both say which), *.png.
    """
    from pipeline.benchmark.harness import BenchmarkConfig, run_benchmark
    from pipeline.benchmark.results_io import write_results
    from pipeline.benchmark.statistics import QUICK_STABILITY, StabilityConfig
    from pipeline.cli.progress import ProgressBars

    configure_logging(options["verbose"])
    show = sys.stderr.isatty() if options["progress"] is None else options["progress"]
    bars = ProgressBars("", show)
    config = BenchmarkConfig(
        stability=QUICK_STABILITY if options["quick"] else StabilityConfig(),
        batch_sizes=_parse_batch_sizes(options["batch_sizes"]),
        threads=_parse_threads(options["threads"]),
        providers=_split_list(options["providers"]),
        peers=options["peers"],
        quick=options["quick"],
    )
    try:
        inputs = _collect_inputs(scenarios, models, options, bars)
        document = run_benchmark(inputs, config, bars)
        if options["ablation"]:
            from pipeline.benchmark.ablation import run_ablation

            document["ablation"] = run_ablation(inputs, dataclasses.replace(config, peers=False), bars)
        written = write_results(document, Path(options["output"]), plots=not options["no_plots"])
    except UsageError as error:
        raise click.UsageError(str(error)) from error
    except EdgemedError as error:
        raise click.ClickException(str(error)) from error
    finally:
        bars.close()
    for scenario in document["scenarios"]:
        click.echo(f"{scenario['name']}: timed on {scenario['inputs']}")
    click.echo("\n".join(str(path) for path in written))


MAX_STREAM_HOURS = 72  # the recording is held in memory: 72 h at 360 Hz is 93 M samples


@click.command("bench-stream")
@click.argument("bundle", type=click.Path(exists=True, file_okay=False), default="bundles/ecg-pvc")
@click.option(
    "--hours",
    type=FiniteFloatRange(min=0.01, max=MAX_STREAM_HOURS),
    default=24.0,
    show_default=True,
    help=f"Length of the recording (the signal repeated to it; at most {MAX_STREAM_HOURS} h, held in memory).",
)
@click.option("--signal", type=click.Choice(["mitdb", "synthetic"]), default="mitdb", show_default=True,
              help="mitdb: the 10 vendored MIT-BIH records (real), one after another; synthetic: a tiled ECGSYN strip "
              "(clean beats, no PVC).")
@click.option("--telemetry", "telemetry", type=click.Choice(["aggregates", "records", "none"]), default="aggregates",
              show_default=True, help="aggregates: per-minute aggregates + filtered events (the device default); "
              "records: one record per beat; none: no telemetry.")
@click.option("--no-telemetry", is_flag=True, help="Same as --telemetry none.")
@click.option("--compare/--no-compare", default=True, show_default=True,
              help="Also time the recording without telemetry.")
@click.option("--repeats", type=click.IntRange(min=1, max=20), default=3, show_default=True,
              help="Timed runs per mode, interleaved; the figures are their medians.")
@click.option(
    "--output", type=OutputPath(folder=False), default="benchmarks/results/stream_speed.json", show_default=True
)
def bench_stream_command(bundle: str, hours: float, signal: str, telemetry: str, no_telemetry: bool, compare: bool,
                         repeats: int, output: str) -> None:
    """Real-time factor of the device stream path (R-peaks, windows, inference, telemetry) on one core.

    BUNDLE: an ECG bundle folder (default: bundles/ecg-pvc, the one `make build` ships)."""
    from pipeline.benchmark.stream_speed import StreamSpeedConfig, measure_stream_speed
    from pipeline.build.artifacts import write_json_atomic

    configure_logging(verbose=False)
    config = StreamSpeedConfig(hours=hours, profiled_hours=min(1.0, hours), signal=signal,
                               telemetry="none" if no_telemetry else telemetry, compare_without=compare,
                               repeats=repeats)
    try:
        report = measure_stream_speed(Path(bundle), config)
    except EdgemedError as error:
        raise click.ClickException(str(error)) from error
    write_json_atomic(Path(output), report)
    for run in report["runs"]:
        click.echo(
            f"{report['recording_s'] / 3600:.1f} h of {signal} ECG, telemetry {run['telemetry']}: "
            f"{run['cpu_s']:.2f} CPU s ({run['wall_s']:.2f} s wall) on {config.threads} thread: "
            f"{run['real_time_factor']:,.0f}× real time per CPU second ({run['real_time_factor_wall']:,.0f}× wall; "
            f"{run['beats']:,} beats, {run['microseconds_per_beat']} µs/beat; median of {run['repeats']} runs: "
            + " / ".join(f"{factor:,.0f}×" for factor in run["real_time_factors"]) + ")"
        )
    click.echo(f"target {report['target_real_time_factor']:,}× with telemetry: "
               f"{'met' if report['meets_target'] else 'NOT met'}")
    click.echo("time share: " + ", ".join(f"{k} {v:.0%}" for k, v in report["time_share_by_stage"].items()))
    click.echo(f"written to {output}")
