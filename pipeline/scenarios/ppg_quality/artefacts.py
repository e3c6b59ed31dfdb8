"""SYNTHETIC motion artefacts added to real rest PPG: the training split's positive windows.

The real motion-artefact data is one 30 s file with two episodes; both are held out (one for the threshold, one for
the test), so every artefact the model trains on is made here. Each episode lasts ``duration_s`` and combines one
to four shapes seen in the real file and in the PPG-quality literature, scaled to the pulse's own amplitude around
it (the 5–95 % range of the clean signal within 2 s; the windows are z-scored, so only this ratio matters):

* a transient: an asymmetric Gaussian bump or dip (a knock, a press on the sensor);
* an excursion: band-limited (``excursion_band_hz``) baseline movement, tapered in and out (arm swing);
* a step: a baseline shift that persists (the sensor slid to another spot);
* a burst: band-limited (``burst_band_hz``) noise, tapered (tremor, fast movement).

The signal stays in the file's units (raw counts at the model rate); each episode is returned as an artefact
``Segment`` so windows are labelled exactly as the real file's are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.scenarios.ppg_quality.data import Segment, SegmentKind


@dataclass(frozen=True)
class ArtefactConfig:
    replicas: int = 6  # artefact-laden copies of each synthetic block (besides the clean original)
    episodes_per_minute: float = 6.0  # mean rate of episodes in a copy (about one window in four touched)
    duration_s: tuple[float, float] = (1.0, 3.0)  # episode length, uniform
    transient_amplitude: tuple[float, float] = (1.5, 6.0)  # bump height × local pulse amplitude
    transient_width_s: tuple[float, float] = (0.05, 0.3)  # Gaussian sigma of each side of the bump
    excursion_amplitude: tuple[float, float] = (1.0, 4.0)  # peak-to-peak × local pulse amplitude
    excursion_band_hz: tuple[float, float] = (0.4, 2.0)  # faster than breathing and slow drift
    step_amplitude: tuple[float, float] = (1.0, 3.0)  # baseline shift × local pulse amplitude
    step_rise_s: tuple[float, float] = (0.05, 0.5)  # logistic rise time
    burst_amplitude: tuple[float, float] = (0.3, 1.0)  # RMS × local pulse amplitude
    burst_band_hz: tuple[float, float] = (1.0, 8.0)
    shape_probabilities: tuple[float, float, float, float] = (0.6, 0.5, 0.3, 0.4)  # transient, excursion, step, burst


@dataclass(frozen=True)
class VariationConfig:
    """What an acceptable pulse may do without being an artefact: each copy of a clean block varies by these."""

    wander_amplitude: tuple[float, float] = (0.0, 3.0)  # slow baseline wander, peak × pulse amplitude
    wander_band_hz: tuple[float, float] = (0.03, 0.3)  # breathing and drift: slower than any movement here
    modulation_depth: tuple[float, float] = (0.0, 0.3)  # respiratory amplitude modulation
    modulation_hz: tuple[float, float] = (0.15, 0.4)
    noise_amplitude: tuple[float, float] = (0.0, 0.05)  # white sensor noise, RMS × pulse amplitude
    tempo: tuple[float, float] = (0.75, 1.3)  # time scale: the pulse rate × 1/tempo … 1/tempo
    invert_probability: float = 0.5  # oximeter channels show the pulse inverted; BVP upright
    high_pass_probability: float = 0.5  # a front end that high-passes (sharp peaks with an undershoot)
    high_pass_hz: tuple[float, float] = (0.3, 1.5)  # its cut-off (Butterworth, order 1 or 2, causal)
    low_pass_probability: float = 0.3  # a front end that smooths
    low_pass_hz: tuple[float, float] = (3.0, 8.0)


def band_noise(samples: int, rate_hz: float, band_hz: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise with power only in ``band_hz``."""
    spectrum = np.fft.rfft(rng.standard_normal(samples))
    frequencies = np.fft.rfftfreq(samples, 1.0 / rate_hz)
    spectrum[(frequencies < band_hz[0]) | (frequencies > band_hz[1])] = 0.0
    noise = np.fft.irfft(spectrum, samples)
    spread = noise.std()
    return noise / spread if spread > 0 else noise


def _pulse_amplitude(signal: np.ndarray, centre: int, rate_hz: float) -> float:
    reach = round(2.0 * rate_hz)
    around = signal[max(0, centre - reach): centre + reach]
    low, high = np.percentile(around, [5, 95])
    return max(float(high - low), 1e-6)


def _episode(length: int, rate_hz: float, amplitude: float, config: ArtefactConfig,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(added inside the episode, level carried on after it) for one episode of ``length`` samples."""
    time = np.arange(length) / rate_hz
    added = np.zeros(length)
    shapes = rng.random(4) < np.asarray(config.shape_probabilities)
    if not shapes.any():
        shapes[rng.integers(4)] = True
    taper = np.hanning(length)
    if shapes[0]:  # transient
        centre = rng.uniform(0.15, 0.85) * time[-1]
        left, right = rng.uniform(*config.transient_width_s, size=2)
        width = np.where(time < centre, left, right)
        sign = rng.choice((-1.0, 1.0))
        added += sign * rng.uniform(*config.transient_amplitude) * np.exp(-0.5 * ((time - centre) / width) ** 2)
    if shapes[1]:  # excursion
        wave = band_noise(length, rate_hz, config.excursion_band_hz, rng) * taper
        added += rng.uniform(*config.excursion_amplitude) * wave / max(np.ptp(wave), 1e-9)
    step = 0.0
    if shapes[2]:  # step
        at, rise = rng.uniform(0.2, 0.8) * time[-1], rng.uniform(*config.step_rise_s)
        step = rng.choice((-1.0, 1.0)) * rng.uniform(*config.step_amplitude)
        added += step / (1.0 + np.exp(-(time - at) / (rise / 4.0)))
    if shapes[3]:  # burst
        added += rng.uniform(*config.burst_amplitude) * band_noise(length, rate_hz, config.burst_band_hz, rng) * taper
    return added * amplitude, np.asarray(step * amplitude)


def _front_end(values: np.ndarray, rate_hz: float, config: VariationConfig, rng: np.random.Generator) -> np.ndarray:
    """``values`` through another device's analogue filters (causal Butterworth), level kept."""
    from scipy.signal import butter, lfilter, lfilter_zi

    for probability, band, kind in ((config.high_pass_probability, config.high_pass_hz, "highpass"),
                                    (config.low_pass_probability, config.low_pass_hz, "lowpass")):
        if rng.random() < probability:
            numerator, denominator = butter(int(rng.integers(1, 3)), rng.uniform(*band), kind, fs=rate_hz)
            level = values[0] if kind == "lowpass" else 0.0
            start = lfilter_zi(numerator, denominator) * (values[0] - level)
            values = lfilter(numerator, denominator, values - level, zi=start)[0] + level
    return values


def vary_clean(signal: np.ndarray, rate_hz: float, config: VariationConfig, rng: np.random.Generator) -> np.ndarray:
    """A copy of a clean ``signal`` with a new tempo, polarity, slow wander, breathing modulation and sensor noise."""
    values = np.asarray(signal, dtype=np.float64)
    tempo = rng.uniform(*config.tempo)
    source_time = np.arange(round(values.size / tempo)) * tempo
    values = np.interp(source_time, np.arange(values.size), values)
    amplitude = max(float(np.subtract(*np.percentile(values, [95, 5]))), 1e-6)
    level = np.median(values)
    time = np.arange(values.size) / rate_hz
    modulation = 1.0 + rng.uniform(*config.modulation_depth) * np.sin(
        2 * np.pi * rng.uniform(*config.modulation_hz) * time + rng.uniform(0, 2 * np.pi))
    values = level + (values - level) * modulation * (-1.0 if rng.random() < config.invert_probability else 1.0)
    values = _front_end(values, rate_hz, config, rng)
    wander = band_noise(values.size, rate_hz, config.wander_band_hz, rng)
    values += rng.uniform(*config.wander_amplitude) * amplitude * wander / max(np.abs(wander).max(), 1e-9)
    return values + rng.uniform(*config.noise_amplitude) * amplitude * rng.standard_normal(values.size)


def inject_artefacts(signal: np.ndarray, rate_hz: float, config: ArtefactConfig,
                     rng: np.random.Generator) -> tuple[np.ndarray, tuple[Segment, ...]]:
    """A copy of ``signal`` with synthetic episodes (Poisson times, never overlapping) and their segments."""
    result = np.asarray(signal, dtype=np.float64).copy()
    duration = result.size / rate_hz
    mean_gap = max(60.0 / config.episodes_per_minute - float(np.mean(config.duration_s)), 0.5)
    segments, cursor = [], rng.exponential(mean_gap)
    while True:
        length_s = rng.uniform(*config.duration_s)
        if cursor + length_s > duration:
            break
        first, length = round(cursor * rate_hz), round(length_s * rate_hz)
        amplitude = _pulse_amplitude(signal, first + length // 2, rate_hz)
        added, carried = _episode(length, rate_hz, amplitude, config, rng)
        result[first: first + length] += added
        result[first + length:] += carried
        segments.append(Segment(first / rate_hz, (first + length) / rate_hz, SegmentKind.ARTEFACT))
        cursor += length_s + rng.exponential(mean_gap)
    return result, tuple(segments)
