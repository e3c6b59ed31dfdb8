"""Logging for every ``edgemed`` command: library code logs, the CLI decides what reaches stderr."""

from __future__ import annotations

import logging
import sys

# Libraries that log chatter at INFO/WARNING that says nothing to an edgemed user.
_NOISY_LOGGERS = ("tensorflow", "tf2onnx", "absl", "h5py")


def configure_logging(verbose: bool) -> None:
    """INFO with ``-v``, else WARNING, to stderr; third-party chatter only at ERROR."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in _NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.ERROR)
