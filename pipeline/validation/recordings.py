"""A bundle on whole annotated recordings, through the full device stream, scored beat by beat (AAMI EC57).

``validate_bundle(bundle_path, recordings, config)`` loads the bundle as a device does
(``runtime.bundle.load_bundle``) and feeds every recording to ``runtime.ecg.EcgStream`` in chunks, with
the settings ``edgemed run`` uses for files (``RECORDING_CONFIG``): quality checks, resampling to the
model's rate, R-peak detection, beat windows, the inputs the manifest says how to derive (RR features,
template residual), batched inference and the bundle's decision rule. Every ``BeatEvent`` is a detection;
it is called positive (``V``) only when the stream classified it so. A beat the stream did not classify
(a quality flag, ``warming_up``) is a detection called non-V: that is what the device reports for it.

Scoring (``pipeline.validation.ec57``): one-to-one matching within ±150 ms; QRS Se / +P; V Se / +P / FPR
end to end (a missed V beat is a V FN, a false detection called V a V FP), per record, gross over the
records, with percentile-bootstrap intervals over records. Beside them, per record: how many detections
the stream left unclassified and why.

The healthy recordings (``pipeline.validation.real_ecg``: PLUX single-lead ECG biosignalsnotebooks ships,
real people at rest, no beat labels) give the **false PVC rate**: beats called V per classified beat. Where
biosignalsnotebooks is not installed the result says so (``available: false``) instead of failing.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.errors import DataError
from pipeline.validation import ec57
from pipeline.validation.real_ecg import ecg_files, signal_samples_folder
from runtime.bundle import Bundle, load_bundle
from runtime.ecg.stream import RECORDING_CONFIG, EcgStream, StreamConfig
from runtime.events import BeatEvent
from runtime.readers import InputError, read_signal
from runtime.trust import TrustPolicy

logger = logging.getLogger(__name__)

HEALTHY_SOURCE = "biosignalsnotebooks 0.6.14 signal_samples: PLUX single-lead ECG of healthy people at rest (no labels)"


@dataclass(frozen=True)
class AnnotatedRecording:
    """One lead of a recording and its reference beats (seconds from the start), each V or not."""

    name: str
    signal: np.ndarray  # (samples,), any unit: the stream's inputs do not depend on gain or baseline
    sample_rate_hz: float
    beats_s: np.ndarray  # float64, sorted: every reference beat
    is_v: np.ndarray  # bool, one per reference beat
    description: str = ""  # e.g. the lead and why the record was chosen

    def __post_init__(self) -> None:
        beats, is_v = np.asarray(self.beats_s, dtype=np.float64), np.asarray(self.is_v)
        if np.asarray(self.signal).ndim != 1 or beats.ndim != 1 or is_v.shape != beats.shape or is_v.dtype != bool:
            raise DataError(
                f"recording {self.name}: signal {np.shape(self.signal)}, {beats.shape} beats, {is_v.shape} labels "
                f"of {is_v.dtype}",
                expected="a 1-D signal and one boolean 'is V' per reference beat time",
                fix="pass the lead as (samples,) and the annotations as aligned arrays",
            )
        duration = np.asarray(self.signal).size / float(self.sample_rate_hz)
        if beats.size and (beats.min() < 0 or beats.max() > duration or np.any(np.diff(beats) <= 0)):
            raise DataError(f"recording {self.name}: reference beats outside its {duration:.1f} s or unsorted",
                            expected="sorted beat times inside the signal",
                            fix="check that the annotations belong to this signal and rate")
        object.__setattr__(self, "beats_s", beats)

    @property
    def duration_s(self) -> float:
        return np.asarray(self.signal).size / float(self.sample_rate_hz)


@dataclass(frozen=True)
class RecordingValidationConfig:
    ec57: ec57.Ec57Config = field(default_factory=ec57.Ec57Config)  # ±150 ms matching, bootstrap over records
    stream: StreamConfig = RECORDING_CONFIG  # what ``edgemed run`` uses for files
    chunk_s: float = 10.0  # a recording reaches the stream in chunks this long, as ``edgemed run`` feeds it
    healthy: bool = True  # also the healthy PLUX recordings, when biosignalsnotebooks is installed
    positive_label: str = "V"  # the class a detection must be called to count as a PVC


def stream_events(bundle: Bundle, signal: np.ndarray, sample_rate_hz: float, config: RecordingValidationConfig,
                  adc_range: tuple[float, float] | None = None) -> list[BeatEvent]:
    """Every beat event of ``signal`` through the device stream, fed in ``chunk_s`` chunks (as ``edgemed run``)."""
    stream = EcgStream(bundle, sample_rate_hz, config=config.stream, adc_range=adc_range)
    chunk = max(1, round(config.chunk_s * sample_rate_hz))
    samples = np.asarray(signal)
    events = []
    for start in range(0, samples.size, chunk):
        events += stream.feed(samples[start : start + chunk])
    events += stream.flush()
    return [event for event in events if isinstance(event, BeatEvent)]


def unclassified(events: Iterable[BeatEvent]) -> dict:
    """How many detections the stream did not classify, and the flags they carried (a beat counts per flag)."""
    skipped = [event for event in events if not event.classified]
    return {"beats": len(skipped), "flags": dict(sorted(Counter(f for e in skipped for f in e.quality_flags).items()))}


def score_events(recording: AnnotatedRecording, events: Sequence[BeatEvent], config: RecordingValidationConfig
                 ) -> tuple[ec57.BeatCounts, dict]:
    """EC57 counts of one recording from the stream's beat events, and the unclassified detections."""
    detected = np.asarray([event.time_s for event in events], dtype=np.float64)
    called_v = np.asarray([event.beat_class == config.positive_label for event in events], dtype=bool)
    counts = ec57.score_record(recording.name, recording.beats_s, detected, recording.is_v, called_v, config.ec57)
    return counts, unclassified(events)


def false_pvc_rate(events: Sequence[BeatEvent], positive_label: str = "V") -> dict:
    """Beats called ``positive_label`` per classified beat (None when nothing was classified)."""
    classified = [event for event in events if event.classified]
    called = sum(event.beat_class == positive_label for event in classified)
    return {"beats": len(events), "classified": len(classified), "called_v": called,
            "false_pvc_rate": called / len(classified) if classified else None}


def healthy_recordings(bundle: Bundle, config: RecordingValidationConfig) -> dict:
    """The false PVC rate on every healthy PLUX recording the stream accepts, and pooled over them."""
    folder = signal_samples_folder()
    if folder is None:
        return {"available": False, "source": HEALTHY_SOURCE,
                "note": "biosignalsnotebooks is not installed: the false PVC rate on healthy recordings was not "
                        "measured (pip install --no-deps biosignalsnotebooks==0.6.14)"}
    files: dict[str, dict] = {}
    for path in ecg_files(folder):
        try:
            recording = read_signal(path)
            events = stream_events(bundle, recording.samples, recording.sample_rate_hz, config, recording.adc_range)
        except InputError as error:  # e.g. a 10 Hz file: too slow for QRS detection, refused as on a device
            files[path.name] = {"skipped": error.what}
            continue
        files[path.name] = {"sample_rate_hz": recording.sample_rate_hz,
                            "duration_s": round(recording.samples.size / recording.sample_rate_hz, 1),
                            **false_pvc_rate(events, config.positive_label), "unclassified": unclassified(events)}
    used = [entry for entry in files.values() if "skipped" not in entry]
    classified, called = sum(entry["classified"] for entry in used), sum(entry["called_v"] for entry in used)
    return {"available": True, "source": HEALTHY_SOURCE, "files": files, "beats": sum(e["beats"] for e in used),
            "classified": classified, "called_v": called,
            "false_pvc_rate": called / classified if classified else None}


def summarise_counts(counts: Sequence[ec57.BeatCounts], skipped: dict[str, dict], config: RecordingValidationConfig,
                     healthy: dict | None) -> dict:
    """Per-record and gross figures with intervals (``ec57.summarise``), unclassified beats per record, and the
    healthy recordings' false PVC rate (None: not asked for)."""
    summary = ec57.summarise(counts, config.ec57)
    for row in summary["per_record"]:
        row["unclassified"] = skipped[row["record"]]
    summary["unclassified"] = sum(item["beats"] for item in skipped.values())
    summary["healthy"] = healthy
    return summary


def gate_figures(summary: dict) -> dict[str, float | None]:
    """The figures ``pipeline.clinical.recording_gate`` judges, from ``summarise_counts``'s result."""
    gross = summary["gross"]
    healthy = summary.get("healthy") or {}
    return {**{name: gross.get(name) for name in ec57.METRICS}, "healthy_false_pvc_rate": healthy.get("false_pvc_rate")}


def validate_bundle(bundle_path: Path | str, recordings: Sequence[AnnotatedRecording],
                    config: RecordingValidationConfig = RecordingValidationConfig()) -> dict:
    """The bundle on every recording (and the healthy ones when ``config.healthy``): ``summarise_counts``'s dict."""
    if not recordings:
        raise DataError("no recordings to validate on", expected="at least one annotated recording",
                        fix="give the scenario held-out test records")
    bundle = load_bundle(bundle_path, trust=TrustPolicy.development())  # the build machine's own, unsigned
    counts, skipped = [], {}
    for recording in recordings:
        events = stream_events(bundle, recording.signal, recording.sample_rate_hz, config)
        record_counts, skipped[recording.name] = score_events(recording, events, config)
        counts.append(record_counts)
        logger.info("%s on %s: %s", bundle.variant, recording.name, ec57.rates(record_counts))
    healthy = healthy_recordings(bundle, config) if config.healthy else None
    return summarise_counts(counts, skipped, config, healthy)
