"""``edgemed cpu-check``: the device runtime on emulated CPUs (see ``pipeline.portability``).

Usage errors (no bundles, no trust store, an unknown target) exit 2; a CPU that disagrees, or an emulator that
cannot be set up, exits 1. The report is written (JSON and markdown, each through a temporary file) either way.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pipeline.cli.logging_setup import configure_logging
from pipeline.cli.parameters import FiniteFloatRange, OutputPath
from pipeline.cli.progress import ProgressBars
from pipeline.errors import UsageError
from runtime.errors import EdgemedError


@click.command("cpu-check")
@click.option("--bundles", "bundles", type=click.Path(file_okay=False), default="bundles", show_default=True,
              help="Folder of bundles: each one edgemed has real inputs for is checked.")
@click.option("--trust-store", type=click.Path(file_okay=False), required=True,
              help="The folder of public keys the device trusts (make build's: .edgemed-keys/dev/trust-store).")
@click.option("--targets", default=None,
              help="Comma-separated CPUs to emulate (default: all): x86-64-sse4, x86-64-avx2, arm-cortex-a53, "
              "arm-cortex-a72, arm-cortex-a76.")
@click.option("--seconds", type=FiniteFloatRange(min=1.0), default=None,
              help="Cut every signal to its first SECONDS (default: whole recordings).")
@click.option("--output", type=OutputPath(folder=True), default="benchmarks/results", show_default=True,
              help="Where cpu_check.json and cpu_check.md are written.")
def cpu_check_command(bundles: str, trust_store: str, targets: str | None, seconds: float | None, output: str) -> None:
    """Every bundle through the device command on this machine and on emulated CPUs (QEMU user mode), on the real
    recordings and rows of its scenario; every event compared with this machine's."""
    from pipeline.build.artifacts import write_json_atomic, write_text_atomic
    from pipeline.portability.check import CheckConfig, check
    from pipeline.portability.report import render_markdown
    from pipeline.portability.targets import select_targets

    configure_logging(verbose=False)
    try:
        config = CheckConfig(Path(trust_store), Path(bundles), select_targets(targets), seconds)
        bars = ProgressBars()
        try:
            report = check(config, bars)
        finally:
            bars.close()
    except UsageError as error:
        raise click.UsageError(str(error)) from None
    except EdgemedError as error:
        raise click.ClickException(str(error)) from None
    folder = Path(output)
    write_json_atomic(folder / "cpu_check.json", report)
    markdown = render_markdown(report)
    write_text_atomic(folder / "cpu_check.md", markdown)
    click.echo(markdown)
    click.echo(f"written to {folder / 'cpu_check.json'} and {folder / 'cpu_check.md'}")
    if not report["passed"]:
        click.echo("cpu-check: NOT every CPU gave this machine's answers (see the report)", err=True)
        sys.exit(1)
