"""Write a results document as bench.json, bench.md and plots, all or nothing.

Everything is first rendered into a temporary folder beside the destination; only when
all files exist are they moved into place, each with an atomic ``os.replace``. A failure
before that leaves the destination exactly as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from pipeline.benchmark.plots import render_plots
from pipeline.benchmark.report import render_markdown
from pipeline.benchmark.schema import validate_results

RESULTS_JSON = "bench.json"
RESULTS_MARKDOWN = "bench.md"


def write_results(document: dict, folder: Path, plots: bool = True) -> list[Path]:
    """Validate ``document``, then write it to ``folder``; return the written paths."""
    validate_results(document)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".bench-partial-", dir=folder))
    try:
        (staging / RESULTS_JSON).write_text(json.dumps(document, indent=1, allow_nan=False) + "\n")
        (staging / RESULTS_MARKDOWN).write_text(render_markdown(document))
        if plots:
            render_plots(document, staging)
        written = []
        for path in sorted(staging.iterdir()):
            destination = folder / path.name
            os.replace(path, destination)
            written.append(destination)
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)
