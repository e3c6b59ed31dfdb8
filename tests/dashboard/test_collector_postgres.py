"""The collector on PostgreSQL: a database it cannot reach is HTTP 503 (never an acknowledgement, never 500), the
devices keep their outbox and deliver everything, once, after the server is back; a store whose schema is newer
than the code stops the collector before it serves."""

from __future__ import annotations

import sqlite3
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("psycopg")

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from fastapi.testclient import TestClient

from click.testing import CliRunner

from dashboard.collector.app import create_app
from dashboard.collector.interface import StoreUnavailableError
from dashboard.collector.migrations import HEAD
from dashboard.collector.postgres_server import PostgresServer, free_port
from dashboard.collector.postgres_store import PostgresStore
from dashboard.collector.store import SqliteStore
from pipeline.cli.monitor import collector_command
from runtime.telemetry import Outbox, Uploader
from tests.dashboard.store_locations import throwaway_server
from tests.dashboard.test_collector import batch
from tests.runtime.test_telemetry_records import DEVICE_ID, sample_record
from tests.runtime.test_uploader import running_collector


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[PostgresServer]:
    """A server of this test's own: it is stopped and started again, which the shared one must never be."""
    yield from throwaway_server(tmp_path)


def test_postgres_down_is_503_the_outbox_is_kept_and_delivered_once_after_restart(own_server, tmp_path):
    store = PostgresStore(own_server.url(), pool_wait_s=2.0)
    outbox = Outbox(tmp_path / "outbox.sqlite3", DEVICE_ID)
    port = free_port()
    try:
        with running_collector(store, port) as url:
            for _ in range(10):
                outbox.append(sample_record())
            assert Uploader(outbox, url).upload_pending() == 10 and store.count() == 10

            own_server.stop()
            for _ in range(25):
                outbox.append(sample_record())
            assert Uploader(outbox, url, batch_size=10, timeout_s=10).upload_pending() == 0
            assert outbox.count() == 25  # nothing acknowledged, nothing deleted
            with TestClient(create_app(store)) as client:
                response = client.post("/v1/telemetry", json=batch(3, first=100))
                assert response.status_code == 503 and response.headers["retry-after"] == "30"
                assert response.json()["retry"] is True and "PostgreSQL server is running" in response.json()["detail"]
                assert client.get("/v1/health").status_code == 200  # the collector itself is up (liveness)…
                not_ready = client.get("/v1/ready")  # …but not ready: it cannot store
                assert not_ready.status_code == 503 and not_ready.headers["retry-after"] == "30"
                reason = not_ready.json()
                assert reason["retry"] is True and "PostgreSQL server is running" in reason["detail"]

            own_server.start()
            with TestClient(create_app(store)) as client:
                assert client.get("/v1/ready").json() == {"status": "ready", "rollups_pending": 0}
            assert Uploader(outbox, url, batch_size=10).upload_pending() == 25
            assert outbox.count() == 0 and store.count() == 35
            assert [record["sequence"] for record in store.records(DEVICE_ID)] == list(range(1, 36))

        own_server.stop()  # a restart between two batches: the pooled connections are dead, replaced on use
        own_server.start()
        receipt = store.insert_batch(DEVICE_ID, [sample_record(sequence=36, time="2025-03-01T12:00:00.000000Z")])
        assert receipt.acknowledged == [36] and store.count() == 36
    finally:
        store.close()
        outbox.close()


class _DownStore:
    """A store whose database is gone: every write raises ``StoreUnavailableError``."""

    location = "nowhere"

    def insert_batch(self, *arguments: object, **options: object) -> None:
        raise StoreUnavailableError("the telemetry store nowhere cannot be written (connection refused)")


def test_an_unavailable_store_is_503_with_a_json_reason_never_500():
    client = TestClient(create_app(_DownStore()), raise_server_exceptions=False)
    for _ in range(3):
        response = client.post("/v1/telemetry", json=batch(5))
        assert response.status_code == 503 and "connection refused" in response.json()["detail"]
    assert client.post("/v1/telemetry", json={"records": []}).status_code == 422  # bad input is still 4xx


def test_the_collector_does_not_start_on_a_store_newer_than_the_code(tmp_path):
    database = tmp_path / "telemetry.sqlite3"
    SqliteStore(database).close()
    with sqlite3.connect(database) as connection:
        connection.execute("INSERT INTO schema_version VALUES (?, 'newer', '2030-01-01T00:00:00Z', '9.9')", (HEAD + 1,))
    result = CliRunner().invoke(collector_command, ["--database", str(database), "--port", str(free_port())])
    assert result.exit_code == 1, result.output
    assert f"schema version {HEAD + 1}" in result.output and f"version {HEAD}" in result.output
    assert "did not start" in result.output


def test_the_collector_does_not_start_without_its_database():
    url = f"postgresql://edgemed@127.0.0.1:{free_port()}/edgemed?connect_timeout=2"
    result = CliRunner().invoke(collector_command, ["--database-url", url, "--port", str(free_port())])
    assert result.exit_code == 1 and "did not start" in result.output and "cannot be written" in result.output


@pytest.mark.parametrize(
    "arguments",
    [["--database", "a.sqlite3", "--database-url", "postgresql://edgemed@127.0.0.1/edgemed"],
     ["--database-url", "mysql://somewhere/edgemed"]],
)
def test_one_store_location_at_a_time(arguments):
    assert CliRunner().invoke(collector_command, arguments).exit_code == 2


def test_a_folder_that_already_holds_files_is_not_taken_over_by_the_server(tmp_path):
    """initdb runs as the server's own user, who is given the folder: a user's folder with files in it (and no
    cluster) is refused before anything is changed, its owner and files left as they were."""
    from dashboard.collector.postgres_server import PostgresServerError

    (tmp_path / "notes.txt").write_text("mine")
    before = tmp_path.stat()
    with pytest.raises(PostgresServerError, match="already holds files") as caught:
        PostgresServer(tmp_path, free_port()).initialise()
    assert "new or empty folder" in caught.value.expected and str(tmp_path / "postgres") in caught.value.fix
    after = tmp_path.stat()
    assert (after.st_uid, after.st_gid) == (before.st_uid, before.st_gid)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt"]
