"""``edgemed collector`` and ``edgemed dashboard``: the monitoring services, on this machine only.

The collector receives device telemetry over HTTP into a telemetry store: a SQLite file (``--database``, the
default) or a PostgreSQL database (``--database-url postgresql://…`` or ``$EDGEMED_DATABASE_URL``; ``make
postgres`` runs the project's own server, see ``pipeline/cli/postgres.py``). It migrates the store on start and
refuses one whose schema is newer than it knows, naming both versions. The dashboard reads the same store
read-only. The dashboard server binds to 127.0.0.1 with usage statistics off and no browser launched; the
artefact, bundle, telemetry and benchmark locations reach the app as ``EDGEMED_DASHBOARD_*`` environment
variables (absolute paths, or the database URL).
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from dashboard.data.settings import (
    DEFAULT_ARTIFACTS,
    DEFAULT_BENCHMARKS,
    DEFAULT_BUNDLES,
    DEFAULT_DATABASE,
    DEFAULT_LATENCY_OBJECTIVE_US,
    WARM_UP_VARIABLE,
    DashboardSettings,
    DatabaseUrl,
    is_database_url,
)
from pipeline.cli.logging_setup import configure_logging
from pipeline.cli.parameters import FiniteFloatRange
from runtime.errors import EdgemedError

DEFAULT_PORT = 8501  # Streamlit's usual port
CHILD_STOP_TIMEOUT_S = 10.0  # how long the Streamlit child may take to stop on SIGTERM before it is killed
APP_PATH = Path(importlib.util.find_spec("dashboard").origin).parent / "app.py"
DATABASE_URL_VARIABLE = "EDGEMED_DATABASE_URL"  # keeps a password off the command line
SERVER_FLAGS = (  # never serve beyond this machine, never phone home, never open a browser
    "--server.address", "127.0.0.1",
    "--browser.gatherUsageStats", "false",
    "--server.headless", "true",
    "--client.toolbarMode", "minimal",  # no "Deploy" button: this dashboard never leaves the machine
)


def streamlit_command(port: int = DEFAULT_PORT, app: Path = APP_PATH) -> list[str]:
    """The ``streamlit run`` command line the dashboard is served with."""
    return [sys.executable, "-m", "streamlit", "run", str(app), *SERVER_FLAGS, "--server.port", str(port)]


def database_url_option(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The ``--database-url`` option (also ``$EDGEMED_DATABASE_URL``), its help starting with ``what``."""
    return click.option(
        "--database-url", envvar=DATABASE_URL_VARIABLE, default=None, metavar="postgresql://…",
        help=f"{what} a PostgreSQL database instead of the SQLite file (or ${DATABASE_URL_VARIABLE}).")


def store_location(database: Path, database_url: str | None) -> Path | DatabaseUrl:
    """The telemetry store the options name: the PostgreSQL URL when given, else the SQLite file."""
    context = click.get_current_context()
    if database_url is None:
        return Path(database)
    if not is_database_url(database_url):
        raise click.BadParameter("expected postgresql://user@host:port/database", param_hint="--database-url")
    if context.get_parameter_source("database") is click.core.ParameterSource.COMMANDLINE:
        raise click.UsageError(f"give --database or --database-url (or ${DATABASE_URL_VARIABLE}), not both")
    return DatabaseUrl(database_url)


def dashboard_environment(
    artifacts: Path, bundles: Path, database: Path | DatabaseUrl, benchmarks: Path, latency_objective_us: float,
    base: dict[str, str] | None = None, warm_up: bool = False,
) -> dict[str, str]:
    """``base`` (default: this process's environment) plus the dashboard's ``EDGEMED_DASHBOARD_*`` variables."""
    settings = DashboardSettings(artifacts, bundles, database, benchmarks, latency_objective_us)
    warm = {WARM_UP_VARIABLE: "1" if warm_up else "0"}
    return {**(dict(os.environ) if base is None else base), **settings.to_environment(), **warm}


@click.command("dashboard")
@click.option("--artifacts", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_ARTIFACTS,
              show_default=True, help="Pipeline artefact cache (training curves, clinical metrics).")
@click.option("--bundles", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_BUNDLES,
              show_default=True, help="Published bundles (manifests and reference profiles).")
@click.option("--database", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_DATABASE,
              show_default=True, help="The collector's SQLite telemetry store (opened read-only).")
@database_url_option("Read")
@click.option("--benchmarks", type=click.Path(dir_okay=False, path_type=Path),
              default=DEFAULT_BENCHMARKS, show_default=True,
              help="bench.json written by `edgemed bench`.")
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True,
              help="Port on 127.0.0.1.")
@click.option("--latency-objective-us", type=FiniteFloatRange(min=0, min_open=True),
              default=DEFAULT_LATENCY_OBJECTIVE_US, show_default=True,
              help="Latency SLO objective per inference (99 % must be faster).")
@click.option("--warm-up/--no-warm-up", default=True, show_default=True,
              help="Read the Fleet page's default window, the Alerts page's windows, then the Fleet page's other time "
              "windows in the background at start, so that the first visits are served from memory.")
def dashboard_command(
    artifacts: Path, bundles: Path, database: Path, database_url: str | None, benchmarks: Path, port: int,
    latency_objective_us: float, warm_up: bool,
) -> None:
    """Serve the monitoring dashboard (builds, benchmarks, fleet, drift, alerts) on http://127.0.0.1:PORT."""
    if importlib.util.find_spec("streamlit") is None:
        raise click.ClickException(
            "Streamlit is not installed. Expected: the dashboard extra. Fix: pip install -e '.[dashboard]'."
        )
    location = store_location(database, database_url)
    environment = dashboard_environment(artifacts, bundles, location, benchmarks, latency_objective_us,
                                        warm_up=warm_up)
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
@database_url_option("Store into")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Collector processes on the one port (each checks uploads on its own core).")
def collector_command(host: str, port: int, database: str, database_url: str | None, workers: int) -> None:
    """Receive device telemetry over HTTP (POST /v1/telemetry) into a SQLite or PostgreSQL store."""
    from dashboard.collector.app import serve

    location = store_location(Path(database), database_url)
    configure_logging(verbose=True)
    try:
        serve(host=host, port=port, database=location, workers=workers)
    except EdgemedError as error:  # the address cannot be bound, the store opened, or its schema is newer
        raise click.ClickException(f"the collector did not start: {error}") from error
