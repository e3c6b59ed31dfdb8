"""The running template for a whole batch of beats at once: ``RunningTemplate``'s numbers, without a loop per beat.

The stream decides each beat's template membership when its RR features are known (``TemplateMembers.add``: which
beats join, and which earlier members each beat is compared with, as a range of member indices), and computes the
residuals only for the beats it feeds to the model, a release at a time (``TemplateMembers.residuals``).

The per-sample median of the last ``history_beats`` members is an order statistic; for a batch of beats with full
histories it is found for every (beat, sample) at once: the members the batch needs are ranked per sample (one
``argsort``), each beat's members become a bit mask over those ranks (an XOR of prefix masks, as its members are a
contiguous range), and clearing the lowest set bit ``middle − 1`` times leaves the ranks of the two middle values.
The values are then taken from the sorted members, and an even count averages them as ``(a + b) / 2``, exactly as
``RunningTemplate`` (and ``np.median``) does: bit for bit the same residuals. A beat whose template is not full yet
(after a restart), and a run of one or two full-history beats (a release's tail past the 64 members one mask holds,
where the masks' fixed cost outweighs a partition per beat), takes ``RunningTemplate``'s own arithmetic.

Dependency rule: numpy and the standard library only (this package ships to the device).
"""

from __future__ import annotations

import numpy as np

from runtime.contract.derived import TemplateConfig

MASK_BITS = 64  # members one rank mask can hold: a batch's windows span at most this many members
_ONE = np.uint64(1)
_MANTISSA_BITS = np.uint64(52)
_EXPONENT_BIAS = np.uint64(1023)
_FEW_BEATS = 2  # a run of this many full-history beats or fewer takes the per-beat partition (the same medians)
_RANK_BITS = np.left_shift(_ONE, np.arange(MASK_BITS, dtype=np.uint64))  # 1 << rank


def _lowest_bit_index(masks: np.ndarray) -> np.ndarray:
    """Index of the lowest set bit of each (non-zero) uint64: a power of two converts to float64 exactly."""
    lowest = masks & (~masks + _ONE)
    return ((lowest.astype(np.float64).view(np.uint64) >> _MANTISSA_BITS) - _EXPONENT_BIAS).astype(np.intp)


def full_window_medians(members: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """Per-sample median of ``members[start : start + length]`` for every start: (len(starts), samples) float64.

    ``members``: (count, samples) float64 with ``starts.max() + length - starts.min() ≤ MASK_BITS``. Everything
    runs in the members' own layout (member × sample, each sample's members a column): one ``argsort`` down the
    columns, the rank bits scattered and XOR-accumulated down them, and the two middle values read back through
    flat indices — no transposed copies.
    """
    first = int(starts.min())
    span = members[first : int(starts.max()) + length]  # (count, samples), C-contiguous
    count, samples = span.shape
    order = np.argsort(span, axis=0)  # order[r, s]: the member of rank r at sample s
    columns = np.arange(samples)
    located = order * samples  # flat index of each ranked member's value in ``span``
    located += columns
    located = located.reshape(-1)
    prefix = np.empty((count + 1, samples), dtype=np.uint64)  # row m: XOR of the rank bits of members before m
    prefix[0] = 0
    prefix[1:].reshape(-1)[located] = np.repeat(_RANK_BITS[:count], samples)
    np.bitwise_xor.accumulate(prefix, axis=0, out=prefix)
    local = starts - first
    masks = prefix[local + length] ^ prefix[local]  # (beats, samples): the ranks of each beat's members
    scratch = np.empty_like(masks)
    middle = length // 2
    for _ in range(middle - 1 if length % 2 == 0 else middle):  # leave the lower middle value lowest
        np.subtract(masks, _ONE, out=scratch)
        masks &= scratch
    values = span.reshape(-1)
    low = values[located[_lowest_bit_index(masks) * samples + columns]]
    if length % 2:
        return low
    np.subtract(masks, _ONE, out=scratch)
    masks &= scratch
    high = values[located[_lowest_bit_index(masks) * samples + columns]]
    return (low + high) / 2


def partial_window_median(history: np.ndarray) -> np.ndarray:
    """``RunningTemplate._median`` of (samples, count) members (any count ≥ 1)."""
    count = history.shape[1]
    middle = count // 2
    if count % 2:
        return np.partition(history, middle, axis=1)[:, middle]
    ranked = np.partition(history, (middle - 1, middle), axis=1)
    return (ranked[:, middle - 1] + ranked[:, middle]) / 2


class TemplateMembers:
    """The z-scored windows of the beats that joined the template, in order, across segments (``restart``).

    Member indices are absolute (since the stream began); ``forget_before`` drops members no pending beat needs.
    """

    def __init__(self, config: TemplateConfig) -> None:
        self.config = config
        self._rows = np.zeros((0, 1))  # members[first:] (rows beyond count are free space)
        self._first = 0  # absolute index of _rows[0]
        self._count = 0  # members stored (absolute index of the next member − _first)
        self._segment = 0  # absolute index of the current segment's first member

    @property
    def total(self) -> int:
        return self._first + self._count

    def restart(self) -> None:
        """A new segment: later beats are compared only with members that join from now on."""
        self._segment = self.total

    def add(self, scored: np.ndarray, pre_to_local: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Beats in time order (z-scored windows, pre-to-local ratios): (start, stop) of each beat's template members
        (before it joins), then the beats that pass the gate join."""
        history = self.config.history_beats
        joins = np.zeros(len(scored), dtype=bool) if not history else ~(
            np.asarray(pre_to_local, dtype=np.float64) < self.config.minimum_pre_to_local)  # NaN joins
        stops = self.total + np.concatenate([[0], np.cumsum(joins)[:-1]]).astype(np.int64)
        starts = np.maximum(stops - history, self._segment)
        joined = scored[joins]
        if len(joined):
            self._append(joined)
        return starts, stops

    def _append(self, rows: np.ndarray) -> None:
        needed = self._count + len(rows)
        if self._rows.shape[0] < needed:
            grown = np.empty((max(2 * needed, 256), rows.shape[1]))
            grown[: self._count] = self._rows[: self._count]
            self._rows = grown
        self._rows[self._count : needed] = rows
        self._count = needed

    def forget_before(self, index: int) -> None:
        """Drop the members before absolute index ``index``."""
        drop = min(max(0, index - self._first), self._count)
        if drop:
            self._rows[: self._count - drop] = self._rows[drop : self._count]
            self._first += drop
            self._count -= drop

    def residuals(self, scored: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
        """Each beat's z-scored window minus the median of its members: float32 (beats, samples); zeros for a beat
        without members."""
        residuals = np.zeros(scored.shape, dtype=np.float32)
        counts = stops - starts
        history = self.config.history_beats
        fast = (counts == history) & (0 < history <= MASK_BITS)
        full = np.flatnonzero(fast)
        alone: list[int] = []  # beats of runs too short for the rank masks' fixed cost: one partition each
        position = 0
        while position < len(full):  # runs of beats whose members fit one rank mask
            chunk = full[position:]
            reach = starts[chunk] + history - starts[chunk[0]]
            chunk = chunk[: int(np.searchsorted(reach, MASK_BITS, side="right"))]
            position += len(chunk)
            if len(chunk) <= _FEW_BEATS:
                alone += chunk.tolist()
                continue
            medians = full_window_medians(self._rows, starts[chunk] - self._first, history)
            residuals[chunk] = (scored[chunk] - medians).astype(np.float32)
        for index in sorted(alone + np.flatnonzero((counts > 0) & ~fast).tolist()):
            members = self._rows[starts[index] - self._first : stops[index] - self._first]
            residuals[index] = (scored[index] - partial_window_median(np.ascontiguousarray(members.T))).astype(
                np.float32)
        return residuals
