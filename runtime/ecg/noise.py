"""Is this stretch a readable ECG? Two signal-quality indices per 1-s segment, over a centred window of segments.

A QRS detector finds "beats" in anything: muscle noise, a lead picking up mains, a pulse wave, a loose electrode.
Without this check the stream classed them. Measured on real ECG with real noise added (the 10 vendored MIT-BIH
records with PLUX EMG at 6 dB SNR: ``pipeline.benchmark.noise_stress``), PVC sensitivity fell from 97 % to 52 %
while 99.6 % of beats were still classed, with no flag. Each segment now gets at most one of two flags:

* ``noisy`` — the share of the window's power (1–100 Hz) above ``high_band_hz`` exceeds ``max_high_share``:
  broadband noise dominates (muscle, mains hum, amplifier or lead-off noise). An ECG's power lies below ~40 Hz:
  99 % of the 5-s windows of the ten MIT-BIH records are at most 0.043 (the largest, 0.22, in a noisy stretch of
  114), every window of the PLUX ECG recordings at most 0.10; real EMG and white noise are 0.6–0.9. Checked only
  where the model rate resolves the band (above 2 × ``high_band_hz``).
* ``no_qrs`` — no steep, sparse QRS complexes: the kurtosis of the signal's slope (its first difference) is below
  ``min_slope_kurtosis`` (EEG, electrodermal activity, Gaussian noise ≈ 3, heavy motion artefact; MIT-BIH windows
  4.08 and above but for 0.1 % of them, PLUX ECG 24 and above), or under ``min_qrs_share`` of the power below
  ``high_band_hz`` lies above ``qrs_band_hz`` (a resting pulse wave: median 0.03; MIT-BIH windows 0.09 and above).

Not caught: electrode-motion artefact. It lies in the ECG's own band, and neither index separates it (at 6 dB the
stream's false PVCs per hour hardly change with the check: ``noise_stress``'s "motion" rows).

A flagged beat is never given a class (``runtime.ecg.beat_inputs``). Decisions depend only on the signal, never
on how it is split into chunks or blocks: each segment is decided once the segments its window needs have
arrived (``decided_until``), and a flat segment (already flagged ``flat_line``) takes no part in any window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runtime.ecg.quality import QualityFlag

# per segment: high-band, whole-band, QRS-band and ECG-band power, slope count and the slope's raw moments 1–4
_HIGH, _WHOLE, _QRS, _ECG, _COUNT, _FIRST, _SECOND, _THIRD, _FOURTH = range(9)
_FIELDS = 9


@dataclass(frozen=True)
class NoiseConfig:
    enabled: bool = True
    half_window_segments: int = 2  # a segment is judged over itself and this many segments on each side (5 s)
    whole_band_hz: tuple[float, float] = (1.0, 100.0)  # the power the high band's share is taken of
    high_band_hz: float = 40.0  # power above this (to the whole band's top) is noise, not ECG
    max_high_share: float = 0.15
    qrs_band_hz: float = 5.0  # power from here to high_band_hz, as a share of the power from 1 Hz to high_band_hz …
    min_qrs_share: float = 0.05  # … at least this: a QRS complex has power there; a pulse wave or a drift has not
    min_slope_kurtosis: float = 4.0


class NoiseDetector:
    """Per-segment ``noisy`` / ``no_qrs`` decisions for a stream cut into segments of ``segment`` samples."""

    def __init__(self, rate_hz: float, segment: int, config: NoiseConfig = NoiseConfig()):
        self.config = config
        self.segment = segment
        frequencies = np.fft.rfftfreq(segment, 1.0 / rate_hz)
        low, top = config.whole_band_hz
        self._whole = (frequencies >= low) & (frequencies < top)
        self._high = (frequencies >= config.high_band_hz) & (frequencies < top)
        self._ecg = (frequencies >= low) & (frequencies < config.high_band_hz)
        self._qrs = (frequencies >= config.qrs_band_hz) & (frequencies < config.high_band_hz)
        # the share is meaningful only when the model rate resolves the high band
        self._check_share = rate_hz / 2.0 > config.high_band_hz and bool(self._high.any())
        self.reset(0)

    def reset(self, origin: int) -> None:
        """A new stretch of signal starts at model-rate sample ``origin`` (stream start, after a gap)."""
        self._origin = origin
        self._rows = np.zeros((0, _FIELDS))  # statistics of the segments not decided yet and of the window before
        self._usable = np.zeros(0, dtype=bool)  # per row: not flat (a flat segment joins no window)
        self._first = 0  # segment index (from origin) of row 0
        self._decided = 0  # segments decided so far

    @property
    def decided_until(self) -> int:
        """Model-rate sample up to which every segment's decision is made."""
        return self._origin + self._decided * self.segment

    def push(self, segments: np.ndarray, flat: list[bool]) -> None:
        """The next whole segments (rows, in time order) and which of them are flat (they join no window)."""
        if not len(segments):
            return
        usable = ~np.asarray(flat, dtype=bool)
        rows = self._statistics(segments) if self.config.enabled else np.zeros((len(segments), _FIELDS))
        rows[~usable] = 0.0
        self._rows = np.concatenate([self._rows, rows])
        self._usable = np.concatenate([self._usable, usable & self.config.enabled])

    def decide(self, final: bool) -> list[tuple[QualityFlag, int, int]]:
        """(flag, start, end) of the segments decided now: those whose window has arrived (every one if ``final``)."""
        half = self.config.half_window_segments
        known = self._first + len(self._rows)
        last = known if final else known - half
        if last <= self._decided:
            return []
        indices = np.arange(self._decided - self._first, last - self._first)  # rows to decide
        sums = np.concatenate([np.zeros((1, _FIELDS)), np.cumsum(self._rows, axis=0)])
        total = sums[np.minimum(indices + half + 1, len(self._rows))] - sums[np.maximum(indices - half, 0)]
        flags = self._flags(total, self._usable[indices])
        found = [(flag, self._origin + (self._first + int(row)) * self.segment,
                  self._origin + (self._first + int(row) + 1) * self.segment)
                 for row, flag in zip(indices.tolist(), flags, strict=True) if flag is not None]
        self._decided = last
        drop = max(0, self._decided - half - self._first)  # keep the window of the next segment to decide
        self._rows, self._usable, self._first = self._rows[drop:], self._usable[drop:], self._first + drop
        return found

    def _flags(self, total: np.ndarray, usable: np.ndarray) -> list[QualityFlag | None]:
        """One decision per window total (rows of summed statistics); None where the segment is not usable."""
        count = np.maximum(total[:, _COUNT], 1.0)
        mean = total[:, _FIRST] / count
        second, third, fourth = total[:, _SECOND] / count, total[:, _THIRD] / count, total[:, _FOURTH] / count
        variance = second - mean * mean
        central_fourth = fourth - 4 * mean * third + 6 * mean * mean * second - 3 * mean**4
        # no slope at all is a constant: the flat-line check's case, not this one
        no_qrs = usable & (variance > 0) & (central_fourth < self.config.min_slope_kurtosis * variance * variance)
        no_qrs |= usable & (total[:, _ECG] > 0) & (total[:, _QRS] < self.config.min_qrs_share * total[:, _ECG])
        noisy = np.zeros_like(usable)
        if self._check_share:
            noisy = usable & (total[:, _WHOLE] > 0) & (total[:, _HIGH] > self.config.max_high_share * total[:, _WHOLE])
        return [QualityFlag.NOISY if loud else QualityFlag.NO_QRS if flat_slope else None
                for loud, flat_slope in zip(noisy.tolist(), no_qrs.tolist(), strict=True)]

    def _statistics(self, segments: np.ndarray) -> np.ndarray:
        values = np.asarray(segments, dtype=np.float64)
        # no taper and no detrending: on the real recordings both raised a pulse wave's QRS share more than an ECG's
        centred = values - values.mean(axis=1, keepdims=True)
        power = np.abs(np.fft.rfft(centred, axis=1)) ** 2
        slopes = np.diff(values, axis=1)
        squared = slopes * slopes
        rows = np.empty((len(values), _FIELDS))
        rows[:, _HIGH] = power[:, self._high].sum(axis=1)
        rows[:, _WHOLE] = power[:, self._whole].sum(axis=1)
        rows[:, _QRS] = power[:, self._qrs].sum(axis=1)
        rows[:, _ECG] = power[:, self._ecg].sum(axis=1)
        rows[:, _COUNT] = slopes.shape[1]
        rows[:, _FIRST] = slopes.sum(axis=1)
        rows[:, _SECOND] = squared.sum(axis=1)
        rows[:, _THIRD] = (squared * slopes).sum(axis=1)
        rows[:, _FOURTH] = (squared * squared).sum(axis=1)
        return rows
