"""Run a bundle on a recording or a table and yield events; optionally record telemetry.

``run(bundle_path, input_path, options)`` verifies and opens the bundle, reads
the input (waveform bundles: signal ``.csv``/``.npy``/``.h5``; tabular bundles:
feature ``.csv`` or a 2-D ``.npy``) and yields ``BeatEvent``/``QualityEvent`` or
``TabularPrediction`` objects as they become final.

Telemetry (one record per inference event, never raw signals) is written to an
outbox and uploaded only when asked for; ``runtime.telemetry`` is imported only
then, so the runtime works without it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from runtime.bundle import Bundle, load_bundle
from runtime.ecg.stream import RECORDING_CONFIG, EcgStream, StreamConfig
from runtime.errors import EdgemedError
from runtime.events import BeatEvent, Event, TabularPrediction
from runtime.features import FeatureKind
from runtime.readers import InputError, load_npy, read_signal
from runtime.tabular import predict_csv, predict_rows

logger = logging.getLogger(__name__)

DEFAULT_OUTBOX = Path("edgemed-telemetry")  # outbox path when only a telemetry URL is given


class TelemetryUnavailableError(EdgemedError):
    """Telemetry was requested but cannot run: no device id, or ``runtime.telemetry`` cannot be imported."""


@dataclass(frozen=True)
class RunOptions:
    sample_rate_hz: float | None = None  # overrides the file's rate; needed for .npy and signal .csv
    device_id: str | None = None  # pseudonymous device id for telemetry (never the patient); required with it
    telemetry_url: str | None = None  # upload endpoint; None = no upload
    telemetry_outbox: Path | None = None  # telemetry outbox; default DEFAULT_OUTBOX when a URL is given
    provider: str | None = None  # "cpu", "cuda", "tensorrt" or a full EP name; None = best available
    threads: int = 0  # onnxruntime intra-op threads; 0 = all cores
    chunk_s: float = 10.0  # a recording reaches the stream in chunks this long, as a device would send it
    stream: StreamConfig = field(default_factory=lambda: RECORDING_CONFIG)


COMMIT_EVERY = 64  # telemetry records per outbox transaction (one beat batch)


class TelemetrySink:
    """One outbox record per inference event; uploads when a URL is configured."""

    def __init__(self, bundle: Bundle, outbox_path: Path, device_id: str | None, url: str | None) -> None:
        if not device_id:
            raise TelemetryUnavailableError(
                "telemetry was requested without a device id",
                expected="the device's pseudonymous id (lowercase hex from pseudonymous_device_id)",
                fix="pass --device-id",
            )
        try:
            from runtime.telemetry.outbox import Outbox
        except ImportError as error:
            raise TelemetryUnavailableError(
                f"telemetry was requested but runtime.telemetry cannot be imported ({error})",
                expected="the runtime.telemetry package (Outbox, Uploader) installed with the runtime",
                fix="install the complete runtime, or run without --telemetry-url/--telemetry-outbox",
            ) from error
        self.bundle = bundle
        self.url = url
        self.outbox = Outbox(Path(outbox_path), device_id)
        self.count = 0
        self.buffer: list[dict] = []

    def record(self, event: BeatEvent | TabularPrediction) -> None:
        """Queue one record; they are committed together every ``COMMIT_EVERY`` records (one fsync each).

        A crash loses at most the uncommitted records, which are younger than the stream's own
        in-memory state that a crash loses anyway.
        """
        self.count += 1
        self.buffer.append(telemetry_record(self.bundle, event))
        if len(self.buffer) >= COMMIT_EVERY:
            self.commit()

    def commit(self) -> None:
        if self.buffer:
            self.outbox.append_many(self.buffer)
            self.buffer = []

    def upload(self) -> int:
        self.commit()
        if not self.url:
            return 0
        try:
            from runtime.telemetry.uploader import Uploader
        except ImportError as error:
            raise TelemetryUnavailableError(
                f"runtime.telemetry.uploader cannot be imported ({error})",
                expected="the runtime.telemetry package",
                fix="install the complete runtime",
            ) from error
        sent = Uploader(self.outbox, self.url).upload_pending()
        logger.info("telemetry: %d records recorded, %d uploaded to %s", self.count, sent, self.url)
        return sent


def telemetry_record(bundle: Bundle, event: BeatEvent | TabularPrediction) -> dict:
    """The telemetry dict for one inference event: identifiers of the bundle, never of the patient."""
    predicted = event.beat_class if isinstance(event, BeatEvent) else event.predicted_class
    return {
        "time": datetime.now(UTC).isoformat(),
        "bundle_id": bundle.bundle_id,
        "bundle_sha256": bundle.manifest_sha256,
        "variant": bundle.variant,
        "provider": bundle.provider,
        "latency_us": round(float(event.latency_us), 1),
        "predicted_class": predicted,
        "confidence": round(float(event.probability), 6),
        "quality_flags": list(event.quality_flags),
        "features": {name: float(value) for name, value in (event.features or {}).items()},
    }


def run(bundle_path: Path | str, input_path: Path | str, options: RunOptions = RunOptions()) -> Iterator[Event]:
    """Verify the bundle, read the input, and return an iterator over the events."""
    bundle = load_bundle(bundle_path, options.provider, options.threads)
    outbox = options.telemetry_outbox or (DEFAULT_OUTBOX if options.telemetry_url else None)
    sink = TelemetrySink(bundle, outbox, options.device_id, options.telemetry_url) if outbox else None
    if bundle.feature_kind is FeatureKind.TABULAR:
        events = _tabular_events(bundle, Path(input_path), with_features=sink is not None)
    else:
        stream_config = dataclasses.replace(options.stream, summary_features=sink is not None)
        events = _waveform_events(bundle, Path(input_path), options, stream_config)
    return _with_telemetry(events, sink)


def _with_telemetry(events: Iterator[Event], sink: TelemetrySink | None) -> Iterator[Event]:
    for event in events:
        if sink is not None and isinstance(event, BeatEvent | TabularPrediction):
            sink.record(event)
        yield event
    if sink is not None:
        sink.upload()


def _tabular_events(bundle: Bundle, path: Path, with_features: bool) -> Iterator[TabularPrediction]:
    if path.suffix.lower() == ".npy":
        return predict_rows(bundle, load_npy(path), with_features=with_features)
    if path.suffix.lower() != ".csv":
        raise InputError(
            f"cannot read table rows from '{path.name}'",
            expected="a .csv with a header naming the features, or a 2-D .npy",
            fix="export the table as CSV",
        )
    return predict_csv(bundle, path, with_features=with_features)


def _waveform_events(bundle: Bundle, path: Path, options: RunOptions, config: StreamConfig) -> Iterator[Event]:
    recording = read_signal(path, options.sample_rate_hz)
    stream = EcgStream(bundle, recording.sample_rate_hz, config=config, adc_range=recording.adc_range)
    logger.info(
        "%s: %.1f s at %s Hz → model rate %s Hz",
        recording.source,
        recording.samples.size / recording.sample_rate_hz,
        recording.sample_rate_hz,
        stream.rate,
    )
    return _stream_events(stream, recording.samples, max(1, round(options.chunk_s * recording.sample_rate_hz)))


def _stream_events(stream: EcgStream, samples: np.ndarray, chunk: int) -> Iterator[Event]:
    for start in range(0, samples.size, chunk):
        yield from stream.feed(samples[start : start + chunk])
    yield from stream.flush()
