"""``RrFeatureStream`` for a run of R-peaks at once: the same features, beat for beat, as numpy columns.

``RrColumnStream.push(peaks)`` takes the segment's next accepted R-peaks and returns the beats they complete (the
beat held from before and every new one but the last, whose post-RR is the next peak); ``finish`` returns the held
beat with its post-RR missing and starts a new segment. The arithmetic is ``rr_features``' (integer intervals, one
``_assemble``), so the columns equal ``RrFeatureStream``'s ``RrBeat``s bit for bit.

Dependency rule: numpy and the standard library only (this package ships to the device).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

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
        self._history: list[int] = []  # raw intervals before that pre-RR (the last history_beats)

    @property
    def holding(self) -> bool:
        return self._last is not None

    def push(self, peaks: np.ndarray) -> RrColumns | None:
        """The beats that ``peaks`` (strictly increasing, after the held one) complete; None when none."""
        chain = np.asarray(peaks, dtype=np.int64).tolist()
        if not chain:
            return None
        if self._last is not None:
            chain.insert(0, self._last)
        if len(chain) < 2:
            self._last = chain[-1]
            return None
        intervals = [after - before for before, after in pairwise(chain)]  # from chain[i] to chain[i + 1]
        pre = [self._last_pre, *intervals[:-1]]
        # the raw intervals every completed beat's history is cut from, in order, and where each one's ends
        has_pre = self._last_pre != NO_INTERVAL
        earlier = self._history + ([self._last_pre] if has_pre else []) + intervals[:-2]
        first_end = len(self._history)
        ends = [first_end, *range(first_end + has_pre, first_end + has_pre + len(intervals) - 1)]
        result = self._emit(pre, intervals, earlier, ends)
        keep = self.config.history_beats
        tail = earlier + intervals[-2:-1]
        self._history = tail[max(0, len(tail) - keep):] if keep else []
        self._last, self._last_pre = chain[-1], intervals[-1]
        return result

    def finish(self) -> RrColumns | None:
        """The held beat, its post-RR missing; then a new segment begins."""
        result = None
        if self._last is not None:
            result = self._emit([self._last_pre], [NO_INTERVAL], self._history, [len(self._history)])
        self.reset()
        return result

    def _emit(self, pre: list[int], post: list[int], earlier: list[int], ends: list[int]) -> RrColumns:
        """``RrFeatureStream._emit`` for every beat: its raw pre/post intervals and the end of its history in
        ``earlier`` (the ``history_beats`` intervals before it). The bookkeeping is integer (exact in Python); the
        features are ``_assemble``'s numpy arithmetic on the whole run."""
        maximum, default, history = self._maximum, self._default, self.config.history_beats
        total, seen = [0], [0]  # running sum and count of the intervals in the local mean (pauses are not)
        for interval in earlier:
            valid = interval <= maximum
            total.append(total[-1] + interval if valid else total[-1])
            seen.append(seen[-1] + valid)
        pre_values, post_values, sums, counts, lengths = [], [], [], [], []
        for before, after, end in zip(pre, post, ends, strict=True):
            if before == NO_INTERVAL and after == NO_INTERVAL:
                value = default
            else:
                value = min(before if before != NO_INTERVAL else after, maximum)
            pre_values.append(value)
            post_values.append(min(after, maximum) if after != NO_INTERVAL else value)
            start = max(end - history, 0)
            sums.append(total[end] - total[start])
            counts.append(seen[end] - seen[start])
            lengths.append(end - start)
        columns = np.array([pre_values, post_values, sums, counts, pre, post, lengths], dtype=np.int64)
        features = _assemble(columns[0], columns[1], columns[2], columns[3], self.rate)
        return RrColumns(features, columns[4], columns[5], columns[6], columns[3])
