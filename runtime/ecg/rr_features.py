"""RR-interval context of every beat, from R-peak positions only: one implementation, batch and streaming.

Training (``rr_features`` over a record's detected peaks) and the device (``RrFeatureStream``, fed
one accepted R-peak at a time) share the arithmetic below, so a model sees on the device exactly
the numbers it was trained on. Every interval is an integer number of samples until the last step.

The feature vector (float32, ``RR_FEATURE_NAMES``), for beat i of a continuous segment:

* ``pre_rr_s``  — seconds from beat i−1 to beat i;
* ``post_rr_s`` — seconds from beat i to beat i+1;
* ``local_rr_s`` — mean of up to ``history_beats`` RR intervals *before* the beat's own pre-RR
  (causal: beats i−history−1 … i−1), so a premature beat does not pull its own reference down;
* ``pre_to_local``, ``post_to_local``, ``pre_to_post`` — the three ratios (dimensionless; a PVC
  shows a short pre-RR, a long compensatory post-RR: small pre/local, large post/local, small pre/post).

Where history is short the values stay defined: the first beat of a segment takes its post-RR as its
pre-RR; the last beat (``finish``) takes its pre-RR as its post-RR; a beat without any earlier
interval uses its pre-RR as the local mean; a segment of one beat uses ``default_rr_s`` everywhere.
Long pauses (a gap, a flat line the stream did not split at, missed detections) are clipped to
``max_rr_s`` in pre/post and kept out of the local mean, so one pause does not distort the next beats.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

import numpy as np

from runtime.contract.derived import RR_FEATURE_NAMES, RrFeatureConfig
from runtime.errors import EdgemedError

__all__ = ["DEFAULT_RR_FEATURES", "PRE_TO_LOCAL", "RR_FEATURE_NAMES", "RrBeat", "RrFeatureConfig", "RrFeatureError",
           "RrFeatureStream", "rr_features"]

PRE_TO_LOCAL = RR_FEATURE_NAMES.index("pre_to_local")  # the running template's gate


class RrFeatureError(EdgemedError):
    """R-peak positions or RR settings that RR features cannot be computed from."""


DEFAULT_RR_FEATURES = RrFeatureConfig()


class RrBeat(NamedTuple):
    peak: int  # the beat's R-peak sample index
    features: np.ndarray  # float32, (len(RR_FEATURE_NAMES),)
    pre_samples: int | None = None  # measured interval from the previous beat; None: the segment's first beat
    post_samples: int | None = None  # measured interval to the next beat; None: the segment's last beat
    history_intervals: int = 0  # intervals seen before the pre-RR (at most history_beats; pauses included)
    local_intervals: int = 0  # of which in the local mean (pauses over max_rr_s are not)


def _limits(sample_rate_hz: float, config: RrFeatureConfig) -> tuple[int, int]:
    rate = float(sample_rate_hz)
    if not rate > 0 or config.history_beats < 0 or not config.max_rr_s > 0 or not config.default_rr_s > 0:
        raise RrFeatureError(
            f"RR features with rate {sample_rate_hz} Hz and {config}",
            expected="a positive rate, history_beats ≥ 0, positive max_rr_s and default_rr_s",
            fix="pass the model's sample rate and a valid RrFeatureConfig",
        )
    return max(1, round(config.max_rr_s * rate)), max(1, round(config.default_rr_s * rate))


def _assemble(pre: np.ndarray, post: np.ndarray, local_sum: np.ndarray, local_count: np.ndarray,
              rate: float) -> np.ndarray:
    """The feature rows from integer pre/post intervals and the local history's integer sum and count."""
    pre = pre.astype(np.float64)
    post = post.astype(np.float64)
    local = np.where(local_count > 0, local_sum / np.maximum(local_count, 1), pre)
    table = np.empty((len(pre), 6))  # the six columns, each divided into place (what np.stack of them would hold)
    np.divide(pre, rate, out=table[:, 0])
    np.divide(post, rate, out=table[:, 1])
    np.divide(local, rate, out=table[:, 2])
    np.divide(pre, local, out=table[:, 3])
    np.divide(post, local, out=table[:, 4])
    np.divide(pre, post, out=table[:, 5])
    return table.astype(np.float32)


def rr_features(peaks: np.ndarray, sample_rate_hz: float, config: RrFeatureConfig = DEFAULT_RR_FEATURES) -> np.ndarray:
    """Features of every beat of one continuous segment: float32, (len(peaks), 6)."""
    maximum, default = _limits(sample_rate_hz, config)
    peaks = _as_peaks(peaks)
    count = peaks.size
    if count == 0:
        return np.zeros((0, len(RR_FEATURE_NAMES)), dtype=np.float32)
    if count == 1:
        one = np.array([default])
        return _assemble(one, one, np.zeros(1, np.int64), np.zeros(1, np.int64), float(sample_rate_hz))
    intervals = np.diff(peaks)  # intervals[k] ends at beat k + 1
    clipped = np.minimum(intervals, maximum)
    pre = np.concatenate([clipped[:1], clipped])  # the first beat borrows its post-RR
    post = np.concatenate([clipped, pre[-1:]])  # the last beat borrows its pre-RR
    valid = intervals <= maximum
    # Beat i's history: intervals ending at beats i−history … i−1, i.e. intervals[i−1−history : i−1].
    total = np.concatenate([[0], np.cumsum(np.where(valid, intervals, 0))])
    seen = np.concatenate([[0], np.cumsum(valid)])
    end = np.maximum(np.arange(count) - 1, 0)
    start = np.maximum(end - config.history_beats, 0)
    return _assemble(pre, post, total[end] - total[start], seen[end] - seen[start], float(sample_rate_hz))


def _as_peaks(peaks: np.ndarray) -> np.ndarray:
    values = np.asarray(peaks)
    if values.ndim != 1 or (values.size and values.dtype.kind not in "iu"):
        raise RrFeatureError(f"R-peaks of {values.dtype} {values.shape}", expected="1-D integer sample indices",
                             fix="pass the detector's peak indices")
    values = values.astype(np.int64)
    if np.any(np.diff(values) <= 0):
        raise RrFeatureError("R-peaks are not strictly increasing", expected="sorted, unique sample indices",
                             fix="sort and de-duplicate the peaks; split the record at gaps")
    return values


class RrFeatureStream:
    """Streaming RR features: ``push`` each accepted R-peak; the previous beat's features come back.

    A beat's features need its post-RR, so they are returned when the next peak arrives (one beat
    of latency). ``finish`` returns the last beat and starts a new segment: call it before a gap or
    a flat line, and at the end. The output equals ``rr_features`` over the segment, bit for bit.
    """

    def __init__(self, sample_rate_hz: float, config: RrFeatureConfig = DEFAULT_RR_FEATURES) -> None:
        self.config = config
        self.rate = float(sample_rate_hz)
        self._maximum, self._default = _limits(sample_rate_hz, config)
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next peak starts a new segment."""
        self._last: int | None = None
        self._last_pre: int | None = None  # raw pre-RR of the pending beat; None for a segment's first beat
        self._history: deque[int] = deque(maxlen=self.config.history_beats)  # raw intervals before that pre-RR

    def push(self, peak: int) -> RrBeat | None:
        """Add the next R-peak; returns the previous beat's features (None for a segment's first peak)."""
        if isinstance(peak, bool) or not isinstance(peak, int | np.integer):
            raise RrFeatureError(f"R-peak {peak!r}", expected="an integer sample index", fix="pass int(peak)")
        peak = int(peak)
        if self._last is None:
            self._last = peak
            return None
        if peak <= self._last:
            raise RrFeatureError(f"R-peak {peak} after {self._last}", expected="strictly increasing R-peaks",
                                 fix="push peaks in time order; call finish() at a gap and start again")
        interval = peak - self._last
        result = self._emit(self._last, self._last_pre, interval)
        if self._last_pre is not None and self.config.history_beats:
            self._history.append(self._last_pre)
        self._last, self._last_pre = peak, interval
        return result

    def finish(self) -> RrBeat | None:
        """The pending last beat (its post-RR taken as its pre-RR); then a new segment begins."""
        result = None if self._last is None else self._emit(self._last, self._last_pre, None)
        self.reset()
        return result

    def _emit(self, peak: int, pre: int | None, post: int | None) -> RrBeat:
        if pre is None and post is None:
            pre_value = post_value = self._default
        else:
            pre_value = min(pre if pre is not None else post, self._maximum)
            post_value = min(post, self._maximum) if post is not None else pre_value
        valid = [interval for interval in self._history if interval <= self._maximum]
        features = _assemble(
            np.array([pre_value]), np.array([post_value]),
            np.array([sum(valid)], dtype=np.int64), np.array([len(valid)], dtype=np.int64), self.rate,
        )
        return RrBeat(peak, features[0], pre, post, len(self._history), len(valid))
