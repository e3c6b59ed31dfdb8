"""Fixed, mergeable bins for telemetry aggregates (protocol.md, "Aggregates"): latency and drift histograms.

Every bin layout is a sorted array of edges; a value's bin is ``searchsorted(edges, value, side="left")``:
bin 0 holds values ≤ ``edges[0]``, bin i the values in ``(edges[i-1], edges[i]]`` and bin ``len(edges)`` the
values above ``edges[-1]``. Counts of two histograms on the same edges add, so minutes merge into hours and
devices into fleets without touching raw values. Three layouts, each named by its ``scheme``:

* ``log10/64`` — latency in µs: 64 log-spaced bins per decade from 1 µs to 10⁸ µs. Every power of ten is an
  edge, so "slower than 10 000 µs" is counted exactly; a percentile read from the bins is within
  ``LATENCY_RELATIVE_ERROR`` (1.8 %) of the exact one (``quantile``).
* ``reference-deciles/16`` — a drift feature the bundle's ``reference_profile.json`` describes: its 10 decile bins
  (the bins the dashboard's PSI and JS distance use), each cut at 16 equal widths and at the 16-quantiles of the
  profile's sample inside it (narrow bins where the reference is dense), plus 16 equal bins on each side reaching
  one reference range (max − min) beyond it, so that the KS test and the Wasserstein distance can be computed from
  the histogram too, drifted values included. The decile edges are the profile's ``decile_edges``; a profile entry
  without them gets the deciles of its ``sample`` (``edges_from_reference``).
* ``signed-log10/64`` — a feature the profile does not describe: ±10⁻⁶ … ±10⁶ with 64 bins per decade, so any
  finite number lands in a bin with at most 3.7 % relative width.

Dependency rule: numpy and the standard library only (this package ships to the device).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from itertools import pairwise
from typing import Any

import numpy as np

LATENCY_SCHEME = "log10/64"
LATENCY_BINS_PER_DECADE = 64
LATENCY_DECADES = 8  # 1 µs … 100 s: anything slower is counted in the overflow bin (and in ``max``)
_LATENCY_GROWTH = 10.0 ** (1.0 / LATENCY_BINS_PER_DECADE)
# A bin's representative value 2·lo·hi/(lo+hi) is within this relative distance of every value in (lo, hi].
LATENCY_RELATIVE_ERROR = (_LATENCY_GROWTH - 1.0) / (_LATENCY_GROWTH + 1.0)

REFERENCE_SUB_BINS = 16  # sub-bins per reference decile bin
REFERENCE_SCHEME = f"reference-deciles/{REFERENCE_SUB_BINS}"
# Most edges a reference track can have: per decile 16 equal and 15 sample-quantile sub-bins, 16 on each side.
REFERENCE_MAX_EDGES = 10 * (2 * REFERENCE_SUB_BINS - 1) + 2 * REFERENCE_SUB_BINS + 1
GENERIC_SCHEME = "signed-log10/64"
GENERIC_BINS_PER_DECADE = 64
GENERIC_DECADES = (-6, 6)  # magnitudes 10⁻⁶ … 10⁶; smaller ones share the bin around 0, larger ones the tails
SCHEMES = (LATENCY_SCHEME, REFERENCE_SCHEME, GENERIC_SCHEME)


@functools.cache
def latency_edges() -> np.ndarray:
    """The ``log10/64`` edges in µs: 10^(k/64) for k = 0 … 512, powers of ten exact."""
    exponents = np.arange(LATENCY_DECADES * LATENCY_BINS_PER_DECADE + 1) / LATENCY_BINS_PER_DECADE
    edges = np.power(10.0, exponents)
    decades = np.arange(0, len(edges), LATENCY_BINS_PER_DECADE)
    edges[decades] = 10.0 ** (decades // LATENCY_BINS_PER_DECADE)
    edges.flags.writeable = False
    return edges


@functools.cache
def generic_edges() -> np.ndarray:
    """The ``signed-log10/64`` edges: −10⁶ … −10⁻⁶, 10⁻⁶ … 10⁶."""
    low, high = GENERIC_DECADES
    magnitudes = np.power(10.0, np.arange(low * GENERIC_BINS_PER_DECADE, high * GENERIC_BINS_PER_DECADE + 1)
                          / GENERIC_BINS_PER_DECADE)
    edges = np.concatenate([-magnitudes[::-1], magnitudes])
    edges.flags.writeable = False
    return edges


def reference_decile_edges(reference: Mapping[str, Any]) -> tuple[np.ndarray, str] | None:
    """(11 decile edges, where they came from) of a profile distribution; None when it has neither edges nor sample.

    A bundle's profile stores ``decile_edges`` (``pipeline/build/reference_profile.py``); an older or hand-made
    profile without them gets the deciles of its ``sample`` instead.
    """
    edges = reference.get("decile_edges")
    if isinstance(edges, list | tuple) and len(edges) >= 2:
        values = np.asarray(edges, dtype=np.float64)
        if np.all(np.isfinite(values)):
            return np.sort(values), "decile_edges"
    sample = reference.get("sample")
    if isinstance(sample, list | tuple) and len(sample) >= 2:
        values = np.asarray(sample, dtype=np.float64)
        values = values[np.isfinite(values)]
        if len(values) >= 2:
            return np.percentile(values, np.linspace(0, 100, 11)), "sample deciles"
    return None


def edges_from_reference(reference: Mapping[str, Any]) -> tuple[np.ndarray, str] | None:
    """The ``reference-deciles/16`` edges of a profile distribution (every decile edge among them), and their source."""
    found = reference_decile_edges(reference)
    if found is None:
        return None
    deciles, source = found
    sample = np.asarray(reference.get("sample") or [], dtype=np.float64)
    sample = np.sort(sample[np.isfinite(sample)])
    pieces = [np.linspace(low, high, REFERENCE_SUB_BINS + 1) for low, high in pairwise(deciles)]
    for low, high in pairwise(deciles):  # where the reference is dense, narrower bins: its sample's quantiles
        inside = sample[(sample > low) & (sample < high)]
        if len(inside) >= REFERENCE_SUB_BINS:
            pieces.append(np.quantile(inside, np.arange(1, REFERENCE_SUB_BINS) / REFERENCE_SUB_BINS))
    reach = deciles[-1] - deciles[0] if deciles[-1] > deciles[0] else max(abs(deciles[0]), 1.0)
    pieces += [np.linspace(deciles[0] - reach, deciles[0], REFERENCE_SUB_BINS + 1),  # beyond the reference range:
               np.linspace(deciles[-1], deciles[-1] + reach, REFERENCE_SUB_BINS + 1)]  # where drifted values go
    edges = np.unique(np.concatenate(pieces))
    edges.flags.writeable = False
    return edges, source


def edges_for(scheme: str, reference: Mapping[str, Any] | None = None) -> np.ndarray | None:
    """The edges of ``scheme`` (``reference`` is the profile distribution a reference track needs)."""
    if scheme == LATENCY_SCHEME:
        return latency_edges()
    if scheme == GENERIC_SCHEME:
        return generic_edges()
    if scheme == REFERENCE_SCHEME and reference is not None:
        found = edges_from_reference(reference)
        return None if found is None else found[0]
    return None


def fingerprint(tracks: Mapping[str, np.ndarray]) -> str:
    """16 hex characters naming a set of (track name → edges): the aggregate's ``bins_id``."""
    digest = hashlib.sha256()
    for name in sorted(tracks):
        digest.update(name.encode("utf-8") + b"\x00")
        digest.update(np.ascontiguousarray(tracks[name], dtype="<f8").tobytes() + b"\x01")
    return digest.hexdigest()[:16]


@functools.cache
def _bin_keys() -> np.ndarray:
    """"0", "1", … as an object array: a histogram's keys without formatting an integer per bin."""
    size = max(len(latency_edges()), len(generic_edges()), REFERENCE_MAX_EDGES) + 1
    return np.array([str(index) for index in range(size)], dtype=object)


def bin_counts(edges: np.ndarray, values: np.ndarray) -> dict[str, int]:
    """Sparse counts of ``values`` (finite) on ``edges``: {"<bin index>": count} for non-empty bins.

    Keys are strings so that a histogram is never a list of numbers (protocol.md: no numeric lists anywhere).
    """
    indices = np.searchsorted(edges, values, side="left")
    counts = np.bincount(indices, minlength=len(edges) + 1)
    occupied = np.flatnonzero(counts)
    return dict(zip(map(str, occupied.tolist()), counts[occupied].tolist(), strict=True))


def dense_counts(bins: Mapping[str, int], size: int) -> np.ndarray:
    """A sparse ``bins`` object as an int64 array of ``size`` bins (``len(edges) + 1``)."""
    counts = np.zeros(size, dtype=np.int64)
    if bins:
        indices = np.fromiter((int(key) for key in bins), dtype=np.int64, count=len(bins))
        np.add.at(counts, indices, np.fromiter(bins.values(), dtype=np.int64, count=len(bins)))
    return counts


def bin_bounds(edges: np.ndarray, low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) value of every bin, the open outer bins closed by the observed ``low`` / ``high``."""
    lower = np.concatenate([[min(low, edges[0])], edges])
    upper = np.concatenate([edges, [max(high, edges[-1])]])
    return np.maximum(lower, low), np.minimum(upper, high)


def spread(edges: np.ndarray, counts: np.ndarray, low: float, high: float) -> np.ndarray:
    """A stand-in sample for a histogram: each bin's count spread evenly inside the bin (sorted).

    Bin i's c values sit at lo + (j + ½)/c · (hi − lo), strictly inside (lo, hi), so every stand-in value lies in
    the same bin as the values it replaces: statistics on any coarser bins whose edges are among ``edges``
    (the reference deciles) are exact; others (KS, Wasserstein, a baseline's own deciles) are off by at most one
    bin's width per value. ``low`` / ``high``, the observed minimum and maximum, close the outer bins.
    """
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.empty(0)
    lower, upper = bin_bounds(edges, low, high)
    occupied = np.flatnonzero(counts)
    sizes = counts[occupied]
    starts = np.repeat(np.cumsum(sizes) - sizes, sizes)
    position = (np.arange(total) - starts + 0.5) / np.repeat(sizes, sizes)
    base = np.repeat(lower[occupied], sizes)
    return base + position * np.repeat(upper[occupied] - lower[occupied], sizes)


def quantile(edges: np.ndarray, counts: np.ndarray, q: float, low: float, high: float) -> float | None:
    """The q-quantile (linear interpolation between order statistics, as numpy's and pandas' default) read from
    a ``log10/64`` histogram: each order statistic is replaced by its bin's value 2·lo·hi/(lo+hi), which is within
    ``LATENCY_RELATIVE_ERROR`` of it (below 1 µs: within 0.5 µs), clipped to the observed ``low`` … ``high``."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return None
    position = q * (total - 1)
    below, fraction = int(np.floor(position)), position - np.floor(position)
    cumulative = np.cumsum(counts)
    lower, upper = bin_bounds(edges, low, high)
    middle = np.where(lower > 0, 2 * lower * upper / np.maximum(lower + upper, 1e-300), (lower + upper) / 2)
    middle = np.clip(middle, low, high)

    def order_statistic(rank: int) -> float:
        return float(middle[int(np.searchsorted(cumulative, rank + 1, side="left"))])

    first = order_statistic(below)
    if fraction == 0:
        return first
    return first + fraction * (order_statistic(min(below + 1, total - 1)) - first)


def count_above(edges: np.ndarray, counts: np.ndarray, threshold: float) -> tuple[int, int]:
    """(surely, possibly) how many values exceed ``threshold``: equal when it is an edge (then exact)."""
    counts = np.asarray(counts, dtype=np.int64)
    index = int(np.searchsorted(edges, threshold, side="left"))  # the bin holding the threshold
    surely = int(counts[index + 1:].sum())
    exact = index < len(edges) and edges[index] == threshold
    return surely, surely if exact else surely + int(counts[index])


_layouts: dict[tuple[int, ...], tuple[list[np.ndarray], np.ndarray, list[list[int]]]] = {}


def _layout(edges: list[np.ndarray]) -> tuple[np.ndarray, list[list[int]]]:
    """(each column's first bin in one array of all columns' bins, plus the total; the columns sharing an edges
    array), for a list of edges arrays — the same arrays minute after minute, so it is worked out once."""
    key = tuple(map(id, edges))
    found = _layouts.get(key)
    if found is None or any(kept is not given for kept, given in zip(found[0], edges, strict=True)):
        offsets = np.concatenate([[0], np.cumsum([len(column_edges) + 1 for column_edges in edges])])
        groups: dict[int, list[int]] = {}
        for column, column_edges in enumerate(edges):
            groups.setdefault(id(column_edges), []).append(column)
        if len(_layouts) > 64:
            _layouts.clear()
        found = _layouts[key] = (list(edges), offsets, list(groups.values()))  # the arrays kept: their ids stay
    return found[1], found[2]


def block_summaries(values: np.ndarray, edges: list[np.ndarray], squares: list[bool]) -> list[dict[str, Any] | None]:
    """Per column of ``values`` (rows × columns, NaN where a row has no value): count, sum, sum of squares (where
    ``squares``), min, max and sparse ``bins`` on that column's ``edges``; None for a column without a value.

    One set of numpy calls for the whole block (one ``searchsorted`` per distinct edges array, one ``bincount``), so
    a minute of a dozen tracks costs about as much as one track.
    """
    width = values.shape[1]
    finite = np.isfinite(values)
    counts = finite.sum(axis=0)
    clean = np.where(finite, values, 0.0)
    sums, sum_squares = clean.sum(axis=0), np.einsum("ij,ij->j", clean, clean)
    lows = np.where(finite, values, np.inf).min(axis=0, initial=np.inf)  # initial: a minute may have no record
    highs = np.where(finite, values, -np.inf).max(axis=0, initial=-np.inf)
    offsets, groups = _layout(edges)
    by_column = values.T  # one column's values a row (a view): each searchsorted reads its own column
    index = np.empty((width, values.shape[0]), dtype=np.int64)
    for columns in groups:
        if len(columns) == 1:
            column = columns[0]
            index[column] = edges[column].searchsorted(by_column[column], side="left")
        else:
            index[columns] = np.searchsorted(edges[columns[0]], by_column[columns], side="left")
    index += offsets[:-1, None]
    dense = np.bincount(index[finite.T], minlength=int(offsets[-1]))  # bin counts: the order of values is moot
    occupied = np.flatnonzero(dense)
    cuts = np.searchsorted(occupied, offsets)
    # every occupied bin's key (its index within its column) and count, in one pass; each column takes its slice
    keys = _bin_keys()[occupied - np.repeat(offsets[:-1], np.diff(cuts))].tolist()
    occupants = dense[occupied].tolist()
    counts, sums, sum_squares = counts.tolist(), sums.tolist(), sum_squares.tolist()
    lows, highs, cuts = lows.tolist(), highs.tolist(), cuts.tolist()
    found: list[dict[str, Any] | None] = []
    for column in range(width):
        if not counts[column]:
            found.append(None)
            continue
        first, end = cuts[column], cuts[column + 1]
        entry: dict[str, Any] = {"count": counts[column], "sum": sums[column]}
        if squares[column]:
            entry["sum_squares"] = sum_squares[column]
        entry |= {"min": lows[column], "max": highs[column],
                  "bins": dict(zip(keys[first:end], occupants[first:end], strict=True))}
        found.append(entry)
    return found
