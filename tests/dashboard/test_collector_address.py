"""The collector refuses an address it cannot bind before it opens a store or starts a server."""

from __future__ import annotations

import socket

import pytest
from click.testing import CliRunner

from dashboard.collector.app import serve
from dashboard.collector.port import CollectorAddressError, check_bindable
from pipeline.cli import main


@pytest.fixture
def taken_port():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def test_a_taken_port_is_refused_with_what_to_do_before_the_store_is_opened(taken_port, tmp_path):
    with pytest.raises(CollectorAddressError, match=f"port {taken_port} on 127.0.0.1 is already in use") as caught:
        serve(port=taken_port, database=tmp_path / "telemetry.sqlite3")
    assert "--port" in str(caught.value) and f"sport = :{taken_port}" in str(caught.value)
    assert not (tmp_path / "telemetry.sqlite3").exists()  # nothing opened, nothing migrated


def test_the_command_says_so_in_one_line_and_exits_1(taken_port, tmp_path):
    result = CliRunner().invoke(main, ["collector", "--port", str(taken_port),
                                       "--database", str(tmp_path / "telemetry.sqlite3")])
    assert result.exit_code == 1
    assert "the collector did not start: port" in result.output and "Traceback" not in result.output


def test_an_address_of_no_interface_and_an_unresolvable_host_are_refused():
    with pytest.raises(CollectorAddressError, match="not an address of this machine"):
        check_bindable("192.0.2.1", 8787)  # TEST-NET-1: never assigned to a host
    with pytest.raises(CollectorAddressError, match="does not resolve"):
        check_bindable("no-such-host.invalid", 8787)


def test_a_free_port_passes_and_stays_free():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    check_bindable("127.0.0.1", port)
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))  # the check let go of it
