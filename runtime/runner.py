"""Run a bundle on a recording or a table and yield events; optionally record telemetry.

``run(bundle_path, input_path, options)`` verifies and opens the bundle, picks the runner from its
contract and the input, and yields events as they become final:

* ``.npz`` (one array per input name), any bundle → ``RowPrediction`` per row (``runtime.rows``);
* a single tabular input: feature ``.csv`` or 2-D ``.npy`` → ``RowPrediction`` per row, every task kind;
* a ``signal_window`` input (EEG, PPG, vital-sign series; ``runtime.windows``): signal ``.csv``/``.npy``/``.h5``
  (every channel of it for a multi-channel model, ``runtime.readers.read_channels``) → the windowed stream's
  ``WindowEvent`` per window and ``QualityEvent`` (gaps, a too-short recording), every task kind;
* a single waveform input, or inputs the ECG stream derives (``InputSpec.derived``: beat window, template
  residual, RR features): signal ``.csv``/``.npy``/``.h5`` → the ECG stream's ``BeatEvent``/``QualityEvent``
  (multiclass and binary bundles; other kinds take pre-cut windows as ``.npz``).

The contract picks the stream, never the file name. Telemetry (one record per classified beat, judged
window or row event, never raw signals) is written to an outbox and uploaded only when asked for;
``runtime.telemetry`` is imported only then, so the runtime works without it. A beat the stream did not
classify (quality flags, ``warming_up``) or a window it did not judge (quality flags) has no result to send
and is not recorded.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from runtime.bundle import Bundle, TrustPolicy, load_bundle
from runtime.ecg.beat_inputs import declares_stream_inputs
from runtime.ecg.stream import RECORDING_CONFIG, EcgStream, StreamConfig
from runtime.errors import EdgemedError
from runtime.events import BeatEvent, Event, RowPrediction, WindowEvent
from runtime.features import FeatureKind
from runtime.readers import SIGNAL_RATE_RANGE_HZ, InputError, load_npy, read_channels, read_signal
from runtime.results import probability
from runtime.rows import predict_npz
from runtime.tabular import predict_csv, predict_rows
from runtime.windows.stream import RECORDING_WINDOW_CONFIG, WindowStream, WindowStreamConfig, window_input

logger = logging.getLogger(__name__)

DEFAULT_OUTBOX = Path("edgemed-telemetry")  # outbox path when only a telemetry URL is given


class TelemetryUnavailableError(EdgemedError):
    """Telemetry was requested but cannot run: no device id, or ``runtime.telemetry`` cannot be imported."""


@dataclass(frozen=True)
class RunOptions:
    sample_rate_hz: float | None = None  # overrides the file's rate; needed for .npy and signal .csv
    channel: int | None = None  # picks one channel of a multi-channel signal file (runtime.readers.read_signal)
    device_id: str | None = None  # pseudonymous device id for telemetry (never the patient); required with it
    telemetry_url: str | None = None  # upload endpoint; None = no upload
    telemetry_outbox: Path | None = None  # telemetry outbox; default DEFAULT_OUTBOX when a URL is given
    provider: str | None = None  # "cpu", "cuda", "tensorrt" or a full EP name; None = best available
    threads: int = 0  # onnxruntime intra-op threads; 0 = all cores
    chunk_s: float = 10.0  # a recording reaches the stream in chunks this long, as a device would send it
    stream: StreamConfig = field(default_factory=lambda: RECORDING_CONFIG)
    window_stream: WindowStreamConfig = field(default_factory=lambda: RECORDING_WINDOW_CONFIG)  # signal_window
    trust: TrustPolicy | None = None  # keys the bundle must be signed by; None trusts nothing (runtime.trust)


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

    def record(self, event: BeatEvent | RowPrediction | WindowEvent) -> None:
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


def telemetry_record(bundle: Bundle, event: BeatEvent | RowPrediction | WindowEvent) -> dict:
    """The telemetry dict (schema 2) for one inference event: identifiers of the bundle, never of the patient.

    ``result`` is the task kind's result, or None for a row the model could not judge (its quality flags say
    why); features that are not finite are left out. A window event's record is a row event's: its task, its
    result, its (empty) flags, the summary features of its model input.
    """
    if isinstance(event, BeatEvent):
        task = bundle.output.task.value
        result = {"class": event.beat_class, "confidence": probability(event.probability),
                  "low_confidence": event.low_confidence}
    else:
        task = event.task
        result = event.result.to_telemetry() if event.result is not None else None
    return {
        "time": datetime.now(UTC).isoformat(),
        "bundle_id": bundle.bundle_id,
        "bundle_sha256": bundle.manifest_sha256,
        "variant": bundle.variant,
        "provider": bundle.provider,
        "latency_us": round(float(event.latency_us), 1),
        "task": task,
        "result": result,
        "quality_flags": list(event.quality_flags),
        "features": {name: float(value) for name, value in (event.features or {}).items() if math.isfinite(value)},
    }


def run(bundle_path: Path | str, input_path: Path | str, options: RunOptions = RunOptions()) -> Iterator[Event]:
    """Verify the bundle, read the input, and return an iterator over the events."""
    bundle = load_bundle(bundle_path, options.provider, options.threads, trust=options.trust)
    outbox = options.telemetry_outbox or (DEFAULT_OUTBOX if options.telemetry_url else None)
    sink = TelemetrySink(bundle, outbox, options.device_id, options.telemetry_url) if outbox else None
    events = _events(bundle, Path(input_path), options, with_features=sink is not None)
    return _with_telemetry(events, sink)


def _with_telemetry(events: Iterator[Event], sink: TelemetrySink | None) -> Iterator[Event]:
    for event in events:
        if sink is not None and _has_result(event):
            sink.record(event)
        yield event
    if sink is not None:
        sink.upload()


def _has_result(event: Event) -> bool:
    """A row event (judged or not: its flags say why), a beat the stream classified, or a judged window."""
    return isinstance(event, RowPrediction) or (isinstance(event, BeatEvent) and event.classified) or (
        isinstance(event, WindowEvent) and event.judged)


def _events(bundle: Bundle, path: Path, options: RunOptions, with_features: bool) -> Iterator[Event]:
    """The runner the bundle's contract and the input file call for."""
    if path.suffix.lower() == ".npz":
        return predict_npz(bundle, path, with_features=with_features)
    if any(spec.is_signal_window for spec in bundle.inputs):
        return _window_events(bundle, path, options, with_features)
    stream_config = dataclasses.replace(options.stream, summary_features=with_features)
    if declares_stream_inputs(bundle.inputs):
        return _waveform_events(bundle, path, options, stream_config)
    if len(bundle.inputs) > 1:
        names = [spec.name for spec in bundle.inputs]
        raise InputError(
            f"this bundle's model takes {len(names)} inputs ({', '.join(names)}); '{path.name}' holds one table or "
            "signal",
            expected=f"an .npz with one array per input, named {', '.join(names)}, and the same rows in each",
            fix="numpy.savez(path, " + ", ".join(f"{name}=…" for name in names) + ") and pass that file",
        )
    if bundle.feature_kind is FeatureKind.TABULAR:
        return _tabular_events(bundle, path, with_features)
    return _waveform_events(bundle, path, options, stream_config)


def _tabular_events(bundle: Bundle, path: Path, with_features: bool) -> Iterator[RowPrediction]:
    if path.suffix.lower() == ".npy":
        return predict_rows(bundle, load_npy(path), with_features=with_features)
    if path.suffix.lower() != ".csv":
        raise InputError(
            f"cannot read table rows from '{path.name}'",
            expected="a .csv with a header naming the features, a 2-D .npy, or an .npz with one array per input",
            fix="export the table as CSV",
        )
    return predict_csv(bundle, path, with_features=with_features)


def _waveform_events(bundle: Bundle, path: Path, options: RunOptions, config: StreamConfig) -> Iterator[Event]:
    recording = read_signal(path, options.sample_rate_hz, options.channel)
    stream = EcgStream(bundle, recording.sample_rate_hz, config=config, adc_range=recording.adc_range)
    logger.info(
        "%s: %.1f s at %s Hz → model rate %s Hz",
        recording.source,
        recording.samples.size / recording.sample_rate_hz,
        recording.sample_rate_hz,
        stream.rate,
    )
    return _stream_events(stream, recording.samples, max(1, round(options.chunk_s * recording.sample_rate_hz)))


def _window_events(bundle: Bundle, path: Path, options: RunOptions, with_features: bool) -> Iterator[Event]:
    """The windowed stream on every channel the model takes (``--channel`` picks one for a one-channel model)."""
    spec = window_input(bundle)
    if spec.channels == 1:
        recording = read_signal(path, options.sample_rate_hz, options.channel, rate_range=SIGNAL_RATE_RANGE_HZ,
                                sensor=None)
    elif options.channel is not None:
        raise InputError(f"--channel {options.channel} picks one channel, but this model takes {spec.channels}",
                         expected=f"a recording with the model's {spec.channels} channels, all of them used",
                         fix="leave out --channel")
    else:
        recording = read_channels(path, spec.channels, options.sample_rate_hz)
    config = dataclasses.replace(options.window_stream, summary_features=with_features)
    stream = WindowStream(bundle, recording.sample_rate_hz, config)
    logger.info("%s: %.1f s at %s Hz → model rate %s Hz, %d-sample windows every %d samples", recording.source,
                len(recording.samples) / recording.sample_rate_hz, recording.sample_rate_hz, stream.rate,
                stream.window, stream.hop)
    return _stream_events(stream, recording.samples, max(1, round(options.chunk_s * recording.sample_rate_hz)))


def _stream_events(stream: EcgStream | WindowStream, samples: np.ndarray, chunk: int) -> Iterator[Event]:
    for start in range(0, len(samples), chunk):
        yield from stream.feed(samples[start : start + chunk])
    yield from stream.flush()
