"""A histogram's stand-in sample (``runtime.telemetry.histogram.spread``) without writing it out.

The drift tests on aggregates compare the values a window's histogram stands for: each bin's c values spread evenly
inside it, at lo + (j + ½)/c · (hi − lo). A day of a beat stream is 100 000 such values per feature; written out,
a thousand devices' drift takes minutes. ``StandIn`` answers what the tests ask of that sample from the bins alone,
in time proportional to the bins: its size, mean and standard deviation, its order statistics and percentiles
(numpy's linear rule), its shares in any bins (exact: the values of the one or two bins an edge falls in are written
out with ``spread``'s own arithmetic) and its Wasserstein distance to another sample (the integral of the CDF
difference, summed in closed form over the runs where neither CDF steps more than evenly). The results equal those
on ``values()`` up to floating-point rounding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from runtime.telemetry.histogram import bin_bounds, spread


@dataclass(frozen=True, eq=False)
class StandIn:
    """The stand-in sample of one histogram: ``edges`` (inner edges), dense ``counts``, observed ``low``/``high``."""

    edges: np.ndarray
    counts: np.ndarray
    low: float
    high: float
    _occupied: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_occupied", np.flatnonzero(self.counts))

    @cached_property
    def _bins(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(lower, upper, count, values before) of every occupied bin, in order."""
        lower, upper = bin_bounds(self.edges, self.low, self.high)
        sizes = np.asarray(self.counts, dtype=np.int64)[self._occupied]
        return lower[self._occupied], upper[self._occupied], sizes, np.cumsum(sizes) - sizes

    @property
    def count(self) -> int:
        return int(np.asarray(self.counts).sum())

    def __len__(self) -> int:
        return self.count

    def values(self) -> np.ndarray:
        """The sample written out (``histogram.spread``)."""
        return spread(self.edges, self.counts, self.low, self.high) if self.count else np.empty(0)

    def _bin_values(self, number: int) -> np.ndarray:
        lower, upper, sizes, _ = self._bins
        size = int(sizes[number])
        return lower[number] + ((np.arange(size) + 0.5) / size) * (upper[number] - lower[number])

    def mean(self) -> float:
        lower, upper, sizes, _ = self._bins
        return float(np.sum(sizes * (lower + upper) / 2) / self.count)

    def std(self) -> float:
        """Population standard deviation (``numpy.std``): between bins plus the spread inside each."""
        lower, upper, sizes, _ = self._bins
        middle = (lower + upper) / 2
        step = (upper - lower) / sizes
        inside = sizes * step ** 2 * (sizes.astype(np.float64) ** 2 - 1) / 12
        return float(np.sqrt(np.sum(sizes * (middle - self.mean()) ** 2 + inside) / self.count))

    def order_statistics(self, ranks: np.ndarray) -> np.ndarray:
        """The values at 0-based ``ranks`` of the sorted sample."""
        lower, upper, sizes, before = self._bins
        ranks = np.asarray(ranks, dtype=np.int64)
        number = np.searchsorted(before + sizes, ranks, side="right")
        position = (ranks - before[number] + 0.5) / sizes[number]
        return lower[number] + position * (upper[number] - lower[number])

    def percentile(self, q: np.ndarray) -> np.ndarray:
        """``numpy.percentile`` (linear) of the sample."""
        virtual = np.asarray(q, dtype=np.float64) / 100 * (self.count - 1)
        below = np.floor(virtual).astype(np.int64)
        above = np.minimum(below + 1, self.count - 1)
        gamma = virtual - below
        first, second = self.order_statistics(below), self.order_statistics(above)
        difference = second - first
        return np.where(gamma >= 0.5, second - difference * (1 - gamma), first + difference * gamma)

    def at_most(self, edge: float) -> int:
        """How many values are ≤ ``edge``."""
        lower, upper, sizes, before = self._bins
        number = int(np.searchsorted(lower, edge, side="right")) - 1  # the last bin starting at or before the edge
        if number < 0:
            return 0
        if upper[number] <= edge:  # it and every bin before it lie at or below the edge; the rest above it
            return int(before[number] + sizes[number])
        return int(before[number]) + int(np.count_nonzero(self._bin_values(number) <= edge))

    def shares(self, inner_edges: np.ndarray) -> np.ndarray:
        """``drift.bin_shares`` of the sample: shares in (−∞, e1], (e1, e2], …, (e_last, ∞)."""
        cumulative = np.array([self.at_most(float(edge)) for edge in inner_edges] + [self.count], dtype=np.float64)
        return np.diff(np.concatenate([[0.0], cumulative])) / max(self.count, 1)

    def wasserstein(self, other: np.ndarray) -> float:
        """``scipy.stats.wasserstein_distance(other, sample)``: ∫ |F_other − F_sample| dx, over the pieces between
        the breakpoints of ``other`` and the bins' bounds, where F_other is constant and F_sample a staircase of
        even steps inside one bin (or constant between bins), each in closed form."""
        u = np.sort(np.asarray(other, dtype=np.float64))
        m, n = len(u), self.count
        lower, upper, sizes, before = self._bins
        points = np.unique(np.concatenate([u, lower, upper]))
        left, right = points[:-1], points[1:]
        level = np.searchsorted(u, left, side="right") / m  # F_other on each piece
        number = np.searchsorted(lower, left, side="right") - 1  # the last bin starting at or before the piece
        clipped = np.clip(number, 0, len(lower) - 1)
        inside = (number >= 0) & (right <= upper[clipped]) & (lower[clipped] < upper[clipped])
        # Between bins: F_sample counts the bins that end at or before the piece.
        ended = np.searchsorted(upper, left, side="right")
        counted = np.concatenate([[0], np.cumsum(sizes)])[ended]
        total = np.sum(np.abs(level - counted / n) * (right - left), where=~inside)
        if inside.any():
            low, size = lower[clipped][inside], sizes[clipped][inside].astype(np.float64)
            step = (upper[clipped][inside] - low) / size
            base = before[clipped][inside].astype(np.float64)
            first = np.clip(np.floor((left[inside] - low) / step + 0.5), 0, size)
            last = np.clip(np.floor((right[inside] - low) / step + 0.5), 0, size)
            piece_level = level[inside]
            flat = first == last
            head_end = np.where(flat, right[inside], low + (first + 0.5) * step)
            part = np.abs(piece_level - (base + first) / n) * (head_end - left[inside])
            part += step * _absolute_sums(piece_level, first + 1, last, base, n)
            tail_start = low + (last - 0.5) * step
            part += np.where(flat, 0.0, np.abs(piece_level - (base + last) / n) * (right[inside] - tail_start))
            total += np.sum(part)
        return float(total)


def _absolute_sums(level: np.ndarray, start: np.ndarray, stop: np.ndarray, before: np.ndarray, n: int) -> np.ndarray:
    """Σ_{k=start}^{stop−1} |level − (before + k)/n| for each element, in closed form (0 where stop ≤ start)."""
    stop = np.maximum(stop, start)
    crossing = np.clip(np.floor(level * n - before) + 1, start, stop)  # the first k with (before + k)/n > level

    def linear(first: np.ndarray, last: np.ndarray) -> np.ndarray:  # Σ (level − (before + k)/n), k in [first, last)
        count = last - first
        return count * level - (count * before + (first + last - 1) * count / 2) / n

    return linear(start, crossing) - linear(crossing, stop)
