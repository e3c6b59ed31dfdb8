"""The ``edgemed`` command line: the composition root of the whole product.

One module per command family; this package is the only place in edgemed allowed to
import ``dashboard`` (the layering test enforces it). Usage errors exit 2, failures 1.

| module | commands |
|---|---|
| ``build`` | build, train, export, quantize, evaluate, bundle, scenarios |
| ``bench`` | bench, bench-stream |
| ``run`` | run (the device runtime's own command line, wrapped) |
| ``validate`` | real-ecg |
| ``monitor`` | collector, dashboard |
| ``simulate`` | simulate |
"""

from __future__ import annotations

import click

from runtime.version import EDGEMED_VERSION


@click.group()
@click.version_option(EDGEMED_VERSION, prog_name="edgemed")
def main() -> None:
    """edgemed: Keras model → validated ONNX variants → clinical gate → device bundle."""


def _register_commands() -> None:
    from pipeline.cli.bench import bench_command, bench_stream_command
    from pipeline.cli.build import BUILD_COMMANDS, list_scenarios
    from pipeline.cli.monitor import collector_command, dashboard_command
    from pipeline.cli.run import run_command
    from pipeline.cli.simulate import simulate_command
    from pipeline.cli.validate import real_ecg_command

    for command in (*BUILD_COMMANDS, list_scenarios, bench_command, bench_stream_command, run_command,
                    real_ecg_command, collector_command, dashboard_command, simulate_command):
        main.add_command(command)


_register_commands()
