"""The fleet loop: N simulated devices, M simulated minutes, the script, one summary.

All devices advance together chunk by chunk (10 s of signal each), as fast as the host allows;
simulated time starts M minutes before now, so the collector receives a timeline that ends about
when the simulation does. The summary (script + per-device counts) is what the dashboard's
alerts can be checked against.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pipeline.fleet.device import DeviceConfig, SimulatedDevice
from pipeline.fleet.scenario import EventKind, ScriptedEvent, default_script, validate_script
from pipeline.fleet.signals import SignalConfig, device_signal
from runtime.telemetry import pseudonymous_device_id, utc_timestamp

logger = logging.getLogger(__name__)

DEFAULT_BUNDLE = Path("bundles/ecg-pvc")  # the ECG bundle `make build` ships
DEFAULT_SALT = "edgemed-fleet-simulator"

Progress = Callable[[int, int], None]  # (chunks done, chunks in all), over the whole fleet


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

    def resolved_script(self) -> tuple[ScriptedEvent, ...]:
        return self.script if self.script is not None else default_script(self.devices, self.minutes)


def device_id_for(index: int, salt: str = DEFAULT_SALT) -> str:
    return pseudonymous_device_id(f"sim-device-{index}", salt)


def simulate(config: SimulationConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Run the fleet; returns the summary (the script and, per device id, what it sent and saw)."""
    script = config.resolved_script()
    validate_script(script, config.devices, config.minutes)
    if config.rollout_bundle_path is None and any(event.kind is EventKind.ROLLOUT for event in script):
        logger.warning("no rollout bundle given: the scripted rollouts are skipped")
    end_time = config.end_time or datetime.now(UTC)
    start_time = end_time - timedelta(minutes=config.minutes)
    duration_s = config.minutes * 60.0
    chunks = math.ceil(duration_s / config.chunk_s - 1e-9)
    with ExitStack() as stack:
        if config.outbox_dir is None:
            outbox_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="edgemed-fleet-")))
        else:
            outbox_dir = Path(config.outbox_dir)
            outbox_dir.mkdir(parents=True, exist_ok=True)
        devices = [_device(index, config, script, outbox_dir, start_time) for index in range(config.devices)]
        logger.info(
            "simulating %d devices for %.1f min (%s … %s) against %s",
            len(devices),
            config.minutes,
            utc_timestamp(start_time),
            utc_timestamp(end_time),
            config.collector_url,
        )
        for chunk in range(chunks):
            start_s = chunk * config.chunk_s
            length = min(config.chunk_s, duration_s - start_s)
            for device in devices:
                device.step(start_s, length)
                if progress is not None:
                    progress(chunk * len(devices) + device.index + 1, chunks * len(devices))
        for device in devices:
            device.finish(duration_s)
    return {
        "started_at": utc_timestamp(start_time),
        "ended_at": utc_timestamp(end_time),
        "devices": config.devices,
        "minutes": config.minutes,
        "seed": config.seed,
        "collector_url": config.collector_url,
        "bundle": str(config.bundle_path),
        "rollout_bundle": str(config.rollout_bundle_path) if config.rollout_bundle_path else None,
        "declared_rate_hz": config.device.declared_rate_hz,
        "script": [{**event.to_dict(), "device_id": devices[event.device_index].device_id} for event in script],
        "device_summaries": {device.device_id: device.summary() for device in devices},
    }


def _device(
    index: int, config: SimulationConfig, script: tuple[ScriptedEvent, ...], outbox_dir: Path, start_time: datetime
) -> SimulatedDevice:
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
