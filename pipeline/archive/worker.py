"""One recording of an archive through the device runtime: the work every Ray worker does.

``validate_recording(bundle, entry, config)`` reads the recording with ``runtime.readers.read_signal`` and feeds it
to ``runtime.ecg.EcgStream`` in ``chunk_s`` chunks with the recording settings — what ``edgemed run`` does for a
file (``runtime.runner``) and what the build's ``validate`` stage does for a held-out record
(``pipeline.validation.recordings.stream_events``). With an annotation sidecar, the beat events are scored by
``pipeline.validation.recordings.score_events`` (AAMI EC57 matching, ``pipeline.validation.ec57``): the archive
has no scorer of its own. The result is one flat row (``RESULT_SCHEMA``), whether the recording ran or failed; a
recording of a lead the bundle was not validated on is a "refused" row, unscored, as the device refuses it
(``runtime.leads``).

``RecordingValidator`` is the Ray Data UDF: it verifies and opens the bundle once, when its worker starts, and
turns each batch of archive entries into a table of result rows.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline.archive.layout import POSITIVE_LABEL, WFDB_HEADER_SUFFIX, ArchiveEntry, read_annotations
from pipeline.archive.wfdb_records import read_wfdb_annotations, read_wfdb_signal
from pipeline.validation import ec57
from pipeline.validation.recordings import AnnotatedRecording, RecordingValidationConfig, score_events, unclassified
from runtime.bundle import Bundle, load_bundle
from runtime.ecg.stream import EcgStream
from runtime.errors import EdgemedError
from runtime.events import BeatEvent, QualityEvent
from runtime.leads import UnvalidatedLeadError, check_recording_lead
from runtime.readers import InputError, Recording, read_signal
from runtime.trust import TrustPolicy

logger = logging.getLogger(__name__)

FAILED = "failed"  # a row's status when the recording could not be read or streamed (listed in the report)
REFUSED = "refused"  # a row's status when the device refuses the recording's lead (runtime.leads)
COUNT_FIELDS = ("qrs_true_positives", "qrs_false_negatives", "qrs_false_positives", "v_true_positives",
                "v_false_negatives", "v_false_positives", "v_true_negatives")  # ec57.BeatCounts, after ``record``

RESULT_SCHEMA = pa.schema([
    ("order", pa.int64()),  # position in the archive's index
    ("name", pa.string()),
    ("file", pa.string()),
    ("group", pa.string()),
    ("status", pa.string()),  # "ok", "failed", or "refused" (a lead the bundle was not validated on: unscored)
    ("error_type", pa.string()),  # the exception's class when failed
    ("error", pa.string()),  # what happened, what was expected, the fix
    ("sample_rate_hz", pa.float64()),
    ("lead", pa.string()),  # the lead's standard name, as the file or the index names it; null when neither does
    ("duration_s", pa.float64()),  # seconds of signal
    ("beats", pa.int64()),  # beat detections (every BeatEvent)
    ("classified", pa.int64()),
    ("called_v", pa.int64()),  # detections the stream called the positive label
    ("classes", pa.string()),  # JSON {class: beats}: every class the stream called, the positive one included
    ("unclassified", pa.int64()),  # detections left unclassified (quality flags, warming up)
    ("unclassified_flags", pa.string()),  # JSON {flag: beats}
    ("quality_seconds", pa.string()),  # JSON {flag: seconds}: the stream's quality events
    ("median_heart_rate_bpm", pa.float64()),
    ("read_s", pa.float64()),  # reading the file (and its sidecar)
    ("stream_s", pa.float64()),  # the device stream, wall time
    ("inference_s", pa.float64()),  # of which model inference (the beats' latencies summed)
    ("cpu_s", pa.float64()),  # the worker process's CPU time over read + stream (below read_s + stream_s: it waited)
    ("annotated", pa.bool_()),
    ("reference_beats", pa.int64()),
    ("reference_v", pa.int64()),
    *((name, pa.int64()) for name in COUNT_FIELDS),
    *((name, pa.float64()) for name in ec57.METRICS),
    ("worker", pa.string()),  # host:pid that ran it
])


@dataclass(frozen=True)
class TrustSettings:
    """The command line's trust options, as plain values a Ray worker can receive (a policy holds key objects)."""

    store: str | None = None  # trust store folder (made absolute: see __post_init__)
    allow_unsigned: bool = False  # development only
    version_state: str | None = None  # rollback state file (default: in the store; made absolute)

    def __post_init__(self) -> None:
        # a cluster's workers run in Ray's own working directory, not the driver's: a relative path given on the
        # command line would name another folder there (or none), as the bundle's and the recordings' would
        for name in ("store", "version_state"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, str(Path(value).absolute()))

    def policy(self, record_versions: bool) -> TrustPolicy:
        """The policy; ``record_versions=False`` (the workers) checks signatures but neither reads nor writes the
        rollback state — the driver has checked and recorded the version once, before any worker starts."""
        policy = TrustPolicy.from_options(None if self.store is None else Path(self.store), self.allow_unsigned,
                                          None if self.version_state is None else Path(self.version_state))
        return policy if record_versions else replace(policy, version_state=None)


@dataclass(frozen=True)
class WorkerConfig:
    recording: RecordingValidationConfig = field(
        default_factory=lambda: RecordingValidationConfig(healthy=False))  # chunks, stream settings, EC57 matching
    provider: str | None = "cpu"  # onnxruntime execution provider of every worker
    threads: int = 1  # onnxruntime intra-op threads per worker: one worker per core


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def recording_events(bundle: Bundle, recording: Recording, config: RecordingValidationConfig
                     ) -> list[BeatEvent | QualityEvent]:
    """Every event of ``recording`` through the device stream, fed in ``chunk_s`` chunks (as ``edgemed run``)."""
    stream = EcgStream(bundle, recording.sample_rate_hz, config=config.stream, adc_range=recording.adc_range)
    chunk = max(1, round(config.chunk_s * recording.sample_rate_hz))
    events: list[BeatEvent | QualityEvent] = []
    for start in range(0, recording.samples.size, chunk):
        events += stream.feed(recording.samples[start : start + chunk])
    events += stream.flush()
    return events


def empty_row(entry: ArchiveEntry, order: int) -> dict:
    row = dict.fromkeys(RESULT_SCHEMA.names)
    row.update(order=order, name=entry.name, file=entry.file, group=entry.group, worker=worker_name())
    return row


def failed_row(entry: ArchiveEntry, order: int, error_type: str, error: str) -> dict:
    return {**empty_row(entry, order), "status": FAILED, "error_type": error_type, "error": error}


def _annotated(entry: ArchiveEntry, recording: Recording) -> AnnotatedRecording | None:
    if entry.annotations is None:
        return None
    annotations = (read_annotations(entry.annotations) if entry.annotations.lower().endswith(".json")
                   else read_wfdb_annotations(entry.annotations))  # a WFDB annotation file (RECORD.atr)
    return AnnotatedRecording(entry.name, recording.samples, recording.sample_rate_hz, annotations.beats_s(),
                              annotations.is_positive(POSITIVE_LABEL))


def _run(bundle: Bundle, entry: ArchiveEntry, order: int, config: RecordingValidationConfig) -> dict:
    started, cpu_started = time.perf_counter(), time.process_time()
    recording = (read_wfdb_signal(entry.file, entry.sample_rate_hz)
                 if Path(entry.file).suffix.lower() == WFDB_HEADER_SUFFIX else read_signal(Path(entry.file),
                                                                                         entry.sample_rate_hz))
    lead = _lead(entry, recording)
    check_recording_lead(bundle.inputs, lead, entry.name)  # the device refuses a lead its bundle was not validated on
    reference = _annotated(entry, recording)  # a bad sidecar fails the recording before the stream runs
    read_done = time.perf_counter()
    events = recording_events(bundle, recording, config)
    stream_done, cpu_done = time.perf_counter(), time.process_time()
    beats = [event for event in events if isinstance(event, BeatEvent)]
    quality = Counter()
    for event in events:
        if isinstance(event, QualityEvent):
            quality[event.flag] += event.duration_s
    skipped = unclassified(beats)
    rates = [event.heart_rate_bpm for event in beats if event.heart_rate_bpm is not None]
    row = {
        **empty_row(entry, order),
        "status": "ok",
        "sample_rate_hz": float(recording.sample_rate_hz),
        "lead": lead,
        "duration_s": recording.samples.size / recording.sample_rate_hz,
        "beats": len(beats),
        "classified": sum(event.classified for event in beats),
        "called_v": sum(event.beat_class == config.positive_label for event in beats),
        "classes": json.dumps(dict(sorted(Counter(event.beat_class for event in beats if event.classified).items()))),
        "unclassified": skipped["beats"],
        "unclassified_flags": json.dumps(skipped["flags"], sort_keys=True),
        "quality_seconds": json.dumps({flag: round(seconds, 3) for flag, seconds in sorted(quality.items())}),
        "median_heart_rate_bpm": float(np.median(rates)) if rates else None,
        "read_s": read_done - started,
        "stream_s": stream_done - read_done,
        "inference_s": sum(event.latency_us for event in beats) / 1e6,
        "cpu_s": cpu_done - cpu_started,
        "annotated": reference is not None,
    }
    if reference is not None:
        counts, _ = score_events(reference, beats, config)  # the build's own scoring: EC57 matching
        row.update(reference_beats=int(reference.beats_s.size), reference_v=int(reference.is_v.sum()),
                   **{name: getattr(counts, name) for name in COUNT_FIELDS}, **ec57.rates(counts))
    return row


def _lead(entry: ArchiveEntry, recording: Recording) -> str | None:
    """The recording's lead: the file's own name for it, else the index's; an index that names another lead than
    the file is refused (one of them is wrong, and figures would be reported under the wrong lead)."""
    if entry.lead is not None and recording.lead is not None and entry.lead != recording.lead:
        raise InputError(f"{entry.name}: the index names lead {entry.lead}, the file's header names lead "
                         f"{recording.lead}", expected="one lead for the recording",
                         fix="correct the index's 'lead' for this recording")
    return recording.lead or entry.lead


def validate_recording(bundle: Bundle, entry: ArchiveEntry, order: int, config: RecordingValidationConfig) -> dict:
    """One result row for ``entry``: a file the runtime refuses, or that breaks it, is a failed row, never a raise; a
    lead the bundle was not validated on is a refused row."""
    try:
        return _run(bundle, entry, order, config)
    except UnvalidatedLeadError as error:  # the device's refusal by design, not a broken file: counted apart
        logger.info("%s refused: %s", entry.name, error)
        return {**failed_row(entry, order, type(error).__name__, str(error)), "status": REFUSED, "lead": error.lead}
    except EdgemedError as error:  # refused with a reason: a bad file, a bad sidecar, a rate the stream cannot take
        logger.warning("%s failed: %s", entry.name, error)
        return failed_row(entry, order, type(error).__name__, str(error))
    except Exception as error:  # the isolation boundary of one file: a crash fails that file, never the run
        logger.exception("%s broke the runtime", entry.name)
        return failed_row(entry, order, type(error).__name__, f"unexpected error: {error}")


def rows_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=RESULT_SCHEMA)


def entry_from_row(row: dict) -> tuple[ArchiveEntry, int]:
    """An archive entry and its order from one input row of the Ray dataset (``ArchiveEntry.to_row`` + order)."""
    rate = row.get("sample_rate_hz")
    entry = ArchiveEntry(str(row["name"]), str(row["file"]), None if rate is None else float(rate),
                         row.get("annotations"), row.get("group"), row.get("lead"))
    return entry, int(row["order"])


class RecordingValidator:
    """Ray Data UDF (an actor per worker): the bundle verified and opened once, then one row per recording."""

    def __init__(self, bundle_path: str, trust: TrustSettings, config: WorkerConfig) -> None:
        self.config = config
        self.bundle = load_bundle(bundle_path, config.provider, config.threads, trust=trust.policy(False))

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = []
        for row in batch.to_pylist():
            entry, order = entry_from_row(row)
            rows.append(validate_recording(self.bundle, entry, order, self.config.recording))
        return rows_table(rows)
