"""Where the store tests keep their stores: a SQLite file, or a fresh schema on a real PostgreSQL server started once
per session (Debian's binaries, installed first when missing and root; the PostgreSQL cases are skipped only when no
binaries can be found or installed). ``tests/dashboard/conftest.py`` offers ``postgres_server`` and ``location``."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dashboard.collector.postgres_server import (
    PostgresServer,
    PostgresServerError,
    find_binaries,
    free_port,
    install_binaries,
    reachable,
    service_account,
)
from dashboard.data.settings import DatabaseUrl

BACKENDS = ("sqlite", "postgres")


def postgres_binaries() -> Path:
    """Debian's server binaries, installed first when missing and root; the test is skipped only without them."""
    found = find_binaries()
    if found is not None:
        return found
    try:
        return install_binaries()
    except PostgresServerError as error:
        pytest.skip(f"PostgreSQL server binaries cannot be found or installed: {error}")


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    yield from throwaway_server(tmp_path_factory.mktemp("postgres"))


def throwaway_server(folder: Path) -> Iterator[PostgresServer]:
    """A non-durable server on a free port in ``folder`` (or, when we are root and the postgres user cannot enter
    pytest's private folders, in a fresh folder under the system's temporary folder), stopped afterwards."""
    binaries = postgres_binaries()
    private = None
    if not reachable(folder, service_account()):
        folder = private = Path(tempfile.mkdtemp(prefix="edgemed-test-postgres-"))
    server = PostgresServer(folder, free_port(), durable=False, binaries=binaries)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        if private is not None:
            shutil.rmtree(private, ignore_errors=True)


def fresh_location(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Path | DatabaseUrl:
    """A new SQLite file, or a new empty schema of the server's database (the store's only schema on its search
    path: to the store an empty database, made in milliseconds where CREATE DATABASE takes ~0.5 s)."""
    if backend == "sqlite":
        return tmp_path / f"store-{uuid.uuid4().hex[:8]}.sqlite3"
    psycopg = pytest.importorskip("psycopg")
    server: PostgresServer = request.getfixturevalue("postgres_server")
    schema = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.url(), autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    return DatabaseUrl(f"{server.url()}&options=-csearch_path%3D{schema}")


@pytest.fixture(params=BACKENDS)
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Path | DatabaseUrl:
    """An empty store location on each backend."""
    return fresh_location(request.param, request, tmp_path)
