"""Real ECG with real noise added: the MIT-BIH Noise Stress Test's method with the noise recordings we have.

The MIT-BIH Noise Stress Test Database (NST) adds recorded electrode-motion, muscle and baseline noise to clean
MIT-BIH records in 2-minute stretches, at set signal-to-noise ratios. The NST itself is not installable offline
(no package ships it), so the noise here is real noise recorded by PLUX biosignal amplifiers, shipped in
biosignalsnotebooks 0.6.14 (MIT licence) — REAL noise, but not the NST's:

* ``muscle`` — ``emg_fatigue.h5``: surface EMG of a muscle working to fatigue (127 s);
* ``motion`` — ``eeg_sample_artefacts_seg1.h5``: an EEG electrode's movement artefacts (129 s), as NST's "em";
* ``electromagnetic`` — ``eeg_sample_artefacts_seg3.h5``: an EEG electrode's electromagnetic artefacts (91 s).

Each noise recording is brought to 360 Hz with the device's resampler, high-passed at 0.5 Hz (its DC is the ADC's
offset, not noise) and scaled to unit power. It is added to a record from 5 min on, 2 min on and 2 min off (as
the NST does), with 1-s ramps at each edge, at the SNR the NST defines: S is the mean square of a sinusoid with the
record's median QRS peak-to-peak amplitude (ptp² / 8), N the noise's power. The ECG and its annotations are the
vendored MIT-BIH subset (ODC-By 1.0: ``pipeline.scenarios.ecg_pvc.mitdb.provenance()``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.scenarios.ecg_pvc.mitdb import MitBihRecord
from pipeline.validation.real_ecg import signal_samples_folder
from runtime.readers import read_signal
from runtime.resample import StreamingResampler

RATE_HZ = 360.0  # MIT-BIH's rate, and the one the noise is brought to


@dataclass(frozen=True)
class NoiseSource:
    name: str
    file_name: str
    description: str


NOISE_SOURCES = (
    NoiseSource("muscle", "emg_fatigue.h5", "PLUX surface EMG, a muscle working to fatigue (real, 127 s at 1000 Hz)"),
    NoiseSource("motion", "eeg_sample_artefacts_seg1.h5",
                "PLUX EEG electrode movement artefacts (real, 129 s at 1000 Hz)"),
    NoiseSource("electromagnetic", "eeg_sample_artefacts_seg3.h5",
                "PLUX EEG electromagnetic artefacts (real, 91 s at 1000 Hz)"),
)


@dataclass(frozen=True)
class StressConfig:
    clean_start_s: float = 300.0  # the NST's records are clean for their first 5 minutes
    noisy_s: float = 120.0  # then noise for this long …
    quiet_s: float = 120.0  # … and none for this long, alternately
    ramp_s: float = 1.0  # noise fades in and out over this long at each edge
    qrs_half_width_s: float = 0.1  # a beat's QRS peak-to-peak is taken within ± this of its annotation
    high_pass_hz: float = 0.5  # below this a noise recording holds its ADC offset and drift


def noise_signal(source: NoiseSource, config: StressConfig = StressConfig()) -> np.ndarray:
    """The noise recording at 360 Hz, high-passed, with unit power."""
    from scipy.signal import butter, sosfiltfilt

    folder = signal_samples_folder()
    if folder is None:
        raise FileNotFoundError("biosignalsnotebooks is not installed: `make setup` installs it (--no-deps, data only)")
    recording = read_signal(folder / source.file_name, None, None, sensor=None)
    resampler = StreamingResampler(recording.sample_rate_hz, RATE_HZ)
    values = np.concatenate([resampler.process(np.asarray(recording.samples, dtype=np.float64)), resampler.flush()])
    values = sosfiltfilt(butter(2, config.high_pass_hz, btype="high", fs=RATE_HZ, output="sos"), values)
    return values / values.std()


def noisy_mask(samples: int, config: StressConfig = StressConfig()) -> np.ndarray:
    """True where noise is added: from ``clean_start_s``, ``noisy_s`` on and ``quiet_s`` off."""
    mask = np.zeros(samples, dtype=bool)
    start, on, period = (round(value * RATE_HZ) for value in (config.clean_start_s, config.noisy_s,
                                                             config.noisy_s + config.quiet_s))
    for first in range(start, samples, period):
        mask[first : first + on] = True
    return mask


def signal_power(record: MitBihRecord, config: StressConfig = StressConfig()) -> float:
    """The NST's S: ptp² / 8 of the record's median QRS peak-to-peak amplitude (mV²)."""
    half = round(config.qrs_half_width_s * RATE_HZ)
    signal = record.signal_mv.astype(np.float64)
    beats = record.beat_indices[(record.beat_indices >= half) & (record.beat_indices < signal.size - half)]
    windows = signal[beats[:, None] + np.arange(-half, half + 1)]
    return float(np.median(np.ptp(windows, axis=1))) ** 2 / 8.0


def mixed(record: MitBihRecord, noise: np.ndarray, snr_db: float, config: StressConfig = StressConfig()
          ) -> tuple[np.ndarray, np.ndarray]:
    """(record + noise at ``snr_db`` in the noisy stretches, the noisy mask). The noise recording is repeated."""
    if record.sample_rate_hz != RATE_HZ:
        raise ValueError(f"record {record.record_id} at {record.sample_rate_hz} Hz; the mixtures are at {RATE_HZ} Hz")
    samples = record.signal_mv.size
    mask = noisy_mask(samples, config)
    ramp = np.hanning(max(3, round(config.ramp_s * RATE_HZ)))
    envelope = np.convolve(mask.astype(np.float64), ramp / ramp.sum(), mode="same")
    scale = np.sqrt(signal_power(record, config) / 10.0 ** (snr_db / 10.0))
    added = scale * np.resize(noise, samples) * envelope
    return (record.signal_mv.astype(np.float64) + added).astype(np.float32), mask
