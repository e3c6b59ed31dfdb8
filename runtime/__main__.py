"""Device command line: ``python -m runtime BUNDLE --input FILE [options]``.

Events go to stdout (or ``--output``) as JSON lines; logs and errors go to
stderr. Exit status: 0 done, 1 the bundle or input was refused, 2 usage.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections import Counter
from pathlib import Path

from runtime.errors import EdgemedError
from runtime.events import JsonLinesWriter
from runtime.runner import RunOptions, run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m runtime", description="Run an edgemed bundle on a recording or a table."
    )
    parser.add_argument("bundle", type=Path, help="bundle folder (manifest.json, model.onnx, ...)")
    parser.add_argument("--input", required=True, type=Path, help=".csv, .npy or .h5 input")
    parser.add_argument("--sample-rate", type=float, default=None, help="signal rate in Hz (.npy / signal .csv)")
    parser.add_argument("--device-id", default=None, help="pseudonymous device id (hex), needed for telemetry")
    parser.add_argument("--telemetry-url", default=None, help="upload telemetry records to this URL")
    parser.add_argument("--telemetry-outbox", type=Path, default=None, help="telemetry outbox path")
    parser.add_argument("--provider", default=None, help="cpu, cuda, tensorrt or a full provider name")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime threads (0 = all cores)")
    parser.add_argument("--output", type=Path, default=None, help="write JSON lines here instead of stdout")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    return parser


def write_events(bundle: Path, input_path: Path, options: RunOptions, output: Path | None = None) -> Counter[str]:
    """Run ``bundle`` on ``input_path`` and write its events as JSON lines to ``output`` (default: stdout).

    Returns the number of events of each kind. Raises ``EdgemedError`` when the bundle or
    the input is refused (the command lines turn that into exit status 1).
    """
    kinds: Counter[str] = Counter()
    events = run(bundle, input_path, options)
    with contextlib.ExitStack() as stack:
        if output is None:
            writer = JsonLinesWriter(sys.stdout, follow=True)
        else:
            writer = JsonLinesWriter(stack.enter_context(Path(output).open("w")))
        for event in events:
            writer.write(event)
            kinds[event.kind] += 1
    return kinds


def summary_line(kinds: Counter[str]) -> str:
    """``done: 12 beat, 1 quality`` — what a run wrote, for stderr."""
    return "done: " + (", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items())) or "no events")


def main(argv: list[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if arguments.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    options = RunOptions(
        sample_rate_hz=arguments.sample_rate,
        device_id=arguments.device_id,
        telemetry_url=arguments.telemetry_url,
        telemetry_outbox=arguments.telemetry_outbox,
        provider=arguments.provider,
        threads=arguments.threads,
    )
    try:
        kinds = write_events(arguments.bundle, arguments.input, options, arguments.output)
    except EdgemedError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(summary_line(kinds), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
