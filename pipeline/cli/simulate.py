"""``edgemed simulate``: a fleet of simulated ECG devices sending telemetry to a running collector.

Register with ``main.add_command(simulate_command)``. Each device runs the real runtime (its own
bundle, ECG stream, outbox and uploader); the scripted problems (gain drift, rising noise, lead-off,
sample-rate mismatch, latency regression, rollout) are listed in the summary so that the
dashboard's alerts can be checked against them. Exit status: 1 when the simulation fails.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from tqdm import tqdm

from pipeline.cli.logging_setup import configure_logging
from pipeline.fleet.scenario import ScriptedEvent
from pipeline.fleet.signals import SignalConfig
from pipeline.fleet.simulator import DEFAULT_BUNDLE, DEFAULT_SALT, SimulationConfig, simulate, write_summary
from runtime.errors import EdgemedError


def _load_script(path: Path | None) -> tuple[ScriptedEvent, ...] | None:
    if path is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        events = data["script"] if isinstance(data, dict) else data
        return tuple(ScriptedEvent.from_dict(event) for event in events)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise click.BadParameter(f"cannot read an event script from {path}: {error}", param_hint="--script") from error


@click.command("simulate")
@click.option("--devices", type=click.IntRange(min=1), default=8, show_default=True, help="Fleet size.")
@click.option(
    "--minutes",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="Simulated minutes of signal per device (processed as fast as possible).",
)
@click.option("--collector", required=True, help="Collector telemetry URL, e.g. http://127.0.0.1:8787/v1/telemetry.")
@click.option(
    "--bundle",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_BUNDLE,
    show_default=True,
    help="ECG bundle every device starts with.",
)
@click.option(
    "--rollout-bundle",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Bundle rolled out to part of the fleet half-way; without it the rollout is skipped.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Signal offsets, synthetic traces and noise.")
@click.option(
    "--signals",
    type=click.Choice(["real", "synthetic"]),
    default="real",
    show_default=True,
    help="real: biosignalsnotebooks recordings (the synthetic-to-real gap shows as drift); "
    "synthetic: ECGSYN traces close to the training data, so the scripted problems stand out.",
)
@click.option(
    "--salt",
    default=DEFAULT_SALT,
    show_default=True,
    help="Fleet secret for the pseudonymous device ids (another salt, another fleet).",
)
@click.option(
    "--outbox-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the devices' SQLite outboxes here (default: a temporary folder, removed afterwards).",
)
@click.option(
    "--script",
    "script_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Event script as JSON (a list of events, or a summary file's 'script'); default: the built-in one.",
)
@click.option(
    "--summary",
    "summary_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the script and the per-device summary to this JSON file (atomically).",
)
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar on stderr.")
@click.option("-v", "--verbose", is_flag=True, help="Log the simulator's and the runtime's decisions to stderr.")
def simulate_command(
    devices: int,
    minutes: float,
    collector: str,
    bundle: Path,
    rollout_bundle: Path | None,
    seed: int,
    salt: str,
    outbox_dir: Path | None,
    script_path: Path | None,
    summary_path: Path | None,
    signals: str,
    progress: bool,
    verbose: bool,
) -> None:
    """Simulate a fleet of ECG devices for MINUTES of signal each and send their telemetry to COLLECTOR."""
    configure_logging(verbose)
    config = SimulationConfig(
        collector_url=collector,
        devices=devices,
        minutes=minutes,
        bundle_path=bundle,
        rollout_bundle_path=rollout_bundle,
        seed=seed,
        salt=salt,
        outbox_dir=outbox_dir,
        script=_load_script(script_path),
        signal=SignalConfig(source=signals),
    )
    bar = tqdm(desc="simulate", unit="chunk", file=sys.stderr, disable=not progress, dynamic_ncols=True)

    def advance(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        summary = simulate(config, progress=advance)
    except EdgemedError as error:
        raise click.ClickException(str(error)) from error
    finally:
        bar.close()
    if summary_path is not None:
        write_summary(summary, summary_path)
    _print_summary(summary)


def _print_summary(summary: dict) -> None:
    click.echo(f"simulated {summary['devices']} devices, {summary['started_at']} … {summary['ended_at']}")
    for device_id, device in summary["device_summaries"].items():
        events = ", ".join(
            f"{event['kind']}@{event['began_at_minute']:g}min" + ("" if event["applied"] else " (skipped)")
            for event in device["events_applied"]
        )
        flags = ", ".join(f"{flag} {count}" for flag, count in device["beat_flags"].items())
        quality = ", ".join(f"{flag} {seconds:g}s" for flag, seconds in device["quality_seconds"].items())
        click.echo(
            f"device {device['index']} {device_id}: {device['records']} records, {device['uploaded']} uploaded"
            f"; flags: {flags or '-'}; quality: {quality or '-'}; events: {events or '-'}"
        )
