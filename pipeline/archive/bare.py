"""The scaling benchmark's control: the same recordings, the same worker code, in plain processes without Ray.

A ``multiprocessing`` pool (spawned processes, each verifying the bundle once, one recording per task) runs what a
Ray worker runs (``worker.validate_recording``), at the niceness Ray gives its workers (15 unless
``RAY_worker_niceness`` says otherwise), so that both yield alike to the other processes of a shared machine. Timed
back to back with the Ray runs, it shows how far the machine itself scales at that moment — on a shared machine,
other processes' load caps both alike — so that Ray's own cost can be told apart from the machine's.
"""

from __future__ import annotations

import multiprocessing
import os
import time

from pipeline.archive.layout import Archive, ArchiveEntry
from pipeline.archive.worker import FAILED, REFUSED, TrustSettings, WorkerConfig, validate_recording
from runtime.bundle import Bundle, load_bundle

_state: dict[str, object] = {}  # per pool process: the bundle and the settings


# Ray's default niceness for its worker processes; Ray's own setting is named in lower case.
RAY_WORKER_NICENESS = int(os.environ.get("RAY_worker_niceness", "15"))  # noqa: SIM112


def _start(bundle_path: str, trust: TrustSettings, config: WorkerConfig) -> None:
    os.nice(max(RAY_WORKER_NICENESS - os.nice(0), 0))
    _state["bundle"] = load_bundle(bundle_path, config.provider, config.threads, trust=trust.policy(False))
    _state["config"] = config


def _one(job: tuple[int, ArchiveEntry]) -> str:
    order, entry = job
    bundle: Bundle = _state["bundle"]  # type: ignore[assignment]
    config: WorkerConfig = _state["config"]  # type: ignore[assignment]
    return validate_recording(bundle, entry, order, config.recording)["status"]


def bare_run(bundle_path: str, archive: Archive, trust: TrustSettings, config: WorkerConfig, workers: int) -> dict:
    """Seconds for ``workers`` plain processes to run every recording (pool start-up and bundle loads included), and
    how many recordings failed and how many the device refused (a lead the bundle was not validated on), as the Ray
    report counts them."""
    context = multiprocessing.get_context("spawn")
    started = time.perf_counter()
    with context.Pool(workers, initializer=_start, initargs=(bundle_path, trust, config)) as pool:
        statuses = pool.map(_one, list(enumerate(archive.entries)), chunksize=1)
    seconds = time.perf_counter() - started
    return {"workers": workers, "seconds": round(seconds, 3), "recordings_per_s": round(len(statuses) / seconds, 3),
            "failed": statuses.count(FAILED), "refused": statuses.count(REFUSED)}
