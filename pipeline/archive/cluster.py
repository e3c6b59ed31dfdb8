"""Reaching a Ray cluster for archive validation, and saying plainly why a run on it failed.

Before ``ray.init(address=…)`` (which retries for a long while, logging a line a second, at an address that cannot
work), ``check_reachable`` refuses at once, with what to do:

* a Ray Client address (``ray://``): Ray Data does not run over Ray Client (its driver needs a core worker of its
  own; ray-project/ray#48682), so the run would stop half-way with Ray's internal ``AttributeError``;
* an address nothing answers at, or where what answers does not speak gRPC (a Ray head does);
* a head that requires token authentication (Ray's default for ``ray start`` since 2.60) while this process has no
  ``RAY_AUTH_MODE=token``. Ray never sends a token to an address it was given explicitly unless told to (the token
  is the cluster's shared secret), and neither does edgemed: the fix names the setting instead.

``failure_cause`` turns the exception a failed Ray pipeline raises (an actor that died in its constructor carries the
whole remote traceback, with terminal colours) into its root cause's one line, e.g. the worker's own
``TrustStoreError`` message.
"""

from __future__ import annotations

import os
import re
import socket

from pipeline.archive.layout import ArchiveError

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# the last "package.module.SomeError: message" line of a remote traceback: the exception that started it all
_RAISED = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?([A-Z]\w*(?:Error|Exception)): (.+)$", re.MULTILINE)
_CAUSE_CHARS = 600
# a method every Ray head (GCS) serves; asked without a token, a head with token authentication answers UNAUTHENTICATED
_GCS_PROBE = "/ray.rpc.NodeInfoGcsService/GetClusterId"


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Refuse a cluster address nothing answers at, where what answers does not speak gRPC (``ray.init`` would retry
    for ever at a port some other server holds), or whose head wants a token this process will not send; "auto" is
    Ray's to find."""
    if address == "auto":
        return
    if address.startswith("ray://"):
        raise ArchiveError(f"{address} is a Ray Client address, and Ray Data (which runs the archive) does not work "
                           "over Ray Client",
                           expected="the address of the cluster's head as `ray start --head` prints it (HOST:PORT, "
                                    "6379 by default), reached from a machine of the cluster, or auto there",
                           fix="run the command on a node of the cluster (or submit it as a Ray Job) with "
                               "--ray-address HOST:PORT")
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError) as error:
        problem = f"{type(error).__name__}: {error}"
    else:
        target = f"{host or '127.0.0.1'}:{int(port)}"
        if _speaks_grpc(target, timeout_s):
            if _wants_token(target, timeout_s) and os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
                raise ArchiveError(
                    f"the Ray cluster at {address} requires token authentication, and this process has none to send "
                    "(RAY_AUTH_MODE is not 'token')",
                    expected="RAY_AUTH_MODE=token and the cluster's token in this environment (Ray reads "
                             "RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)",
                    fix="run again with RAY_AUTH_MODE=token (on the head's machine `ray start` already wrote the token "
                        "to ~/.ray/auth_token; elsewhere `ray get-auth-token` there prints it)")
            return
        problem = f"something answers there, but not Ray: no gRPC handshake within {timeout_s:g} s"
    raise ArchiveError(f"no Ray cluster answers at {address} ({problem})",
                       expected="HOST:PORT of a running cluster's head, or auto",
                       fix="start one with `ray start --head` and pass the address it prints, or leave --ray-address "
                           "out to run on this machine")


def _speaks_grpc(target: str, timeout_s: float) -> bool:
    """Whether an HTTP/2 (gRPC) connection to ``target`` comes up within ``timeout_s`` (grpc comes with Ray)."""
    try:
        import grpc
    except ImportError:  # nothing to check with: ray.init decides
        return True
    channel = grpc.insecure_channel(target)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)
        return True
    except grpc.FutureTimeoutError:
        return False
    finally:
        channel.close()


def _wants_token(target: str, timeout_s: float) -> bool:
    """Whether the head at ``target`` answers a call without a token with UNAUTHENTICATED. Anything else (an answer,
    another server that does not serve the method, no grpc to ask with) is left to ``ray.init``."""
    try:
        import grpc
    except ImportError:
        return False
    channel = grpc.insecure_channel(target)
    try:
        channel.unary_unary(_GCS_PROBE)(b"", timeout=timeout_s)  # raw bytes: an empty request message
    except grpc.RpcError as error:
        return error.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        channel.close()
    return False


def failure_cause(error: BaseException) -> str:
    """``Name: message`` of the exception at the root of ``error`` (the last one its text names, as a remote
    traceback ends with it), without terminal colours and at most ``_CAUSE_CHARS`` long; else ``error``'s own type
    and first line."""
    text = _ANSI.sub("", str(error))
    raised = _RAISED.findall(text)
    if raised:
        name, message = raised[-1]
        found = f"{name}: {message.strip()}"
    else:
        lines = text.strip().splitlines()
        found = f"{type(error).__name__}: {lines[0] if lines else 'no message'}"
    return found if len(found) <= _CAUSE_CHARS else found[: _CAUSE_CHARS - 1] + "…"
