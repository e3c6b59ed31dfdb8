"""SYNTHETIC labelled single-lead ECG beats for AAMI beat classification (N, S, V, F).

No labelled arrhythmia database installs offline, so this module generates one.
Nothing here is patient data, and a model trained on it is a pipeline
demonstration, not a clinically validated classifier.

What is modelled:

* Records: patient-like parameter sets with their own sinus rate (50-120 bpm),
  gain (0.5-2x), baseline offset and P-QRS-T morphology (neurokit2's ECGSYN
  model, McSharry et al. 2003, with jittered wave angles, amplitudes, widths;
  see ``ecg_morphology``).
* Rhythm: a sinus clock with respiratory sinus arrhythmia and slow drift.
  N beats fall on the clock. S beats are premature (coupling 60-88 % of the
  running RR) and reset the clock. V beats are premature (55-80 %) and block
  the next sinus beat (full compensatory pause) unless it falls outside their
  refractory period. F beats fire with the sinus beat (92-100 %).
* Morphology: N is ECGSYN's beat with a 0.13-0.20 s P-to-R interval; S keeps
  N's narrow QRS with an ectopic P wave (inverted, flat or absent, biphasic, or
  subtly changed); V has no P wave, a wide notched QRS (half-amplitude width
  about 105-150 ms, so a QRS duration well over 120 ms), a discordant T wave,
  either polarity and often a larger amplitude; F is the record's sinus P wave
  followed by a mix of its N and V complexes (N weight 0.3-0.7).
* Per beat: small random amplitude changes and a respiratory swing of the
  electrical axis; per strip (50 beats): SNR and noise mix.
* Beats are placed on continuous strips (overlapping waves add up), so each
  window carries its real context: the previous beat's tail and the next beat.
* Noise over the whole strip at a target SNR (6-30 dB): respiratory baseline
  wander, band-limited EMG (20-150 Hz) with bursts, 50/60 Hz powerline with
  harmonics and bursty low-frequency electrode motion, mixed in random shares.
  The SNR holds over the span the windows are cut from and follows the MIT-BIH
  Noise Stress Test: signal power is the squared median QRS peak-to-peak
  amplitude over 8, so it does not depend on the heart rate.
* Windows: ``window_before_s`` + ``window_after_s`` around each R peak (the main
  QRS deflection, negative for some V foci), R at ``r_peak_index`` (90 of 252).

Not modelled: other leads, conduction blocks, atrial fibrillation, paced beats,
ST changes, beat-to-beat QT adaptation, and the unclassifiable class Q.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib.metadata import version

import numpy as np

from pipeline.errors import DataError
from pipeline.scenarios.ecg_arrhythmia.morphology import (
    RecordTemplates,
    fusion,
    qrs_signal_power,
    record_templates,
    strip_noise,
)

logger = logging.getLogger(__name__)

CLASS_NAMES: tuple[str, ...] = ("N", "S", "V", "F")
CLASS_COUNT = len(CLASS_NAMES)
NORMAL, SUPRAVENTRICULAR, VENTRICULAR, FUSION = range(CLASS_COUNT)
_WARM_UP_BEATS = 2  # unlabelled sinus beats that start each strip, so every beat has a preceding RR
_LEAD_IN_S = 1.0  # silence before the first beat: room for the longest template half
_REFRACTORY_FRACTION = 0.6  # ventricles stay refractory this share of a cycle after a V beat


@dataclass(frozen=True)
class EcgSynthesisConfig:
    """How much synthetic ECG to generate and how varied it is."""

    beats: int = 12_000  # total labelled beats over all records; 15-25 s on 2 cores
    records: int = 60  # patient-like parameter sets (200 beats each at the default beats)
    sample_rate_hz: int = 360  # the MIT-BIH Arrhythmia Database rate most beat classifiers assume
    window_before_s: float = 0.25  # window start before the R peak: covers P wave and PR segment
    window_after_s: float = 0.45  # window end after the R peak: covers QRS and T wave
    class_fractions: tuple[float, float, float, float] = (0.55, 0.15, 0.18, 0.12)  # N, S, V, F: Holter-like
    snr_db_range: tuple[float, float] = (6.0, 30.0)  # per-strip SNR: from very noisy ambulatory to clean
    heart_rate_range_bpm: tuple[float, float] = (50.0, 120.0)  # per-record sinus rate: brady- to tachycardia
    gain_range: tuple[float, float] = (0.5, 2.0)  # per-record amplitude factor (electrode placement, body habitus)
    baseline_offset_max_mv: float = 0.5  # per-record DC offset drawn from +-this (electrode half-cell mismatch)
    beats_per_strip: int = 50  # labelled beats per continuous strip; each strip gets its own SNR and noise mix
    supraventricular_coupling: tuple[float, float] = (0.60, 0.88)  # S RR / running RR; top overlaps sinus jitter
    ventricular_coupling: tuple[float, float] = (0.55, 0.80)  # V RR / running RR (typical PVC coupling)
    fusion_coupling: tuple[float, float] = (0.92, 1.00)  # F RR / running RR: the focus fires with the sinus beat
    fusion_normal_weight: tuple[float, float] = (0.3, 0.7)  # share of N in an F beat; the ends border N and V
    add_noise: bool = True  # False gives the clean strips of the same seed (tests measure SNR against them)
    # A device's R-peak detector is never sample-exact: windows are cut up to this far from the true R peak
    # (uniform, per beat) so the model does not learn perfect alignment (a real detector lands ~15 ms off).
    alignment_jitter_s: float = 0.02


@dataclass(frozen=True)
class SyntheticBeats:
    """Beat windows with labels and what each beat was generated from."""

    windows: np.ndarray  # float32 (n, window_samples, 1), millivolt-like, not normalised
    labels: np.ndarray  # int64 (n,), index into CLASS_NAMES
    record_ids: np.ndarray  # int64 (n,), the record (patient-like parameter set) of each beat
    snr_db: np.ndarray  # float32 (n,), the SNR requested for the beat's strip
    provenance: dict  # JSON-serialisable description; ``synthetic`` is True
    preceding_rr_s: np.ndarray  # float32 (n,), seconds from the previous beat's R peak
    following_rr_s: np.ndarray  # float32 (n,), seconds to the next beat's R peak (compensatory pauses)


@dataclass(frozen=True)
class _Record:
    """One patient-like parameter set."""

    sinus_rr_s: float
    gain: float
    offset_mv: float
    templates: RecordTemplates


@dataclass(frozen=True)
class _Strip:
    windows: np.ndarray
    labels: np.ndarray
    preceding_rr_s: np.ndarray
    following_rr_s: np.ndarray
    snr_db: float


def window_samples(config: EcgSynthesisConfig) -> int:
    """Samples per beat window: 252 at the defaults (90 before the R peak, 162 from it on)."""
    return r_peak_index(config) + round(config.window_after_s * config.sample_rate_hz)


def r_peak_index(config: EcgSynthesisConfig) -> int:
    """Index of the R peak inside each window: 90 at the defaults."""
    return round(config.window_before_s * config.sample_rate_hz)


def _require(condition: bool, what: str, expected: str, fix: str) -> None:
    if not condition:
        raise DataError(what, expected=expected, fix=fix)


def _require_range(values: tuple[float, float], name: str, low: float, high: float) -> None:
    _require(
        len(values) == 2 and low <= values[0] <= values[1] <= high and all(map(math.isfinite, values)),
        f"EcgSynthesisConfig.{name} is {values!r}",
        f"a (low, high) pair with {low} <= low <= high <= {high}",
        f"pass e.g. {name}={(EcgSynthesisConfig.__dataclass_fields__[name].default)!r}",
    )


def validate_config(config: EcgSynthesisConfig) -> None:
    """Raise DataError naming the first field that cannot produce a dataset."""
    fractions = tuple(config.class_fractions)
    _require(
        len(fractions) == CLASS_COUNT and min(fractions) >= 0 and abs(sum(fractions) - 1.0) < 1e-6,
        f"class_fractions {fractions!r} do not describe {CLASS_COUNT} classes",
        f"{CLASS_COUNT} non-negative fractions for {', '.join(CLASS_NAMES)} summing to 1",
        "divide each fraction by their sum, e.g. (0.55, 0.15, 0.18, 0.12)",
    )
    _require(
        config.beats >= CLASS_COUNT and config.records >= 1 and config.beats >= config.records,
        f"{config.beats} beats over {config.records} records is too few",
        f"beats >= {CLASS_COUNT} (one per class), records >= 1 and beats >= records",
        "raise beats or lower records",
    )
    _require(
        config.sample_rate_hz >= 250,
        f"sample_rate_hz {config.sample_rate_hz} cannot carry a QRS complex and EMG noise",
        "at least 250 Hz (360 Hz is the MIT-BIH rate)",
        "use sample_rate_hz=360",
    )
    window_s = config.window_before_s + config.window_after_s
    _require(
        config.window_before_s > 0 and config.window_after_s > 0 and 0.2 <= window_s <= 1.2,
        f"beat window of {config.window_before_s} s before and {config.window_after_s} s after R",
        "both positive, 0.2 s to 1.2 s in total, to hold one QRS complex and its T wave",
        "use window_before_s=0.25 and window_after_s=0.45",
    )
    _require(
        config.beats_per_strip >= 1 and 0.0 <= config.baseline_offset_max_mv <= 5.0,
        f"beats_per_strip {config.beats_per_strip} / baseline_offset_max_mv {config.baseline_offset_max_mv}",
        "beats_per_strip >= 1 and an offset between 0 and 5 mV",
        "use beats_per_strip=50 and baseline_offset_max_mv=0.5",
    )
    _require_range(config.snr_db_range, "snr_db_range", -20.0, 80.0)
    _require_range(config.heart_rate_range_bpm, "heart_rate_range_bpm", 30.0, 200.0)
    _require_range(config.gain_range, "gain_range", 0.01, 100.0)
    _require_range(config.supraventricular_coupling, "supraventricular_coupling", 0.3, 0.99)
    _require_range(config.ventricular_coupling, "ventricular_coupling", 0.3, 0.99)
    _require_range(config.fusion_coupling, "fusion_coupling", 0.8, 1.0)
    _require_range(config.fusion_normal_weight, "fusion_normal_weight", 0.0, 1.0)


def class_counts(config: EcgSynthesisConfig) -> np.ndarray:
    """Beats per class: the fractions of ``beats``, rounded by largest remainder."""
    exact = np.asarray(config.class_fractions, dtype=np.float64) * config.beats
    counts = np.floor(exact).astype(np.int64)
    shortfall = config.beats - int(counts.sum())
    counts[np.argsort(counts - exact, kind="stable")[:shortfall]] += 1
    return counts


def _sinus_cycles(beat_count: int, rr_s: float, rng: np.random.Generator) -> np.ndarray:
    """Sinus cycle lengths: respiratory sinus arrhythmia, a slow random drift and jitter."""
    breathing = np.sin(2 * np.pi * np.arange(beat_count) / rng.uniform(3.0, 6.0) + rng.uniform(0, 2 * np.pi))
    drift = np.cumsum(rng.normal(0.0, 0.004, beat_count))
    jitter = rng.normal(0.0, 0.01, beat_count)
    return rr_s * (1.0 + rng.uniform(0.0, 0.05) * breathing + drift - drift.mean() + jitter)


def _beat_times(sequence: np.ndarray, rr_s: float, config: EcgSynthesisConfig, rng: np.random.Generator) -> np.ndarray:
    """R-peak times in seconds, driven by a sinus clock that ectopic beats reset or skip."""
    times = np.empty(sequence.size)
    previous, next_sinus = 0.0, _LEAD_IN_S
    for index, (label, cycle) in enumerate(zip(sequence, _sinus_cycles(sequence.size, rr_s, rng), strict=True)):
        latest_ectopic = next_sinus - 0.08 * cycle  # an ectopic beat comes before the sinus beat
        if label == NORMAL:
            time, next_sinus = next_sinus, next_sinus + cycle
        elif label == SUPRAVENTRICULAR:  # premature and resets the sinus node
            time = min(previous + rng.uniform(*config.supraventricular_coupling) * cycle, latest_ectopic)
            next_sinus = time + cycle * rng.uniform(1.0, 1.08)
        elif label == VENTRICULAR:  # premature; a sinus beat in its refractory period is blocked
            time = min(previous + rng.uniform(*config.ventricular_coupling) * cycle, latest_ectopic)
            while next_sinus < time + _REFRACTORY_FRACTION * cycle:
                next_sinus += cycle
        else:  # fusion: the focus fires as the sinus impulse arrives
            time = next_sinus - (1.0 - rng.uniform(*config.fusion_coupling)) * cycle
            next_sinus += cycle
        times[index] = previous = time
    return times


def _beat_shape(
    label: int, templates: RecordTemplates, config: EcgSynthesisConfig, rng: np.random.Generator
) -> np.ndarray:
    if label in (NORMAL, SUPRAVENTRICULAR):
        return templates.normal if label == NORMAL else templates.supraventricular
    focus = templates.ventricular[int(rng.integers(len(templates.ventricular)))]
    if label == VENTRICULAR:
        return focus
    return fusion(templates, focus, rng.uniform(*config.fusion_normal_weight))


def _clean_strip(
    sequence: np.ndarray, r_samples: np.ndarray, record: _Record, config: EcgSynthesisConfig, rng: np.random.Generator
) -> np.ndarray:
    """Templates placed at their R samples and summed (overlapping waves add up).

    Each beat's amplitude varies a little at random and with breathing (the
    heart's electrical axis swings with respiration).
    """
    half = record.templates.r_index
    strip = np.zeros(int(r_samples[-1]) + half + round(_LEAD_IN_S * config.sample_rate_hz))
    breathing_hz, phase, axis_swing = rng.uniform(0.15, 0.4), rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.1)
    for label, r_sample in zip(sequence, r_samples, strict=True):
        breathing = np.sin(2 * np.pi * breathing_hz * r_sample / config.sample_rate_hz + phase)
        amplitude = record.gain * np.exp(rng.normal(0.0, 0.04)) * (1.0 + axis_swing * breathing)
        strip[r_sample - half : r_sample + half + 1] += amplitude * _beat_shape(label, record.templates, config, rng)
    return strip


def _synthesize_strip(
    labels: np.ndarray,
    record: _Record,
    config: EcgSynthesisConfig,
    rhythm_rng: np.random.Generator,
    noise_rng: np.random.Generator,
) -> _Strip:
    """One continuous strip: warm-up beats, ``labels``, a trailing sinus beat; noise; windows."""
    snr_db = float(rhythm_rng.uniform(*config.snr_db_range))
    sequence = np.concatenate([np.full(_WARM_UP_BEATS, NORMAL), labels, [NORMAL]])
    times = _beat_times(sequence, record.sinus_rr_s, config, rhythm_rng)
    r_samples = np.round(times * config.sample_rate_hz).astype(np.int64)
    clean = _clean_strip(sequence, r_samples, record, config, rhythm_rng)
    labelled = r_samples[_WARM_UP_BEATS:-1]
    strip = clean + record.offset_mv
    offsets = np.arange(window_samples(config)) - r_peak_index(config)
    if config.add_noise:  # the SNR holds over the span the windows are cut from
        noise = strip_noise(clean.size, config.sample_rate_hz, noise_rng)
        noise_power = float(np.mean(noise[labelled[0] + offsets[0] : labelled[-1] + offsets[-1] + 1] ** 2))
        signal_power = qrs_signal_power(clean, labelled, config.sample_rate_hz)
        strip += noise * math.sqrt(signal_power / 10 ** (snr_db / 10) / noise_power)
    rr_s = np.diff(r_samples) / config.sample_rate_hz
    jitter_limit = round(config.alignment_jitter_s * config.sample_rate_hz)
    centres = labelled + rhythm_rng.integers(-jitter_limit, jitter_limit + 1, size=labelled.size)
    return _Strip(
        windows=strip[centres[:, None] + offsets[None, :]],
        labels=labels,
        preceding_rr_s=rr_s[_WARM_UP_BEATS - 1 : -1],
        following_rr_s=rr_s[_WARM_UP_BEATS:],
        snr_db=snr_db,
    )


def _synthesize_record(labels: np.ndarray, config: EcgSynthesisConfig, seed: int) -> list[_Strip]:
    """Independent streams for morphology, rhythm and noise: ``add_noise`` changes only the noise."""
    morphology_rng, rhythm_rng, noise_rng = (
        np.random.default_rng(child) for child in np.random.SeedSequence(seed).spawn(3)
    )
    heart_rate = morphology_rng.uniform(*config.heart_rate_range_bpm)
    record = _Record(
        sinus_rr_s=60.0 / heart_rate,
        gain=float(np.exp(morphology_rng.uniform(*np.log(config.gain_range)))),
        offset_mv=morphology_rng.uniform(-1.0, 1.0) * config.baseline_offset_max_mv,
        templates=record_templates(morphology_rng, heart_rate, config.sample_rate_hz),
    )
    chunks = np.array_split(labels, math.ceil(labels.size / config.beats_per_strip))
    return [_synthesize_strip(chunk, record, config, rhythm_rng, noise_rng) for chunk in chunks]


def _provenance(config: EcgSynthesisConfig, seed: int) -> dict:
    return {
        "synthetic": True,
        "generator": (
            "edgemed pipeline.scenarios.ecg_arrhythmia.synthesis (neurokit2 ECGSYN templates on rhythm strips)"
        ),
        "method": (
            f"SYNTHETIC single-lead ECG at {config.sample_rate_hz} Hz, no patient data. Per-record ECGSYN sinus "
            "morphology; S premature with an ectopic P wave; V premature, wide notched QRS, no P wave, "
            "discordant T wave, compensatory pause; F a mix of N and V; respiratory sinus arrhythmia; baseline "
            "wander, EMG, powerline and electrode-motion noise at "
            f"{config.snr_db_range[0]}-{config.snr_db_range[1]} dB SNR (MIT-BIH NST definition)."
        ),
        "neurokit2_version": version("neurokit2"),
        "licence": "generated by edgemed",
        "class_names": list(CLASS_NAMES),
        "seed": int(seed),
        "config": _json_ready(asdict(config)),
    }


def _json_ready(values: dict) -> dict:
    return {key: list(value) if isinstance(value, tuple) else value for key, value in values.items()}


def synthesize_beats(
    config: EcgSynthesisConfig, seed: int, progress: Callable[[int, int], None] | None = None
) -> SyntheticBeats:
    """Generate ``config.beats`` labelled beat windows; the same seed gives identical arrays."""
    validate_config(config)
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(CLASS_COUNT), class_counts(config)))
    record_seeds = rng.integers(0, 2**63 - 1, size=config.records)
    strips: list[_Strip] = []
    record_ids: list[np.ndarray] = []
    for record_id, (record_labels, record_seed) in enumerate(
        zip(np.array_split(labels, config.records), record_seeds, strict=True)
    ):
        record_strips = _synthesize_record(record_labels, config, int(record_seed))
        strips.extend(record_strips)
        record_ids.extend(np.full(strip.labels.size, record_id, dtype=np.int64) for strip in record_strips)
        if progress is not None:
            progress(record_id + 1, config.records)
    logger.debug("synthesised %d beats in %d strips", config.beats, len(strips))
    return SyntheticBeats(
        windows=np.concatenate([strip.windows for strip in strips]).astype(np.float32)[:, :, None],
        labels=np.concatenate([strip.labels for strip in strips]).astype(np.int64),
        record_ids=np.concatenate(record_ids),
        snr_db=np.concatenate([np.full(strip.labels.size, strip.snr_db) for strip in strips]).astype(np.float32),
        preceding_rr_s=np.concatenate([strip.preceding_rr_s for strip in strips]).astype(np.float32),
        following_rr_s=np.concatenate([strip.following_rr_s for strip in strips]).astype(np.float32),
        provenance=_provenance(config, seed),
    )
