"""The ``edgemed`` script's entry point: the build machine's command line, or one line saying what a device runs.

``pip install edgemed[cpu]`` (a device) installs this script without click and the build tools; it then says to run
bundles with ``edgemed-device`` (``python -m runtime``) instead of failing with an import traceback.
"""

from __future__ import annotations

import importlib.util
import sys

BUILD_PACKAGES = ("click", "tensorflow", "onnx")  # a build machine's install has these (the build extra)
DEVICE_LINE = (
    "edgemed: this is the build machine's command and this Python lacks the build tools ({missing}). "
    "On a device, run a bundle with `edgemed-device BUNDLE --input FILE --trust-store KEYS` (the same as "
    "`python -m runtime`); to build, install the build extras: pip install 'edgemed[cpu,build,dashboard]'."
)


def main() -> None:
    missing = [name for name in BUILD_PACKAGES if importlib.util.find_spec(name) is None]
    if "click" in missing:  # nothing of the command line can run; the other tools fail per command with their name
        print(DEVICE_LINE.format(missing=", ".join(missing)), file=sys.stderr)
        raise SystemExit(2)
    from pipeline.cli import main as command_line

    command_line()
