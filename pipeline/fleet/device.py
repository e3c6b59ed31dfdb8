"""One simulated device running the real runtime: bundle, ECG stream, outbox and uploader.

The device is driven chunk by chunk in simulated time (``step``). Its ADC delivers the looped
recording impaired by the script; the stream gets each chunk with its simulated timestamp, so the
runtime's own checks (clipping, flat line, rate mismatch) see what a device would. Telemetry
records are built by ``telemetry_record`` and stamped with the simulated time of the beat.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from pipeline.fleet.scenario import EventKind, ScriptedEvent
from pipeline.fleet.signals import ADC_RANGE, LoopedSignal, impair
from runtime.bundle import Bundle, load_bundle
from runtime.ecg.stream import EcgStream, StreamConfig
from runtime.events import BeatEvent, QualityEvent
from runtime.runner import telemetry_record
from runtime.telemetry import CollectorRejectedError, Outbox, Uploader, utc_timestamp
from runtime.trust import TrustPolicy

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceConfig:
    declared_rate_hz: float = 500.0  # the sample rate the device's firmware declares to the stream
    threads: int = 1  # onnxruntime threads per device: an edge device has a core or two, not the host's all
    upload_interval_s: float = 60.0  # simulated seconds between uploads of the outbox
    stream: StreamConfig = field(default_factory=lambda: StreamConfig(summary_features=True))  # live-stream settings


class SlowedPredict:
    """``bundle.predict`` under CPU contention: busy-waits until the call took ``factor`` times as long."""

    def __init__(self, predict: Callable[[np.ndarray], np.ndarray]) -> None:
        self.predict = predict
        self.factor = 1.0  # set by the device from the active latency regression

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        result = self.predict(batch)
        if self.factor > 1.0:
            deadline = started + (time.perf_counter() - started) * self.factor
            while time.perf_counter() < deadline:  # spin: contention costs CPU time, not sleep
                pass
        return result


class SimulatedDevice:
    def __init__(
        self,
        index: int,
        device_id: str,
        bundle_path: Path,
        signal: LoopedSignal,
        events: tuple[ScriptedEvent, ...],
        outbox_path: Path,
        collector_url: str,
        start_time: datetime,
        seed: int,
        rollout_bundle_path: Path | None = None,
        config: DeviceConfig = DeviceConfig(),
    ) -> None:
        self.index = index
        self.device_id = device_id
        self.signal = signal
        self.events = events
        self.start_time = start_time
        self.config = config
        self.rng = np.random.default_rng([seed, index])
        self.outbox = Outbox(outbox_path, device_id)
        self.uploader = Uploader(self.outbox, collector_url)
        self.beat_flags: Counter[str] = Counter()  # quality flags on beat records
        self.quality_events: Counter[str] = Counter()  # quality events (flat line, clipping …) by flag
        self.quality_seconds: Counter[str] = Counter()  # seconds of signal each quality flag covered
        self.records = 0
        self.uploaded = 0
        self.upload_failures = 0
        self.bundle_ids: list[str] = []
        self.applied: list[dict] = []  # the events that took effect, with what they did
        self.rollout_bundle_path = rollout_bundle_path
        self._started: set[int] = set()  # positions in ``events`` that have begun
        self.pending = 0
        self._next_upload_s = config.upload_interval_s
        self._open(bundle_path, at_s=0.0)

    # -- bundle and stream ----------------------------------------------------------------------------------

    def _open(self, bundle_path: Path, at_s: float) -> None:
        # Simulated devices run the build's bundles under the development allowance (no trust store here).
        self.bundle: Bundle = load_bundle(bundle_path, threads=self.config.threads, trust=TrustPolicy.development())
        self.slowed = SlowedPredict(self.bundle.predict)
        self.bundle.predict = self.slowed  # the stream calls bundle.predict: contention slows exactly that
        rate = self.config.declared_rate_hz
        self.stream = EcgStream(self.bundle, rate, config=self.config.stream, adc_range=ADC_RANGE)
        self._stream_anchor = [0.0]  # stream seconds (declared-rate samples) at chunk boundaries …
        self._wall_anchor = [at_s]  # … and the simulated seconds they were sampled at
        if self.bundle.bundle_id not in self.bundle_ids:
            self.bundle_ids.append(self.bundle.bundle_id)

    def switch_bundle(self, bundle_path: Path, at_s: float) -> None:
        """Roll out another bundle: finish the current stream, then start afresh with the new bundle."""
        self._handle(self.stream.flush(), at_s)
        previous = self.bundle.bundle_id
        self._open(bundle_path, at_s)
        logger.info("device %s: rolled out bundle %s (was %s)", self.device_id, self.bundle.bundle_id, previous)

    # -- simulation -------------------------------------------------------------------------------------------

    def active(self, kind: EventKind, minute: float) -> ScriptedEvent | None:
        return next((event for event in self.events if event.kind is kind and event.active(minute)), None)

    def step(self, start_s: float, chunk_s: float) -> None:
        """Acquire and process ``chunk_s`` simulated seconds starting at ``start_s``."""
        minute = start_s / 60.0
        self._begin_events(minute, (start_s + chunk_s) / 60.0, start_s)
        mismatch = self.active(EventKind.RATE_MISMATCH, minute)
        true_rate = self.config.declared_rate_hz * (1.0 + (mismatch.magnitude if mismatch else 0.0))
        count = round(chunk_s * true_rate)
        minutes = (start_s + np.arange(count) / true_rate) / 60.0
        samples = impair(self.signal.read(start_s, count, true_rate), minutes, self.events, self.signal, self.rng)
        slowdown = self.active(EventKind.LATENCY_REGRESSION, minute)
        self.slowed.factor = slowdown.magnitude if slowdown else 1.0
        events = self.stream.feed(samples, timestamp_s=start_s)
        self._stream_anchor.append(self._stream_anchor[-1] + count / self.config.declared_rate_hz)
        self._wall_anchor.append(start_s + chunk_s)
        self._handle(events, start_s + chunk_s)
        if start_s + chunk_s >= self._next_upload_s:
            self.upload()
            self._next_upload_s += self.config.upload_interval_s

    def _begin_events(self, minute: float, end_minute: float, start_s: float) -> None:
        """Note the events that begin in this chunk; a rollout switches bundles at the chunk's start."""
        for position, event in enumerate(self.events):
            rollout = event.kind is EventKind.ROLLOUT
            begins = event.active(minute) if rollout else event.start_minute < end_minute and event.end_minute > minute
            if position in self._started or not begins:
                continue
            self._started.add(position)
            applied = True
            if event.kind is EventKind.ROLLOUT:
                if self.rollout_bundle_path is None:
                    applied = False
                    logger.info("device %s: no rollout bundle given; rollout skipped", self.device_id)
                else:
                    self.switch_bundle(self.rollout_bundle_path, start_s)
            began = round(max(minute, event.start_minute), 3)
            self.applied.append({**event.to_dict(), "began_at_minute": began, "applied": applied})

    def _wall_seconds(self, stream_s: float, emitted_s: float) -> float:
        """Simulated seconds of a stream time: interpolated between chunk boundaries, never after emission."""
        position = bisect.bisect_right(self._stream_anchor, stream_s)
        wall = float(np.interp(stream_s, self._stream_anchor, self._wall_anchor)) if position else self._wall_anchor[0]
        return min(wall, emitted_s)

    def _handle(self, events: list[BeatEvent | QualityEvent], emitted_s: float) -> None:
        for event in events:
            if isinstance(event, QualityEvent):
                self.quality_events[event.flag] += 1
                self.quality_seconds[event.flag] += event.duration_s
                continue
            self.beat_flags.update(event.quality_flags)
            if not event.classified:  # as the device runner: a beat the stream left unjudged sends no record
                continue
            record = telemetry_record(self.bundle, event)
            moment = self.start_time + timedelta(seconds=self._wall_seconds(event.time_s, emitted_s))
            record["time"] = utc_timestamp(moment)
            self.outbox.append(record)
            self.records += 1

    def upload(self) -> None:
        try:
            self.uploaded += self.uploader.upload_pending()
        except CollectorRejectedError as error:
            self.upload_failures += 1
            logger.error("device %s: the collector rejected a batch (HTTP %d)", self.device_id, error.status)

    def finish(self, end_s: float) -> None:
        """End of the simulation: flush the stream, upload what is left, close the outbox."""
        self._handle(self.stream.flush(), end_s)
        self.upload()
        pending = self.outbox.count()
        if pending:
            logger.warning("device %s: %d records were not uploaded", self.device_id, pending)
        self.pending = pending
        self.outbox.close()

    def summary(self) -> dict:
        return {
            "index": self.index,
            "signal": self.signal.recording.name,
            "signal_offset_s": round(self.signal.offset_s, 3),
            "bundle_ids": list(self.bundle_ids),
            "records": self.records,
            "uploaded": self.uploaded,
            "pending": self.pending,
            "upload_failures": self.upload_failures,
            "beat_flags": dict(sorted(self.beat_flags.items())),
            "quality_events": dict(sorted(self.quality_events.items())),
            "quality_seconds": {flag: round(seconds, 2) for flag, seconds in sorted(self.quality_seconds.items())},
            "events_applied": list(self.applied),
        }
