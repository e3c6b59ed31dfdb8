"""``edgemed run``: the device runtime from the build machine's command line.

Same options as ``python -m runtime``; register with ``main.add_command(run_command)``.
Events are printed as JSON lines (or written to ``--output``). Exit status: 2 for
usage errors and unusable input (``InputError``), 1 when the bundle is refused or
anything else fails.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from runtime.errors import EdgemedError
from runtime.events import JsonLinesWriter
from runtime.readers import InputError
from runtime.runner import RunOptions, run


@click.command("run")
@click.argument("bundle", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--input",
    "input_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Recording (.csv, .npy, .h5) for a waveform bundle, or a feature .csv for a tabular one.",
)
@click.option(
    "--sample-rate",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Signal rate in Hz (needed for .npy and signal .csv).",
)
@click.option("--device-id", default=None, help="Pseudonymous device id (lowercase hex); needed for telemetry.")
@click.option("--telemetry-url", default=None, help="Upload one telemetry record per inference to this URL.")
@click.option("--telemetry-outbox", type=click.Path(path_type=Path), default=None, help="Telemetry outbox path.")
@click.option("--provider", default=None, help="cpu, cuda, tensorrt or a full provider name (default: best).")
@click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True, help="onnxruntime threads.")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write JSON lines here instead of stdout.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log the runtime's decisions to stderr.")
def run_command(bundle: Path, input_path: Path, output: Path | None, verbose: bool, **options) -> None:
    """Run BUNDLE on a recording or a table; print events as JSON lines."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    run_options = RunOptions(
        sample_rate_hz=options["sample_rate"],
        device_id=options["device_id"],
        telemetry_url=options["telemetry_url"],
        telemetry_outbox=options["telemetry_outbox"],
        provider=options["provider"],
        threads=options["threads"],
    )
    try:
        events = run(bundle, input_path, run_options)
        if output is None:
            count = JsonLinesWriter(click.get_text_stream("stdout"), follow=True).write_all(events)
        else:
            with output.open("w") as handle:
                count = JsonLinesWriter(handle).write_all(events)
    except InputError as error:
        raise click.UsageError(str(error)) from error
    except EdgemedError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"{count} events", err=True)
