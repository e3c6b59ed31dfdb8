"""``RrFeatureStream`` for a run of R-peaks at once: the same features, beat for beat, as numpy columns.

``RrColumnStream.push(peaks)`` takes the segment's next accepted R-peaks and returns the beats they complete (the
beat held from before and every new one but the last, whose post-RR is the next peak); ``finish`` returns the held
beat with its post-RR missing and starts a new segment. The arithmetic is ``rr_features``' (integer intervals, one
``_assemble``), so the columns equal ``RrFeatureStream``'s ``RrBeat``s bit for bit.

The bookkeeping is integer and the features are elementwise, so the two parts can run apart: ``push_into`` /
``finish_into`` append each completed beat's integers to ``RrIntervals`` (a block's worth, in Python) and
``RrIntervals.columns`` assembles many blocks' beats at once (the stream does it once per release).

Dependency rule: numpy and the standard library only (this package ships to the device).
"""

from __future__ import annotations

from collections.abc import Sequence
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


class RrIntervals:
    """Completed beats' integer RR columns in order, appended block by block; ``columns`` makes ``RrColumns``."""

    __slots__ = ("counts", "lengths", "post", "post_values", "pre", "pre_values", "sums")

    def __init__(self) -> None:
        self.pre_values: list[int] = []  # pre-RR as the features use it (clipped; borrowed; the default)
        self.post_values: list[int] = []
        self.sums: list[int] = []  # the local mean's integer sum and count (pauses over max_rr_s left out)
        self.counts: list[int] = []
        self.pre: list[int] = []  # measured intervals; NO_INTERVAL where there is none
        self.post: list[int] = []
        self.lengths: list[int] = []  # intervals seen before the pre-RR (at most history_beats)

    def __len__(self) -> int:
        return len(self.pre)

    def columns(self, rate: float) -> RrColumns:
        """Every beat's ``RrColumns`` row: one integer array, one ``_assemble``."""
        table = np.array([self.pre_values, self.post_values, self.sums, self.counts, self.pre, self.post,
                          self.lengths], dtype=np.int64).reshape(7, len(self.pre))
        features = _assemble(table[0], table[1], table[2], table[3], rate)
        return RrColumns(features, table[4], table[5], table[6], table[3])


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
        found = RrIntervals()
        return found.columns(self.rate) if self.push_into(peaks, found) else None

    def finish(self) -> RrColumns | None:
        """The held beat, its post-RR missing; then a new segment begins."""
        found = RrIntervals()
        return found.columns(self.rate) if self.finish_into(found) else None

    def push_into(self, peaks: Sequence[int] | np.ndarray, into: RrIntervals) -> int:
        """``push``, the completed beats' integers appended to ``into``; how many beats it completed."""
        chain = peaks.tolist() if isinstance(peaks, np.ndarray) else list(peaks)
        if not chain:
            return 0
        if self._last is not None:
            chain.insert(0, self._last)
        if len(chain) < 2:
            self._last = chain[-1]
            return 0
        intervals = [after - before for before, after in pairwise(chain)]  # from chain[i] to chain[i + 1]
        pre = [self._last_pre, *intervals[:-1]]
        # the raw intervals every completed beat's history is cut from, in order, and where each one's ends
        has_pre = self._last_pre != NO_INTERVAL
        earlier = self._history + ([self._last_pre] if has_pre else []) + intervals[:-2]
        first_end = len(self._history)
        ends = [first_end, *range(first_end + has_pre, first_end + has_pre + len(intervals) - 1)]
        self._emit(pre, intervals, earlier, ends, into)
        keep = self.config.history_beats
        tail = earlier + intervals[-2:-1]
        self._history = tail[max(0, len(tail) - keep):] if keep else []
        self._last, self._last_pre = chain[-1], intervals[-1]
        return len(pre)

    def finish_into(self, into: RrIntervals) -> int:
        """``finish``, the held beat's integers appended to ``into``; 1 if a beat was held, else 0."""
        held = self._last is not None
        if held:
            self._emit([self._last_pre], [NO_INTERVAL], self._history, [len(self._history)], into)
        self.reset()
        return int(held)

    def _emit(self, pre: list[int], post: list[int], earlier: list[int], ends: list[int], into: RrIntervals) -> None:
        """``RrFeatureStream._emit``'s integers for every beat: its raw pre/post intervals and the end of its history
        in ``earlier`` (the ``history_beats`` intervals before it). Integer bookkeeping, exact in Python; the
        features are ``_assemble``'s numpy arithmetic (``RrIntervals.columns``)."""
        maximum, default, history = self._maximum, self._default, self.config.history_beats
        total, seen = [0], [0]  # running sum and count of the intervals in the local mean (pauses are not)
        running, valid = 0, 0
        for interval in earlier:
            if interval <= maximum:
                running += interval
                valid += 1
            total.append(running)
            seen.append(valid)
        for before, after, end in zip(pre, post, ends, strict=True):
            if before == NO_INTERVAL and after == NO_INTERVAL:
                value = default
            else:
                value = min(before if before != NO_INTERVAL else after, maximum)
            into.pre_values.append(value)
            into.post_values.append(min(after, maximum) if after != NO_INTERVAL else value)
            start = end - history if end > history else 0
            into.sums.append(total[end] - total[start])
            into.counts.append(seen[end] - seen[start])
            into.lengths.append(end - start)
        into.pre += pre
        into.post += post
