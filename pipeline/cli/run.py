"""``edgemed run``: the device runtime from the build machine's command line.

The same run as ``python -m runtime`` (``runtime.__main__.write_events``), with click's
options and help. Events are printed as JSON lines (or written to ``--output``). Exit
status, as on the device: 2 for usage errors, 1 when the bundle or the input is refused.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from pipeline.cli.logging_setup import configure_logging
from pipeline.cli.parameters import FiniteFloatRange, OutputPath
from runtime.__main__ import parse_filter_rules, summary_line, write_events
from runtime.errors import EdgemedError
from runtime.interrupts import INTERRUPTED_EXIT_STATUS, interrupted_line, terminate_as_interrupt
from runtime.readers import SAMPLE_RATE_RANGE_HZ, SIGNAL_RATE_RANGE_HZ
from runtime.runner import RunOptions, TelemetryMode
from runtime.session import MAX_THREADS
from runtime.trust import TrustPolicy


def _filter_rules(context: click.Context, parameter: click.Parameter, value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    try:
        return parse_filter_rules(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from error


@click.command("run")
@click.argument("bundle", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--input",
    "input_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Recording (.csv, .npy, .h5) for a waveform bundle (ECG beats, or fixed windows of EEG, PPG, vitals: the "
    "bundle's contract picks the stream), a feature .csv for a tabular one, an .npz of pre-cut inputs for any.",
)
@click.option(
    "--sample-rate",
    type=FiniteFloatRange(*SIGNAL_RATE_RANGE_HZ),
    default=None,
    help="Signal rate in Hz (needed for .npy and signal .csv): ECG "
    f"{SAMPLE_RATE_RANGE_HZ[0]:g}–{SAMPLE_RATE_RANGE_HZ[1]:g}, other waveforms {SIGNAL_RATE_RANGE_HZ[0]:g}–"
    f"{SIGNAL_RATE_RANGE_HZ[1]:g} (at least half the model's rate).",
)
@click.option("--channel", type=click.IntRange(min=0), default=None,
              help="Channel of a multi-channel signal for a one-channel model (HDF5 channel_N; .npy/.csv column, "
              "from 0); a multi-channel model takes every channel.")
@click.option("--lead", default=None,
              help="The recording's lead (e.g. MLII) when its file does not name it (.npy, HDF5); checked against "
              "the leads the bundle was validated on.")
@click.option("--device-id", default=None, help="Pseudonymous device id (lowercase hex); needed for telemetry.")
@click.option("--telemetry-url", default=None, help="Upload the telemetry to this collector URL.")
@click.option("--telemetry-outbox", type=OutputPath(folder=False, path_type=Path), default=None,
              help="Telemetry outbox path (a SQLite file).")
@click.option("--telemetry-mode", type=click.Choice([mode.value for mode in TelemetryMode]),
              default=None,
              help="aggregates (the default): per-minute aggregates plus the events the filter keeps; records: one "
              "record per inference.")
@click.option("--event-filter", "event_filter", default=None, callback=_filter_rules,
              help="Aggregates mode: comma-separated rules that also send an event on its own (positive, "
              "low_confidence, alarm, unjudged, quality_change; default: all; 'none': none).")
@click.option("--positive-labels", default=None,
              help="Aggregates mode: comma-separated labels the positive rule sends (default: all but the first).")
@click.option("--provider", default=None, help="cpu, cuda, tensorrt or a full provider name (default: best).")
@click.option("--threads", type=click.IntRange(min=0, max=MAX_THREADS), default=0, show_default=True,
              help="onnxruntime threads (0: all cores).")
@click.option(
    "--output",
    type=OutputPath(folder=False, path_type=Path),
    default=None,
    help="Write JSON lines here instead of stdout.",
)
@click.option("--trust-store", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of trusted public keys (*.pem): the bundle must be signed by one of them.")
@click.option("--allow-unsigned", is_flag=True,
              help="DEVELOPMENT ONLY: run a bundle whose signature cannot be checked (a WARNING on every load).")
@click.option("--allow-unvalidated", is_flag=True,
              help="DEVELOPMENT ONLY: run a bundle whose manifest says it was not validated on real data (a WARNING "
              "on every run: not for clinical use).")
@click.option("--version-state", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Rollback state file (default: bundle-versions.json in the trust store).")
@click.option("-v", "--verbose", is_flag=True, help="Log the runtime's decisions to stderr.")
def run_command(bundle: Path, input_path: Path, output: Path | None, verbose: bool, **options) -> None:
    """Run BUNDLE on a recording or a table; print events as JSON lines."""
    configure_logging(verbose)
    run_options = RunOptions(
        sample_rate_hz=options["sample_rate"],
        channel=options["channel"],
        lead=options["lead"],
        device_id=options["device_id"],
        telemetry_url=options["telemetry_url"],
        telemetry_outbox=options["telemetry_outbox"],
        provider=options["provider"],
        threads=options["threads"],
        telemetry_mode=None if options["telemetry_mode"] is None else TelemetryMode(options["telemetry_mode"]),
        event_filter_rules=options["event_filter"],
        positive_labels=tuple(item.strip() for item in options["positive_labels"].split(",") if item.strip())
        if options["positive_labels"] is not None else None,
        allow_unvalidated=options["allow_unvalidated"],
    )
    try:
        trust = TrustPolicy.from_options(options["trust_store"], options["allow_unsigned"], options["version_state"])
        with terminate_as_interrupt():
            kinds = write_events(bundle, input_path, dataclasses.replace(run_options, trust=trust), output)
    except KeyboardInterrupt:
        click.echo(interrupted_line(output), err=True)
        raise SystemExit(INTERRUPTED_EXIT_STATUS) from None
    except EdgemedError as error:
        raise click.ClickException(str(error)) from error
    click.echo(summary_line(kinds), err=True)
