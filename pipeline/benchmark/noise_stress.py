"""Does the device stream know when it cannot judge? Real ECG under real noise, and real signals that are not ECG.

Two measurements, each with the stream's readability check (``runtime.ecg.noise``) on and off:

* **noise stress** — the ten vendored MIT-BIH records with real noise recordings added at set SNRs
  (``noise_mixtures``: the NST's method, PLUX noise). Inside the noisy stretches, against the MIT-BIH reference
  beats (±150 ms, one-to-one): how many beats were classed, how many classed detections have no beat (false
  beats), PVCs classed as another class (silent misses: nothing tells the reader the beat was not judgeable) and
  V calls on a non-V beat or on no beat (false PVCs); outside them, the same figures (the check's cost on clean
  signal);
* **real recordings** — every PLUX recording below, fed as the device gets it (raw counts, its own rate): ECG of
  healthy people (the check must leave them alone) and real signals that are not ECG (EMG, EEG, a pulse wave,
  electrodermal activity: the stream must class nothing there). Classed beats per minute.

What the figures are measured on is written into the report beside them.
"""

from __future__ import annotations

import logging
import platform
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from pipeline.benchmark.noise_mixtures import NOISE_SOURCES, RATE_HZ, StressConfig, mixed, noise_signal, noisy_mask
from pipeline.scenarios.ecg_pvc.mitdb import MitBihRecord, load_records, provenance
from pipeline.validation.real_ecg import signal_samples_folder
from pipeline.validation.recordings import RecordingValidationConfig, stream_events
from runtime.bundle import Bundle, load_bundle
from runtime.ecg.beat_matching import match_beats
from runtime.ecg.noise import NoiseConfig
from runtime.ecg.stream import RECORDING_CONFIG
from runtime.events import BeatEvent
from runtime.readers import read_signal
from runtime.trust import TrustPolicy

logger = logging.getLogger(__name__)

# (file, channel, what it is): real PLUX recordings from biosignalsnotebooks 0.6.14 (MIT licence)
REAL_ECG = (("ecg_5_min.h5", None, "ECG, healthy, at rest (5 min)"),
            ("ecg_20_sec_1000_Hz.h5", None, "ECG, healthy (20 s)"))
NOT_ECG = (
    ("emg_fatigue.h5", None, "surface EMG, muscle working to fatigue"),
    ("emg_bursts.h5", None, "surface EMG, bursts of contraction"),
    ("eeg_sample_closed_open_eyes.h5", 1, "EEG, eyes closed and open"),
    ("eeg_sample_artefacts_seg1.h5", None, "EEG with electrode movement artefacts"),
    ("eeg_sample_artefacts_seg2.h5", None, "EEG with electrode movement artefacts"),
    ("eeg_sample_artefacts_seg3.h5", None, "EEG with electromagnetic artefacts"),
    ("bvp_rest.h5", None, "pulse wave (PPG/BVP) at rest"),
    ("bvp_motion_artifact.h5", 2, "pulse wave (PPG/BVP) with motion artefact"),
    ("eda_slow_signal.h5", None, "electrodermal activity"),
)
COUNTS = ("reference_beats", "reference_v", "classed_beats", "false_beats", "flagged_detections", "v_found",
          "v_silently_missed", "false_v")


@dataclass(frozen=True)
class NoiseStressConfig:
    snrs_db: tuple[float, ...] = (12.0, 6.0, 0.0)
    records: tuple[str, ...] | None = None  # None: all ten vendored records
    sources: tuple[str, ...] | None = None  # None: every noise source
    tolerance_s: float = 0.15  # AAMI EC57 beat-match window
    stress: StressConfig = field(default_factory=StressConfig)
    real_recordings: bool = True


def _stream_config(check: bool) -> RecordingValidationConfig:
    return RecordingValidationConfig(stream=replace(RECORDING_CONFIG, noise=NoiseConfig(enabled=check)))


def stretch_counts(record: MitBihRecord, events: Sequence[BeatEvent], mask: np.ndarray, tolerance_s: float
                   ) -> dict[str, dict[str, int]]:
    """COUNTS inside (``noisy``) and outside (``clean``) the mask, against the record's reference beats."""
    rate = record.sample_rate_hz
    reference = record.beat_indices / rate
    reference_v = np.isin(record.beat_indices, record.pvc_indices)
    times = np.asarray([event.time_s for event in events], dtype=np.float64)
    classed = np.asarray([event.beat_class is not None for event in events], dtype=bool)
    called_v = np.asarray([event.beat_class == "V" for event in events], dtype=bool)
    match = match_beats(reference, times[classed], tolerance_s)
    classed_rows = np.flatnonzero(classed)
    matched, matched_reference = classed_rows[match.detected], match.reference
    unmatched = classed_rows[match.unmatched_detected]
    reference_inside = mask[record.beat_indices]
    detected_inside = mask[np.clip(np.round(times * rate).astype(np.int64), 0, mask.size - 1)]
    found: dict[str, dict[str, int]] = {}
    for name, inside_reference, inside_detected in (("noisy", reference_inside, detected_inside),
                                                    ("clean", ~reference_inside, ~detected_inside)):
        keep = inside_reference[matched_reference]
        is_v, said_v = reference_v[matched_reference] & keep, called_v[matched] & keep
        found[name] = {
            "reference_beats": int(inside_reference.sum()),
            "reference_v": int((inside_reference & reference_v).sum()),
            "classed_beats": int(keep.sum()),
            "false_beats": int(inside_detected[unmatched].sum()),
            "flagged_detections": int((inside_detected & ~classed).sum()),
            "v_found": int((is_v & said_v).sum()),
            "v_silently_missed": int((is_v & ~said_v).sum()),
            "false_v": int((~reference_v[matched_reference] & said_v).sum() + (inside_detected[unmatched]
                                                                               & called_v[unmatched]).sum()),
        }
    return found


def rates(counts: dict[str, int], hours: float) -> dict[str, float | None]:
    """The counts as the figures a reader compares: shares of reference beats and events per hour of signal."""
    def share(part: int, whole: int) -> float | None:
        return round(part / whole, 4) if whole else None

    return {
        "classed_share": share(counts["classed_beats"], counts["reference_beats"]),
        "v_sensitivity": share(counts["v_found"], counts["reference_v"]),
        "v_positive_predictivity": share(counts["v_found"], counts["v_found"] + counts["false_v"]),
        "v_silently_missed_share": share(counts["v_silently_missed"], counts["reference_v"]),
        "false_beats_per_hour": round(counts["false_beats"] / hours, 1) if hours else None,
        "false_v_per_hour": round(counts["false_v"] / hours, 1) if hours else None,
    }


def _add(total: dict[str, int], part: dict[str, int]) -> None:
    for key in COUNTS:
        total[key] = total.get(key, 0) + part[key]


def stress_conditions(bundle: Bundle, records: Sequence[MitBihRecord], config: NoiseStressConfig,
                      progress: Callable[[str, int, int], None] = lambda task, done, total: None) -> list[dict]:
    """One row per (noise source, SNR, check on/off), counts summed over the records; the first rows have no noise
    added (the same stretches, for the check's cost on clean signal)."""
    sources = [source for source in NOISE_SOURCES if config.sources is None or source.name in config.sources]
    conditions = [(None, None)] + [(source, snr) for source in sources for snr in config.snrs_db]
    noises = {source.name: noise_signal(source, config.stress) for source in sources}
    rows: list[dict] = []
    for source, snr in conditions:
        for check in (False, True):
            progress("noise stress", len(rows), 2 * len(conditions))
            totals = {"noisy": {}, "clean": {}}
            hours = {"noisy": 0.0, "clean": 0.0}
            for record in records:
                if source is None:
                    signal, mask = record.signal_mv, noisy_mask(record.signal_mv.size, config.stress)
                else:
                    signal, mask = mixed(record, noises[source.name], snr, config.stress)
                events = stream_events(bundle, signal, record.sample_rate_hz, _stream_config(check))
                for name, part in stretch_counts(record, events, mask, config.tolerance_s).items():
                    _add(totals[name], part)
                hours["noisy"] += mask.sum() / record.sample_rate_hz / 3600
                hours["clean"] += (~mask).sum() / record.sample_rate_hz / 3600
            row = {"noise": source.name if source else "none", "snr_db": snr, "check": check,
                   **{name: {"counts": totals[name], "hours": round(hours[name], 3), **rates(totals[name], hours[name])}
                      for name in totals}}
            rows.append(row)
    progress("noise stress", len(rows), len(rows))
    return rows


def condition_line(row: dict) -> str:
    noisy = row["noisy"]
    snr = "" if row["snr_db"] is None else f" {row['snr_db']:g} dB"
    return (f"{row['noise']}{snr}, check {'on' if row['check'] else 'off'}: classed {noisy['classed_share']}, "
            f"V Se {noisy['v_sensitivity']}, V +P {noisy['v_positive_predictivity']}, PVCs silently missed "
            f"{noisy['counts']['v_silently_missed']}, false V {noisy['false_v_per_hour']}/h")


def real_recordings(bundle: Bundle, progress: Callable[[str, int, int], None] = lambda task, done, total: None
                    ) -> list[dict]:
    """Classed beats per minute on each real PLUX recording, check off and on."""
    folder = signal_samples_folder()
    if folder is None:
        return []
    rows: list[dict] = []
    for group, entries in (("ecg", REAL_ECG), ("not_ecg", NOT_ECG)):
        for file_name, channel, what in entries:
            progress("real recordings", len(rows), len(REAL_ECG) + len(NOT_ECG))
            recording = read_signal(folder / file_name, None, channel, sensor=None)
            minutes = recording.samples.size / recording.sample_rate_hz / 60
            row = {"file": file_name, "what": what, "group": group, "minutes": round(minutes, 2),
                   "sample_rate_hz": recording.sample_rate_hz}
            for check in (False, True):
                events = stream_events(bundle, np.asarray(recording.samples, dtype=np.float64),
                                       recording.sample_rate_hz, _stream_config(check), recording.adc_range)
                classed = [event for event in events if event.beat_class is not None]
                flags = Counter(flag for event in events for flag in event.quality_flags)
                row["on" if check else "off"] = {
                    "beats": len(events), "classed": len(classed), "classed_per_minute": round(len(classed) / minutes,
                                                                                               1),
                    "called_v": sum(event.beat_class == "V" for event in classed), "flags": dict(sorted(flags.items()))}
            rows.append(row)
    progress("real recordings", len(rows), len(rows))
    return rows


def recording_line(row: dict) -> str:
    return (f"{row['file']} ({row['what']}, {row['minutes']} min): classed beats/min {row['off']['classed_per_minute']}"
            f" → {row['on']['classed_per_minute']}, V {row['off']['called_v']} → {row['on']['called_v']}")


def evaluate_noise_stress(bundle_path: Path, config: NoiseStressConfig = NoiseStressConfig(),
                          progress: Callable[[str, int, int], None] = lambda task, done, total: None) -> dict:
    """The whole report (see the module's docstring)."""
    bundle = load_bundle(bundle_path, provider="cpu", threads=1, trust=TrustPolicy.development())
    records = load_records(list(config.records) if config.records else None)
    if any(record.sample_rate_hz != RATE_HZ for record in records):
        raise ValueError("the noise stress test mixes at 360 Hz; every MIT-BIH record is")
    report = {
        "bundle": {"path": str(bundle_path), "id": bundle.bundle_id, "manifest_sha256": bundle.manifest_sha256},
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "config": asdict(config),
        "noise_check": asdict(NoiseConfig()),
        "measured_on": {
            "ecg": f"real: MIT-BIH Arrhythmia records {', '.join(record.record_id for record in records)} (first "
                   "lead, 30 min each, expert beat and PVC annotations)",
            "noise": {source.name: source.description for source in NOISE_SOURCES},
            "method": "noise added from 5 min on, 2 min on / 2 min off, at the NST's SNR (S = median QRS "
                      "peak-to-peak² / 8); 'noisy' figures count the beats inside the noisy stretches, 'clean' the "
                      "rest of the same records",
            "real_recordings": "real: biosignalsnotebooks 0.6.14 PLUX recordings, raw counts at their own rate",
            "synthetic": False,
        },
        "attribution": {"mitdb": provenance(), "noise": "biosignalsnotebooks 0.6.14 (PyPI), MIT License, © 2018 "
                        "opensignalstool developers and PLUX Wireless Biosignals"},
        "conditions": stress_conditions(bundle, records, config, progress),
        "real_recordings": real_recordings(bundle, progress) if config.real_recordings else [],
    }
    return report
