"""``edgemed collector`` and ``edgemed dashboard``: the monitoring services, on this machine only.

The collector receives device telemetry over HTTP. The dashboard server binds to
127.0.0.1 with usage statistics off and no browser launched; the artefact, bundle, telemetry and
benchmark paths reach the app as ``EDGEMED_DASHBOARD_*`` environment variables (absolute paths).
Streamlit reads ``.streamlit/config.toml`` from the working directory and the user's home, so these
settings are given on the command line, where they take precedence over any such file. SIGTERM or
SIGINT to ``edgemed dashboard`` stops the Streamlit child (SIGTERM, then SIGKILL after
``CHILD_STOP_TIMEOUT_S``) before the command exits, so the port is released and no server is left behind.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from dashboard.data.settings import (
    DEFAULT_ARTIFACTS,
    DEFAULT_BENCHMARKS,
    DEFAULT_BUNDLES,
    DEFAULT_DATABASE,
    DEFAULT_LATENCY_OBJECTIVE_US,
    DashboardSettings,
)
from pipeline.cli.logging_setup import configure_logging

DEFAULT_PORT = 8501  # Streamlit's usual port
CHILD_STOP_TIMEOUT_S = 10.0  # how long the Streamlit child may take to stop on SIGTERM before it is killed
APP_PATH = Path(importlib.util.find_spec("dashboard").origin).parent / "app.py"
SERVER_FLAGS = (  # never serve beyond this machine, never phone home, never open a browser
    "--server.address", "127.0.0.1",
    "--browser.gatherUsageStats", "false",
    "--server.headless", "true",
    "--client.toolbarMode", "minimal",  # no "Deploy" button: this dashboard never leaves the machine
)


def streamlit_command(port: int = DEFAULT_PORT, app: Path = APP_PATH) -> list[str]:
    """The ``streamlit run`` command line the dashboard is served with."""
    return [sys.executable, "-m", "streamlit", "run", str(app), *SERVER_FLAGS, "--server.port", str(port)]


def dashboard_environment(
    artifacts: Path, bundles: Path, database: Path, benchmarks: Path, latency_objective_us: float,
    base: dict[str, str] | None = None,
) -> dict[str, str]:
    """``base`` (default: this process's environment) plus the dashboard's ``EDGEMED_DASHBOARD_*`` variables."""
    settings = DashboardSettings(artifacts, bundles, database, benchmarks, latency_objective_us)
    return {**(dict(os.environ) if base is None else base), **settings.to_environment()}


@click.command("dashboard")
@click.option("--artifacts", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_ARTIFACTS,
              show_default=True, help="Pipeline artefact cache (training curves, clinical metrics).")
@click.option("--bundles", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_BUNDLES,
              show_default=True, help="Published bundles (manifests and reference profiles).")
@click.option("--database", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_DATABASE,
              show_default=True, help="The collector's SQLite telemetry store (opened read-only).")
@click.option("--benchmarks", type=click.Path(dir_okay=False, path_type=Path),
              default=DEFAULT_BENCHMARKS, show_default=True,
              help="bench.json written by `edgemed bench`.")
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True,
              help="Port on 127.0.0.1.")
@click.option("--latency-objective-us", type=click.FloatRange(min=0, min_open=True),
              default=DEFAULT_LATENCY_OBJECTIVE_US, show_default=True,
              help="Latency SLO objective per inference (99 % must be faster).")
def dashboard_command(
    artifacts: Path, bundles: Path, database: Path, benchmarks: Path, port: int, latency_objective_us: float
) -> None:
    """Serve the monitoring dashboard (builds, benchmarks, fleet, drift, alerts) on http://127.0.0.1:PORT."""
    if importlib.util.find_spec("streamlit") is None:
        raise click.ClickException(
            "Streamlit is not installed. Expected: the dashboard extra. Fix: pip install -e '.[dashboard]'."
        )
    environment = dashboard_environment(artifacts, bundles, database, benchmarks, latency_objective_us)
    click.echo(f"edgemed dashboard on http://127.0.0.1:{port} (Ctrl+C to stop)", err=True)
    returncode = run_until_signalled(streamlit_command(port), environment)
    if returncode not in (0, -signal.SIGINT, -signal.SIGTERM):
        sys.exit(returncode)


def run_until_signalled(command: list[str], environment: dict[str, str]) -> int:
    """Run ``command`` as a child; SIGTERM/SIGINT to this process stops the child first. Its return code."""
    child = subprocess.Popen(command, env=environment)
    stopping: list[int] = []

    def stop(signum: int, frame: object) -> None:
        stopping.append(signum)
        if child.poll() is None:
            child.terminate()

    previous = {number: signal.signal(number, stop) for number in (signal.SIGTERM, signal.SIGINT)}
    deadline: float | None = None
    try:
        while True:
            try:
                return child.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                if stopping:
                    deadline = deadline or time.monotonic() + CHILD_STOP_TIMEOUT_S
                    if time.monotonic() > deadline:
                        child.kill()  # it ignored SIGTERM
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for number, handler in previous.items():
            signal.signal(number, handler)


@click.command("collector")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind (loopback by default).")
@click.option("--port", type=click.IntRange(1, 65535), default=8787, show_default=True)
@click.option(
    "--database",
    type=click.Path(dir_okay=False),
    default=str(DEFAULT_DATABASE),
    show_default=True,
    help="SQLite file (WAL mode) the collector writes and the dashboard reads.",
)
def collector_command(host: str, port: int, database: str) -> None:
    """Receive device telemetry over HTTP (POST /v1/telemetry) into a SQLite store."""
    from dashboard.collector.app import serve

    configure_logging(verbose=True)
    serve(host=host, port=port, database=database)
