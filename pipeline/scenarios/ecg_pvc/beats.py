"""Training data as the device sees it: the runtime's own R-peaks, windows and RR features per record.

For each MIT-BIH record: the runtime's streaming QRS detector (``runtime.ecg.rpeaks.detect_beats``,
the code path of ``EcgStream``: Pan–Tompkins in 2 s blocks, each peak refined to the largest |signal −
median of the beat window| within ±50 ms, a refined peak closer than half the refractory period to the
previous one dropped by the stream's own ``spaced_peaks``), then beat windows cut around the DETECTED
peaks exactly as ``EcgStream`` cuts them (0.25 s before, 0.45 s after; 252 samples at 360 Hz; edges
clamped), the RR features of the detected peak sequence (``runtime.ecg.rr_features``) and the
running-template residual (``runtime.ecg.template``). The model rate is the records' own 360 Hz, so
no resampling happens; the stream's flat-line split is not applied (the records have no flat lines).
A bundle's inputs declare these settings (``runtime.contract.derived``), and the stream computes the
same arrays (tests/runtime/test_ecg_pvc_stream.py checks it on a record).

Each detection takes its label from the reference beat it matches (one-to-one within ±150 ms,
``runtime.ecg.beat_matching``): ``V`` or ``NON_V``. A detection that matches no reference beat is
``FALSE_DETECTION`` — kept, so that an experiment decides whether to train on it (as non-V) or not.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np

from pipeline.scenarios.ecg_pvc.mitdb import MitBihRecord
from runtime.ecg.beat_matching import match_beats
from runtime.ecg.decisions import DetectorConfig
from runtime.ecg.rpeaks import detect_beats as detect_stream_beats
from runtime.ecg.rr_features import RR_FEATURE_NAMES, RrFeatureConfig, rr_features
from runtime.ecg.template import TemplateConfig, template_residuals

logger = logging.getLogger(__name__)

V, NON_V, FALSE_DETECTION = 1, 0, -1  # per-detection labels
PRE_TO_LOCAL = RR_FEATURE_NAMES.index("pre_to_local")  # the template gate's RR column


@dataclass(frozen=True)
class BeatDataConfig:
    window_before_s: float = 0.25  # window before the R-peak: the runtime's ECG window geometry
    window_after_s: float = 0.45  # window after the R-peak (0.7 s = 252 samples at 360 Hz)
    match_tolerance_s: float = 0.15  # AAMI EC57 match window for labelling detections
    detector: DetectorConfig = field(default_factory=DetectorConfig)  # the runtime's detector settings
    detector_block_s: float = 2.0  # the stream's default decision block (decisions do not depend on it)
    refine_s: float = 0.05  # R-peak refinement reach, as StreamConfig.refine_s
    rr: RrFeatureConfig = field(default_factory=RrFeatureConfig)  # RR-feature settings shared with the device
    template: TemplateConfig = field(default_factory=TemplateConfig)  # running-template settings (device too)


@dataclass(frozen=True)
class RecordBeats:
    """Every detected beat of one record with its model inputs, label and match."""

    record: str
    sample_rate_hz: float
    peaks: np.ndarray  # int64 (beats,): detected R-peak sample indices
    windows: np.ndarray  # float32 (beats, samples): the signal around each detected peak, in mV
    residuals: np.ndarray  # float32 (beats, samples): z-scored window minus the running template
    rr: np.ndarray  # float32 (beats, 6): runtime.ecg.rr_features.RR_FEATURE_NAMES
    labels: np.ndarray  # int8 (beats,): V, NON_V or FALSE_DETECTION
    matched_reference: np.ndarray  # int64 (beats,): index of the matched reference beat, −1 if none
    reference_beats: int  # annotated beats in the record
    missed_beats: int  # annotated beats no detection matched (QRS false negatives)
    missed_v: int  # of which annotated V

    @property
    def false_detections(self) -> int:
        return int(np.sum(self.labels == FALSE_DETECTION))

    def detection(self) -> dict[str, float | int | str]:
        """QRS detection counts and Se / +P of this record."""
        found = int(self.peaks.size) - self.false_detections
        return {
            "record": self.record,
            "reference_beats": self.reference_beats,
            "detected_beats": int(self.peaks.size),
            "true_positives": found,
            "false_negatives": self.missed_beats,
            "false_positives": self.false_detections,
            "sensitivity": found / max(1, found + self.missed_beats),
            "positive_predictivity": found / max(1, int(self.peaks.size)),
        }


def window_geometry(sample_rate_hz: float, config: BeatDataConfig) -> tuple[int, int]:
    """(samples before the R-peak, samples from it on): (90, 162) at 360 Hz, as ``EcgStream``."""
    return round(config.window_before_s * sample_rate_hz), round(config.window_after_s * sample_rate_hz)


def detect_beats(signal: np.ndarray, sample_rate_hz: float, config: BeatDataConfig = BeatDataConfig()) -> np.ndarray:
    """The R-peaks the device would report for a continuous signal (sample indices, int64)."""
    return detect_stream_beats(signal, sample_rate_hz, window_geometry(sample_rate_hz, config), config.detector,
                               config.detector_block_s, config.refine_s)


def cut_windows(signal: np.ndarray, peaks: np.ndarray, before: int, after: int) -> np.ndarray:
    """float32 (beats, before + after) windows, indices clamped to the signal like ``EcgStream``."""
    rows = np.asarray(peaks, dtype=np.int64)[:, None] + np.arange(-before, after)[None, :]
    return np.asarray(signal, dtype=np.float32)[np.clip(rows, 0, len(signal) - 1)]


def record_beats(record: MitBihRecord, config: BeatDataConfig = BeatDataConfig()) -> RecordBeats:
    """Detect, match, label and cut one record."""
    rate = record.sample_rate_hz
    peaks = detect_beats(record.signal_mv, rate, config)
    before, after = window_geometry(rate, config)
    windows = cut_windows(record.signal_mv, peaks, before, after)
    rr = rr_features(peaks, rate, config.rr)
    match = match_beats(record.beat_indices, peaks, config.match_tolerance_s * rate)
    matched = np.full(peaks.size, -1, dtype=np.int64)
    matched[match.detected] = match.reference
    labels = np.full(peaks.size, FALSE_DETECTION, dtype=np.int8)
    labels[match.detected] = np.where(record.is_pvc[match.reference], V, NON_V)
    beats = RecordBeats(
        record=record.record_id,
        sample_rate_hz=rate,
        peaks=peaks,
        windows=windows,
        residuals=template_residuals(windows, rr[:, PRE_TO_LOCAL], config.template),
        rr=rr,
        labels=labels,
        matched_reference=matched,
        reference_beats=int(record.beat_indices.size),
        missed_beats=int(match.unmatched_reference.size),
        missed_v=int(record.is_pvc[match.unmatched_reference].sum()),
    )
    summary = beats.detection()
    logger.info("record %s: %d detections, QRS Se %.4f +P %.4f, %d V matched, %d V missed, %d false detections",
                record.record_id, peaks.size, summary["sensitivity"], summary["positive_predictivity"],
                int(np.sum(labels == V)), beats.missed_v, beats.false_detections)
    return beats


def with_template(beats: RecordBeats, template: TemplateConfig) -> RecordBeats:
    """The same beats with residuals from another running-template setting."""
    return replace(beats, residuals=template_residuals(beats.windows, beats.rr[:, PRE_TO_LOCAL], template))
