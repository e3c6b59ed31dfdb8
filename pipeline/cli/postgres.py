"""``edgemed postgres start|stop|status|url``: the project's own PostgreSQL server, for development.

A cluster in ``--folder`` (default ``.postgres/``, git-ignored) served on 127.0.0.1:``--port`` only; ``start``
initialises it on first use (installing Debian's ``postgresql-15`` first when the binaries are missing and this
is root), creates the ``edgemed`` database and prints its URL, which ``edgemed collector --database-url`` and
``edgemed dashboard --database-url`` take. ``make postgres`` and ``make dashboard-pg`` run it as
``python -m pipeline.cli.postgres`` (it works before the group is registered in ``pipeline/cli/__init__.py``).
A fleet in production uses a managed server instead: only the URL changes.
"""

from __future__ import annotations

from pathlib import Path

import click

from dashboard.collector.postgres_server import (
    DEFAULT_FOLDER,
    DEFAULT_PORT,
    PostgresServer,
    find_binaries,
    install_binaries,
)
from pipeline.cli.logging_setup import configure_logging
from runtime.errors import EdgemedError

_folder = click.option("--folder", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_FOLDER,
                       show_default=True, help="Where the cluster (data/), its log and its pgpass live.")
_port = click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True,
                     help="TCP port on 127.0.0.1.")


@click.group("postgres")
def postgres_command() -> None:
    """The project's own PostgreSQL server on 127.0.0.1 (development and tests)."""


@postgres_command.command("start")
@_folder
@_port
@click.option("--install/--no-install", default=True, show_default=True,
              help="Install Debian's postgresql-15 when the binaries are missing (root only).")
def start_command(folder: Path, port: int, install: bool) -> None:
    """Initialise (first time), start and create the database; print its URL."""
    configure_logging(verbose=False)
    try:
        binaries = find_binaries() or (install_binaries() if install else None)
        url = PostgresServer(folder, port, binaries=binaries).start()
    except EdgemedError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"PostgreSQL on 127.0.0.1:{port}, data in {folder / 'data'}", err=True)
    click.echo(url)


@postgres_command.command("stop")
@_folder
def stop_command(folder: Path) -> None:
    """Stop the server if it runs (committed data stays in the folder)."""
    try:
        PostgresServer(folder).stop()
    except EdgemedError as error:
        raise click.ClickException(str(error)) from error


@postgres_command.command("status")
@_folder
@_port
def status_command(folder: Path, port: int) -> None:
    """Say whether the server runs; exit 3 when it does not (as pg_ctl status)."""
    server = PostgresServer(folder, port)
    try:
        running = server.running()
    except EdgemedError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"running: {server.url()}" if running else f"not running ({folder})")
    if not running:
        click.get_current_context().exit(3)


@postgres_command.command("url")
@_folder
@_port
def url_command(folder: Path, port: int) -> None:
    """Print the database URL (no password: it stays in the folder's pgpass)."""
    click.echo(PostgresServer(folder, port).url())


if __name__ == "__main__":
    postgres_command(prog_name="edgemed postgres")
