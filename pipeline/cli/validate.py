"""``edgemed real-ecg``: the device runtime on real recordings (no labels: detection and rhythm only)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from pipeline.cli.logging_setup import configure_logging
from pipeline.errors import UsageError
from runtime.errors import EdgemedError


@click.command("real-ecg")
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--output",
    type=click.Path(dir_okay=False),
    default="benchmarks/results/real_ecg.json",
    show_default=True,
    help="Where the figures are written (JSON).",
)
def real_ecg_command(bundle: str, output: str) -> None:
    """Run BUNDLE through the device stream on the real ECG recordings biosignalsnotebooks ships.

    Reports R-peak sensitivity and positive predictivity against the device's own R-peaks
    (150 ms tolerance, AAMI EC57 matching), per-minute heart-rate agreement, and the beat-class
    distribution. The recordings carry no beat labels, so no class accuracy is claimed.
    """
    from pipeline.validation.real_ecg import evaluate_real_ecg

    configure_logging(verbose=False)
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
