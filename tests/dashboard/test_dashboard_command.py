"""``edgemed dashboard`` stops its Streamlit child on SIGTERM: the port is released and no server is left."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("streamlit")

REPOSITORY = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found += [int(child) for child in task.read_text().split()]
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads child processes from /proc")
@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_streamlit_child_and_frees_the_port(tmp_path, signal_number):
    port = _free_port()
    command = [sys.executable, "-c", "from pipeline.cli import main; main()", "dashboard", "--port", str(port),
               "--artifacts", str(tmp_path / "artifacts"), "--bundles", str(tmp_path / "bundles"),
               "--database", str(tmp_path / "telemetry.sqlite3"), "--benchmarks", str(tmp_path / "bench.json")]
    parent = subprocess.Popen(command, cwd=REPOSITORY, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while not _listening(port) and time.monotonic() < deadline and parent.poll() is None:
            time.sleep(0.3)
        assert _listening(port), "the dashboard never listened"
        children = _children(parent.pid)
        assert children, "no Streamlit child process"
        parent.send_signal(signal_number)
        assert parent.wait(timeout=30) == 0
        deadline = time.monotonic() + 10
        while (_listening(port) or any(map(_alive, children))) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _listening(port), "the port is still open"
        assert not any(map(_alive, children)), "the Streamlit child is still running"
    finally:
        if parent.poll() is None:
            parent.kill()
        for child in _children(parent.pid) if parent.poll() is None else []:
            os.kill(child, signal.SIGKILL)
