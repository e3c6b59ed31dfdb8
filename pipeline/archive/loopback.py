"""A local Ray that listens on the loopback interface only.

``ray.init(address="local")`` on Linux starts its GCS, raylet, object manager and workers as servers on every network
interface (``*:port``): a machine validating a patient archive would offer them to its whole network. Ray has no bind
option for a local node; in its single-node mode (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, the default on macOS and
Windows) the node's address is the loopback address and every server binds there. ``loopback_only`` turns that mode
on for one local Ray: the environment variable for the processes Ray starts, and Ray's constant in this process when
Ray was imported before (the constant is read at import). Measured with ``ss -ltnp`` on Ray 2.60: without it six
servers on ``*``, with it all on 127.0.0.1; ``tests/pipeline/test_archive_loopback.py`` checks it on every run.

A cluster address (``--ray-address``) is never started in this mode: a driver joining a cluster needs its own
reachable address.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)

SINGLE_NODE_VARIABLE = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # Ray's switch: "0" = single node, loopback address


@contextmanager
def loopback_only(ray) -> Iterator[None]:
    """Within the block a local Ray started by this process listens on 127.0.0.1 only; restored afterwards."""
    saved_variable = os.environ.get(SINGLE_NODE_VARIABLE)
    constants = getattr(getattr(ray, "_private", None), "ray_constants", None)
    saved_constant = getattr(constants, "ENABLE_RAY_CLUSTER", None)
    os.environ[SINGLE_NODE_VARIABLE] = "0"
    if saved_constant is None:
        logger.warning("this Ray has no single-node switch (ray._private.ray_constants.ENABLE_RAY_CLUSTER): its "
                       "servers may listen on every network interface")
    else:
        constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if saved_variable is None:
            os.environ.pop(SINGLE_NODE_VARIABLE, None)
        else:
            os.environ[SINGLE_NODE_VARIABLE] = saved_variable
        if saved_constant is not None:
            constants.ENABLE_RAY_CLUSTER = saved_constant
