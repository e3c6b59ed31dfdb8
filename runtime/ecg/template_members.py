"""The running template for a whole batch of beats at once: ``RunningTemplate``'s numbers, without a loop per beat.

The stream decides the template membership of a release's beats at once, when their RR features are known
(``TemplateMembers.add``: which beats join, and which earlier members each beat is compared with, as a range of member
indices; segments that restart inside the release, at their positions), and computes the residuals only for the
beats it feeds to the model (``TemplateMembers.residuals``).

The per-sample median of the last ``history_beats`` members is an order statistic; for a batch of beats with full
histories it is found for every (beat, sample) at once: the members the batch needs are ranked per sample (one
integer sort, ``member_order``), each beat's members become a bit mask over those ranks (an XOR of prefix masks, as
its members are a contiguous range), and clearing the lowest set bit ``middle − 1`` times leaves the ranks of the two
middle values.
The values are then taken from the sorted members, and an even count averages them as ``(a + b) / 2``, exactly as
``RunningTemplate`` (and ``np.median``) does: bit for bit the same residuals. A beat whose template is not full yet
(after a restart), and a run of one or two full-history beats (a release's tail past the 64 members one mask holds,
where the masks' fixed cost outweighs a partition per beat), takes ``RunningTemplate``'s own arithmetic.

Dependency rule: numpy and the standard library only (this package ships to the device).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from runtime.contract.derived import TemplateConfig

MASK_BITS = 64  # members one rank mask can hold: a batch's windows span at most this many members
_ONE = np.uint64(1)
_FEW_BEATS = 2  # a run of this many full-history beats or fewer takes the per-beat partition (the same medians)
_RANK_BITS = np.left_shift(_ONE, np.arange(MASK_BITS, dtype=np.uint64))  # 1 << rank
_MEMBER_BITS = 6  # a member's index (< MASK_BITS) in the low bits of its sort key
_LOW_BITS = np.int64(~(MASK_BITS - 1))
_MAGNITUDE = np.int64(0x7FFF_FFFF_FFFF_FFFF)
_bit_columns: dict[tuple[int, int], np.ndarray] = {}  # (members, samples) → every rank's bit, once per sample


def _rank_bits(count: int, samples: int) -> np.ndarray:
    found = _bit_columns.get((count, samples))
    if found is None:
        if len(_bit_columns) > 256:
            _bit_columns.clear()
        found = _bit_columns[(count, samples)] = np.repeat(_RANK_BITS[:count], samples)
    return found


def member_order(span: np.ndarray) -> np.ndarray:
    """order[r, s]: the member (row of ``span``, at most ``MASK_BITS`` rows of float64) of rank r at sample s.

    Each value's bits become an integer of the same order (negative values' magnitude bits flipped), its lowest six
    bits replaced by the member's row, and one integer sort per column ranks the members — about half an
    ``argsort``'s time. Two members whose keys agree above those six bits (equal values, or values a few units in the
    last place apart, whose order the key cannot tell) make it take a stable ``argsort`` instead: the same ranks as
    far as the medians can tell (tied values are interchangeable). Stable, because numpy's default argsort is a SIMD
    kernel chosen per CPU (x86-simd-sort on AVX2 and AVX-512), and the merge sort is the same code on every CPU. On
    real AVX2 silicon that kernel is right; under QEMU 7.2's emulated Haswell it returns unsorted orders (or crashes):
    QEMU mis-decodes its AVX2 gathers whose index register is xmm4/ymm4 (found by running ``tests/runtime`` there,
    2026-12-07). The stable sort keeps the emulated check of these medians meaningful."""
    keys = span.view(np.int64)
    sortable = keys >> 63  # −1 for a negative value: its magnitude bits flip, so larger magnitudes sort lower
    sortable &= _MAGNITUDE
    sortable ^= keys
    sortable &= _LOW_BITS
    sortable |= np.arange(len(span), dtype=np.int64)[:, None]
    sortable.sort(axis=0)
    high = sortable >> _MEMBER_BITS
    if (high[1:] == high[:-1]).any():
        return np.argsort(span, axis=0, kind="stable")
    sortable &= MASK_BITS - 1
    return sortable


def full_window_medians(members: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """Per-sample median of ``members[start : start + length]`` for every start: (len(starts), samples) float64.

    ``members``: (count, samples) float64 with ``starts.max() + length - starts.min() ≤ MASK_BITS``. Everything
    runs in the members' own layout (member × sample, each sample's members a column): one sort down the columns
    (``member_order``), the rank bits scattered and XOR-accumulated down them, and the two middle values read back
    through flat indices — no transposed copies. The index of a mask's lowest set bit is the population count of
    the bits up to it, minus one.
    """
    first = int(starts.min())
    span = members[first : int(starts.max()) + length]  # (count, samples), C-contiguous
    count, samples = span.shape
    order = member_order(span)  # order[r, s]: the member of rank r at sample s
    columns = np.arange(samples)
    located = order * samples  # flat index of each ranked member's value in ``span``
    located += columns
    located = located.reshape(-1)
    prefix = np.empty((count + 1, samples), dtype=np.uint64)  # row m: XOR of the rank bits of members before m
    prefix[0] = 0
    prefix[1:].reshape(-1)[located] = _rank_bits(count, samples)
    np.bitwise_xor.accumulate(prefix, axis=0, out=prefix)
    local = starts - first
    masks = prefix[local + length]  # (beats, samples): the ranks of each beat's members
    masks ^= prefix[local]
    scratch = np.empty_like(masks)
    middle = length // 2
    for _ in range(middle - 1 if length % 2 == 0 else middle):  # leave the lower middle value lowest
        np.subtract(masks, _ONE, out=scratch)
        masks &= scratch
    values = span.reshape(-1)
    offsets = columns - samples  # rank r's value at sample s: located[(r + 1) * samples + s − samples]
    np.subtract(masks, _ONE, out=scratch)
    index = np.multiply(np.bitwise_count(scratch ^ masks), samples, dtype=np.intp)  # (lowest set bit + 1) · samples
    index += offsets
    low = values[located[index]]
    if length % 2:
        return low
    masks &= scratch
    np.subtract(masks, _ONE, out=scratch)
    index = np.multiply(np.bitwise_count(scratch ^ masks), samples, dtype=np.intp)
    index += offsets
    low += values[located[index]]
    low /= 2
    return low


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
        self._buffer = np.zeros((0, 1))  # room for members: the stored ones from row _offset on
        self._offset = 0
        self._rows = self._buffer  # members[first:] (a view of the buffer; rows beyond count are free space)
        self._first = 0  # absolute index of _rows[0]
        self._count = 0  # members stored (absolute index of the next member − _first)
        self._segment = 0  # absolute index of the current segment's first member

    @property
    def total(self) -> int:
        return self._first + self._count

    def restart(self) -> None:
        """A new segment: later beats are compared only with members that join from now on."""
        self._segment = self.total

    def add(self, scored: np.ndarray, pre_to_local: np.ndarray, restarts: Sequence[int] = ()
            ) -> tuple[np.ndarray, np.ndarray]:
        """Beats in time order (z-scored windows, pre-to-local ratios): (start, stop) of each beat's template members
        (before it joins), then the beats that pass the gate join. ``restarts``: positions (0 … len) before which a
        new segment begins (``restart`` there), in order."""
        history = self.config.history_beats
        count = len(scored)
        joins = np.zeros(count, dtype=bool) if not history else ~(
            np.asarray(pre_to_local, dtype=np.float64) < self.config.minimum_pre_to_local)  # NaN joins
        stops = np.cumsum(joins)  # members before each beat: the running count of joins, exclusive
        stops -= joins
        stops += self.total
        segment = self._segment
        if restarts:
            firsts = np.full(count, segment, dtype=np.int64)  # each beat's segment's first member
            for position in restarts:
                segment = int(stops[position]) if position < count else self.total + int(np.count_nonzero(joins))
                firsts[position:] = segment
            starts = np.maximum(stops - history, firsts)
        else:
            starts = np.maximum(stops - history, segment)
        joined = scored[joins]
        if len(joined):
            self._append(joined)
        self._segment = segment
        return starts, stops

    def _append(self, rows: np.ndarray) -> None:
        needed = self._count + len(rows)
        if self._offset + needed > self._buffer.shape[0]:  # no room after the stored members: move them to the front
            target = self._buffer
            if 2 * needed > self._buffer.shape[0] or self._buffer.shape[1] != rows.shape[1]:
                target = np.empty((max(4 * needed, 256), rows.shape[1]))  # (or into a larger buffer)
            target[: self._count] = self._rows[: self._count]
            self._buffer, self._offset, self._rows = target, 0, target
        self._rows[self._count : needed] = rows
        self._count = needed

    def forget_before(self, index: int) -> None:
        """Drop the members before absolute index ``index`` (the buffer's free space grows; nothing is copied)."""
        drop = min(max(0, index - self._first), self._count)
        if drop:
            self._offset += drop
            self._rows = self._buffer[self._offset :]
            self._first += drop
            self._count -= drop

    def residuals(self, scored: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
        """Each beat's z-scored window minus the median of its members: float32 (beats, samples); zeros for a beat
        without members."""
        residuals = np.zeros(scored.shape, dtype=np.float32)
        counts = stops - starts
        history = self.config.history_beats
        fast = counts == history
        if not 0 < history <= MASK_BITS:
            fast[:] = False
        full = np.flatnonzero(fast)
        alone: list[int] = []  # beats of runs too short for the rank masks' fixed cost: one partition each
        position = 0
        while position < len(full):  # runs of beats whose members fit one rank mask
            chunk = full[position:]
            reach = starts[chunk]
            reach -= reach[0] - history
            chunk = chunk[: int(np.searchsorted(reach, MASK_BITS, side="right"))]
            position += len(chunk)
            if len(chunk) <= _FEW_BEATS:
                alone += chunk.tolist()
                continue
            first, last = int(chunk[0]), int(chunk[-1])
            rows = slice(first, last + 1) if last - first + 1 == len(chunk) else chunk  # usually a run of rows
            medians = full_window_medians(self._rows, starts[rows] - self._first, history)
            np.subtract(scored[rows], medians, out=medians)
            residuals[rows] = medians  # float32, as ``astype`` rounds
        rest = np.flatnonzero((counts > 0) & ~fast).tolist()
        for index in sorted(alone + rest) if rest else alone:
            members = self._rows[starts[index] - self._first : stops[index] - self._first]
            residuals[index] = (scored[index] - partial_window_median(np.ascontiguousarray(members.T))).astype(
                np.float32)
        return residuals
