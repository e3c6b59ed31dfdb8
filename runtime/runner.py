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

The contract picks the stream, never the file name. Telemetry (never raw signals) is written to an outbox and
uploaded only when asked for; ``runtime.telemetry`` is imported only then, so the runtime works without it. Two
modes (``TelemetryMode``, protocol.md):

* ``aggregates`` (the default): every event of the stream — beats classified or not, quality stretches, windows,
  rows — is counted in a per-minute aggregate of the stream's clock (schema 3, ``MinuteAggregator``), and only the
  events the event filter keeps (positives, low confidence, alarms, unjudged rows, quality changes) are also sent
  as schema-2 records. Each closed minute is committed together with its own per-event records in one outbox
  transaction, so ``kill -9`` loses at most the open minute;
* ``records``: one schema-2 record per classified beat, judged window or row event (committed every 64). A beat
  the stream did not classify (quality flags, ``warming_up``) or a window it did not judge has no result to send
  and is not recorded.

The stream's clock: a file's recording is taken to end when the run starts (``RunOptions.stream_start_s``
overrides its start), so its beats carry past times; table rows carry the wall clock.

A collector that refuses the upload (``runtime.telemetry.uploader.CollectorRejectedError``, a 4xx) never costs the
run's results: the events are complete, the refusal is logged as a WARNING and the records stay in the outbox.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

import numpy as np

from runtime.bundle import Bundle, TrustPolicy, load_bundle
from runtime.ecg.beat_inputs import declares_stream_inputs
from runtime.ecg.stream import RECORDING_CONFIG, EcgStream, StreamConfig
from runtime.errors import EdgemedError
from runtime.events import BeatEvent, Event, RowPrediction, WindowEvent
from runtime.features import FeatureKind
from runtime.leads import check_recording_lead, stated_lead
from runtime.readers import SIGNAL_RATE_RANGE_HZ, InputError, Recording, load_npy, read_channels, read_signal
from runtime.real_data import check_real_data
from runtime.results import probability
from runtime.rows import predict_npz
from runtime.tabular import predict_csv, predict_rows
from runtime.windows.stream import RECORDING_WINDOW_CONFIG, WindowStream, WindowStreamConfig, window_input

logger = logging.getLogger(__name__)

DEFAULT_OUTBOX = Path("edgemed-telemetry")  # outbox path when only a telemetry URL is given


class TelemetryUnavailableError(EdgemedError):
    """Telemetry was requested but cannot run: no device id, or ``runtime.telemetry`` cannot be imported."""


class TelemetryMode(StrEnum):
    AGGREGATES = "aggregates"  # per-minute aggregates + the filtered per-event records (schema 3 + 2)
    RECORDS = "records"  # one schema-2 record per inference


@dataclass(frozen=True)
class RunOptions:
    sample_rate_hz: float | None = None  # needed for .npy and signal .csv; must agree with a file's own rate
    channel: int | None = None  # picks one channel of a multi-channel signal file (runtime.readers.read_signal)
    lead: str | None = None  # the recording's lead when its file does not name it (.npy, HDF5); checked (runtime.leads)
    device_id: str | None = None  # pseudonymous device id for telemetry (never the patient); required with it
    telemetry_url: str | None = None  # upload endpoint; None = no upload
    telemetry_outbox: Path | None = None  # telemetry outbox; default DEFAULT_OUTBOX when a URL is given
    provider: str | None = None  # "cpu", "cuda", "tensorrt" or a full EP name; None = best available
    threads: int = 0  # onnxruntime intra-op threads; 0 = all cores
    chunk_s: float = 10.0  # a recording reaches the stream in chunks this long, as a device would send it
    stream: StreamConfig = field(default_factory=lambda: RECORDING_CONFIG)
    window_stream: WindowStreamConfig = field(default_factory=lambda: RECORDING_WINDOW_CONFIG)  # signal_window
    trust: TrustPolicy | None = None  # keys the bundle must be signed by; None trusts nothing (runtime.trust)
    allow_unvalidated: bool = False  # development only: run a bundle not validated on real data (runtime.real_data)
    telemetry_mode: TelemetryMode | None = None  # what telemetry sends (protocol.md); None: not chosen, aggregates
    event_filter_rules: tuple[str, ...] | None = None  # aggregates mode: rules of filter v1 (FilterRule); None = all
    positive_labels: tuple[str, ...] | None = None  # labels the "positive" rule sends; None = all but the first
    stream_start_s: float | None = None  # epoch seconds of the recording's first sample; None = it ended at start


COMMIT_EVERY = 64  # telemetry records per outbox transaction; events per aggregator hand-over


def check_filter_mode(mode: TelemetryMode | str | None, event_filter_rules: Sequence[str] | None,
                      positive_labels: Sequence[str] | None) -> None:
    """Records mode sends every event: an event filter or positive labels given with it would change nothing, so they
    are refused (``TelemetryUnavailableError``), not ignored."""
    given = [name for name, value in (("--event-filter", event_filter_rules), ("--positive-labels", positive_labels))
             if value is not None]
    if mode is not None and TelemetryMode(mode) is TelemetryMode.RECORDS and given:
        raise TelemetryUnavailableError(f"{given[0]} was given with --telemetry-mode records",
                                        expected=f"{given[0]} only in aggregates mode, where the filter chooses the "
                                                 "events sent on their own beside the minute aggregates (records mode "
                                                 "sends every event)",
                                        fix=f"leave out {given[0]}, or use --telemetry-mode aggregates")


def check_telemetry_identity(device_id: str | None, url: str | None) -> None:
    """The device id and collector URL telemetry needs, checked before any bundle is opened or record stored
    (``TelemetryUnavailableError``; the id is never echoed: a wrong one may be a patient's name or number)."""
    records = _import_telemetry("records", "is_pseudonymous_device_id, collector_url_problem")
    if not device_id:
        raise TelemetryUnavailableError(
            "telemetry was requested without a device id",
            expected="the device's pseudonymous id (lowercase hex from pseudonymous_device_id)",
            fix="pass --device-id",
        )
    if not records.is_pseudonymous_device_id(device_id):
        raise TelemetryUnavailableError(
            "the telemetry device id is not a pseudonymous id",
            expected="16–64 lowercase hex characters (not all digits: that is a serial number) from "
                "pseudonymous_device_id(serial, fleet salt)",
            fix="derive --device-id with pseudonymous_device_id; never pass a name, record number or serial",
        )
    problem = None if url is None else records.collector_url_problem(url)
    if problem:
        raise TelemetryUnavailableError(f"the telemetry collector url {problem}",
                                        expected=records.COLLECTOR_URL_EXPECTED,
                                        fix="pass the collector's full telemetry url")


def _import_telemetry(module: str, names: str):
    """``runtime.telemetry.<module>``, or ``TelemetryUnavailableError`` saying telemetry cannot run."""
    import importlib

    try:
        return importlib.import_module(f"runtime.telemetry.{module}")
    except ImportError as error:
        raise TelemetryUnavailableError(
            f"telemetry was requested but runtime.telemetry.{module} cannot be imported ({error})",
            expected=f"the runtime.telemetry package ({names}) installed with the runtime",
            fix="install the complete runtime, or run without --telemetry-url/--telemetry-outbox",
        ) from error


class TelemetrySink:
    """The telemetry of one stream on one bundle, into an outbox; uploads when a URL is configured.

    ``mode`` ``records``: ``record(event)`` queues one schema-2 record per inference event, committed every
    ``COMMIT_EVERY``. ``aggregates``: ``add(event)`` takes every event of the stream; every ``COMMIT_EVERY`` they go
    to a ``MinuteAggregator`` (``begin`` sets the stream's clock), and each minute it closes is appended together
    with the per-event records the event filter kept in it, in one durable transaction. ``finish`` ends the stream
    (its last minute), ``upload`` finishes and sends. The class keeps ``records`` as its default for callers that
    feed it inference events one by one; ``run`` uses ``RunOptions.telemetry_mode`` (``aggregates``).
    """

    def __init__(self, bundle: Bundle, outbox_path, device_id: str | None, url: str | None, *,
                 mode: TelemetryMode | str = TelemetryMode.RECORDS, event_filter_rules: Sequence[str] | None = None,
                 positive_labels: Sequence[str] | None = None) -> None:
        """``outbox_path``: the outbox file, or an open ``Outbox`` to share (a device switching bundles)."""
        check_telemetry_identity(device_id, url)
        check_filter_mode(mode, event_filter_rules, positive_labels)
        unknown = [label for label in positive_labels or () if label not in bundle.labels]
        if unknown:
            raise TelemetryUnavailableError(
                f"positive label {unknown[0]!r} is not one of the bundle's labels",
                expected=f"some of {', '.join(bundle.labels)}",
                fix="pass --positive-labels with the bundle's own label names (case matters)",
            )
        outbox_module = _import_telemetry("outbox", "Outbox, Uploader")
        self.bundle = bundle
        self.url = url
        self.device_id = device_id
        self.mode = TelemetryMode(mode)
        self.outbox = outbox_path if isinstance(outbox_path, outbox_module.Outbox) else outbox_module.Outbox(
            Path(outbox_path), device_id)
        self.count = 0  # records appended (aggregates mode: per-event records and aggregates)
        self.events = 0  # events handed to the aggregator (aggregates mode)
        self.aggregates = 0  # minute aggregates appended (aggregates mode)
        self.buffer: list = []  # records (records mode) or events (aggregates mode) not yet handed on
        self._times: list[float | None] = []  # aggregates mode: each buffered event's epoch seconds, if given
        self._filter_options = (event_filter_rules, positive_labels)
        self._aggregator = None
        self._origin_s: float | None = None  # the stream's time 0 in epoch seconds (``begin``), both modes
        self._individual: list[tuple[float, dict]] = []  # (epoch s, schema-2 record) waiting for their minute

    # -- records mode ----------------------------------------------------------------------------------------

    def record(self, event: BeatEvent | RowPrediction | WindowEvent, time_s: float | None = None) -> None:
        """Records mode: queue one record (stamped ``time_s``, epoch seconds, or now), committed with the others
        every ``COMMIT_EVERY`` (one fsync each); in aggregates mode the event goes to the aggregator (``add``).

        A crash loses at most the uncommitted records, which are younger than the stream's own
        in-memory state that a crash loses anyway.
        """
        if self.mode is TelemetryMode.AGGREGATES:
            self.add(event, time_s)
            return
        self.count += 1
        self.buffer.append(telemetry_record(self.bundle, event, time_s))
        if len(self.buffer) >= COMMIT_EVERY:
            self.commit()

    # -- aggregates mode -------------------------------------------------------------------------------------

    def begin(self, origin_s: float | None = None, plan=None) -> None:
        """Stream time 0 is ``origin_s`` (epoch seconds; None: now): records mode stamps each event there plus its
        own time, as aggregates mode does. Aggregates mode: start the aggregator on ``plan`` (an
        ``AggregationPlan``; default: from the bundle's reference profile)."""
        if self._origin_s is None:
            self._origin_s = time.time() if origin_s is None else float(origin_s)
        if self.mode is not TelemetryMode.AGGREGATES or self._aggregator is not None:
            return
        aggregates = _import_telemetry("aggregates", "MinuteAggregator")
        filtering = _import_telemetry("event_filter", "EventFilter")
        rules, positives = self._filter_options
        config = filtering.EventFilterConfig(
            rules=tuple(filtering.FilterRule(rule) for rule in rules) if rules is not None else filtering.ALL_RULES,
            positive_labels=tuple(positives) if positives is not None else None)
        labels = self.bundle.labels
        if plan is None:
            plan = aggregates.AggregationPlan.from_profile(self.bundle.reference_profile(),
                                                           self.bundle.output.task.value, labels)
            for note in plan.notes:
                logger.info("telemetry aggregates: %s", note)
        self._aggregator = aggregates.MinuteAggregator(
            aggregates.AggregateIdentity.of(self.bundle, self.device_id), plan, origin_s=origin_s,
            event_filter=filtering.EventFilter(labels, config))

    def add(self, event: Event, time_s: float | None = None) -> None:
        """Aggregates mode: take one event of the stream (any kind), at ``time_s`` (epoch seconds; default: the
        stream's clock, ``begin``'s origin plus the event's own time; give every event a time or none); handed over
        every ``COMMIT_EVERY``. Records mode: an event with a result is ``record``-ed, the others are left out."""
        if self.mode is TelemetryMode.RECORDS:
            if _has_result(event):
                self.record(event, time_s if time_s is not None else self._stream_moment(event))
            return
        self.buffer.append(event)
        self._times.append(time_s)
        if len(self.buffer) >= COMMIT_EVERY:
            self.commit()

    def _stream_moment(self, event: Event) -> float | None:
        """An event's moment on the stream's clock (epoch seconds): ``begin``'s origin plus a beat's ``time_s`` or
        a window's ``start_s``, as the aggregator stamps it; None (now) for a row, or before ``begin``."""
        offset = getattr(event, "time_s", None)
        if offset is None:
            offset = getattr(event, "start_s", None)
        return None if self._origin_s is None or offset is None else self._origin_s + offset

    def add_many(self, events: Sequence[Event], times_s: Sequence[float] | None = None) -> None:
        """``add`` for several events (and their epoch seconds, when the caller's clock is not the stream's)."""
        if self.mode is TelemetryMode.RECORDS:
            for event, moment in zip(events, times_s if times_s is not None else [None] * len(events), strict=True):
                self.add(event, moment)
            return
        self.buffer.extend(events)
        self._times.extend(times_s if times_s is not None else [None] * len(events))
        if len(self.buffer) >= COMMIT_EVERY:
            self.commit()

    def advance(self, now_s: float) -> None:
        """Aggregates mode: close the open minute if the stream's clock (epoch seconds) has passed it (lead-off:
        no events arrive, minutes still end)."""
        self.commit()
        if self._aggregator is not None:
            self._append_minutes(self._aggregator.advance(now_s))

    def _hand_over(self) -> None:
        events, self.buffer = self.buffer, []
        times, self._times = self._times, []
        if self._aggregator is None:
            self.begin()
        self.events += len(events)
        out = self._aggregator.add(events, times if None not in times else None)  # else: the stream's clock
        bundle = self.bundle
        self._individual.extend((moment, telemetry_record(bundle, event, time_s=moment))
                                for event, moment in out.individual)
        self._append_minutes(out.aggregates)

    def _append_minutes(self, minutes: list[dict], last: bool = False) -> None:
        """Append the closed minutes, each after the per-event records kept in it (and any late ones before it), in
        one durable transaction: a minute is in the outbox whole, with its records, or not at all."""
        rows: list[dict] = []
        for aggregate in minutes:
            end_s = datetime.fromisoformat(aggregate["minute"]).timestamp() + aggregate["seconds"]
            rows += [record for moment, record in self._individual if moment < end_s]
            self._individual = [(moment, record) for moment, record in self._individual if moment >= end_s]
            rows.append(aggregate)
        if last:  # events after the last minute's end: none while the stream's clock runs forward
            rows += [record for _, record in self._individual]
            self._individual = []
        if rows:
            self.outbox.append_many(rows)
            self.count += len(rows)
            self.aggregates += len(minutes)

    # -- both modes ------------------------------------------------------------------------------------------

    def commit(self) -> None:
        """Records mode: append the queued records. Aggregates mode: hand the queued events to the aggregator and
        append the minutes it closed (the open minute stays in memory)."""
        if not self.buffer:
            return
        if self.mode is TelemetryMode.AGGREGATES:
            self._hand_over()
        else:
            self.outbox.append_many(self.buffer)
            self.buffer = []

    def finish(self) -> None:
        """End of the stream: commit everything, in aggregates mode the open minute too."""
        self.commit()
        if self._aggregator is not None:
            self._append_minutes(self._aggregator.flush(), last=True)

    def upload(self) -> int:
        self.finish()
        if not self.url:
            return 0
        uploader = _import_telemetry("uploader", "Uploader")
        sent = uploader.Uploader(self.outbox, self.url).upload_pending()
        logger.info("telemetry: %d records recorded, %d uploaded to %s", self.count, sent, self.url)
        return sent

    def close(self) -> None:
        self.outbox.close()


def telemetry_record(bundle: Bundle, event: BeatEvent | RowPrediction | WindowEvent, time_s: float | None = None
                     ) -> dict:
    """The telemetry dict (schema 2) for one inference event: identifiers of the bundle, never of the patient.

    ``result`` is the task kind's result, or None for a row the model could not judge (its quality flags say
    why); features that are not finite are left out. A window event's record is a row event's: its task, its
    result, its (empty) flags, the summary features of its model input. ``time_s`` is the event's moment in
    epoch seconds (the stream's clock; default: now).
    """
    if isinstance(event, BeatEvent):
        task = bundle.output.task.value
        result = {"class": event.beat_class, "confidence": probability(event.probability),
                  "low_confidence": event.low_confidence}
    else:
        task = event.task
        result = event.result.to_telemetry() if event.result is not None else None
    return {
        "time": (datetime.now(UTC) if time_s is None else datetime.fromtimestamp(time_s, UTC)).isoformat(),
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
    # before any input is read; a bundle loaded unverified is a development run already (NOT FOR CLINICAL USE): warned
    check_real_data(bundle.manifest, bundle.manifest.scenario, options.allow_unvalidated or bundle.signed_by is None)
    outbox = options.telemetry_outbox or (DEFAULT_OUTBOX if options.telemetry_url else None)
    sink = TelemetrySink(bundle, outbox, options.device_id, options.telemetry_url,
                         mode=options.telemetry_mode or TelemetryMode.AGGREGATES,
                         event_filter_rules=options.event_filter_rules,
                         positive_labels=options.positive_labels) if outbox else None
    started_s = time.time()
    events, duration_s = _events(bundle, Path(input_path), options, with_features=sink is not None)
    if sink is not None:
        start = options.stream_start_s
        sink.begin(start if start is not None else started_s - (duration_s or 0.0))
    return _with_telemetry(events, sink)


def _with_telemetry(events: Iterator[Event], sink: TelemetrySink | None) -> Iterator[Event]:
    if sink is None:
        yield from events
        return
    for event in events:
        try:
            sink.add(event)  # aggregates: every event, unclassified beats and quality stretches too; records: results
        except (EdgemedError, sqlite3.Error, OSError) as error:  # disk full, a foreign or broken outbox: the clinical
            # output goes on without telemetry (what the outbox took before stays there), and says so once
            logger.error("telemetry NOT complete: %s (telemetry stopped at %.3f s; the run's results go on and are "
                         "complete; what the outbox took before stays there for a later upload)", error,
                         getattr(event, "time_s", float("nan")))
            yield event
            yield from events
            return
        yield event
    rejected = _import_telemetry("uploader", "CollectorRejectedError").CollectorRejectedError
    try:
        sink.upload()
    except rejected as error:  # the run's results stand: telemetry never costs the clinical output
        logger.warning("telemetry NOT delivered: %s (the run's results are complete; the %d telemetry records stay "
                       "in the outbox %s for a later upload)", error, sink.outbox.count(), sink.outbox.path)
    except (EdgemedError, sqlite3.Error, OSError) as error:  # the outbox could not take the last minute (disk full,
        # a file gone), or the upload failed before a request left: the results stand, the outbox keeps what it holds
        logger.error("telemetry NOT complete: %s (the run's results are complete; telemetry written before this stays "
                     "in the outbox for a later upload)", error)


def _has_result(event: Event) -> bool:
    """A row event (judged or not: its flags say why), a beat the stream classified, or a judged window."""
    return isinstance(event, RowPrediction) or (isinstance(event, BeatEvent) and event.classified) or (
        isinstance(event, WindowEvent) and event.judged)


def _events(bundle: Bundle, path: Path, options: RunOptions, with_features: bool
            ) -> tuple[Iterator[Event], float | None]:
    """The runner the bundle's contract and the input file call for, and the recording's length in seconds (None
    for rows)."""
    if options.lead is not None and (path.suffix.lower() == ".npz" or not any(
            spec.feature_kind is FeatureKind.WAVEFORM for spec in bundle.inputs)):
        raise InputError(f"--lead {options.lead!r} was given, but '{path.name}' is not a signal recording this bundle "
                         "streams", expected="--lead only with a signal (.csv, .npy, .h5) for a waveform model",
                         fix="leave out --lead")
    if path.suffix.lower() == ".npz":
        return predict_npz(bundle, path, with_features=with_features), None
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
        return _tabular_events(bundle, path, with_features), None
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


def _waveform_events(bundle: Bundle, path: Path, options: RunOptions, config: StreamConfig
                     ) -> tuple[Iterator[Event], float]:
    recording = read_signal(path, options.sample_rate_hz, options.channel)
    _check_lead(bundle, recording, options)
    stream = EcgStream(bundle, recording.sample_rate_hz, config=config, adc_range=recording.adc_range)
    logger.info(  # "the input", never its file name: a name may be a patient's
        "the input: %.1f s at %s Hz → model rate %s Hz",
        recording.samples.size / recording.sample_rate_hz,
        recording.sample_rate_hz,
        stream.rate,
    )
    return (_stream_events(stream, recording.samples, max(1, round(options.chunk_s * recording.sample_rate_hz))),
            recording.samples.size / recording.sample_rate_hz)


def _window_events(bundle: Bundle, path: Path, options: RunOptions, with_features: bool
                   ) -> tuple[Iterator[Event], float]:
    """The windowed stream on every channel the model takes (``--channel`` picks one for a one-channel model)."""
    spec = window_input(bundle)
    if spec.channels == 1:
        recording = read_signal(path, options.sample_rate_hz, options.channel, rate_range=SIGNAL_RATE_RANGE_HZ,
                                sensor=None)
    elif options.channel is not None:
        raise InputError(f"--channel {options.channel} picks one channel, but this model takes {spec.channels}",
                         expected=f"a recording with the model's {spec.channels} channels, all of them used",
                         fix="leave out --channel")
    elif options.lead is not None:
        raise InputError(f"--lead {options.lead!r} names one lead, but this model takes {spec.channels} channels",
                         expected="no --lead for a multi-channel recording", fix="leave out --lead")
    else:
        recording = read_channels(path, spec.channels, options.sample_rate_hz)
    _check_lead(bundle, recording, options)
    config = dataclasses.replace(options.window_stream, summary_features=with_features)
    stream = WindowStream(bundle, recording.sample_rate_hz, config)
    logger.info("the input: %.1f s at %s Hz → model rate %s Hz, %d-sample windows every %d samples",
                len(recording.samples) / recording.sample_rate_hz, recording.sample_rate_hz, stream.rate,
                stream.window, stream.hop)
    return (_stream_events(stream, recording.samples, max(1, round(options.chunk_s * recording.sample_rate_hz))),
            len(recording.samples) / recording.sample_rate_hz)


def _check_lead(bundle: Bundle, recording: Recording, options: RunOptions) -> None:
    """The recording's lead (its file's, else ``--lead``) against the leads the bundle was validated on."""
    check_recording_lead(bundle.inputs, stated_lead(recording.lead, options.lead, recording.source), recording.source)


def _stream_events(stream: EcgStream | WindowStream, samples: np.ndarray, chunk: int) -> Iterator[Event]:
    for start in range(0, len(samples), chunk):
        yield from stream.feed(samples[start : start + chunk])
    yield from stream.flush()
