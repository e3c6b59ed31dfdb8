"""``edgemed cpu-check``: every bundle through the device command (``python -m runtime``) on this machine and on
each emulated CPU, on the real recordings and rows of its scenario, and the events compared.

The reference is this machine, running the same device environment natively (the same interpreter, packages and
copy of ``runtime/`` as the emulated runs of its architecture). A target passes a bundle when every case gives the
same events with the same decisions and every number within ``compare.NUMBER_TOLERANCE``.
"""

from __future__ import annotations

import logging
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pipeline.build.machine import machine_fingerprint
from pipeline.errors import UsageError
from pipeline.portability.cases import Case, bundle_cases
from pipeline.portability.compare import NUMBER_TOLERANCE, compare_events, ec57_counts, read_events
from pipeline.portability.environment import DeviceEnvironment, EmulationSettings, prepare
from pipeline.portability.targets import TARGETS, CpuTarget, host_target
from pipeline.validation import ec57
from runtime.real_data import bundle_identity

Progress = Callable[[str, int, int], None]
KERNEL_WARNING = "whose answers can differ from the validated ones"  # runtime.bundle's warning (runtime.cpu)
EMULATION_NOTE = ("Emulated CPUs run under QEMU's user mode: numpy and ONNX Runtime pick the kernels that CPU would "
                  "get and its floating point is that CPU's, so the answers are that CPU's unless the emulator itself "
                  "is wrong, which a self-test checks on each CPU (one numpy argsort; listed below when it fails); run "
                  "times are not (several times slower, and not in proportion), so none is reported as a speed.")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckConfig:
    trust_store: Path  # the device authenticates every bundle: the store that trusts their key
    bundles: Path = Path("bundles")  # every bundle folder in it (those edgemed has real inputs for)
    targets: tuple[CpuTarget, ...] = TARGETS
    seconds: float | None = None  # each signal cut to its first SECONDS (None: whole recordings)
    cases_per_bundle: int | None = None  # only each bundle's first N cases (a quick check); None: all
    timeout_s: float = 1800.0  # one run of the device command
    emulation: EmulationSettings = field(default_factory=EmulationSettings)


@dataclass
class CaseResult:
    bundle: str
    case: str
    source: str
    target: str
    status: str  # "reference" (this machine's run), "identical", "within tolerance", "different", "failed"
    events: int = 0
    reference_events: int = 0
    differing_events: int = 0
    decision_changes: int = 0
    largest_difference: float = 0.0
    max_differences: dict[str, float] = field(default_factory=dict)
    first_difference: str | None = None
    ec57: dict | None = None  # this target's EC57 counts (annotated recordings)
    error: str | None = None
    wall_s: float = 0.0
    device_warned: bool = False  # the device said its CPU differs from the validating one (runtime.cpu)


def discover_bundles(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise UsageError(f"no bundle folder at {folder}", expected="a folder of bundles (make build writes bundles/)",
                         fix="run make build, or pass --bundles")
    bundles = sorted(path for path in folder.iterdir() if (path / "manifest.json").is_file())
    if not bundles:
        raise UsageError(f"{folder} holds no bundle", expected="bundle folders with a manifest.json",
                         fix="run make build first")
    return bundles


def run_device(environment: DeviceEnvironment, target: CpuTarget, case: Case, bundle: Path, trust_store: Path,
               output: Path, timeout_s: float) -> tuple[float, str | None, bool]:
    """Run the device command for ``case`` on ``target``, events to ``output``: (wall seconds, error or None,
    whether the device warned that its CPU differs from the validating one, ``runtime.cpu``)."""
    # a rollback state of the run's own: the check is not a device, and bundles of one lineage (variants published
    # side by side) would otherwise refuse each other as downgrades and change the trust store's real state
    arguments = [str(bundle.resolve()), "--input", str(case.input_file.resolve()), *case.arguments, "--threads", "1",
                 "--trust-store", str(trust_store.resolve()), "--version-state", str(output.with_suffix(".versions")),
                 "--output", str(output),
                 "--allow-unvalidated"]  # a comparison of CPUs, not a clinical run: bundles not validated on real
    # data (eeg-artifact) are compared too, and their devices' NOT VALIDATED warning is expected
    with environment.presenting(target):
        started = time.perf_counter()
        try:
            result = subprocess.run(environment.command(target, arguments), env=environment.variables(),
                                    cwd=environment.code, capture_output=True, text=True, timeout=timeout_s,
                                    stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return time.perf_counter() - started, f"no answer within {timeout_s:g} s", False
        except OSError as error:
            return time.perf_counter() - started, f"could not start: {error}", False
    wall = time.perf_counter() - started
    warned = KERNEL_WARNING in result.stderr
    if result.returncode != 0 or not output.is_file():
        lines = [line for line in result.stderr.splitlines() if line.strip() and "qemu" not in line.lower()]
        crash = "" if result.returncode >= 0 else f" (killed by signal {-result.returncode})"
        return wall, f"exit {result.returncode}{crash}: {lines[-1] if lines else 'no message'}", warned
    return wall, None, warned


def _judged(bundle: Path, case: Case, target: CpuTarget, wall_s: float, error: str | None, warned: bool,
            reference: list[dict] | None, events: list[dict] | None) -> CaseResult:
    result = CaseResult(bundle.name, case.name, case.source, target.name, "failed", wall_s=round(wall_s, 2),
                        error=error, device_warned=warned)
    if error is not None or events is None:
        return result
    result.events = len(events)
    if case.reference is not None:
        result.ec57 = asdict(ec57_counts(case.name, events, case.reference))
    if reference is None:  # the reference itself
        result.status, result.reference_events = "reference", len(events)
        return result
    comparison = compare_events(reference, events)
    result.reference_events = comparison.reference_events
    result.differing_events, result.decision_changes = comparison.differing_events, comparison.decision_changes
    result.max_differences = {name: value for name, value in sorted(comparison.max_differences.items()) if value}
    result.largest_difference, result.first_difference = comparison.largest_difference, comparison.first_difference
    result.status = ("different" if not comparison.passed else
                     "identical" if comparison.largest_difference == 0 else "within tolerance")
    return result


def check(config: CheckConfig, progress: Progress | None = None) -> dict:
    """Run every case on this machine and every target; the report (``report.render_markdown`` shows it)."""
    bundles = discover_bundles(config.bundles)
    if not config.trust_store.is_dir():
        raise UsageError(f"no trust store at {config.trust_store}", expected="the folder of public keys that "
                         "signed the bundles", fix="pass --trust-store (make build's: .edgemed-keys/dev/trust-store)")
    machine = machine_fingerprint()
    host = host_target(machine["cpu_model"])
    results: list[CaseResult] = []
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="edgemed-cpu-check-") as scratch:
        folder = Path(scratch)
        environments = prepare(config.targets, folder, config.emulation)
        defects = {target.name: defect for target in config.targets
                   if (defect := environments[target.architecture].emulator_defect(target))}
        for name, defect in defects.items():
            logger.warning("%s: %s", name, defect)
        cases = {bundle: bundle_cases(bundle, folder, config.seconds)[: config.cases_per_bundle] for bundle in bundles}
        for bundle, found in cases.items():
            if not found:
                skipped[bundle.name] = "no real input known for this bundle's scenario: not checked"
        total = sum(len(found) for found in cases.values()) * (len(config.targets) + 1)
        done = 0
        for bundle, found in cases.items():
            for index, case in enumerate(found):
                runs: dict[str, list[dict] | None] = {}
                for target in (host, *config.targets):
                    output = folder / f"{bundle.name}-{index}-{target.name}.jsonl"
                    wall, error, warned = run_device(environments[target.architecture], target, case, bundle,
                                                     config.trust_store, output, config.timeout_s)
                    events = read_events(output) if error is None else None
                    runs[target.name] = events
                    reference = None if target is host else runs[host.name]
                    if target is not host and reference is None:
                        error = error or "the reference run on this machine failed"
                    results.append(_judged(bundle, case, target, wall, error, warned, reference, events))
                    done += 1
                    if progress:
                        progress("cpu-check", done, total)
    return report_document(config, machine, host, environments, results, skipped, defects)


def _summary(results: list[CaseResult], bundle: str, target: str) -> dict:
    rows = [row for row in results if row.bundle == bundle and row.target == target]
    annotated = [ec57.BeatCounts(**row.ec57) for row in rows if row.ec57 is not None]
    gross = ec57.rates(ec57.gross_counts(annotated)) if annotated and len(annotated) == sum(
        1 for row in rows if row.source.startswith("MIT-BIH")) else None
    fields: dict[str, float] = {}
    for row in rows:
        for name, value in row.max_differences.items():
            fields[name] = max(fields.get(name, 0.0), value)
    return {"bundle": bundle, "target": target, "cases": len(rows),
            "passed": sum(row.status in ("reference", "identical", "within tolerance") for row in rows),
            "identical": sum(row.status == "identical" for row in rows),
            "failed": sum(row.status == "failed" for row in rows),
            "events": sum(row.events for row in rows), "differing_events": sum(row.differing_events for row in rows),
            "decision_changes": sum(row.decision_changes for row in rows),
            "largest_difference": max((row.largest_difference for row in rows), default=0.0),
            "max_differences": dict(sorted(fields.items())), "ec57_gross": gross,
            "emulated_wall_s": round(sum(row.wall_s for row in rows), 1),
            "device_warned": sum(row.device_warned for row in rows)}


def report_document(config: CheckConfig, machine: dict, host: CpuTarget, environments: dict[str, DeviceEnvironment],
                    results: list[CaseResult], skipped: dict[str, str], defects: dict[str, str] | None = None
                    ) -> dict:
    bundles = list(dict.fromkeys(row.bundle for row in results))
    targets = [host, *config.targets]
    summaries = [_summary(results, bundle, target.name) for bundle in bundles for target in targets]
    checked = [item for item in summaries if item["target"] != host.name]
    emulators = [environment.qemu for environment in environments.values() if environment.qemu]
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "qemu": [version for version in map(_qemu_version, emulators) if version],
        "device_packages": next(iter(environments.values())).versions,
        "note": EMULATION_NOTE,
        "emulator_defects": defects or {},  # target → what its emulator gets wrong (environment._GATHER_PROBE)
        "tolerance": NUMBER_TOLERANCE,
        "seconds_per_signal": config.seconds,
        "targets": [{**asdict(target), "emulated": target.emulated} for target in targets],
        "skipped_bundles": skipped,
        "bundles": {name: bundle_identity(config.bundles / name) for name in bundles},
        "summaries": summaries,
        "results": [asdict(row) for row in results],
        "passed": bool(checked) and all(item["passed"] == item["cases"] for item in checked),
    }


def _qemu_version(qemu: str | None) -> str | None:
    if qemu is None:
        return None
    try:
        text = subprocess.run([qemu, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return text.splitlines()[0].strip() if text else None
