"""``edgemed validate-archive --ray-address`` against a real Ray cluster: a head that ``ray start`` runs, with token
authentication (Ray's default for ``ray start`` since 2.60), its workers in Ray's own working directory.

The command runs in a child process, as a user runs it, with relative paths for the bundle, the archive and the
trust store: a cluster's workers do not share the driver's working directory, and a relative trust store used to
reach them as a path they could not open. Without ``RAY_AUTH_MODE=token`` the command is refused at once, naming the
setting, instead of retrying the connection for a long while; edgemed never sends the local token to an address on
its own (neither does Ray). The head is stopped with its whole process group whatever happens.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from pipeline.archive.cluster import failure_cause
from pipeline.archive.generate import ArchiveRecording, write_archive
from pipeline.build.signing import TRUST_STORE_FOLDER
from pipeline.scenarios.ecg_pvc.mitdb import excerpt, load_records
from tests.runtime.conftest import session_signing_key, tiny_bundle

pytest.importorskip("ray")

HEAD_START_S = 90.0
COMMAND_TIMEOUT_S = 240


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def ray_head():
    """(address, environment with the cluster's token) of a one-CPU head on this machine, token authentication on."""
    ray_command = Path(sys.executable).with_name("ray")
    if not ray_command.is_file():
        pytest.skip("the ray command is not installed beside this Python")
    port = _free_port()
    folder = Path(tempfile.mkdtemp(prefix="edgemed-ray-"))  # short: Ray's socket paths must fit in 107 characters
    environment = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    with open(folder / "head.log", "wb") as log:
        head = subprocess.Popen(
            [str(ray_command), "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
             "--num-cpus=1", "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={folder / 'ray'}"],
            env=environment, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + HEAD_START_S
        while not _answers(port):
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray start did not come up: {(folder / 'head.log').read_text(errors='replace')[-2000:]}")
            time.sleep(0.5)
        time.sleep(2.0)  # the head's raylet registers after the GCS port opens
        yield f"127.0.0.1:{port}", environment
    finally:
        try:
            os.killpg(head.pid, signal.SIGTERM)  # --block: the head and every process it started share its group
            head.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A folder holding the tiny ecg-pvc bundle (signed), its trust store and two minutes of MIT-BIH 119 (real)."""
    root = tmp_path_factory.mktemp("cluster")
    shutil.copytree(tiny_bundle("ecg-pvc", tmp_path_factory), root / "bundle")  # signed by the session's key
    shutil.copytree(session_signing_key(tmp_path_factory).path.parent / TRUST_STORE_FOLDER, root / "trust-store")
    record = load_records(["119"])[0]
    recordings = []
    for start in (0.0, 60.0):
        part = excerpt(record, 60.0, start)
        recordings.append(ArchiveRecording(f"mitdb-119-{int(start):04d}", part.signal_mv, part.sample_rate_hz,
                                           part.beat_indices,
                                           ["V" if is_v else "non-V" for is_v in part.is_pvc.tolist()], group="119"))
    write_archive(root / "archive", recordings, "two MIT-BIH 119 minutes")
    return root


def _validate(root: Path, address: str, environment: dict, output: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", "from pipeline.cli import main; main()", "validate-archive", "bundle",
               "--archive", "archive", "--trust-store", "trust-store", "--ray-address", address, "--output", output,
               "--workers", "1", "--no-progress"]
    return subprocess.run(command, cwd=root, env={**environment, "PYTHONPATH": str(Path.cwd())},
                          capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, stdin=subprocess.DEVNULL)


def test_a_cluster_with_token_authentication_validates_an_archive_given_by_relative_paths(ray_head, workspace):
    address, environment = ray_head
    result = _validate(workspace, address, environment, "out")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"on cluster at {address}" in result.stdout and "2/2 recordings ran" in result.stdout, result.stdout
    report = json.loads((workspace / "out" / "report.json").read_text())
    assert report["totals"]["succeeded"] == 2 and report["totals"]["failed"] == 0, report["totals"]


def test_without_the_token_setting_the_command_is_refused_at_once_naming_it(ray_head, workspace):
    address, environment = ray_head
    without = {name: value for name, value in environment.items() if name != "RAY_AUTH_MODE"}
    result = _validate(workspace, address, without, "refused")  # a hang fails on the command's timeout
    assert result.returncode == 1, result.stdout + result.stderr
    said = result.stdout + result.stderr
    assert "requires token authentication" in said and "RAY_AUTH_MODE=token" in said and "Fix:" in said, said
    assert "Traceback" not in said and not (workspace / "refused").exists()


def test_a_ray_client_address_is_refused_before_anything_runs():
    """Ray Data does not run over Ray Client: the run used to stop half-way with Ray's internal AttributeError."""
    from pipeline.archive.cluster import check_reachable
    from pipeline.archive.layout import ArchiveError

    with pytest.raises(ArchiveError, match="Ray Client address") as refused:
        check_reachable("ray://127.0.0.1:10001")
    assert "Fix:" in str(refused.value) and "--ray-address HOST:PORT" in str(refused.value)


def test_the_cause_of_a_remote_failure_is_its_root_exception_without_the_traceback():
    remote = ("The actor died because of an error raised in its creation task, \x1b[36mray::MapWorker(MapBatches("
              "RecordingValidator)).__init__()\x1b[39m (pid=1, ip=127.0.0.1)\n"
              "  File \"/site-packages/ray/data/_internal/execution/util.py\", line 115, in __init__\n"
              "    super().__init__(*args, **kwargs)\n           ^^^^^^^^^^^^^\n"
              "ValueError: an intermediate problem\n"
              "  File \"/work/runtime/trust/policy.py\", line 132, in from_store\n"
              "runtime.trust.errors.TrustStoreError: trust store keys is not a folder. Expected: a folder of keys. "
              "Fix: provision the device.")
    assert failure_cause(RuntimeError(remote)) == ("TrustStoreError: trust store keys is not a folder. Expected: a "
                                                   "folder of keys. Fix: provision the device.")
    assert failure_cause(RuntimeError("lost\nmore")) == "RuntimeError: lost"
    assert len(failure_cause(RuntimeError("KeyError: " + "x" * 5000))) == 600
