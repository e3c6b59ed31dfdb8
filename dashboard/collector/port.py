"""Whether the collector's address can be bound, checked before the store is opened or the server started.

uvicorn reports a taken port as one logged line after start-up and exits with status 3, by which time a
``make dashboard`` would find another process's collector answering on that port and send the fleet to it. The
collector binds the address itself first, the way uvicorn will (``SO_REUSEADDR``, so a port in TIME_WAIT is free),
and refuses a taken or forbidden one with what to do.
"""

from __future__ import annotations

import errno
import socket

from runtime.errors import EdgemedError


class CollectorAddressError(EdgemedError):
    """The collector's host and port cannot be bound."""


def check_bindable(host: str, port: int) -> None:
    """Bind ``host``:``port`` once and let go, or raise ``CollectorAddressError`` naming the cause and the fix."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise CollectorAddressError(f"the collector's host {host!r} does not resolve ({error.strerror})",
                                    expected="an address of this machine: 127.0.0.1 (the default) or a name of it",
                                    fix="pass --host 127.0.0.1") from error
    family, kind, protocol, _, address = infos[0]
    with socket.socket(family, kind, protocol) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise CollectorAddressError(
                    f"port {port} on {host} is already in use by another process",
                    expected="a free port for the collector",
                    fix=f"stop that process (`ss -ltnp 'sport = :{port}'` names it; an earlier `make dashboard` or "
                        "`edgemed collector` may still run) or pass --port with a free one") from error
            if error.errno == errno.EACCES:
                raise CollectorAddressError(f"binding port {port} on {host} is not permitted to this user",
                                            expected="a port from 1024 up (lower ones need privileges)",
                                            fix="pass --port 8787 (the default)") from error
            if error.errno == errno.EADDRNOTAVAIL:
                raise CollectorAddressError(f"{host} is not an address of this machine",
                                            expected="an address of one of this machine's interfaces",
                                            fix="pass --host 127.0.0.1 (the default)") from error
            raise CollectorAddressError(f"cannot bind {host}:{port}: {error.strerror}",
                                        expected="a host and port this machine can listen on",
                                        fix="pass another --host or --port") from error
