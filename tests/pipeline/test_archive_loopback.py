"""The local Ray that archive validation starts listens on the loopback interface only (pipeline/archive/loopback.py).

Runs in its own process: the other archive tests keep a Ray running in theirs, and ``ray_session`` joins a Ray already
running instead of starting one.
"""

import ipaddress
import json
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")

PROBE = textwrap.dedent("""
    import json, os, ray, psutil
    from pipeline.archive.loopback import SINGLE_NODE_VARIABLE
    from pipeline.archive.run import ArchiveRunConfig, ray_session

    with ray_session(ArchiveRunConfig(workers=1)) as described:
        @ray.remote
        def task():
            return os.getpid()

        worker = ray.get(task.remote())  # a worker process, with its own server
        listening = []
        for process in [psutil.Process()] + psutil.Process().children(recursive=True):
            try:
                connections = process.net_connections(kind="inet")
            except psutil.Error:
                continue
            listening += [[process.name(), connection.laddr.ip, connection.laddr.port] for connection in connections
                          if connection.status == psutil.CONN_LISTEN]
    print(json.dumps({"described": described, "listening": listening, "worker": worker,
                      "variable_after": os.environ.get(SINGLE_NODE_VARIABLE),
                      "constant_after": ray._private.ray_constants.ENABLE_RAY_CLUSTER}))
""")


def _is_loopback(address: str) -> bool:
    parsed = ipaddress.ip_address(address)
    mapped = getattr(parsed, "ipv4_mapped", None)  # [::ffff:127.0.0.1]: a dual-stack socket bound to 127.0.0.1
    return (mapped or parsed).is_loopback


def test_local_ray_servers_listen_on_loopback_only():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    probe = json.loads(done.stdout.strip().splitlines()[-1])
    assert probe["described"].startswith("local")
    names = {name for name, _, _ in probe["listening"]}
    assert len(probe["listening"]) >= 3 and {"gcs_server", "raylet"} <= names, probe["listening"]
    exposed = [entry for entry in probe["listening"] if not _is_loopback(entry[1])]
    assert exposed == [], f"Ray servers listening beyond the loopback interface: {exposed}"
    assert probe["variable_after"] is None and probe["constant_after"] is True  # the switch is restored


def test_loopback_address_rule():
    assert _is_loopback("127.0.0.1") and _is_loopback("::ffff:127.0.0.1") and _is_loopback("::1")
    assert not _is_loopback("0.0.0.0") and not _is_loopback("::") and not _is_loopback("192.0.2.2")
