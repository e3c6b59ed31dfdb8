"""The variable-length parts of aggregate payloads as two Arrow list columns of an aggregate frame: made once when the
frame is made (``aggregate_window.aggregate_frame``: once per block a page caches), carried by pandas through a
window's concat, filter and sort, and read back flat by the sums over many rows (``aggregate_sums``,
``aggregate_fleet``) — an hour of a thousand devices is sixty thousand payloads, and visiting each costs more than the
maths.

* ``latency_bins``: per row, the latency histogram's bins as bin × 2³² + count, in the payload's order (one integer
  an entry: a window's sort moves half as much as with a pair); null where a bin or count does not fit;
* ``counters``: per row, (section, key, count) of ``classes``, then ``labels``, then ``quality_flags``, each in its
  key order, the keys dictionary-encoded; null where a section is not a {text: integer} object.

Where a row is null, or a frame has no such columns (made by hand), sums read the payloads: the same numbers.

Nothing here changes a payload; a frame's payloads are never changed in place (its columns would no longer be theirs).

Dependency rule: numpy, pandas and pyarrow only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

SECTIONS = ("classes", "labels", "quality_flags")  # the counter sections, numbered in this order
COUNTER_ENTRY = pa.struct([("section", pa.int8()), ("key", pa.dictionary(pa.int32(), pa.string())),
                           ("count", pa.int64())])
ENTRY_TYPES = {"latency_bins": pa.list_(pa.int64()), "counters": pa.list_(COUNTER_ENTRY)}
_BIN_SHIFT = 32  # latency entry = bin << 32 | count
_COUNT_MASK = (1 << _BIN_SHIFT) - 1


def entry_columns(payloads: Sequence[Mapping[str, Any]]) -> dict[str, pd.arrays.ArrowExtensionArray]:
    """The ``latency_bins`` and ``counters`` columns of ``payloads`` (module docstring)."""
    return {"latency_bins": pd.arrays.ArrowExtensionArray(_latency_bins(payloads)),
            "counters": pd.arrays.ArrowExtensionArray(_counters(payloads))}


def _bins_of(payload: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """(bin indices, counts) of a payload's latency histogram (``SparseBins`` or the wire's {"<index>": count})."""
    latency = payload.get("latency_us")
    bins = latency.get("bins") if isinstance(latency, Mapping) else None
    if isinstance(bins, Mapping):
        try:
            return (np.fromiter(map(int, bins), dtype=np.int64, count=len(bins)),
                    np.fromiter(bins.values(), dtype=np.int64, count=len(bins)))
        except (TypeError, ValueError):
            return None
    indices, counts = getattr(bins, "indices", None), getattr(bins, "counts", None)
    if (isinstance(indices, np.ndarray) and isinstance(counts, np.ndarray) and len(indices) == len(counts)
            and indices.dtype.kind in "iu" and counts.dtype.kind in "iu"):
        return indices, counts
    return None


def _list_array(lengths: Sequence[int], valid: Sequence[bool], values: pa.Array) -> pa.ListArray:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    mask = None if all(valid) else pa.array(np.logical_not(valid))
    return pa.ListArray.from_arrays(pa.array(offsets), values, mask=mask)


def _latency_bins(payloads: Sequence[Mapping[str, Any]]) -> pa.ListArray:
    found = [_bins_of(payload) for payload in payloads]
    lengths = np.array([len(parts[0]) if parts is not None else 0 for parts in found], dtype=np.int64)
    usable = [parts for parts in found if parts is not None]
    indices = np.concatenate([parts[0] for parts in usable]).astype(np.int64) if usable else np.empty(0, np.int64)
    counts = np.concatenate([parts[1] for parts in usable]).astype(np.int64) if usable else np.empty(0, np.int64)
    fits = (indices >= 0) & (indices < 1 << 31) & (counts >= 0) & (counts <= _COUNT_MASK)
    rows = np.repeat(np.arange(len(found)), lengths)
    valid = np.array([parts is not None for parts in found], dtype=bool)
    valid[rows[~fits]] = False  # a bin or count that does not fit: the row is read from its payload
    keep = valid[rows]
    lengths[~valid] = 0
    return _list_array(lengths, valid, pa.array((indices[keep] << _BIN_SHIFT) | counts[keep]))


def _sections_of(payload: Mapping[str, Any]) -> list[tuple[int, str, int]] | None:
    """A payload's counter entries, or None when a section is not a {text: integer} object (or is missing): what
    ``WindowSummary.add`` reads (``labels`` may be absent or null; the others null, as ``Counter.update(None)``)."""
    entries = []
    for number, name in enumerate(SECTIONS):
        if name == "labels":
            section = payload.get(name) or {}
        elif name in payload:
            section = payload[name]
        else:
            return None
        if section is None:
            continue
        if not isinstance(section, dict):
            return None
        for key, count in section.items():
            if not isinstance(key, str) or not isinstance(count, int | np.integer):
                return None
            entries.append((number, str(key), int(count)))
    return entries


def _counters(payloads: Sequence[Mapping[str, Any]]) -> pa.ListArray:
    found = [_sections_of(payload) for payload in payloads]
    flat = [entry for entries in found if entries is not None for entry in entries]
    try:
        counts = np.array([entry[2] for entry in flat], dtype=np.int64)
    except OverflowError:  # beyond int64: every row read from the payloads
        found, flat, counts = [None] * len(found), [], np.empty(0, dtype=np.int64)
    values = pa.StructArray.from_arrays(
        [pa.array(np.array([entry[0] for entry in flat], dtype=np.int8)),
         pa.array([entry[1] for entry in flat], type=pa.string()).dictionary_encode(), pa.array(counts)],
        fields=list(COUNTER_ENTRY))
    return _list_array([len(entries) if entries is not None else 0 for entries in found],
                       [entries is not None for entries in found], values)


def _flat(frame: pd.DataFrame, column: str) -> tuple[np.ndarray, pa.StructArray] | None:
    """(row position of each entry, the entries) of ``column`` over ``frame``'s rows in order; None when the frame
    has no such column (made by hand, or concatenated with one that had none) or a row's entries are null."""
    if column not in frame or frame[column].dtype != pd.ArrowDtype(ENTRY_TYPES[column]):
        return None
    array = frame[column].array.__arrow_array__()
    array = array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
    if array.null_count:
        return None
    rows = pc.list_parent_indices(array).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    return rows, array.flatten()


def latency_bins(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(row position, bin, count) of every latency bin of ``frame``'s rows, rows in order; None: read the payloads."""
    flat = _flat(frame, "latency_bins")
    if flat is None:
        return None
    rows, entries = flat
    packed = entries.to_numpy(zero_copy_only=False)
    return rows, packed >> _BIN_SHIFT, packed & _COUNT_MASK


def counter_entries(frame: pd.DataFrame, section: str) -> tuple[np.ndarray, list[str], np.ndarray] | None:
    """(row position, key, count) of every entry of counter ``section`` of ``frame``'s rows, in row and key order;
    None: read the payloads."""
    flat = _flat(frame, "counters")
    if flat is None:
        return None
    rows, entries = flat
    chosen = np.flatnonzero(entries.field("section").to_numpy(zero_copy_only=False) == SECTIONS.index(section))
    keys = entries.field("key")
    codes = keys.indices.to_numpy(zero_copy_only=False)[chosen]
    counts = entries.field("count").to_numpy(zero_copy_only=False)[chosen].astype(np.int64, copy=False)
    return rows[chosen], KeyCodes(codes, keys.dictionary.to_pylist()), counts


class KeyCodes(Sequence[str]):
    """Keys given as codes into a dictionary of texts (``dictionary[codes[i]]`` is key i), read without making a
    string per entry."""

    def __init__(self, codes: np.ndarray, dictionary: list[str]) -> None:
        self.codes, self.dictionary = codes, dictionary

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self.dictionary[code] for code in self.codes[index].tolist()]
        return self.dictionary[int(self.codes[index])]
