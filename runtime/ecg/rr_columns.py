"""``RrFeatureStream`` for a run of R-peaks at once: the same features, beat for beat, as numpy columns.

``RrColumnStream.push(peaks)`` takes the segment's next accepted R-peaks and returns the beats they complete (the
beat held from before and every new one but the last, whose post-RR is the next peak); ``finish`` returns the held
beat with its post-RR missing and starts a new segment. The arithmetic is ``rr_features``' (integer intervals, one
``_assemble``), so the columns equal ``RrFeatureStream``'s ``RrBeat``s bit for bit.

Dependency rule: numpy and the standard library only (this package ships to the device).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runtime.ecg.rr_features import RrFeatureConfig, _assemble, _limits

NO_INTERVAL = -1  # pre_samples / post_samples of a beat without that interval


@dataclass(frozen=True)
class RrColumns:
    """Completed beats in order: what ``RrBeat`` holds per beat, one array each."""

    features: np.ndarray  # float32, (beats, len(RR_FEATURE_NAMES))
    pre_samples: np.ndarray  # int64: measured interval from the previous beat; NO_INTERVAL for a segment's first
    post_samples: np.ndarray  # int64: measured interval to the next beat; NO_INTERVAL for a segment's last
    history_intervals: np.ndarray  # int64: intervals seen before the pre-RR (at most history_beats)
    local_intervals: np.ndarray  # int64: of which in the local mean (pauses over max_rr_s are not)

    def __len__(self) -> int:
        return len(self.features)


class RrColumnStream:
    """Streaming RR features of a segment, a run of peaks at a time (module docstring)."""

    def __init__(self, sample_rate_hz: float, config: RrFeatureConfig) -> None:
        self.config = config
        self.rate = float(sample_rate_hz)
        self._maximum, self._default = _limits(sample_rate_hz, config)
        self.reset()

    def reset(self) -> None:
        self._last: int | None = None  # the held beat's peak
        self._last_pre = NO_INTERVAL  # its raw pre-RR
        self._history = np.zeros(0, dtype=np.int64)  # raw intervals before that pre-RR (the last history_beats)

    @property
    def holding(self) -> bool:
        return self._last is not None

    def push(self, peaks: np.ndarray) -> RrColumns | None:
        """The beats that ``peaks`` (strictly increasing, after the held one) complete; None when none."""
        peaks = np.asarray(peaks, dtype=np.int64)
        if peaks.size == 0:
            return None
        held = self._last is not None
        chain = np.concatenate([[self._last], peaks]) if held else peaks
        if chain.size < 2:
            self._last = int(chain[-1])
            return None
        intervals = np.diff(chain)  # intervals[i]: from chain[i] to chain[i + 1]
        pre = np.concatenate([[self._last_pre], intervals[:-1]])
        # the raw intervals every completed beat's history is cut from, in order
        has_pre = self._last_pre != NO_INTERVAL
        earlier = np.concatenate([self._history, [self._last_pre] if has_pre else [], intervals[:-2]]).astype(
            np.int64)
        ends = np.concatenate([[self._history.size], self._history.size + has_pre + np.arange(intervals.size - 1)])
        result = self._emit(pre, intervals, earlier, ends.astype(np.int64))
        keep = self.config.history_beats
        tail = np.concatenate([earlier, intervals[-2:-1]]) if intervals.size >= 2 else earlier
        self._history = tail[max(0, tail.size - keep):] if keep else tail[:0]
        self._last, self._last_pre = int(chain[-1]), int(intervals[-1])
        return result

    def finish(self) -> RrColumns | None:
        """The held beat, its post-RR missing; then a new segment begins."""
        result = None
        if self._last is not None:
            result = self._emit(np.array([self._last_pre]), np.array([NO_INTERVAL]), self._history,
                                np.array([self._history.size]))
        self.reset()
        return result

    def _emit(self, pre: np.ndarray, post: np.ndarray, earlier: np.ndarray, ends: np.ndarray) -> RrColumns:
        """``RrFeatureStream._emit`` for every beat: its raw pre/post intervals and the end of its history in
        ``earlier`` (the ``history_beats`` intervals before it)."""
        maximum = self._maximum
        has_pre, has_post = pre != NO_INTERVAL, post != NO_INTERVAL
        neither = ~has_pre & ~has_post
        pre_value = np.where(neither, self._default, np.minimum(np.where(has_pre, pre, post), maximum))
        post_value = np.where(has_post, np.minimum(post, maximum), pre_value)
        valid = earlier <= maximum
        total = np.concatenate([[0], np.cumsum(np.where(valid, earlier, 0))])
        seen = np.concatenate([[0], np.cumsum(valid)])
        starts = np.maximum(ends - self.config.history_beats, 0)
        local_count = seen[ends] - seen[starts]
        features = _assemble(pre_value, post_value, total[ends] - total[starts], local_count, self.rate)
        return RrColumns(features, pre.astype(np.int64), post.astype(np.int64), (ends - starts).astype(np.int64),
                         local_count.astype(np.int64))
