"""The fleet loop: N simulated devices, M simulated minutes, the script, one summary.

Devices advance together chunk by chunk (10 s of signal each), as fast as the host allows (an accelerated clock);
simulated time starts M minutes before now, so the collector receives a timeline that ends about when the
simulation does. With ``processes`` > 1 the fleet is shared out round-robin over that many worker processes (spawned,
each with its own ONNX Runtime sessions, one per bundle, shared by its devices; never a thread per device); each
process interleaves its own devices chunk by chunk. Every device keeps its own outbox file and uploads on its own.
The summary (script + per-device counts + totals) is what the dashboard's alerts can be checked against.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import queue
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pipeline.fleet.device import BundleCache, DeviceConfig, SimulatedDevice
from pipeline.fleet.scenario import EventKind, ScenarioError, ScriptedEvent, default_script, validate_script
from pipeline.fleet.signals import SYNTHETIC_SIGNAL, SignalConfig, device_signal
from runtime.errors import EdgemedError
from runtime.real_data import bundle_identity
from runtime.telemetry import pseudonymous_device_id, utc_timestamp

logger = logging.getLogger(__name__)

DEFAULT_BUNDLE = Path("bundles/ecg-pvc")  # the ECG bundle `make build` ships
DEFAULT_SALT = "edgemed-fleet-simulator"

Progress = Callable[[int, int], None]  # (chunks done, chunks in all), over the whole fleet
TOTAL_KEYS = ("beats", "classified", "aggregated_events", "aggregates", "records", "appended", "uploaded", "pending",
              "upload_failures")
WORKER_POLL_S = 1.0  # how often the parent checks that its workers are alive while waiting for their reports


class SimulationError(EdgemedError):
    """A worker process of the simulation failed or died."""


@dataclass(frozen=True)
class SimulationConfig:
    collector_url: str  # the collector's telemetry endpoint, e.g. http://127.0.0.1:8787/v1/telemetry
    devices: int = 8  # fleet size
    minutes: float = 30.0  # simulated minutes of signal per device
    bundle_path: Path = DEFAULT_BUNDLE  # the ECG bundle every device starts with
    rollout_bundle_path: Path | None = None  # the bundle rolled out by ROLLOUT events; None = rollouts skipped
    seed: int = 0  # signal offsets, synthetic traces and noise follow from it
    outbox_dir: Path | None = None  # per-device SQLite outboxes; None = a temporary folder removed afterwards
    script: tuple[ScriptedEvent, ...] | None = None  # None = default_script(devices, minutes)
    chunk_s: float = 10.0  # signal reaches each device's stream in chunks this long
    salt: str = DEFAULT_SALT  # fleet secret for pseudonymous_device_id
    end_time: datetime | None = None  # simulated time ends here; None = now
    device: DeviceConfig = field(default_factory=DeviceConfig)  # per-device runtime settings
    signal: SignalConfig = field(default_factory=SignalConfig)  # signal sources
    processes: int = 1  # worker processes (spawned); 1 runs the fleet in this process

    def resolved_script(self) -> tuple[ScriptedEvent, ...]:
        return self.script if self.script is not None else default_script(self.devices, self.minutes)


def device_id_for(index: int, salt: str = DEFAULT_SALT) -> str:
    return pseudonymous_device_id(f"sim-device-{index}", salt)


def simulate(config: SimulationConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Run the fleet; returns the summary (the script, per device id what it sent and saw, and the totals)."""
    script = config.resolved_script()
    validate_script(script, config.devices, config.minutes)
    if config.rollout_bundle_path is None and any(event.kind is EventKind.ROLLOUT for event in script):
        logger.warning("no rollout bundle given: the scripted rollouts are skipped")
    for name, path in (("bundle", config.bundle_path), ("rollout bundle", config.rollout_bundle_path)):
        if path is not None and not (Path(path) / "manifest.json").is_file():  # before any worker starts
            raise ScenarioError(f"the {name} {path} is not a bundle folder (no manifest.json)",
                                expected="a folder `edgemed build` published", fix="build it first, or fix the path")
    end_time = config.end_time or datetime.now(UTC)
    start_time = end_time - timedelta(minutes=config.minutes)
    chunks = math.ceil(config.minutes * 60.0 / config.chunk_s - 1e-9)
    processes = max(1, min(config.processes, config.devices))
    started = time.perf_counter()
    temporary = config.outbox_dir is None
    outbox_dir = Path(tempfile.mkdtemp(prefix="edgemed-fleet-")) if temporary else Path(config.outbox_dir)
    outbox_dir.mkdir(parents=True, exist_ok=True)
    summaries: dict[str, dict] | None = None
    try:
        logger.info("simulating %d devices in %d process(es) for %.1f min (%s … %s) against %s", config.devices,
                    processes, config.minutes, utc_timestamp(start_time), utc_timestamp(end_time),
                    config.collector_url)
        total = chunks * config.devices
        if processes == 1:
            done = [0]

            def report(count: int) -> None:
                done[0] += count
                if progress is not None:
                    progress(done[0], total)

            summaries = run_devices(config, range(config.devices), start_time, outbox_dir, report)
        else:
            summaries = _run_processes(config, processes, start_time, outbox_dir, lambda done: progress and progress(
                done, total))
    finally:
        # a temporary outbox folder goes only when everything in it was delivered: undelivered telemetry is kept
        # (a failed run's error says why; its simulated telemetry goes with it)
        pending = 0 if summaries is None else sum(summary["pending"] for summary in summaries.values())
        if temporary and not pending:
            shutil.rmtree(outbox_dir, ignore_errors=True)
    ordered = dict(sorted(summaries.items(), key=lambda item: item[1]["index"]))
    ids = {summary["index"]: device_id for device_id, summary in ordered.items()}
    synthetic = sum(1 for summary in ordered.values() if summary["signal"] == SYNTHETIC_SIGNAL)
    return {
        "simulated": True,  # every device here is simulated (uploads marked so: the dashboard labels them)
        "signals": {"real PLUX recordings, with the scripted faults": len(ordered) - synthetic,
                    "SYNTHETIC ECGSYN": synthetic},
        "started_at": utc_timestamp(start_time),
        "ended_at": utc_timestamp(end_time),
        "devices": config.devices,
        "minutes": config.minutes,
        "seed": config.seed,
        "processes": processes,
        "wall_s": round(time.perf_counter() - started, 2),
        "telemetry_mode": config.device.telemetry_mode.value,
        "upload_interval_s": config.device.upload_interval_s,
        "collector_url": config.collector_url,
        # where the devices' outboxes are: the --outbox-dir, or the temporary folder kept for undelivered rows
        "outbox_dir": str(outbox_dir) if not temporary or pending else None,
        "bundle": str(config.bundle_path),
        "rollout_bundle": str(config.rollout_bundle_path) if config.rollout_bundle_path else None,
        # which bundles the fleet ran and what their signed manifests say about real data (runtime.real_data)
        "bundles": {str(path): bundle_identity(path) for path in (config.bundle_path, config.rollout_bundle_path)
                    if path is not None},
        "declared_rate_hz": config.device.declared_rate_hz,
        "model": "the real bundle on every device's own stream (no precomputed events)",
        "script": [{**event.to_dict(), "device_id": ids[event.device_index]} for event in script],
        "totals": {key: sum(summary[key] for summary in ordered.values()) for key in TOTAL_KEYS},
        "device_summaries": ordered,
    }


def run_devices(config: SimulationConfig, indices: range, start_time: datetime, outbox_dir: Path,
                report: Callable[[int], None]) -> dict[str, dict[str, Any]]:
    """Simulate the devices ``indices`` in this process, interleaved chunk by chunk; their summaries by device id.
    ``report(n)`` is told each time ``n`` more device-chunks are done."""
    script = config.resolved_script()
    duration_s = config.minutes * 60.0
    chunks = math.ceil(duration_s / config.chunk_s - 1e-9)
    # one session per bundle for every device of this process
    bundles = BundleCache(config.device.threads, config.device.trust_store, config.device.allow_unvalidated)
    devices = [_device(index, config, script, outbox_dir, start_time, bundles) for index in indices]
    for chunk in range(chunks):
        start_s = chunk * config.chunk_s
        length = min(config.chunk_s, duration_s - start_s)
        for device in devices:
            device.step(start_s, length)
        report(len(devices))
    for device in devices:
        device.finish(duration_s)
    return {device.device_id: device.summary() for device in devices}


def _worker(config: SimulationConfig, indices: range, start_time: datetime, outbox_dir: Path,
            reports: multiprocessing.Queue) -> None:
    """A worker process: its share of the fleet; progress and the summaries (or the error) go to ``reports``."""
    try:
        summaries = run_devices(config, indices, start_time, outbox_dir, lambda count: reports.put(("progress", count)))
    except Exception as error:  # any failure: reported to the parent, which raises it as a SimulationError
        logger.exception("simulation worker for devices %s failed", indices)
        reports.put(("error", f"{type(error).__name__}: {error}"))
        return
    reports.put(("done", summaries))


def _run_processes(config: SimulationConfig, processes: int, start_time: datetime, outbox_dir: Path,
                   progress: Callable[[int], object]) -> dict[str, dict[str, Any]]:
    """The fleet shared out round-robin over ``processes`` spawned workers (ONNX Runtime sessions are never
    forked); their summaries merged."""
    context = multiprocessing.get_context("spawn")
    reports = context.Queue()
    workers = [context.Process(target=_worker, args=(config, range(share, config.devices, processes), start_time,
                                                     outbox_dir, reports), name=f"edgemed-fleet-{share}", daemon=True)
               for share in range(processes)]
    for worker in workers:
        worker.start()
    summaries: dict[str, dict[str, Any]] = {}
    finished, done = 0, 0
    try:
        while finished < processes:
            try:
                kind, payload = reports.get(timeout=WORKER_POLL_S)
            except queue.Empty:
                dead = [worker.name for worker in workers if worker.exitcode not in (None, 0)]
                if dead:
                    raise SimulationError(f"simulation worker(s) {', '.join(dead)} died",
                                          fix="see the log above; rerun with fewer devices per process") from None
                continue
            if kind == "progress":
                done += payload
                progress(done)
            elif kind == "error":
                raise SimulationError(f"a simulation worker failed: {payload}", fix="see the log above")
            else:
                summaries.update(payload)
                finished += 1
    finally:
        for worker in workers:
            worker.join(timeout=30 if finished == processes else 1)
            if worker.is_alive():
                worker.terminate()
    return summaries


def _device(index: int, config: SimulationConfig, script: tuple[ScriptedEvent, ...], outbox_dir: Path,
            start_time: datetime, bundles: BundleCache) -> SimulatedDevice:
    device_id = device_id_for(index, config.salt)
    return SimulatedDevice(
        index=index,
        device_id=device_id,
        bundle_path=config.bundle_path,
        signal=device_signal(index, config.seed, config.signal),
        events=tuple(event for event in script if event.device_index == index),
        outbox_path=outbox_dir / f"{device_id}.sqlite3",
        collector_url=config.collector_url,
        start_time=start_time,
        seed=config.seed,
        rollout_bundle_path=config.rollout_bundle_path,
        config=config.device,
        bundles=bundles,
    )


def write_summary(summary: dict[str, Any], path: Path) -> None:
    """Write the summary as JSON atomically (a temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(summary, handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
