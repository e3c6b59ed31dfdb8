"""Real-time factor of the device stream path: a long 360 Hz ECG through the whole runtime on one core.

The recording is synthesised by tiling a neurokit2 ECGSYN strip (documented as synthetic). The
headline is an unprofiled run (wall time of ``EcgStream.feed`` over 10-s chunks with a one-thread
session, plus batched telemetry appends to a real SQLite outbox). A second, profiled run on a
shorter stretch says where the time goes.
"""

from __future__ import annotations

import cProfile
import logging
import pstats
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from runtime.bundle import load_bundle
from runtime.ecg import RECORDING_CONFIG, EcgStream
from runtime.events import BeatEvent
from runtime.runner import telemetry_record
from runtime.trust import TrustPolicy

logger = logging.getLogger(__name__)

# Module prefixes → the stage of the stream they belong to (first match wins).
_STAGES = (
    ("inference", ("runtime/bundle.py", "onnxruntime")),
    ("detection", ("runtime/ecg/rpeaks.py", "runtime/ecg/decisions.py")),
    ("resampling", ("runtime/ecg/resample.py",)),
    ("signal quality", ("runtime/ecg/quality.py",)),
    ("windowing and events", ("runtime/ecg/stream.py", "runtime/ecg/beats.py", "runtime/events.py")),
    ("features", ("runtime/features.py",)),
    ("derived inputs (RR, template)", ("runtime/ecg/beat_inputs.py", "runtime/ecg/template.py",
                                       "runtime/ecg/rr_features.py")),
    ("telemetry", ("runtime/telemetry", "runtime/runner.py", "sqlite3", "json")),
)


@dataclass(frozen=True)
class StreamSpeedConfig:
    hours: float = 24.0  # length of the timed recording
    profiled_hours: float = 1.0  # length of the profiled recording (profiling slows everything)
    sample_rate_hz: float = 360.0  # the model's own rate: no resampling in the timed path
    chunk_s: float = 10.0  # what a device hands the stream at a time
    threads: int = 1  # onnxruntime intra-op threads: one core
    telemetry: bool = True  # append one telemetry record per beat to a real SQLite outbox
    seed: int = 0


def synthetic_recording(hours: float, sample_rate_hz: float, seed: int) -> np.ndarray:
    """``hours`` of ECG: a 5-minute ECGSYN strip with heart-rate variation, tiled (synthetic)."""
    import neurokit2

    strip = neurokit2.ecg_simulate(
        duration=300, sampling_rate=int(sample_rate_hz), heart_rate=72, heart_rate_std=4, random_state=seed
    )
    total = int(hours * 3600 * sample_rate_hz)
    return np.resize(np.asarray(strip, dtype=np.float32), total)


def _run(bundle, signal: np.ndarray, config: StreamSpeedConfig, outbox) -> tuple[float, int]:
    stream = EcgStream(bundle, config.sample_rate_hz, config=RECORDING_CONFIG)
    chunk = int(config.chunk_s * config.sample_rate_hz)
    beats = 0
    started = time.perf_counter()
    chunks = (stream.feed(signal[start : start + chunk]) for start in range(0, len(signal), chunk))
    for events in (*chunks, stream.flush()):
        beat_events = [event for event in events if isinstance(event, BeatEvent)]
        beats += len(beat_events)
        classified = [event for event in beat_events if event.classified]  # as the runner: unjudged beats send none
        if outbox is not None and classified:
            outbox.append_many([telemetry_record(bundle, event) for event in classified])
    return time.perf_counter() - started, beats


def _breakdown(profile: cProfile.Profile) -> dict[str, float]:
    """Share of profiled time (own time of each function) per stream stage."""
    statistics = pstats.Stats(profile)
    totals: dict[str, float] = {}
    for (filename, _, function), (_, _, own_time, _, _) in statistics.stats.items():
        location = f"{filename}:{function}"
        stage = next((name for name, keys in _STAGES if any(key in location for key in keys)), "other")
        totals[stage] = totals.get(stage, 0.0) + own_time
    whole = sum(totals.values()) or 1.0
    return {stage: round(value / whole, 3) for stage, value in sorted(totals.items(), key=lambda item: -item[1])}


def measure_stream_speed(bundle_path: Path, config: StreamSpeedConfig = StreamSpeedConfig()) -> dict:
    """The real-time factor of ``config.hours`` of ECG, and the profiled time breakdown."""
    from runtime.telemetry.outbox import Outbox
    from runtime.telemetry.records import pseudonymous_device_id

    bundle = load_bundle(bundle_path, provider="cpu", threads=config.threads, trust=TrustPolicy.development())
    signal = synthetic_recording(config.hours, config.sample_rate_hz, config.seed)
    with tempfile.TemporaryDirectory() as folder:
        device = pseudonymous_device_id("benchmark-device", "benchmark")
        outbox = Outbox(Path(folder) / "outbox.sqlite3", device) if config.telemetry else None
        seconds, beats = _run(bundle, signal, config, outbox)
        profiled = signal[: int(config.profiled_hours * 3600 * config.sample_rate_hz)]
        profile = cProfile.Profile()
        profile.enable()
        profiled_seconds, _ = _run(bundle, profiled, config, outbox)
        profile.disable()
        if outbox is not None:
            outbox.close()
    duration_s = len(signal) / config.sample_rate_hz
    return {
        "config": asdict(config),
        "bundle": {"id": bundle.bundle_id, "variant": bundle.variant},
        "signal": "synthetic: neurokit2 ECGSYN 5-minute strip tiled",
        "recording_s": duration_s,
        "wall_s": round(seconds, 3),
        "beats": beats,
        "real_time_factor": round(duration_s / seconds, 1),
        "microseconds_per_beat": round(seconds / max(beats, 1) * 1e6, 2),
        "target_real_time_factor": 20_000,
        "profiled_recording_s": len(profiled) / config.sample_rate_hz,
        "profiled_wall_s": round(profiled_seconds, 3),
        "time_share_by_stage": _breakdown(profile),
    }
