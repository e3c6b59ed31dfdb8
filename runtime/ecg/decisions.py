"""The Pan–Tompkins decision rules: adaptive thresholds, refractory period, T waves, search-back.

Candidates arrive in time order; every decision depends only on the candidates
seen so far, so the outcome does not depend on where blocks end.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

_RR_HISTORY = 8  # RR intervals averaged (Pan & Tompkins' RR AVERAGE1/2)
_RR_LOW, _RR_HIGH = 0.92, 1.16  # "regular" RR band around the regular average
_SEARCH_BACK_THRESHOLD = 0.5  # search-back accepts peaks above this share of the threshold


@dataclass(frozen=True)
class DetectorConfig:
    lowpass_box_s: float = 0.022  # two moving sums this long: low-pass with −3 dB near 15 Hz
    highpass_box_s: float = 0.16  # minus a centred moving average this long: high-pass with −3 dB near 5 Hz
    integration_s: float = 0.15  # moving-window integration: about the widest QRS
    refractory_s: float = 0.2  # no second QRS this soon (300 bpm)
    t_wave_window_s: float = 0.36  # a peak this soon after a QRS with under half its slope is a T wave
    learning_s: float = 2.0  # initial SPKI/NPKI come from this much signal after every reset
    search_back_rr: float = 1.66  # no QRS for this many mean RR intervals: search back at half threshold
    default_rr_s: float = 1.0  # mean RR assumed until two QRS complexes were found
    signal_weight: float = 0.125  # SPKI moves this share toward a QRS peak (twice that after search-back)
    noise_weight: float = 0.125  # NPKI moves this share toward a noise peak
    # a QRS peak moves SPKI as if it were at most this many times SPKI: one artefact (a 1e6 spike, a -999 sentinel)
    # otherwise raised the threshold above every real QRS for tens of seconds (49 beats lost after a 2-sample spike)
    signal_peak_cap: float = 8.0
    threshold_fraction: float = 0.25  # threshold = NPKI + this × (SPKI − NPKI)
    missed_decay: float = 0.5  # a fruitless search-back scales SPKI − NPKI by this (artefact recovery)


DEFAULT_DETECTOR = DetectorConfig()


class Candidate(NamedTuple):
    index: int  # MWI peak (absolute sample index)
    value: float  # MWI value at the peak
    slope: float  # largest |derivative| in the integration window: T waves are flatter
    r_index: int  # coarse R position (band-passed extreme, delay-compensated)


@dataclass
class DecisionState:
    config: DetectorConfig
    rate: float
    signal_level: float  # SPKI
    noise_level: float  # NPKI
    deadline: float | None = None  # MWI index after which a missed beat is searched for
    window_start: float = 0.0  # search-back looks at noise peaks after this index (and up to the deadline)
    last: Candidate | None = None
    since: list[Candidate] = field(default_factory=list)  # noise peaks since the last QRS (search-back pool)
    rr_all: deque = field(default_factory=lambda: deque(maxlen=_RR_HISTORY))
    rr_regular: deque = field(default_factory=lambda: deque(maxlen=_RR_HISTORY))
    irregular_run: int = 0

    @property
    def threshold(self) -> float:
        return self.noise_level + self.config.threshold_fraction * (self.signal_level - self.noise_level)

    def start(self, origin: int, position: int) -> None:
        """Decisions begin; candidates since ``origin`` are considered, search-back is due after ``position``."""
        self.window_start = origin - 1
        self.deadline = position + self.config.search_back_rr * self.config.default_rr_s * self.rate

    def run(self, candidates: list[Candidate], decided_until: int) -> list[int]:
        """Coarse R indices accepted among ``candidates`` (and by search-back before ``decided_until``)."""
        accepted: list[int] = []
        for candidate in candidates:
            self._search_back(candidate.index, accepted)
            self._consider(candidate, accepted)
        self._search_back(decided_until, accepted)
        return accepted

    def _mean_rr(self) -> float:
        history = self.rr_regular or self.rr_all
        return sum(history) / len(history) if history else self.config.default_rr_s * self.rate

    def _refractory(self, candidate: Candidate) -> bool:
        return self.last is not None and candidate.r_index - self.last.r_index < self.config.refractory_s * self.rate

    def _t_wave_like(self, candidate: Candidate) -> bool:
        return (
            self.last is not None
            and candidate.index - self.last.index < self.config.t_wave_window_s * self.rate
            and candidate.slope < 0.5 * self.last.slope
        )

    def _consider(self, candidate: Candidate, accepted: list[int]) -> None:
        if not math.isfinite(candidate.value) or self._refractory(candidate):
            return
        if candidate.value > self.threshold and not self._t_wave_like(candidate):
            self._accept(candidate, accepted, weight=self.config.signal_weight)
            return
        self.noise_level += self.config.noise_weight * (candidate.value - self.noise_level)
        if not self._t_wave_like(candidate):
            self.since.append(candidate)

    def _accept(self, candidate: Candidate, accepted: list[int], weight: float) -> None:
        value = candidate.value
        if self.signal_level > 0 and value > self.config.signal_peak_cap * self.signal_level:
            value = self.config.signal_peak_cap * self.signal_level
        self.signal_level += weight * (value - self.signal_level)
        if self.last is not None:
            self._record_rr(candidate.r_index - self.last.r_index)
        self.last = candidate
        if self.since:  # (usually empty: no noise peak since the last QRS)
            self.since = [other for other in self.since
                          if other.index > candidate.index and not self._refractory(other)]
            self.since = [other for other in self.since if not self._t_wave_like(other)]
        self.window_start = candidate.index
        self.deadline = candidate.index + self.config.search_back_rr * self._mean_rr()
        accepted.append(candidate.r_index)

    def _record_rr(self, rr: int) -> None:
        self.rr_all.append(rr)
        regular_mean = sum(self.rr_regular) / len(self.rr_regular) if self.rr_regular else rr
        if _RR_LOW * regular_mean <= rr <= _RR_HIGH * regular_mean:
            self.rr_regular.append(rr)
            self.irregular_run = 0
            return
        self.irregular_run += 1
        if self.irregular_run >= _RR_HISTORY:  # the rhythm changed: adopt the recent intervals
            self.rr_regular = deque(self.rr_all, maxlen=_RR_HISTORY)
            self.irregular_run = 0

    def _search_back(self, before: int, accepted: list[int]) -> None:
        while self.deadline is not None and self.deadline < before:
            limit = _SEARCH_BACK_THRESHOLD * self.threshold
            pool = [
                peak for peak in self.since if self.window_start < peak.index <= self.deadline and peak.value > limit
            ]
            if pool:
                self._accept(max(pool, key=lambda other: other.value), accepted, weight=2 * self.config.signal_weight)
                continue
            self.signal_level = self.noise_level + self.config.missed_decay * (self.signal_level - self.noise_level)
            self.window_start = self.deadline
            self.deadline += self.config.search_back_rr * self._mean_rr()
            self.since = [other for other in self.since if other.index > self.window_start]
