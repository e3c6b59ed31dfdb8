"""Device command line: ``python -m runtime BUNDLE --input FILE [options]``.

Events go to stdout (or ``--output``) as JSON lines; logs and errors go to
stderr. Exit status: 0 done, 1 the bundle or input was refused, 2 usage. Every refusal is one
``error:`` line; ``-v`` adds the traceback. The output and outbox paths are checked before the
bundle is opened, and ``--sample-rate`` outside every accepted range (``runtime.readers.SIGNAL_RATE_RANGE_HZ``;
an ECG bundle then asks for ``SAMPLE_RATE_RANGE_HZ``, a windowed one for a rate near its model's) is a usage error
before anything is read.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import sys
import traceback
from collections import Counter
from pathlib import Path

DEVICE_PACKAGES = ("numpy", "onnxruntime", "cryptography")  # what the device runtime imports beyond Python
DEVICE_SCRIPT = "edgemed-device"  # the installed command (pyproject's scripts), the same as python -m runtime
AS_COMMAND = __name__ == "__main__" or Path(sys.argv[0]).name == DEVICE_SCRIPT


def missing_package_line(name: str, interpreter: str) -> str:
    """The refusal for a device package this interpreter cannot import (a system Python, a bare environment)."""
    package = name.partition(".")[0]
    return (f"error: the device runtime needs the Python package {package!r}, which {interpreter} cannot import. "
            f"Expected: numpy and onnxruntime (and cryptography, for signed bundles) installed for the interpreter "
            f"that runs 'python -m runtime'. Fix: run the interpreter of the environment that has them (e.g. "
            f".venv/bin/python -m runtime …), or install them into this one (pip install 'edgemed[cpu]').")


try:  # numpy is imported here already: a Python without it is told so in one line, as for onnxruntime below
    from runtime.errors import EdgemedError
    from runtime.events import JsonLinesWriter, QualityEvent
    from runtime.interrupts import INTERRUPTED_EXIT_STATUS, interrupted_line, terminate_as_interrupt
    from runtime.readers import SAMPLE_RATE_RANGE_HZ, SIGNAL_RATE_RANGE_HZ, InputError, check_sample_rate
    from runtime.runner import (
        DEFAULT_OUTBOX,
        RunOptions,
        TelemetryMode,
        TelemetryUnavailableError,
        check_filter_mode,
        check_telemetry_identity,
        run,
    )
    from runtime.session import MAX_THREADS
    from runtime.trust import TrustPolicy
    from runtime.windows import WindowFlag
except ModuleNotFoundError as missing:
    if not AS_COMMAND or (missing.name or "").partition(".")[0] not in DEVICE_PACKAGES:
        raise
    print(missing_package_line(missing.name, sys.executable), file=sys.stderr)
    sys.exit(1)

TOO_SHORT = WindowFlag.TOO_SHORT.value  # a recording (or a stretch between gaps) shorter than one window


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=DEVICE_SCRIPT if Path(sys.argv[0]).name == DEVICE_SCRIPT else "python -m runtime",
        description="Run an edgemed bundle (any task kind) on a recording, a table or arrays."
    )
    parser.add_argument("bundle", type=Path, help="bundle folder (manifest.json, model.onnx, ...)")
    parser.add_argument("--input", required=True, type=Path,
                        help=".csv, .npy or .h5 input; .npz with one array per input name")
    parser.add_argument("--sample-rate", type=_sample_rate, default=None,
                        help=f"signal rate in Hz (.npy / signal .csv): ECG {SAMPLE_RATE_RANGE_HZ[0]:g}–"
                        f"{SAMPLE_RATE_RANGE_HZ[1]:g}, other waveforms {SIGNAL_RATE_RANGE_HZ[0]:g}–"
                        f"{SIGNAL_RATE_RANGE_HZ[1]:g} (near the model's rate)")
    parser.add_argument("--channel", type=_non_negative, default=None,
                        help="the channel of a multi-channel signal for a one-channel model (HDF5 channel_N; "
                        ".npy/.csv column, from 0); a multi-channel model takes all of them")
    parser.add_argument("--lead", default=None,
                        help="the recording's lead (e.g. MLII) when its file does not name it (.npy, HDF5); checked "
                        "against the leads the bundle was validated on")
    parser.add_argument("--device-id", default=None, help="pseudonymous device id (hex), needed for telemetry")
    parser.add_argument("--telemetry-url", default=None, help="upload telemetry records to this URL")
    parser.add_argument("--telemetry-outbox", type=Path, default=None, help="telemetry outbox path")
    parser.add_argument("--telemetry-mode", choices=[mode.value for mode in TelemetryMode],
                        default=None,
                        help="aggregates: per-minute aggregates plus the events the filter keeps (default); "
                        "records: one record per inference")
    parser.add_argument("--event-filter", type=_filter_rules, default=None,
                        help="aggregates mode: comma-separated rules that also send an event on its own "
                        "(positive, low_confidence, alarm, unjudged, quality_change; default: all; 'none': none)")
    parser.add_argument("--positive-labels", type=_labels, default=None,
                        help="aggregates mode: labels the positive rule sends (default: every label but the first)")
    parser.add_argument("--provider", default=None, help="cpu, cuda, tensorrt or a full provider name")
    parser.add_argument("--threads", type=_thread_count, default=0,
                        help=f"onnxruntime threads (0 = all cores; at most {MAX_THREADS})")
    parser.add_argument("--trust-store", type=Path, default=None, help="folder of trusted public keys (*.pem)")
    parser.add_argument("--allow-unsigned", action="store_true",
                        help="DEVELOPMENT ONLY: run bundles whose signature cannot be checked (WARNING on every load)")
    parser.add_argument("--allow-unvalidated", action="store_true",
                        help="DEVELOPMENT ONLY: run a bundle whose manifest says it was not validated on real data "
                        "(WARNING on every run: not for clinical use)")
    parser.add_argument("--version-state", type=Path, default=None,
                        help="rollback state file (default: bundle-versions.json in the trust store)")
    parser.add_argument("--output", type=Path, default=None,
                        help="write JSON lines here instead of stdout (whole, when the run completes)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    return parser


def _sample_rate(text: str) -> float:
    try:
        return check_sample_rate(float(text), "--sample-rate", SIGNAL_RATE_RANGE_HZ)
    except (ValueError, InputError) as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_filter_rules(text: str) -> tuple[str, ...]:
    """The event-filter rules in a comma-separated list ('none': no rule); ``ValueError`` naming the allowed ones."""
    from runtime.telemetry.event_filter import FilterRule  # telemetry is imported only when it is asked for

    rules = tuple(item.strip() for item in text.split(",") if item.strip())
    if rules == ("none",):
        return ()
    allowed = [rule.value for rule in FilterRule]
    unknown = [rule for rule in rules if rule not in allowed]
    if unknown or not rules:
        raise ValueError(f"'{text}' is not a list of event-filter rules; expected some of {', '.join(allowed)} "
                         "(comma-separated), or none")
    return rules


def _filter_rules(text: str) -> tuple[str, ...]:
    try:
        return parse_filter_rules(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _labels(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer ≥ 0")
    return value


def _thread_count(text: str) -> int:
    value = _non_negative(text)
    if value > MAX_THREADS:
        raise argparse.ArgumentTypeError(f"'{text}' threads is more than {MAX_THREADS}; pass the cores to use, or 0")
    return value


class OutputPathError(EdgemedError):
    """The output path cannot be written: a missing folder, a folder given as the file, a full disk."""


def check_output_path(output: Path | None) -> None:
    """Refuse an ``--output`` that cannot be written before any bundle is opened or input read."""
    if output is None:
        return
    output = Path(output)
    if output.is_dir():
        raise OutputPathError(f"--output {output} is a folder", expected="a file path for the JSON lines",
                              fix="pass a file name inside that folder")
    try:
        target = output_target(output)
    except (OSError, RuntimeError) as error:  # Python 3.11's resolve() raises RuntimeError on a symbolic-link loop
        raise OutputPathError(f"--output {output} cannot be followed ({error})",
                              expected="a file path, or a symbolic link to one", fix="pass another --output path"
                              ) from None
    if not target.parent.is_dir():
        raise OutputPathError(f"--output {output}: the folder {target.parent} does not exist",
                              expected="a file path inside an existing folder", fix="create the folder first")
    if not _streamed(target) and not os.access(target.parent, os.W_OK):
        raise OutputPathError(f"--output {output}: the folder {target.parent} is not writable",
                              expected="a file path inside a folder this user may write to (the results are written "
                              "beside it first, then renamed)", fix="check the folder's permissions, or pass another "
                              "--output path")


def output_target(output: Path) -> Path:
    """Where ``--output`` writes: a symbolic link is written through (its target, not the link, is replaced)."""
    return Path(output).resolve() if Path(output).is_symlink() else Path(output)


def _streamed(target: Path) -> bool:
    """An existing output that is not a regular file (a device such as /dev/null, a pipe): written to directly,
    never replaced by a file."""
    return target.exists() and not target.is_file()


def check_output_clashes(output: Path, bundle: Path, input_path: Path, outbox: Path | None,
                         trust: TrustPolicy | None = None) -> None:
    """Refuse an ``--output`` that would overwrite the input, the telemetry outbox, a file of the bundle, or the
    device's trust: a file of the trust store (a key, the revocation list) or the rollback state (and its lock)."""
    target = Path(output).resolve()
    clashes = [("the input", Path(input_path).resolve())]
    if outbox is not None:
        stored = Path(outbox).resolve()
        clashes += [("the telemetry outbox", stored.with_name(stored.name + suffix)) for suffix in ("", "-wal", "-shm")]
    if trust is not None and trust.version_state is not None:
        state = Path(trust.version_state).resolve()
        clashes += [("the bundle version state", state.with_name(state.name + suffix)) for suffix in ("", ".lock")]
    for what, path in clashes:
        if target == path:
            raise OutputPathError(f"--output {output} is {what}", expected="a file of its own for the JSON lines",
                                  fix="pass another --output path")
    folders = [("the bundle", Path(bundle), "its files are signed")]
    if trust is not None and trust.store is not None:
        folders.append(("the trust store", Path(trust.store), "its keys and rollback state decide what runs"))
    for what, folder, why in folders:
        resolved = folder.resolve()
        if target == resolved or resolved in target.parents:
            raise OutputPathError(f"--output {output} is inside {what} {folder}",
                                  expected=f"a path outside {what} ({why})",
                                  fix=f"pass an --output path outside {what} folder")


def check_paths(output: Path | None, options: RunOptions, bundle: Path | None = None,
                input_path: Path | None = None) -> None:
    """``--output``, the telemetry outbox and the telemetry identity, checked up front (``EdgemedError``
    subclasses); with ``bundle`` and ``input_path``, also that ``--output`` would overwrite neither."""
    check_output_path(output)
    outbox = options.telemetry_outbox or (DEFAULT_OUTBOX if options.telemetry_url else None)
    filtering = (("--event-filter", options.event_filter_rules), ("--positive-labels", options.positive_labels))
    unused = [name for name, value in (("--device-id", options.device_id), ("--telemetry-mode", options.telemetry_mode),
                                       *filtering) if value is not None]
    if outbox is None and unused:  # an option that changes nothing is a mistake the operator should hear of
        raise TelemetryUnavailableError(f"{unused[0]} was given without telemetry", expected=f"{unused[0]} only "
                                        "with --telemetry-outbox or --telemetry-url",
                                        fix=f"add the telemetry options, or leave out {unused[0]}")
    check_filter_mode(options.telemetry_mode, options.event_filter_rules, options.positive_labels)
    if output is not None and bundle is not None and input_path is not None:
        check_output_clashes(output, bundle, input_path, outbox, options.trust)
    if outbox is not None:
        try:
            from runtime.telemetry.outbox import check_outbox_path
        except ImportError:
            return  # the runner reports the missing telemetry package with its own message
        check_outbox_path(outbox)
        check_telemetry_identity(options.device_id, options.telemetry_url)


def write_events(bundle: Path, input_path: Path, options: RunOptions, output: Path | None = None) -> Counter[str]:
    """Run ``bundle`` on ``input_path`` and write its events as JSON lines to ``output`` (default: stdout).

    Returns the number of events of each kind. Raises ``EdgemedError`` when the bundle or
    the input is refused (the command lines turn that into exit status 1). ``output`` is written to a temporary
    file beside it and renamed into place when the run is complete: a refused or interrupted run leaves an
    existing file as it was. A symbolic link is written through; a device or a pipe (``/dev/null``, a FIFO) is
    written to directly, never replaced.
    """
    check_paths(output, options, bundle, input_path)
    kinds: Counter[str] = Counter()
    events = run(bundle, input_path, options)
    target = None if output is None else output_target(output)
    streamed = target is not None and _streamed(target)
    temporary = None if target is None or streamed else target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        with contextlib.ExitStack() as stack:
            if target is None:
                writer = JsonLinesWriter(sys.stdout, follow=True)
            else:
                writer = JsonLinesWriter(stack.enter_context((target if streamed else temporary).open("w")))
            for event in events:
                writer.write(event)
                kinds[event.kind] += 1
                if isinstance(event, QualityEvent) and event.flag == TOO_SHORT:
                    print(f"warning: {event.duration_s:.3g} s of signal from {event.time_s:.3g} s is too short for the "
                          "model (one window, or the beat detector's learning period): nothing in it was judged",
                          file=sys.stderr)
        if temporary is not None:  # written and closed: now it replaces the output (a link's target)
            os.replace(temporary, target)
    except OSError as error:  # a full disk, a vanished folder or input file: the run stops, no partial success
        raise OutputPathError(
            f"the run stopped on an I/O error ({error.strerror or type(error).__name__}"
            + (f": {error.filename}" if error.filename else "") + ")",
            expected="a readable input and room to write the output",
            fix="free disk space or check the paths, then run again",
        ) from error
    finally:
        if temporary is not None:
            temporary.unlink(missing_ok=True)  # gone after the rename; still there only when the run failed
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
        channel=arguments.channel,
        lead=arguments.lead,
        device_id=arguments.device_id,
        telemetry_url=arguments.telemetry_url,
        telemetry_outbox=arguments.telemetry_outbox,
        provider=arguments.provider,
        threads=arguments.threads,
        telemetry_mode=None if arguments.telemetry_mode is None else TelemetryMode(arguments.telemetry_mode),
        event_filter_rules=arguments.event_filter,
        positive_labels=arguments.positive_labels,
        allow_unvalidated=arguments.allow_unvalidated,
    )
    try:
        trust = TrustPolicy.from_options(arguments.trust_store, arguments.allow_unsigned, arguments.version_state)
        options = dataclasses.replace(options, trust=trust)
        with terminate_as_interrupt():
            kinds = write_events(arguments.bundle, arguments.input, options, arguments.output)
    except KeyboardInterrupt:
        print(interrupted_line(arguments.output), file=sys.stderr)
        return INTERRUPTED_EXIT_STATUS
    except EdgemedError as error:
        if arguments.verbose:
            traceback.print_exception(error, file=sys.stderr)
        print(f"error: {error}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as error:
        if (error.name or "").partition(".")[0] not in DEVICE_PACKAGES:
            raise
        if arguments.verbose:
            traceback.print_exception(error, file=sys.stderr)
        print(missing_package_line(error.name, sys.executable), file=sys.stderr)
        return 1
    print(summary_line(kinds), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
