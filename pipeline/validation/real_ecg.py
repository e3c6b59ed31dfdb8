"""The device runtime on real ECG recordings (biosignalsnotebooks' PLUX samples).

biosignalsnotebooks ships real single-lead ECG recordings as OpenSignals HDF5
files; ``ecg_5_min.h5`` (1000 Hz, 5 min at rest) and ``ecg_4000_Hz.h5`` also hold
the acquisition software's R-peaks (``<device>/plugin/hrv/RR_peaks1``, sample
indices at the file's rate). Each file goes through the whole device path —
``runtime.runner.run``: HDF5 reader, quality checks, resampling to the model's
rate, streaming R-peak detection, beat windows and the bundle's model — and is
scored with AAMI EC57 beat matching (``ec57``: a detected beat within ±150 ms of a
reference beat, one-to-one): sensitivity Se = TP / (TP + FN) and positive
predictivity +P = TP / (TP + FP), per-minute heart rate agreement, and the
distribution of beat classes and quality flags.

The package is only read from (its files are located without importing it).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import platform
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from pipeline.validation import ec57
from runtime.bundle import load_bundle
from runtime.cpu import cpu_model_and_flags
from runtime.events import BeatEvent, QualityEvent
from runtime.readers import InputError
from runtime.runner import RunOptions, run
from runtime.trust import TrustPolicy

logger = logging.getLogger(__name__)

SAMPLES_SUBFOLDER = Path("notebook_files/osf_files/signal_samples")
REFERENCE_PEAKS = "plugin/hrv/RR_peaks1"  # sample indices at the file's rate


@dataclass(frozen=True)
class RealSignalConfig:
    tolerance_s: float = 0.15  # AAMI EC57 beat-match window
    minute_s: float = 60.0  # heart-rate agreement per window of this length
    reference_file: str = "ecg_5_min.h5"  # the recording the headline numbers come from


def signal_samples_folder() -> Path | None:
    """biosignalsnotebooks' signal_samples folder, or None when the package is not installed."""
    spec = importlib.util.find_spec("biosignalsnotebooks")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / SAMPLES_SUBFOLDER
    return folder if folder.is_dir() else None


def ecg_files(folder: Path) -> list[Path]:
    """The HDF5 recordings whose name says ECG."""
    return sorted(path for path in folder.glob("*.h5") if "ecg" in path.name.lower())


def reference_peaks_s(path: Path) -> np.ndarray | None:
    """The acquisition software's R-peak times in seconds, if the file has them."""
    import h5py

    with h5py.File(path, "r") as handle:
        for device in handle.values():
            if hasattr(device, "keys") and REFERENCE_PEAKS in device:
                return np.asarray(device[REFERENCE_PEAKS][()], dtype=np.float64) / float(device.attrs["sampling rate"])
    return None


def match_beats(reference_s: np.ndarray, detected_s: np.ndarray, tolerance_s: float) -> tuple[int, int, int, list]:
    """(TP, FN, FP, timing errors in s, in reference order), by ``ec57`` one-to-one matching."""
    reference, detected = np.asarray(reference_s, dtype=np.float64), np.asarray(detected_s, dtype=np.float64)
    match = ec57.match_beats(reference, detected, tolerance_s)
    errors = [float(value) for value in detected[match.detected] - reference[match.reference]]
    return len(errors), int(match.unmatched_reference.size), int(match.unmatched_detected.size), errors


def heart_rate_per_window(peaks_s: np.ndarray, duration_s: float, window_s: float) -> list[float | None]:
    """60 / mean RR of the intervals ending in each whole window (None when a window has none)."""
    peaks = np.sort(np.asarray(peaks_s, dtype=np.float64))
    intervals, ends = np.diff(peaks), peaks[1:]
    rates: list[float | None] = []
    for start in np.arange(0.0, duration_s - window_s + 1e-9, window_s):
        inside = intervals[(ends >= start) & (ends < start + window_s)]
        rates.append(round(60.0 / float(inside.mean()), 2) if inside.size else None)
    return rates


def _summary(events: list, duration_s: float) -> dict:
    beats = [event for event in events if isinstance(event, BeatEvent)]
    return {
        "duration_s": round(duration_s, 2),
        "beats": len(beats),
        # a beat the stream did not classify (quality flag, warming up) is counted as such, not as a class
        "class_distribution": dict(sorted(Counter(beat.beat_class or "unclassified" for beat in beats).items())),
        "quality_events": dict(sorted(Counter(e.flag for e in events if isinstance(e, QualityEvent)).items())),
        "beats_with_flag": dict(sorted(Counter(flag for beat in beats for flag in beat.quality_flags).items())),
        "low_confidence_beats": sum(beat.low_confidence for beat in beats),
    }


def evaluate_file(bundle_path: Path, path: Path, config: RealSignalConfig = RealSignalConfig()) -> dict:
    """Run one recording through the device path; score it when it carries reference peaks."""
    import h5py

    with h5py.File(path, "r") as handle:
        device = next(group for group in handle.values() if hasattr(group, "keys") and "raw" in group)
        rate, samples = float(device.attrs["sampling rate"]), int(device.attrs["nsamples"])
    result: dict = {"sample_rate_hz": rate}
    try:
        events = list(run(bundle_path, path, RunOptions(trust=TrustPolicy.development())))
    except InputError as error:  # a rate the reader or the stream refuses (e.g. a 10 Hz file), as on a device
        logger.info("%s skipped: %s", path.name, error)
        return {**result, "skipped": str(error)}
    result.update(_summary(events, samples / rate))
    reference = reference_peaks_s(path)
    if reference is None:
        return result
    detected = np.asarray([event.time_s for event in events if isinstance(event, BeatEvent)])
    true_positives, false_negatives, false_positives, errors = match_beats(reference, detected, config.tolerance_s)
    reference_rates = heart_rate_per_window(reference, samples / rate, config.minute_s)
    detected_rates = heart_rate_per_window(detected, samples / rate, config.minute_s)
    pairs = [(known, found) for known, found in zip(reference_rates, detected_rates) if None not in (known, found)]
    result.update(
        {
            "reference_beats": int(reference.size),
            "true_positives": true_positives,
            "false_negatives": false_negatives,
            "false_positives": false_positives,
            "sensitivity": round(true_positives / max(1, true_positives + false_negatives), 4),
            "positive_predictivity": round(true_positives / max(1, true_positives + false_positives), 4),
            "timing_error_ms": {
                "median_abs": round(1000 * float(np.median(np.abs(errors))), 2) if errors else None,
                "p95_abs": round(1000 * float(np.percentile(np.abs(errors), 95)), 2) if errors else None,
            },
            "heart_rate_per_minute": [
                {"minute": index, "reference_bpm": known, "detected_bpm": found}
                for index, (known, found) in enumerate(zip(reference_rates, detected_rates))
            ],
            "heart_rate_mean_abs_difference_bpm": (
                round(float(np.mean([abs(known - found) for known, found in pairs])), 3) if pairs else None
            ),
        }
    )
    return result


def evaluate_real_ecg(
    bundle_path: Path | str, output_json: Path | str | None, config: RealSignalConfig = RealSignalConfig()
) -> dict:
    """Score every real ECG recording; write the report to ``output_json`` (when given) and return it."""
    folder = signal_samples_folder()
    if folder is None:
        from pipeline.errors import UsageError

        raise UsageError(
            "biosignalsnotebooks is not installed, so there are no real ECG recordings to evaluate on",
            expected="biosignalsnotebooks 0.6.14 in the environment",
            fix="pip install --no-deps biosignalsnotebooks==0.6.14",
        )
    bundle = load_bundle(bundle_path, trust=TrustPolicy.development())  # the build machine's own check
    files = {path.name: evaluate_file(Path(bundle_path), path, config) for path in ecg_files(folder)}
    headline = files.get(config.reference_file, {})
    report = {
        "bundle": {"id": bundle.bundle_id, "variant": bundle.variant, "scenario": bundle.manifest.scenario},
        "source": "biosignalsnotebooks 0.6.14 signal_samples (PLUX biosignalsplux, real single-lead ECG)",
        "matching": f"AAMI EC57 one-to-one, ±{config.tolerance_s * 1000:.0f} ms",
        "reference_file": config.reference_file,
        "sensitivity": headline.get("sensitivity"),
        "positive_predictivity": headline.get("positive_predictivity"),
        "heart_rate_mean_abs_difference_bpm": headline.get("heart_rate_mean_abs_difference_bpm"),
        "files": files,
        "caveat": ("the recordings have no beat labels: class counts are what the model says, not accuracy"
                   + ("; this model was trained on synthetic beats" if bundle.manifest.data.synthetic else
                      "; healthy people at rest, so every beat called V (or any ectopic class) is a false alarm")),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpu": cpu_model_and_flags()[0], "architecture": platform.machine()},
    }
    if output_json is not None:
        Path(output_json).parent.mkdir(parents=True, exist_ok=True)
        Path(output_json).write_text(json.dumps(report, indent=1))
    return report
