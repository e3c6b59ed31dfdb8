"""The ``edgemed`` command line: the composition root of the whole product.

One module per command family; this package is the only place in edgemed allowed to
import ``dashboard`` (the layering test enforces it). Usage errors exit 2, failures 1.

| module | commands |
|---|---|
| ``build`` | build, train, export, quantize, evaluate, bundle, scenarios |
| ``inspect`` | inspect (what edgemed understood of a user's model and data) |
| ``bench`` | bench, bench-stream |
| ``run`` | run (the device runtime's own command line, wrapped) |
| ``validate`` | real-ecg, export-record |
| ``monitor`` | collector, dashboard |
| ``simulate`` | simulate |
| ``keys`` | keys generate |
| ``archive`` | make-archive, validate-archive, bench-archive |
| ``postgres`` | postgres start, stop, status, url (the project's own PostgreSQL server) |
| ``portability`` | cpu-check (the device runtime on emulated CPUs) |
"""

from __future__ import annotations

import click

from runtime.version import EDGEMED_VERSION


@click.group()
@click.version_option(EDGEMED_VERSION, prog_name="edgemed")
def main() -> None:
    """edgemed: Keras model → validated ONNX variants → clinical gate → device bundle."""


def _register_commands() -> None:
    from pipeline.cli.archive import ARCHIVE_COMMANDS
    from pipeline.cli.bench import bench_command, bench_stream_command
    from pipeline.cli.build import BUILD_COMMANDS, list_scenarios
    from pipeline.cli.inspect import inspect_command
    from pipeline.cli.keys import keys_command
    from pipeline.cli.monitor import collector_command, dashboard_command
    from pipeline.cli.portability import cpu_check_command
    from pipeline.cli.postgres import postgres_command
    from pipeline.cli.run import run_command
    from pipeline.cli.simulate import simulate_command
    from pipeline.cli.validate import export_record_command, noise_stress_command, real_ecg_command

    for command in (*BUILD_COMMANDS, list_scenarios, inspect_command, bench_command, bench_stream_command, run_command,
                    real_ecg_command, noise_stress_command, export_record_command, collector_command, dashboard_command,
                    simulate_command, keys_command, postgres_command, cpu_check_command, *ARCHIVE_COMMANDS):
        main.add_command(command)


_register_commands()
