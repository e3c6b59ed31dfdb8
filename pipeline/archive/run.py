"""Archive validation on Ray Data: every recording of an archive through the device runtime, one row each.

``validate_archive`` (the driver):

1. verifies and opens the bundle once here, under the caller's full trust policy (rollback state included), and
   makes sure the ECG stream can run it — an unreadable or unsuitable bundle fails before Ray starts;
2. starts a local Ray with ``workers`` CPUs (no dashboard, Ray's console logs at ERROR; its full logs stay in the
   session folder), or connects to ``ray_address``; a Ray that is already running is used as it is and left running;
3. ``ray.data.from_items(entries)`` → ``map_batches(RecordingValidator, compute=ActorPoolStrategy(size=workers))``:
   each actor verifies and opens the bundle once, then runs recordings one at a time (``worker.validate_recording``);
   a bad file is a failed row. A worker process that dies (a crash inside onnxruntime) does not stop the run: its
   task is not retried, the actor is restarted, ``max_errored_blocks`` lets the run go on; the recordings it lost
   run once more at the end, one at a time per worker, and one that kills its worker again is reported with "no
   result";
4. collects the rows as they arrive (progress per recording), sorts them in index order, and writes
   ``results.parquet``, ``report.json`` and ``report.md`` into a staging folder inside the output folder, each then
   moved into place with an atomic rename.

On a cluster, the bundle and the archive must be readable at the same paths on every node (a shared file system),
and edgemed must be installed in the workers' environment.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import platform
import resource
import shutil
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.archive.cluster import check_reachable, failure_cause
from pipeline.archive.layout import Archive, ArchiveError
from pipeline.archive.loopback import loopback_only
from pipeline.archive.report import failures, refusals, render_markdown, totals, validation
from pipeline.archive.worker import RecordingValidator, TrustSettings, WorkerConfig, failed_row, rows_table
from runtime.bundle import Bundle, load_bundle
from runtime.ecg.stream import EcgStream
from runtime.errors import EdgemedError
from runtime.hashing import sha256_file
from runtime.real_data import RealDataStatus, RealDataValidation
from runtime.version import EDGEMED_VERSION

logger = logging.getLogger(__name__)

RESULTS_NAME = "results.parquet"
REPORT_JSON = "report.json"
REPORT_MARKDOWN = "report.md"
TASKS_PER_WORKER = 8  # a worker gets at least this many tasks where the archive allows (load balance at the end)
MAX_BLOCKS = 10_000  # blocks (tasks) per pass at most: a larger archive gets more recordings per task
Progress = Callable[[str, int, int], None]  # (task, done, total)


@dataclass(frozen=True)
class ArchiveRunConfig:
    workers: int = 2  # actors in the pool, one recording at a time each; a local Ray gets this many CPUs
    ray_address: str | None = None  # None: a local Ray on this machine; else a cluster's head ("auto", "host:6379")
    worker: WorkerConfig = field(default_factory=WorkerConfig)  # runtime settings of every worker
    object_store_mb: int = 256  # a local Ray's object store: rows are small and signals never travel through it
    ray_logs: bool = False  # Ray's own INFO logs (and the workers' logs) on the console
    # Recordings a worker runs per Ray task at most: Ray's per-task cost against load balance. Measured with
    # `edgemed bench-archive` on 600 MIT-BIH excerpts (2 cores): 4 per task 1.51–1.55× from 1 to 2 workers (the
    # driver 1.6–2.2 CPU s per run), 12 per task 1.64–1.75×, 24 per task 1.72× (driver 0.6–1.4 CPU s).
    recordings_per_task: int = 12


@dataclass(frozen=True)
class ArchiveOutcome:
    report: dict
    rows: list[dict]  # one per recording, in index order (RESULT_SCHEMA)
    written: list[Path]  # the files written (empty when no output folder was given)


def _ray():
    try:
        import ray
        import ray.data
    except ImportError as error:
        raise ArchiveError(f"Ray Data cannot be imported ({error})", expected="ray[data] installed beside edgemed",
                           fix="pip install 'edgemed[fleet]' (or pip install 'ray[data]')") from None
    return ray


@contextmanager
def _ray_data_settings(ray, verbose: bool) -> Iterator[None]:
    """Ray Data as this pipeline needs it, for the run only (a caller's own settings come back afterwards): no
    progress bars of its own, a lost block never fails the run, and its console logs (every execution at INFO) at
    ERROR unless verbose — its file log in the Ray session folder keeps everything."""
    context = ray.data.DataContext.get_current()
    saved = context.enable_progress_bars, context.max_errored_blocks
    context.enable_progress_bars = False  # the CLI draws its own, one tick per recording
    context.max_errored_blocks = -1  # a lost worker fails its recordings (run again, then reported), never the run
    handlers = [handler for handler in logging.getLogger("ray.data").handlers
                if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)]
    levels = [handler.level for handler in handlers]
    for handler in handlers:
        handler.setLevel(logging.INFO if verbose else logging.ERROR)
    try:
        yield
    finally:
        context.enable_progress_bars, context.max_errored_blocks = saved
        for handler, level in zip(handlers, levels, strict=True):
            handler.setLevel(level)


@contextmanager
def ray_session(config: ArchiveRunConfig) -> Iterator[str]:
    """Ray for one run; yields how it was reached. Shuts down only a Ray it started."""
    ray = _ray()
    if ray.is_initialized():
        yield "the Ray already running in this process"
        return
    quiet = {"logging_level": logging.INFO if config.ray_logs else logging.ERROR, "log_to_driver": config.ray_logs}
    try:
        if config.ray_address:
            check_reachable(config.ray_address)
            ray.init(address=config.ray_address, **quiet)
            described = f"cluster at {config.ray_address}"
        else:
            # address="local": always a new Ray of our own, never a cluster that `ray start` left registered here.
            with loopback_only(ray):  # Ray's servers on 127.0.0.1, never on the machine's network
                ray.init(address="local", num_cpus=config.workers, include_dashboard=False,
                         object_store_memory=config.object_store_mb * 1024**2, **quiet)
            described = f"local ({config.workers} CPUs)"
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise ArchiveError(f"Ray could not start or connect ({type(error).__name__}: {error})",
                           expected="a local Ray, or a reachable cluster address (ray start --head prints it)",
                           fix="check --ray-address, or leave it out to run on this machine; a cluster with token "
                               "authentication (Ray's default for `ray start`) also needs RAY_AUTH_MODE=token and its "
                               "token (~/.ray/auth_token or RAY_AUTH_TOKEN) in this environment") from None
    try:
        yield described
    finally:
        ray.shutdown()


def open_checked_bundle(bundle_path: Path, trust: TrustSettings, config: WorkerConfig) -> Bundle:
    """The bundle verified, proven runnable by the ECG stream, then loaded under the full policy (rollback checked
    and recorded once, here): a bundle refused here never enters the device's rollback state."""
    policy = trust.policy(True)
    with _quiet("runtime.trust"):  # the load below says the same (a development key, an unsigned bundle)
        first = load_bundle(bundle_path, config.provider, config.threads, trust=replace(policy, version_state=None))
    _check_stream(first, bundle_path, config)
    bundle = load_bundle(bundle_path, config.provider, config.threads, trust=policy)
    _check_stream(bundle, bundle_path, config)  # the same folder, unless a publish swapped it meanwhile
    return bundle


@contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Warnings of logger ``name`` (and below it) held back for the block."""
    chosen = logging.getLogger(name)
    level = chosen.level
    chosen.setLevel(logging.ERROR)
    try:
        yield
    finally:
        chosen.setLevel(level)


def _check_stream(bundle: Bundle, bundle_path: Path, config: WorkerConfig) -> None:
    try:
        EcgStream(bundle, config.recording.stream.minimum_source_rate_hz, config=config.recording.stream)
    except EdgemedError as error:
        raise ArchiveError(
            f"bundle {bundle_path} ({bundle.manifest.scenario}) cannot run on the device's ECG stream: {error.what}",
            expected="an ECG beat-classifier bundle (such as bundles/ecg-pvc): validate-archive runs recordings "
                     "through the ECG stream and scores them against beat annotations",
            fix="pass an ECG beat bundle; run other bundles on their own inputs with `edgemed run`") from None


def _items(archive: Archive) -> list[dict]:
    return [{"order": order, **entry.to_row()} for order, entry in enumerate(archive.entries)]


def machine_busy_s() -> float | None:
    """CPU seconds the whole machine has spent busy since boot (Linux ``/proc/stat``; None elsewhere)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(value) for value in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def driver_cpu_s() -> float:
    """CPU seconds this process (the driver: Ray Data's scheduling loop, row collection) has used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _map(ray, dataset, bundle_path: Path, trust: TrustSettings, config: ArchiveRunConfig, in_flight: int | None):
    """The dataset of result rows: an actor pool of ``workers`` RecordingValidators, one recording per call."""
    with warnings.catch_warnings():
        # Ray 2.60 deprecates passing actor options as keyword arguments but names no parameter for the two below;
        # without them a recording that kills its worker would be retried for ever (Ray Data's default).
        warnings.filterwarnings("ignore", "`ray_remote_args` is deprecated")
        return dataset.map_batches(
            RecordingValidator,
            fn_constructor_args=(str(Path(bundle_path).absolute()), trust, config.worker),
            batch_size=None,  # a block is a task: recordings_per_task recordings (in_flight=1: one)
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=config.workers, max_tasks_in_flight_per_actor=in_flight),
            num_cpus=1,
            max_restarts=-1,  # a worker that dies is replaced (and opens the bundle again) …
            max_task_retries=0,  # … but the recording it died on is not run again: it is reported
        )


def recordings_per_task(recordings: int, config: ArchiveRunConfig) -> int:
    """Recordings per Ray task: ``config.recordings_per_task``, fewer where a worker would get under
    ``TASKS_PER_WORKER`` tasks (a small archive stays balanced across the pool), at least one."""
    return max(1, min(config.recordings_per_task, recordings // (config.workers * TASKS_PER_WORKER)))


def _collect(ray, items: list[dict], bundle_path: Path, trust: TrustSettings, config: ArchiveRunConfig,
             in_flight: int | None, report: Callable[[list[dict]], None]) -> list[dict]:
    """One pass of the pipeline over ``items``; ``report`` sees every batch of rows as it arrives."""
    per_task = 1 if in_flight == 1 else recordings_per_task(len(items), config)
    dataset = ray.data.from_items(items, override_num_blocks=min(math.ceil(len(items) / per_task), MAX_BLOCKS))
    rows: list[dict] = []
    try:
        for batch in _map(ray, dataset, bundle_path, trust, config, in_flight).iter_batches(
                batch_size=None, batch_format="pyarrow"):
            rows += batch.to_pylist()
            report(rows)
    except ray.exceptions.RayError as error:
        raise ArchiveError(f"the Ray pipeline stopped ({failure_cause(error)})",
                           expected="workers that can open the bundle and read the archive",
                           fix="on a cluster, put the bundle and the archive on storage every node reads at the same "
                               "path; rerun with --ray-logs for Ray's own messages") from None
    return rows


def _execute(ray, bundle_path: Path, archive: Archive, trust: TrustSettings, config: ArchiveRunConfig,
             progress: Progress | None) -> tuple[list[dict], float | None]:
    """The rows as the workers return them, and the seconds until the first one arrived.

    A worker that dies takes with it the recording it was running and those queued behind it; those recordings run
    once more, one call in flight per worker, so that only a recording that kills its worker again stays without a
    result.
    """
    started = time.perf_counter()
    items = _items(archive)
    done: list[dict] = []
    first: list[float] = []

    def report(rows: list[dict]) -> None:
        first[:] = first or [time.perf_counter() - started]
        if progress:
            progress("recordings", len(done) + len(rows), len(items))

    if progress:
        progress("recordings", 0, len(items))
    done += _collect(ray, items, bundle_path, trust, config, None, report)
    returned = {row["order"] for row in done}
    lost = [item for item in items if item["order"] not in returned]
    if lost:
        logger.warning("%d recording(s) lost with a worker that died: running them once more", len(lost))
        done += _collect(ray, lost, bundle_path, trust, config, 1, report)
    return done, first[0] if first else None


def _complete(rows: list[dict], archive: Archive) -> list[dict]:
    """Every entry's row in index order; an entry whose worker died has a failed row saying so."""
    by_order = {row["order"]: row for row in rows}
    complete = []
    for order, entry in enumerate(archive.entries):
        row = by_order.get(order)
        if row is None:
            row = failed_row(entry, order, "WorkerLost", "no result: the worker running this recording died, and "
                             "again when it ran once more (a crash in the runtime, or the process was killed); the "
                             "run went on without it")
            row["worker"] = None
        complete.append(row)
    return complete


def _bundle_info(bundle_path: Path, bundle: Bundle) -> dict:
    """Which bundle ran, and what its signed manifest says about validation on real data (``runtime.real_data``): an
    archive run is an evaluation, so it runs either way, and the report says which it was."""
    verdict = RealDataValidation.of(bundle.manifest)
    return {"path": str(bundle_path), "bundle_id": bundle.bundle_id, "variant": bundle.variant,
            "scenario": bundle.manifest.scenario, "manifest_sha256": bundle.manifest_sha256,
            "signed_by": bundle.signed_by, "provider": bundle.provider,
            "real_data": {"status": verdict.status.value, "validated": verdict.status is RealDataStatus.VALIDATED,
                          "reason": verdict.reason}}


def _archive_info(archive: Archive) -> dict:
    source = archive.source or {}
    return {"folder": str(archive.folder), "indexed": archive.indexed, "description": archive.description,
            "recordings": len(archive.entries), "source": source, "note": source.get("note")}


def _writable_folder(folder: Path) -> None:
    """Create ``folder`` (and its parents) and check a file can be made in it, or ``ArchiveError``."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".archive-validation-probe-"):
            pass
    except OSError as problem:
        raise ArchiveError(f"the output folder {folder} cannot be written ({problem.strerror or problem})",
                           expected="a folder (new or existing) where the results and report can be written",
                           fix="pass another --output folder") from None


def _write(folder: Path, rows: list[dict], report: dict) -> list[Path]:
    """results.parquet, report.json and report.md, staged in a hidden folder inside ``folder`` (same file system) and
    each renamed into place; the staging folder is removed whatever happens."""
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".archive-validation-partial-", dir=folder))
    try:
        pq.write_table(rows_table(rows), staging / RESULTS_NAME)
        report["results"] = {"file": RESULTS_NAME, "rows": len(rows), "sha256": sha256_file(staging / RESULTS_NAME)}
        (staging / REPORT_JSON).write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")
        (staging / REPORT_MARKDOWN).write_text(render_markdown(report))
        written = []
        for name in (RESULTS_NAME, REPORT_JSON, REPORT_MARKDOWN):
            os.replace(staging / name, folder / name)
            written.append(folder / name)
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def validate_archive(bundle_path: Path | str, archive: Archive, output: Path | None, trust: TrustSettings,
                     config: ArchiveRunConfig = ArchiveRunConfig(), progress: Progress | None = None) -> ArchiveOutcome:
    """Run the bundle over every recording of ``archive`` on Ray; write the rows and the report into ``output``."""
    if config.workers < 1:
        raise ArchiveError(f"{config.workers} workers", expected="at least one worker", fix="pass --workers ≥ 1")
    bundle_path = Path(bundle_path)
    created = output is not None and not Path(output).exists()
    if output is not None:
        _writable_folder(Path(output))  # before the run: a folder that cannot be written loses nothing yet
    try:
        bundle = open_checked_bundle(bundle_path, trust, config.worker)
        ray = _ray()
        started = time.perf_counter()
        with ray_session(config) as described, _ray_data_settings(ray, config.ray_logs):
            ray_started, busy_before, driver_before = time.perf_counter(), machine_busy_s(), driver_cpu_s()
            rows, first_result_s = _execute(ray, bundle_path, archive, trust, config, progress)
            finished, busy_after, driver_after = time.perf_counter(), machine_busy_s(), driver_cpu_s()
    except BaseException:  # refused, failed or interrupted before anything was written: no empty folder left
        if created:
            with contextlib.suppress(OSError):
                Path(output).rmdir()
        raise
    rows = _complete(rows, archive)
    total = totals(rows)
    pipeline_s = finished - ray_started
    report = {
        "report": "edgemed archive validation", "edgemed_version": EDGEMED_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "bundle": _bundle_info(bundle_path, bundle),
        "archive": _archive_info(archive),
        "run": {"ray": described, "workers": config.workers, "threads_per_worker": config.worker.threads,
                "provider": config.worker.provider, "chunk_s": config.worker.recording.chunk_s,
                "ray_start_s": round(ray_started - started, 3), "pipeline_s": round(pipeline_s, 3),
                "first_result_s": None if first_result_s is None else round(first_result_s, 3),
                # CPU during the pipeline: this whole machine's (every process; None on a cluster) and the driver's.
                "machine_busy_cpu_s": None if busy_before is None or config.ray_address
                else round(busy_after - busy_before, 2),
                "driver_cpu_s": round(driver_after - driver_before, 2),
                "recordings_per_s": round(len(rows) / pipeline_s, 3),
                "signal_s_per_s": round(total["signal_s"] / pipeline_s, 1),
                "rows_per_worker": dict(sorted(Counter(row["worker"] or "lost" for row in rows).items())),
                "driver": {"host": platform.node(), "python": platform.python_version(), "ray": ray.__version__,
                           "pyarrow": pa.__version__}},
        "totals": total,
        "failed": failures(rows),
        "refused": refusals(rows),
        "validation": validation(rows, bundle.variant, config.worker.recording),
    }
    written = _write(Path(output), rows, report) if output is not None else []
    return ArchiveOutcome(report, rows, written)
