"""Per-device ECG: a looped recording read at any time and rate, then impaired by the script.

Real single-lead recordings come from biosignalsnotebooks when it is installed (PLUX 16-bit ADC
counts); otherwise neurokit2's ECGSYN generates one minute per device (offline), scaled to the
same ADC counts. Every device reads its recording from its own offset, so no two devices show
the same beats at the same time.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import cache

import numpy as np

from pipeline.fleet.scenario import EventKind, ScriptedEvent

logger = logging.getLogger(__name__)

ADC_RANGE = (0.0, 65535.0)  # 16-bit converter, as on the PLUX devices the recordings come from
SYNTHETIC_SIGNAL = "neurokit2:ecgsyn"  # the name of a generated (synthetic) recording


@dataclass(frozen=True)
class SignalConfig:
    minimum_recording_s: float = 60.0  # shorter real recordings are not looped (the seam would repeat too often)
    synthetic_duration_s: float = 60.0  # ECGSYN generates this much per device, then loops it
    synthetic_rate_hz: float = 500.0  # ECGSYN's sample rate
    synthetic_counts_per_mv: float = 1000.0  # ADC counts per millivolt of the synthetic trace
    device_offset_s: float = 37.0  # device i starts i × this far into its recording
    # "real": biosignalsnotebooks recordings when installed (real PLUX ECG: another device, lead and population than
    # the MIT-BIH records the ECG model learned from, which shows as some drift);
    # "synthetic": ECGSYN traces (synthetic, clean and regular), so scripted problems stand out.
    source: str = "real"


@dataclass(frozen=True)
class Recording:
    samples: np.ndarray  # ADC counts, one lead
    rate_hz: float  # the recording's own sample rate
    name: str  # "biosignalsnotebooks:<file>" or "neurokit2:ecgsyn", for the summary

    @property
    def synthetic(self) -> bool:
        return self.name == SYNTHETIC_SIGNAL


class LoopedSignal:
    """One recording looped forever from ``offset_s``; read at any rate by linear interpolation."""

    def __init__(self, recording: Recording, offset_s: float) -> None:
        self.recording = recording
        self.offset_s = offset_s
        self.baseline = float(np.median(recording.samples))
        self.rms = float(np.std(recording.samples)) or 1.0

    def read(self, start_s: float, count: int, rate_hz: float) -> np.ndarray:
        """``count`` samples at ``rate_hz`` from simulated second ``start_s`` on."""
        samples, source_rate = self.recording.samples, self.recording.rate_hz
        times = self.offset_s + start_s + np.arange(count) / rate_hz
        positions = np.mod(times * source_rate, samples.size)
        lower = np.floor(positions).astype(np.int64) % samples.size
        fraction = positions - np.floor(positions)
        upper = (lower + 1) % samples.size
        return samples[lower] * (1.0 - fraction) + samples[upper] * fraction


@cache
def real_recordings(minimum_s: float) -> tuple[Recording, ...]:
    """biosignalsnotebooks' ECG recordings of at least ``minimum_s`` (empty when not installed)."""
    from pipeline.validation.real_ecg import ecg_files, signal_samples_folder
    from runtime.readers import InputError, read_signal

    folder = signal_samples_folder()
    if folder is None:
        return ()
    recordings = []
    for path in ecg_files(folder):
        try:
            recording = read_signal(path)
        except InputError as error:
            logger.warning("skipping %s: %s", path.name, error)
            continue
        if recording.samples.size / recording.sample_rate_hz >= minimum_s:
            name = f"biosignalsnotebooks:{path.name}"
            recordings.append(Recording(recording.samples, recording.sample_rate_hz, name))
    return tuple(recordings)


def synthetic_recording(seed: int, config: SignalConfig) -> Recording:
    """One ECGSYN trace (neurokit2, no download) at a per-device heart rate, in ADC counts."""
    import neurokit2  # imported here: it takes seconds, and only the fallback needs it

    rng = np.random.default_rng(seed)
    trace = neurokit2.ecg_simulate(
        duration=config.synthetic_duration_s,
        sampling_rate=int(config.synthetic_rate_hz),
        heart_rate=float(rng.uniform(58, 88)),
        heart_rate_std=1.0,
        method="ecgsyn",
        random_state=seed,
    )
    middle = (ADC_RANGE[0] + ADC_RANGE[1]) / 2
    counts = np.round(middle + config.synthetic_counts_per_mv * np.asarray(trace, dtype=np.float64))
    return Recording(np.clip(counts, *ADC_RANGE), config.synthetic_rate_hz, SYNTHETIC_SIGNAL)


@cache
def _warn_no_real_signal() -> None:
    logger.warning("no real ECG recordings are installed (biosignalsnotebooks): every device plays SYNTHETIC "
                   "ECGSYN ECG instead; install the project's requirements for the real PLUX recordings")


def device_signal(index: int, seed: int, config: SignalConfig = SignalConfig()) -> LoopedSignal:
    """Device ``index``'s signal: a real recording when available, else a synthetic one."""
    recordings = real_recordings(config.minimum_recording_s) if config.source == "real" else ()
    if config.source == "real" and not recordings:
        _warn_no_real_signal()
    real = recordings[index % len(recordings)] if recordings else None
    recording = real or synthetic_recording(seed * 1000 + index, config)
    duration_s = recording.samples.size / recording.rate_hz
    return LoopedSignal(recording, math.fmod(index * config.device_offset_s, duration_s))


def impair(
    samples: np.ndarray,
    minutes: np.ndarray,
    events: tuple[ScriptedEvent, ...],
    signal: LoopedSignal,
    rng: np.random.Generator,
) -> np.ndarray:
    """The samples as the device's ADC delivers them under the active events (at ``minutes``)."""
    values = samples.astype(np.float64, copy=True)
    for event in events:
        active = (minutes >= event.start_minute) & (minutes < event.end_minute)
        if not active.any():
            continue
        ramp = np.clip((minutes - event.start_minute) / (event.end_minute - event.start_minute), 0.0, 1.0)
        if event.kind is EventKind.GAIN_DRIFT:
            gain = np.where(active, 1.0 + (event.magnitude - 1.0) * ramp, 1.0)
            values = signal.baseline + gain * (values - signal.baseline)
        elif event.kind is EventKind.RISING_NOISE:
            white = rng.standard_normal(values.size + 1)
            emg = np.diff(white) / math.sqrt(2.0)  # first difference: broadband, high-frequency, unit RMS
            values = values + np.where(active, event.magnitude * ramp * signal.rms, 0.0) * emg
        elif event.kind is EventKind.LEAD_OFF:
            values = np.where(active, round(signal.baseline), values)
    return np.clip(np.round(values), *ADC_RANGE)  # the converter quantises and saturates
