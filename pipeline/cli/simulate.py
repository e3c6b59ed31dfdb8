"""``edgemed simulate``: a fleet of simulated ECG devices sending telemetry to a running collector.

Register with ``main.add_command(simulate_command)``. Each device runs the real runtime (its own
bundle, ECG stream, outbox and uploader); the scripted problems (gain drift, rising noise, lead-off,
sample-rate mismatch, latency regression, slow rhythm, rollout) are listed in the summary so that the
dashboard's alerts can be checked against them. Exit status: 1 when the simulation fails or some telemetry was
not delivered (the outboxes holding it are kept and named).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from tqdm import tqdm

from pipeline.cli.logging_setup import configure_logging
from pipeline.cli.parameters import FiniteFloatRange, OutputPath
from pipeline.fleet.device import DeviceConfig
from pipeline.fleet.scenario import ScriptedEvent
from pipeline.fleet.signals import SignalConfig
from pipeline.fleet.simulator import DEFAULT_BUNDLE, DEFAULT_SALT, SimulationConfig, simulate, write_summary
from runtime.errors import EdgemedError
from runtime.runner import TelemetryMode


def _load_script(path: Path | None) -> tuple[ScriptedEvent, ...] | None:
    if path is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        events = data["script"] if isinstance(data, dict) else data
        return tuple(ScriptedEvent.from_dict(event) for event in events)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise click.BadParameter(
            f"cannot read an event script from {path}: {error}. Expected: JSON, a list of events (or a summary file "
            "with a 'script' list), each with the keys a summary's script has. Fix: start from the 'script' of a "
            "summary written by `edgemed simulate --summary`.", param_hint="--script") from error


MAX_MINUTES = 7 * 24 * 60  # a week per device; the outboxes grow on disk with the minutes


@click.command("simulate")
@click.option("--devices", type=click.IntRange(min=1), default=8, show_default=True, help="Fleet size.")
@click.option(
    "--minutes",
    type=FiniteFloatRange(min=0, min_open=True, max=MAX_MINUTES),
    default=30.0,
    show_default=True,
    help=f"Simulated minutes of signal per device (processed as fast as possible; at most {MAX_MINUTES:,}, a week).",
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
    help="real: biosignalsnotebooks recordings (real PLUX ECG of people at rest: another device, lead and "
    "population than the MIT-BIH records the ECG model learned from, which shows as some drift); "
    "synthetic: ECGSYN traces (synthetic, clean and regular), so the scripted problems stand out.",
)
@click.option(
    "--salt",
    default=DEFAULT_SALT,
    show_default=True,
    help="Fleet secret for the pseudonymous device ids (another salt, another fleet).",
)
@click.option(
    "--outbox-dir",
    type=OutputPath(folder=True, path_type=Path),
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
    type=OutputPath(folder=False, path_type=Path),
    default=None,
    help="Write the script and the per-device summary to this JSON file (atomically).",
)
@click.option("--processes", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes; the fleet is shared out among them, each interleaving its devices (one "
              "ONNX Runtime session per bundle and process, never a thread per device).")
@click.option("--telemetry-mode", type=click.Choice([mode.value for mode in TelemetryMode]),
              default=TelemetryMode.AGGREGATES.value, show_default=True,
              help="aggregates: per-minute aggregates plus the events the filter keeps; records: one per beat.")
@click.option("--upload-interval", type=FiniteFloatRange(min=1.0), default=60.0, show_default=True,
              help="Simulated seconds between a device's uploads.")
@click.option("--trust-store", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="Folder of trusted public keys (*.pem): every device verifies its bundles' signatures, as a real "
              "one does. Without it the devices run under the development allowance (a warning per bundle).")
@click.option("--allow-unvalidated", is_flag=True,
              help="DEVELOPMENT ONLY: let the devices run a bundle whose manifest says it was not validated on real "
              "data (a WARNING per bundle). Without it a device that verified such a bundle refuses it, as a real "
              "one does.")
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
    processes: int,
    telemetry_mode: str,
    upload_interval: float,
    trust_store: Path | None,
    allow_unvalidated: bool,
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
        device=DeviceConfig(telemetry_mode=TelemetryMode(telemetry_mode), upload_interval_s=upload_interval,
                            trust_store=trust_store, allow_unvalidated=allow_unvalidated),
        processes=processes,
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
    pending = summary["totals"]["pending"]
    if pending:  # store-and-forward kept them, but the run did not do what it was asked: say so, and fail
        raise click.ClickException(
            f"{pending} of {summary['totals']['appended']} outbox rows were not delivered to {collector} "
            f"({summary['totals']['upload_failures']} refused uploads; the warnings above say why). They are kept in "
            f"the devices' outboxes in {summary['outbox_dir']}. Expected: a collector that accepts the fleet's "
            "uploads. Fix: start the collector (`edgemed collector`) or correct --collector, then simulate again.")


DEVICE_LINES = 20  # a larger fleet prints its totals and its scripted devices only


def _print_summary(summary: dict) -> None:
    totals = summary["totals"]
    click.echo(
        f"simulated {summary['devices']} devices × {summary['minutes']:g} min in {summary['processes']} process(es), "
        f"{summary['wall_s']:g} s wall, {summary['started_at']} … {summary['ended_at']} ({summary['telemetry_mode']}; "
        f"{summary['model']})"
    )
    click.echo("SIMULATED fleet (uploads marked simulated; the dashboard labels them): signals: " + ", ".join(
        f"{count} {source}" for source, count in summary["signals"].items() if count))
    for path, identity in summary["bundles"].items():
        click.echo(f"bundle {path}: " + (f"{identity['bundle_id']} ({identity['variant']}), {identity['real_data']} "
                                         f"({identity['real_data_reason']})" if "unreadable" not in identity
                                         else f"manifest unreadable ({identity['unreadable']})"))
    click.echo(
        f"totals: {totals['beats']} beats, {totals['aggregated_events']} events aggregated into "
        f"{totals['aggregates']} minute aggregates, {totals['records']} records sent on their own, "
        f"{totals['uploaded']} of {totals['appended']} outbox rows uploaded, {totals['pending']} pending, "
        f"{totals['upload_failures']} refused uploads"
    )
    devices = summary["device_summaries"]
    problems = {event["device_id"] for event in summary["script"] if event["kind"] != "rollout"}
    rolled = sum(1 for event in summary["script"] if event["kind"] == "rollout")
    if len(devices) > DEVICE_LINES:
        click.echo(f"{len(devices) - len(problems)} devices without a scripted problem ({rolled} of them with a "
                   f"rollout{'' if summary['rollout_bundle'] else ', skipped: no rollout bundle'}); the others:")
    for device_id, device in devices.items():
        if len(devices) > DEVICE_LINES and device_id not in problems:
            continue
        events = ", ".join(
            f"{event['kind']}@{event['began_at_minute']:g}min" + ("" if event["applied"] else " (skipped)")
            for event in device["events_applied"]
        )
        flags = ", ".join(f"{flag} {count}" for flag, count in device["beat_flags"].items())
        quality = ", ".join(f"{flag} {seconds:g}s" for flag, seconds in device["quality_seconds"].items())
        click.echo(
            f"device {device['index']} {device_id}: {device['beats']} beats, {device['aggregates']} aggregates, "
            f"{device['records']} records, {device['uploaded']} uploaded; flags: {flags or '-'}; "
            f"quality: {quality or '-'}; events: {events or '-'}"
        )
