"""One simulated device running the real runtime: a bundle, an ECG stream, telemetry (outbox, uploader).

The device is driven chunk by chunk in simulated time (``step``). Its ADC delivers the looped
recording impaired by the script; the stream gets each chunk with its simulated timestamp, so the
runtime's own checks (clipping, flat line, rate mismatch) see what a device would.

Telemetry is the runtime's own ``TelemetrySink``: by default (``aggregates``) every event of the stream is counted in
per-minute aggregates and the events the event filter keeps are also sent as schema-2 records, one sink (one
aggregator) per bundle: a rollout finishes the old bundle's last minute before the new bundle's first. Events are
stamped with the simulated time they were sampled at (a rate mismatch makes the stream's own clock run fast), and
the open minute is closed by ``advance`` every step, so minutes end during a lead-off too. ``records`` mode sends
one schema-2 record per classified beat instead.

Bundles come from a per-process ``BundleCache``: every device of a process shares one ONNX Runtime session and one
aggregation plan per bundle; each device has its own ``predict`` (``SlowedPredict``: its latency regression).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from pipeline.fleet.scenario import EventKind, ScriptedEvent
from pipeline.fleet.signals import ADC_RANGE, LoopedSignal, impair
from runtime.bundle import Bundle, load_bundle
from runtime.ecg.stream import EcgStream, StreamConfig
from runtime.events import BeatEvent, QualityEvent
from runtime.real_data import check_real_data
from runtime.runner import TelemetryMode, TelemetrySink
from runtime.telemetry import AggregationPlan, CollectorRejectedError, Outbox, Uploader
from runtime.trust import TrustPolicy

logger = logging.getLogger(__name__)

ANCHORS_KEPT = 64  # chunk boundaries remembered for stamping events (10-s chunks: 640 s, beyond any batch wait)


@dataclass(frozen=True)
class DeviceConfig:
    declared_rate_hz: float = 500.0  # the sample rate the device's firmware declares to the stream
    threads: int = 1  # onnxruntime threads per bundle: an edge device has a core or two, not the host's all
    upload_interval_s: float = 60.0  # simulated seconds between uploads of the outbox
    stream: StreamConfig = field(default_factory=lambda: StreamConfig(summary_features=True))  # live-stream settings
    telemetry_mode: TelemetryMode = TelemetryMode.AGGREGATES  # per-minute aggregates + filtered events, or records
    trust_store: Path | None = None  # verify every bundle's signature against these keys (None: development allowance)
    allow_unvalidated: bool = False  # development only: run a bundle not validated on real data (runtime.real_data)


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


class DeviceBundle:
    """One device's view of a shared ``Bundle``: its own ``predict``, everything else the shared bundle's."""

    def __init__(self, bundle: Bundle, predict: SlowedPredict) -> None:
        self.shared = bundle
        self.predict = predict

    def __getattr__(self, name: str):
        return getattr(self.shared, name)


class BundleCache:
    """Bundles loaded once per process (one ONNX Runtime session each) with their aggregation plans.

    As on a device (``runtime.runner.run``): a bundle verified against the trust store whose signed manifest says it
    was not validated on real data is refused (``UnvalidatedBundleError``) unless ``allow_unvalidated``; without a
    trust store the devices run under the development allowance and such a bundle is warned."""

    def __init__(self, threads: int = 1, trust_store: Path | None = None, allow_unvalidated: bool = False) -> None:
        self.threads = threads
        self.trust_store = trust_store
        self.allow_unvalidated = allow_unvalidated
        self._bundles: dict[Path, tuple[Bundle, AggregationPlan]] = {}

    def get(self, path: Path) -> tuple[Bundle, AggregationPlan]:
        key = Path(path).resolve()
        if key not in self._bundles:
            bundle = load_bundle(path, threads=self.threads, trust=self._trust())
            check_real_data(bundle.manifest, bundle.manifest.scenario,
                            self.allow_unvalidated or self.trust_store is None or bundle.signed_by is None)
            plan = AggregationPlan.from_profile(bundle.reference_profile(), bundle.output.task.value, bundle.labels)
            self._bundles[key] = (bundle, plan)
        return self._bundles[key]


    def _trust(self) -> TrustPolicy:
        """With a trust store, a signature by one of its keys is required, as on a device (no rollback state: the
        fleet's devices share this process's sessions); without one, the development allowance (a WARNING per load)."""
        if self.trust_store is None:
            return TrustPolicy.development()
        return dataclasses.replace(TrustPolicy.from_store(self.trust_store), version_state=None)


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
        bundles: BundleCache | None = None,
    ) -> None:
        self.index = index
        self.device_id = device_id
        self.signal = signal
        self._recording_lag_s = 0.0  # how far its recording lags the simulated clock (played slower in a slow rhythm)
        self.events = events
        self.start_time = start_time
        self.start_epoch_s = start_time.timestamp()
        self.config = config
        self.bundles = bundles or BundleCache(config.threads, config.trust_store, config.allow_unvalidated)
        self.rng = np.random.default_rng([seed, index])
        self.outbox = Outbox(outbox_path, device_id)
        self.uploader = Uploader(self.outbox, collector_url, simulated=True)  # labelled simulated in the store
        self.beat_flags: Counter[str] = Counter()  # quality flags on beats (classified or not)
        self.quality_events: Counter[str] = Counter()  # quality events (flat line, clipping …) by flag
        self.quality_seconds: Counter[str] = Counter()  # seconds of signal each quality flag covered
        self.beats = 0  # beats the stream reported
        self.classified = 0  # of them, classified
        self.counts: Counter[str] = Counter()  # over every sink: events, appended, aggregates
        self.uploaded = 0
        self.upload_failures = 0
        self.bundle_ids: list[str] = []
        self.applied: list[dict] = []  # the events that took effect, with what they did
        self.rollout_bundle_path = rollout_bundle_path
        self._started: set[int] = set()  # positions in ``events`` that have begun
        self.pending = 0
        self._next_upload_s = config.upload_interval_s
        self.telemetry: TelemetrySink | None = None
        self._open(bundle_path, at_s=0.0)

    # -- bundle, stream and telemetry ---------------------------------------------------------------------------

    def _open(self, bundle_path: Path, at_s: float) -> None:
        shared, plan = self.bundles.get(bundle_path)
        self.slowed = SlowedPredict(shared.predict)
        self.bundle = DeviceBundle(shared, self.slowed)  # the stream calls bundle.predict: contention slows that
        rate = self.config.declared_rate_hz
        self.stream = EcgStream(self.bundle, rate, config=self.config.stream, adc_range=ADC_RANGE)
        self._stream_anchor = [0.0]  # stream seconds (declared-rate samples) at chunk boundaries …
        self._wall_anchor = [at_s]  # … and the simulated seconds they were sampled at
        self.telemetry = TelemetrySink(self.bundle, self.outbox, self.device_id, None, mode=self.config.telemetry_mode)
        self.telemetry.begin(self.start_epoch_s + at_s, plan)
        if shared.bundle_id not in self.bundle_ids:
            self.bundle_ids.append(shared.bundle_id)

    def _close_telemetry(self) -> None:
        """The current bundle's last minute (and queued records) into the outbox; its counts into the device's."""
        sink = self.telemetry
        sink.finish()
        self.counts.update(events=sink.events, appended=sink.count, aggregates=sink.aggregates)

    def switch_bundle(self, bundle_path: Path, at_s: float) -> None:
        """Roll out another bundle: finish the current stream and its telemetry, then start afresh with the new one."""
        self._handle(self.stream.flush(), at_s)
        self._close_telemetry()
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
        slow = self.active(EventKind.SLOW_RHYTHM, minute)
        pace = slow.magnitude if slow else 1.0  # recording seconds played per simulated second
        recording = self.signal.read(start_s - self._recording_lag_s, count, true_rate / pace)
        self._recording_lag_s += count / true_rate * (1.0 - pace)
        samples = impair(recording, minutes, self.events, self.signal, self.rng)
        slowdown = self.active(EventKind.LATENCY_REGRESSION, minute)
        self.slowed.factor = slowdown.magnitude if slowdown else 1.0
        events = self.stream.feed(samples, timestamp_s=start_s)
        self._stream_anchor.append(self._stream_anchor[-1] + count / self.config.declared_rate_hz)
        self._wall_anchor.append(start_s + chunk_s)
        del self._stream_anchor[:-ANCHORS_KEPT], self._wall_anchor[:-ANCHORS_KEPT]
        self._handle(events, start_s + chunk_s)
        # Close the minutes the stream can no longer add to: beats leave it up to a batch wait and a block late.
        settled_s = start_s + chunk_s - self.config.stream.max_batch_wait_s - self.config.stream.block_s
        self.telemetry.advance(self.start_epoch_s + settled_s)
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

    def _wall_seconds(self, stream_s: np.ndarray, emitted_s: float) -> np.ndarray:
        """Simulated seconds of stream times: interpolated between chunk boundaries, never after emission."""
        return np.minimum(np.interp(stream_s, self._stream_anchor, self._wall_anchor), emitted_s)

    def _handle(self, events: list[BeatEvent | QualityEvent], emitted_s: float) -> None:
        if not events:
            return
        for event in events:
            if isinstance(event, QualityEvent):
                self.quality_events[event.flag] += 1
                self.quality_seconds[event.flag] += event.duration_s
                continue
            self.beats += 1
            self.classified += event.beat_class is not None
            if event.quality_flags:
                self.beat_flags.update(event.quality_flags)
        moments = self.start_epoch_s + self._wall_seconds(np.array([event.time_s for event in events]), emitted_s)
        self.telemetry.add_many(events, moments.tolist())  # records mode: a record per classified beat, as the runner

    def upload(self) -> None:
        self.telemetry.commit()
        try:
            self.uploaded += self.uploader.upload_pending()
        except CollectorRejectedError as error:
            self.upload_failures += 1
            logger.error("device %s: the collector rejected a batch (HTTP %d)", self.device_id, error.status)

    def finish(self, end_s: float) -> None:
        """End of the simulation: flush the stream and the telemetry, upload what is left, close the outbox."""
        self._handle(self.stream.flush(), end_s)
        self._close_telemetry()
        self.upload()
        pending = self.outbox.count()
        if pending:
            logger.warning("device %s: %d records were not uploaded", self.device_id, pending)
        self.pending = pending
        self.outbox.close()

    def summary(self) -> dict:
        appended, aggregates = self.counts["appended"], self.counts["aggregates"]
        return {
            "index": self.index,
            "signal": self.signal.recording.name,
            "signal_offset_s": round(self.signal.offset_s, 3),
            "bundle_ids": list(self.bundle_ids),
            "telemetry_mode": self.config.telemetry_mode.value,
            "beats": self.beats,  # beats the stream reported, classified or not
            "classified": self.classified,
            "aggregated_events": self.counts["events"],  # events counted in minute aggregates (beats + quality)
            "aggregates": aggregates,  # minute aggregates appended (schema 3)
            "records": appended - aggregates,  # per-event schema-2 records appended (filtered, or every beat)
            "appended": appended,  # outbox rows: records + aggregates
            "uploaded": self.uploaded,  # outbox rows the collector acknowledged
            "pending": self.pending,
            "upload_failures": self.upload_failures,
            "beat_flags": dict(sorted(self.beat_flags.items())),
            "quality_events": dict(sorted(self.quality_events.items())),
            "quality_seconds": {flag: round(seconds, 2) for flag, seconds in sorted(self.quality_seconds.items())},
            "events_applied": list(self.applied),
        }
