"""Run one measurement in a fresh Python process so its peak resident memory is its own.

The worker (``python -m pipeline.benchmark.worker SPEC RESULT``) reports its own peak
RSS (``VmHWM`` from ``/proc/self/status``, else ``getrusage(RUSAGE_SELF).ru_maxrss``);
``resource.getrusage(RUSAGE_CHILDREN)`` in the parent would be the maximum over every
child so far, not per model.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from pipeline.benchmark.errors import BenchmarkError

WORKER_TIMEOUT_SECONDS = 900  # one model's whole measurement; Keras predict is the slowest
_STDERR_TAIL = 2000  # characters of a failed worker's stderr quoted in the error


def peak_rss_bytes(status: Path = Path("/proc/self/status")) -> int:
    """This process's peak resident set size in bytes."""
    try:
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    maximum = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maximum if sys.platform == "darwin" else maximum * 1024


def run_in_subprocess(spec: dict, timeout: float = WORKER_TIMEOUT_SECONDS) -> dict:
    """Run the benchmark worker on ``spec`` in a fresh interpreter; return its JSON result.

    Raises:
        BenchmarkError: the worker failed, timed out or wrote no result. Typed errors the
            worker raised on purpose come back with their class name and message.
    """
    with tempfile.TemporaryDirectory(prefix="edgemed-bench-") as folder:
        spec_path, result_path = Path(folder) / "spec.json", Path(folder) / "result.json"
        spec_path.write_text(json.dumps(spec))
        environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONHASHSEED": "0"}
        try:
            completed = subprocess.run(
                [sys.executable, "-m", "pipeline.benchmark.worker", str(spec_path), str(result_path)],
                capture_output=True,
                text=True,
                timeout=timeout,
                env=environment,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise BenchmarkError(
                f"measuring {spec.get('label', spec.get('model'))} took longer than {timeout:.0f} s",
                expected="one model's measurement to finish within the worker timeout",
                fix="use --quick, or shorten the stability windows",
            ) from error
        if not result_path.is_file():
            raise BenchmarkError(
                f"the benchmark worker for {spec.get('label', spec.get('model'))} exited with status "
                f"{completed.returncode} and no result: {completed.stderr[-_STDERR_TAIL:].strip()}",
                expected="the worker to write its result file",
                fix="run the worker command by hand to see the full error",
            )
        return json.loads(result_path.read_text())
