"""Waveforms for the synthetic ECG generator: one record's beat templates, and noise.

Beat templates (N, S, V and F shapes of one record):

Every template is a float64 array sampled at the record's rate, baseline-free
(zero at both ends), with its main deflection at index ``r_index``: N's R peak
is +1 and a V beat's main deflection is +-0.9 to 2.2 (either polarity).

* N comes straight from neurokit2's ECGSYN model (McSharry et al. 2003) at the
  record's heart rate, with per-record jitter of the P, Q, R, S, T wave angles,
  amplitudes and widths.
* The P wave alone is isolated by running ECGSYN a second time with the same
  seed and the P amplitude set to zero: the model's z equation is linear in the
  wave forcing, so the difference of the two runs is the P wave (solver noise
  at the QRS is faded out).
* S keeps N's narrow QRS-T and replaces its P wave by an ectopic one: inverted,
  flat or absent, biphasic, or only slightly changed, with a shifted PR interval.
* V is an ECGSYN beat specified in the time domain: no P wave, a broad notched
  main deflection (the P slot is reused for the notch), a discordant T wave and
  a polarity of either sign in this lead.
* F is not built here; it is a per-beat weighted mix of N and V (see ``fusion``).

Recording artefacts (``strip_noise``): respiratory baseline wander, EMG, powerline
hum and electrode motion, mixed in random power shares; ``qrs_signal_power`` is
the signal power the SNR refers to (the MIT-BIH Noise Stress Test convention).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from scipy import signal

from runtime.errors import EdgemedError

logger = logging.getLogger(__name__)

_DEFAULT_ANGLES_DEG = np.array([-70.0, -15.0, 0.0, 15.0, 100.0])  # P, Q, R, S, T (ECGSYN defaults)
_DEFAULT_AMPLITUDES = np.array([1.2, -5.0, 30.0, -7.5, 0.75])
_DEFAULT_WIDTHS_RAD = np.array([0.25, 0.1, 0.1, 0.1, 0.4])
_VENTRICULAR_RR_S = 1.2  # V templates are simulated at 50 bpm: an ectopic focus ignores the sinus rate
_SIMULATED_CYCLES = 4  # ECGSYN starts at an R peak with a start transient; cycles 2 and 3 are compared
_SIMULATION_ATTEMPTS = 6  # heart-rate nudges tried before giving up on a parameter set
_CYCLE_MISMATCH_LIMIT = 0.15  # largest mean |cycle 2 - cycle 3| relative to R; glitches give 0.3 and more


@dataclass(frozen=True)
class RecordTemplates:
    """One record's beat shapes, all centred on the same R index."""

    normal: np.ndarray
    p_wave: np.ndarray  # the P wave alone, part of ``normal``
    supraventricular: np.ndarray
    ventricular: tuple[np.ndarray, ...]  # one or two ectopic foci
    r_index: int


def _simulate_cycle(
    heart_rate_bpm: float,
    sample_rate_hz: int,
    angles_deg: np.ndarray,
    amplitudes: np.ndarray,
    widths_rad: np.ndarray,
    random_state: int,
    half_length: int,
) -> np.ndarray:
    """One ECGSYN cycle around its third R peak, baseline removed, R scaled to +1.

    ECGSYN's adaptive ODE solver occasionally steps over a narrow wave, which
    leaves a long exponential tail. Two consecutive cycles of a constant-rate run
    must agree, so a disagreement marks such a glitch; the run is then repeated
    at a heart rate 0.3 % higher, which changes the solver's steps. (With
    ``heart_rate_std=0`` the seed does not change the trace; it is passed anyway.)
    """
    import neurokit2  # imported here: it takes seconds, and only generation needs it

    for attempt in range(_SIMULATION_ATTEMPTS):
        rate = heart_rate_bpm * (1.0 + 0.003 * attempt)
        trace = neurokit2.ecg_simulate(
            duration=_SIMULATED_CYCLES * 60.0 / rate,
            sampling_rate=sample_rate_hz,
            heart_rate=rate,
            heart_rate_std=0.0,
            noise=0.0,
            method="ecgsyn",
            random_state=random_state,
            ti=tuple(angles_deg),
            ai=tuple(amplitudes),
            bi=tuple(widths_rad),
        )
        trace = np.asarray(trace, dtype=np.float64)
        second = _cut_cycle(trace, 1, rate, sample_rate_hz, half_length)
        third = _cut_cycle(trace, 2, rate, sample_rate_hz, half_length)
        mismatch = float(np.mean(np.abs(second - third)))
        if mismatch < _CYCLE_MISMATCH_LIMIT:
            return third
        logger.debug("ECGSYN cycle mismatch %.3f on attempt %d; retrying", mismatch, attempt)
    raise EdgemedError(
        f"neurokit2's ECGSYN produced no stable beat in {_SIMULATION_ATTEMPTS} attempts",
        expected="two consecutive simulated cycles that agree",
        fix="generate with another seed, and report the seed as a bug",
    )


def _cut_cycle(
    trace: np.ndarray, cycle_index: int, heart_rate_bpm: float, sample_rate_hz: int, half_length: int
) -> np.ndarray:
    """The cycle around R peak number ``cycle_index + 1``, detrended, R scaled to +1."""
    expected_r = round((cycle_index + 1) * 60.0 / heart_rate_bpm * sample_rate_hz)
    search_start = expected_r - half_length // 2
    r_position = search_start + int(np.argmax(trace[search_start : expected_r + half_length // 2]))
    cycle = trace[r_position - half_length : r_position + half_length + 1]
    cycle = cycle - np.linspace(cycle[:3].mean(), cycle[-3:].mean(), cycle.size)
    return cycle / cycle[half_length]


def _jittered_sinus_parameters(
    rng: np.random.Generator, heart_rate_bpm: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ECGSYN defaults with per-record changes of wave position, size and width.

    The P wave is placed 0.13-0.20 s before R whatever the rate (a physiological
    PR interval); ECGSYN's own rate scaling would push it out of the beat window
    at slow rates.
    """
    angles = _DEFAULT_ANGLES_DEG + rng.normal(0.0, [0.0, 2.0, 0.0, 2.5, 8.0])
    degrees_per_second = 360.0 * heart_rate_bpm / 60.0
    p_angle_scale = (heart_rate_bpm / 60.0) ** 0.25  # ECGSYN multiplies the P angle by this
    angles[0] = -rng.uniform(0.13, 0.20) * degrees_per_second / p_angle_scale
    widths = _DEFAULT_WIDTHS_RAD * np.exp(rng.normal(0.0, [0.1, 0.1, 0.1, 0.1, 0.12]))
    # A wave's height is about a * b**2: compensate the width change so that only the
    # multiplier below changes heights, clipped so that R stays dominant (as in lead II).
    # P and Q vary most between patients and electrode placements: real single-lead
    # recordings (e.g. the PLUX chest leads in biosignalsnotebooks) show P waves at a
    # quarter of ECGSYN's default, so sinus beats with small P waves must be normal too.
    log_heights = rng.normal(0.0, [0.5, 0.4, 0.1, 0.25, 0.3])
    height_factors = np.exp(np.clip(log_heights, [-1.4, -1.0, -0.6, -0.6, -0.6], 0.35))
    amplitudes = _DEFAULT_AMPLITUDES * height_factors * (_DEFAULT_WIDTHS_RAD / widths) ** 2
    return angles, amplitudes, widths


def _time_domain_to_ecgsyn(
    offsets_s: np.ndarray, peaks: np.ndarray, widths_s: np.ndarray, rr_s: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Wave offsets, peak heights and Gaussian widths in seconds -> ECGSYN ti, ai, bi.

    Inverts ECGSYN's heart-rate scaling; a wave's z peak is about a * b**2 / omega.
    """
    omega = 2.0 * math.pi / rr_s
    rate_factor = math.sqrt(1.0 / rr_s)  # ECGSYN's sqrt(heart rate / 60 bpm)
    angle_scale = np.array([math.sqrt(rate_factor), rate_factor, 1.0, rate_factor, math.sqrt(rate_factor)])
    widths_effective = widths_s * omega
    angles_deg = np.degrees(offsets_s * omega / angle_scale)
    amplitudes = peaks * omega / widths_effective**2
    return angles_deg, amplitudes, widths_effective / rate_factor


def _ventricular_cycle(
    rng: np.random.Generator, sample_rate_hz: int, half_length: int, random_state: int
) -> np.ndarray:
    """A wide, P-less beat with a notched main deflection and a discordant T wave."""
    notch_side = rng.choice([-1.0, 1.0])
    offsets = np.array(
        [
            notch_side * rng.uniform(0.04, 0.07),
            -rng.uniform(0.05, 0.08),
            0.0,
            rng.uniform(0.07, 0.11),
            rng.uniform(0.26, 0.36),
        ]
    )
    peaks = np.array(
        [rng.uniform(0.35, 0.75), -rng.uniform(0.0, 0.15), 1.0, -rng.uniform(0.1, 0.35), -rng.uniform(0.25, 0.5)]
    )
    widths = np.array(
        [
            rng.uniform(0.03, 0.045),
            rng.uniform(0.015, 0.025),
            rng.uniform(0.045, 0.065),
            rng.uniform(0.03, 0.045),
            rng.uniform(0.06, 0.09),
        ]
    )
    angles, amplitudes, widths_rad = _time_domain_to_ecgsyn(offsets, peaks, widths, _VENTRICULAR_RR_S)
    cycle = _simulate_cycle(
        60.0 / _VENTRICULAR_RR_S, sample_rate_hz, angles, amplitudes, widths_rad, random_state, half_length
    )
    polarity = 1.0 if rng.random() < 0.65 else -1.0
    return polarity * rng.uniform(0.9, 2.2) * _recentre_on_peak(cycle, half_length)


def _recentre_on_peak(cycle: np.ndarray, half_length: int) -> np.ndarray:
    """Shift so that the largest deflection sits at the centre, rescale it to +1."""
    shifted = _shift(cycle, half_length - int(np.argmax(cycle)))
    return shifted / shifted[half_length]


def _shift(values: np.ndarray, samples: int) -> np.ndarray:
    """Delay (positive) or advance (negative) by whole samples, filling with zeros."""
    shifted = np.zeros_like(values)
    if samples >= 0:
        shifted[samples:] = values[: values.size - samples]
    else:
        shifted[:samples] = values[-samples:]
    return shifted


def _ectopic_atrial_p_wave(p_wave: np.ndarray, rng: np.random.Generator, sample_rate_hz: int) -> np.ndarray:
    """An S beat's P wave from an ectopic atrial focus: another axis and PR interval.

    Inverted and later (low atrial focus, shorter PR), flat or absent (hidden),
    biphasic, or only subtly smaller with a small PR change (high atrial focus).
    """
    kind = str(rng.choice(["inverted", "flat", "biphasic", "subtle"], p=[0.4, 0.3, 0.15, 0.15]))
    delay_s, scale = {
        "inverted": (rng.uniform(0.0, 0.04), -rng.uniform(0.4, 1.0)),
        "flat": (rng.uniform(-0.02, 0.02), rng.uniform(0.0, 0.35)),
        "biphasic": (rng.uniform(-0.01, 0.03), rng.uniform(0.6, 1.0)),
        "subtle": (rng.uniform(-0.03, 0.03), rng.uniform(0.55, 0.85)),
    }[kind]
    shape = p_wave
    if kind == "biphasic":
        lobe = round(0.02 * sample_rate_hz)
        shape = _shift(p_wave, -lobe) - _shift(p_wave, lobe)
        shape = shape * np.max(np.abs(p_wave)) / max(float(np.max(np.abs(shape))), 1e-12)
    smoothing = signal.windows.hann(max(3, round(0.02 * sample_rate_hz)))
    smoothed = np.convolve(_shift(shape, round(delay_s * sample_rate_hz)), smoothing / smoothing.sum(), mode="same")
    return scale * smoothed


def _before_qrs(difference: np.ndarray, q_wave_s: float, sample_rate_hz: int) -> np.ndarray:
    """The P wave from the difference of two runs: solver noise at the QRS is faded out.

    The fade (20 ms) ends 10 ms before the Q wave's peak.
    """
    centre = difference.size // 2
    end = centre + round((q_wave_s - 0.01) * sample_rate_hz)
    fade = round(0.02 * sample_rate_hz)
    mask = np.zeros(difference.size)
    mask[: end - fade] = 1.0
    mask[end - fade : end] = 0.5 + 0.5 * np.cos(np.linspace(0.0, np.pi, fade))
    return difference * mask


def _padded(cycle: np.ndarray, half_length: int) -> np.ndarray:
    """Zero-pad a centred cycle to ``2 * half_length + 1`` samples."""
    pad = half_length - cycle.size // 2
    return np.pad(cycle, (pad, pad))


def record_templates(rng: np.random.Generator, heart_rate_bpm: float, sample_rate_hz: int) -> RecordTemplates:
    """Draw one record's morphology and simulate its beat templates."""
    rr_s = 60.0 / heart_rate_bpm
    sinus_half = round(0.5 * rr_s * sample_rate_hz)
    ventricular_half = round(0.5 * _VENTRICULAR_RR_S * sample_rate_hz)
    half_length = max(sinus_half, ventricular_half)
    angles, amplitudes, widths = _jittered_sinus_parameters(rng, heart_rate_bpm)
    seed = int(rng.integers(2**31 - 1))
    normal = _simulate_cycle(heart_rate_bpm, sample_rate_hz, angles, amplitudes, widths, seed, sinus_half)
    without_p = amplitudes.copy()
    without_p[0] = 0.0
    no_p = _simulate_cycle(heart_rate_bpm, sample_rate_hz, angles, without_p, widths, seed, sinus_half)
    q_wave_s = angles[1] / 360.0 * rr_s * math.sqrt(heart_rate_bpm / 60.0)  # ECGSYN's rate scaling of Q
    p_wave = _padded(_before_qrs(normal - no_p, q_wave_s, sample_rate_hz), half_length)
    normal = _padded(normal, half_length)
    supraventricular = normal - p_wave + _ectopic_atrial_p_wave(p_wave, rng, sample_rate_hz)
    foci = 1 if rng.random() < 0.7 else 2
    ventricular = tuple(
        _padded(
            _ventricular_cycle(rng, sample_rate_hz, ventricular_half, int(rng.integers(2**31 - 1))),
            half_length,
        )
        for _ in range(foci)
    )
    return RecordTemplates(normal, p_wave, supraventricular, ventricular, half_length)


def fusion(templates: RecordTemplates, ventricular: np.ndarray, normal_weight: float) -> np.ndarray:
    """A fusion beat: sinus P wave, then a weighted mix of the N and V QRS-T complexes."""
    normal_complex = templates.normal - templates.p_wave
    return templates.p_wave + normal_weight * normal_complex + (1.0 - normal_weight) * ventricular


# Recording artefacts ---------------------------------------------------------


def qrs_signal_power(signal_values: np.ndarray, r_samples: np.ndarray, sample_rate_hz: int) -> float:
    """Signal power as in the MIT-BIH Noise Stress Test: (median QRS peak-to-peak)**2 / 8.

    Peak-to-peak is taken within 0.1 s of each R peak of the clean signal. Unlike
    the variance, this does not depend on the heart rate.
    """
    reach = round(0.1 * sample_rate_hz)
    complexes = signal_values[r_samples[:, None] + np.arange(-reach, reach + 1)[None, :]]
    return float(np.median(np.ptp(complexes, axis=1)) ** 2 / 8.0)


def _unit_power(values: np.ndarray) -> np.ndarray:
    return values / math.sqrt(float(np.mean(values**2)) + 1e-30)


def _lowpassed_noise(size: int, cutoff_hz: float, sample_rate_hz: int, rng: np.random.Generator) -> np.ndarray:
    sections = signal.butter(2, cutoff_hz, btype="lowpass", fs=sample_rate_hz, output="sos")
    return _unit_power(signal.sosfiltfilt(sections, rng.standard_normal(size)))


def _baseline_wander(seconds: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Respiration (0.12-0.45 Hz, with a harmonic) plus a slow drift below 0.08 Hz."""
    breathing_hz = rng.uniform(0.12, 0.45)
    phases = rng.uniform(0, 2 * np.pi, 3)
    return (
        np.sin(2 * np.pi * breathing_hz * seconds + phases[0])
        + rng.uniform(0.1, 0.4) * np.sin(4 * np.pi * breathing_hz * seconds + phases[1])
        + rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * rng.uniform(0.01, 0.08) * seconds + phases[2])
    )


def _muscle_noise(size: int, sample_rate_hz: int, rng: np.random.Generator) -> np.ndarray:
    """EMG: white noise band-limited to 20-150 Hz, amplitude-modulated into bursts."""
    band = (20.0, min(150.0, 0.45 * sample_rate_hz))
    sections = signal.butter(4, band, btype="bandpass", fs=sample_rate_hz, output="sos")
    broadband = signal.sosfiltfilt(sections, rng.standard_normal(size))
    envelope = np.exp(rng.uniform(0.2, 0.8) * _lowpassed_noise(size, 0.5, sample_rate_hz, rng))
    return broadband * envelope


def _powerline(seconds: np.ndarray, sample_rate_hz: int, rng: np.random.Generator) -> np.ndarray:
    """50 or 60 Hz mains with weaker harmonics below Nyquist and a slow amplitude swing."""
    mains_hz = float(rng.choice([50.0, 60.0]))
    weights = (1.0, rng.uniform(0.05, 0.3), rng.uniform(0.02, 0.15))
    hum = sum(
        weight * np.sin(2 * np.pi * harmonic * mains_hz * seconds + rng.uniform(0, 2 * np.pi))
        for harmonic, weight in enumerate(weights, start=1)
        if harmonic * mains_hz < 0.45 * sample_rate_hz
    )
    return hum * (1.0 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.02, 0.2) * seconds))


def _electrode_motion(size: int, sample_rate_hz: int, rng: np.random.Generator) -> np.ndarray:
    """0.5-10 Hz noise: a low continuous level plus bursts (0.2-1.2 s, 0.1-0.5 per second)."""
    envelope = np.full(size, rng.uniform(0.05, 0.2))
    bursts = max(1, rng.poisson(rng.uniform(0.1, 0.5) * size / sample_rate_hz))
    for _ in range(bursts):
        length = min(size, round(rng.uniform(0.2, 1.2) * sample_rate_hz))
        start = int(rng.integers(0, size - length + 1))
        envelope[start : start + length] += signal.windows.hann(length)
    sections = signal.butter(2, (0.5, 10.0), btype="bandpass", fs=sample_rate_hz, output="sos")
    return signal.sosfiltfilt(sections, rng.standard_normal(size)) * envelope


def strip_noise(size: int, sample_rate_hz: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-power mix of the four artefacts with random power shares."""
    seconds = np.arange(size) / sample_rate_hz
    components = (
        _baseline_wander(seconds, rng),
        _muscle_noise(size, sample_rate_hz, rng),
        _powerline(seconds, sample_rate_hz, rng),
        _electrode_motion(size, sample_rate_hz, rng),
    )
    shares = rng.dirichlet(np.ones(len(components)))
    mixed = sum(math.sqrt(share) * _unit_power(part) for share, part in zip(shares, components, strict=True))
    return _unit_power(mixed)
