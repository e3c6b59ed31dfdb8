"""The on-device outbox: ordering, acknowledgement, bounds, threads, and surviving kill -9."""

from __future__ import annotations

import json
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from runtime.telemetry import Outbox, TelemetryError, pseudonymous_device_id
from tests.runtime.test_telemetry_records import DEVICE_ID, sample_record

REPOSITORY = Path(__file__).resolve().parents[2]


def sequences(outbox: Outbox) -> list[int]:
    return [record["sequence"] for record in outbox.pending(10**9)]


def test_append_pending_acknowledge(tmp_path):
    with Outbox(tmp_path / "outbox.sqlite3", DEVICE_ID) as outbox:
        assert [outbox.append(sample_record()) for _ in range(5)] == [1, 2, 3, 4, 5]
        batch = outbox.pending(3)
        assert [record["sequence"] for record in batch] == [1, 2, 3]
        assert batch[0]["device_id"] == DEVICE_ID and batch[0]["time"].endswith("Z")
        assert outbox.count() == 5
        assert outbox.acknowledge([2, 4, 99]) == 2
        assert sequences(outbox) == [1, 3, 5] and outbox.count() == 3


def test_append_many_commits_a_batch_together_or_not_at_all(tmp_path):
    with Outbox(tmp_path / "outbox.sqlite3", DEVICE_ID, max_rows=6) as outbox:
        assert outbox.append(sample_record()) == 1
        assert outbox.append_many([sample_record() for _ in range(3)]) == [2, 3, 4]
        bad = {**sample_record(), "patient_name": "x"}
        with pytest.raises(TelemetryError):
            outbox.append_many([sample_record(), bad])
        assert sequences(outbox) == [1, 2, 3, 4]  # nothing of the rejected batch was written
        assert outbox.append_many([sample_record() for _ in range(4)]) == [5, 6, 7, 8]
        assert sequences(outbox) == [3, 4, 5, 6, 7, 8] and outbox.dropped() == 2
        assert outbox.append_many([]) == []


def test_sequences_are_monotonic_and_never_reused(tmp_path):
    path = tmp_path / "outbox.sqlite3"
    with Outbox(path, DEVICE_ID) as outbox:
        for _ in range(3):
            outbox.append(sample_record())
        outbox.acknowledge([1, 2, 3])
        assert outbox.count() == 0
        assert outbox.append(sample_record()) == 4
    with Outbox(path, DEVICE_ID) as reopened:
        reopened.acknowledge([4])
        assert reopened.append(sample_record()) == 5
        assert reopened.last_sequence() == 5


def test_wal_mode_and_full_synchronous(tmp_path):
    path = tmp_path / "outbox.sqlite3"
    with Outbox(path, DEVICE_ID) as outbox:
        outbox.append(sample_record())
        assert outbox._pool.connection().execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_full_outbox_drops_the_oldest_and_counts_them(tmp_path):
    path = tmp_path / "outbox.sqlite3"
    with Outbox(path, DEVICE_ID, max_rows=5) as outbox:
        for _ in range(8):
            outbox.append(sample_record())
        assert outbox.count() == 5
        assert sequences(outbox) == [4, 5, 6, 7, 8]
        assert outbox.dropped() == 3
    with Outbox(path, DEVICE_ID, max_rows=5) as reopened:
        assert reopened.dropped() == 3
        reopened.append(sample_record())
        assert reopened.dropped() == 4 and sequences(reopened) == [5, 6, 7, 8, 9]


def test_invalid_records_and_foreign_devices_are_refused(tmp_path):
    path = tmp_path / "outbox.sqlite3"
    with Outbox(path, DEVICE_ID) as outbox:
        with pytest.raises(TelemetryError) as error:
            outbox.append(sample_record(sequence=3))
        assert error.value.field == "sequence"
        with pytest.raises(TelemetryError) as error:
            outbox.append(sample_record(patient_name="x"))
        assert error.value.field == "patient_name"
        with pytest.raises(TelemetryError):
            outbox.append(sample_record(device_id=pseudonymous_device_id("SN-2", "fleet-salt")))
        record = sample_record()
        del record["device_id"]
        assert outbox.append(record) == 1  # the outbox fills in its device id
        assert outbox.count() == 1
    with pytest.raises(TelemetryError, match="another device"):
        Outbox(path, pseudonymous_device_id("SN-2", "fleet-salt"))


def test_a_cyclic_or_deeply_nested_record_is_refused_in_words_and_nothing_is_written(tmp_path):
    """Never a RecursionError: the scan stops at the depth the collector accepts (MAX_RECORD_DEPTH), so a record the
    collector would refuse never sits in the outbox blocking the ones after it."""
    from runtime.telemetry.records import MAX_RECORD_DEPTH, scan_privacy

    cyclic: dict = {}
    cyclic["loop"] = cyclic
    deep: dict = {}
    node = deep
    for _ in range(5_000):  # far beyond Python's recursion limit
        node["next"] = node = {}
    just_too_deep: dict = {}
    node = just_too_deep
    for _ in range(MAX_RECORD_DEPTH - 1):  # "extra"'s value is level 2 (the record 1): its deepest is one too deep
        node["next"] = node = {}
    with Outbox(tmp_path / "outbox.sqlite3", DEVICE_ID) as outbox:
        assert outbox.append(sample_record()) == 1
        for extra in ({"features": cyclic}, {"extra": [cyclic]}, {"extra": deep}, {"extra": just_too_deep}):
            with pytest.raises(TelemetryError, match=f"deeper than {MAX_RECORD_DEPTH} levels") as error:
                outbox.append_many([sample_record(), sample_record(**extra)])
            assert "Fix:" in str(error.value) and error.value.field.startswith(next(iter(extra)))
        assert sequences(outbox) == [1]
    allowed: dict = {}
    node = allowed
    for _ in range(MAX_RECORD_DEPTH - 1):  # the deepest the collector's body limit leaves a record
        node["next"] = node = {}
    scan_privacy(allowed, "")
    with pytest.raises(TelemetryError, match="deeper than"):
        scan_privacy({"one_more": allowed}, "")


def test_one_writer_and_one_uploader_thread(tmp_path):
    outbox = Outbox(tmp_path / "outbox.sqlite3", DEVICE_ID)
    total = 300
    written = threading.Event()
    delivered: list[int] = []
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for _ in range(total):
                outbox.append(sample_record())
        except (TelemetryError, sqlite3.Error) as error:
            errors.append(error)
        finally:
            written.set()

    def upload() -> None:
        try:
            while not (written.is_set() and outbox.count() == 0):
                batch = [record["sequence"] for record in outbox.pending(25)]
                delivered.extend(batch)
                outbox.acknowledge(batch)
        except (TelemetryError, sqlite3.Error) as error:
            errors.append(error)

    threads = [threading.Thread(target=write), threading.Thread(target=upload)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    outbox.close()
    assert not errors
    assert delivered == list(range(1, total + 1))


_APPEND_FOREVER = """
import json, sys
from pathlib import Path
from runtime.telemetry import Outbox
outbox = Outbox(Path(sys.argv[1]), sys.argv[2])
record = json.loads(sys.argv[3])
while True:
    print(outbox.append(record), flush=True)
"""


def _lines(process: subprocess.Popen) -> queue.Queue:
    """Lines the process prints, delivered through a queue by a reader thread."""
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in process.stdout:
            lines.put(line.strip())
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return lines


def test_every_committed_append_survives_kill_9(tmp_path):
    path = tmp_path / "outbox.sqlite3"
    record = sample_record()
    process = subprocess.Popen(
        [sys.executable, "-c", _APPEND_FOREVER, str(path), DEVICE_ID, json.dumps(record)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPOSITORY,
    )
    lines = _lines(process)
    printed: list[int] = []
    try:
        while len(printed) < 200:
            line = lines.get(timeout=30)
            assert line is not None, process.stderr.read()
            printed.append(int(line))
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    while (line := lines.get(timeout=10)) is not None:  # printed after our read, before the kill
        printed.append(int(line))
    assert process.returncode == -signal.SIGKILL

    with Outbox(path, DEVICE_ID) as reopened:
        stored = sequences(reopened)
        assert set(printed) <= set(stored)
        assert stored == list(range(1, len(stored) + 1))  # nothing committed is missing
        assert reopened.append(record) == len(stored) + 1
        assert reopened._pool.connection().execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_renumber_after_moves_every_pending_record_above_both_numbers_in_order(tmp_path):
    from runtime.telemetry.outbox import RENUMBER_CHUNK

    with Outbox(tmp_path / "outbox.sqlite3", DEVICE_ID) as outbox:
        count = RENUMBER_CHUNK + 7  # more than one chunk
        outbox.append_many([sample_record(latency_us=float(index)) for index in range(count)])
        outbox.acknowledge([1, 2, 5])  # gaps are kept
        before = outbox.pending(count)
        assert outbox.renumber_after(3) == count - 3
        after = outbox.pending(count)
        assert [record["sequence"] for record in after] == [sequence + count + 1 - 3 for sequence in
                                                           (record["sequence"] for record in before)]
        assert [record["latency_us"] for record in after] == [record["latency_us"] for record in before]
        assert outbox.last_sequence() == after[-1]["sequence"] and outbox.count() == count - 3
        assert outbox.renumber_after(3) == 0  # nothing at or below it any more
        assert outbox.append(sample_record()) == after[-1]["sequence"] + 1
        assert outbox.renumber_after(10**6) == count - 2 and outbox.pending(1)[0]["sequence"] == 10**6 + 1


@pytest.mark.parametrize("value", [-1, True, 1.5, "3"])
def test_renumber_after_refuses_what_is_not_a_sequence(tmp_path, value):
    with Outbox(tmp_path / "outbox.sqlite3", DEVICE_ID) as outbox:
        outbox.append(sample_record())
        with pytest.raises(TelemetryError, match="resume_after"):
            outbox.renumber_after(value)
        assert outbox.pending(1)[0]["sequence"] == 1


def test_renumber_beyond_the_largest_sequence_is_refused_and_changes_nothing(tmp_path):
    with Outbox(tmp_path / "outbox.sqlite3", DEVICE_ID) as outbox:
        outbox.append_many([sample_record() for _ in range(3)])
        with pytest.raises(TelemetryError, match="largest sequence"):
            outbox.renumber_after(2**63 - 2)
        assert [record["sequence"] for record in outbox.pending(5)] == [1, 2, 3]
