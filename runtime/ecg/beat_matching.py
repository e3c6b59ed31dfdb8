"""One-to-one matching of detected beats to reference beats (AAMI EC57 style), numpy only.

The rule: every (reference, detection) pair closer than the tolerance (inclusive) is a candidate;
candidates are taken nearest first, and a pair is kept when neither its reference nor its detection
is already matched. Equal distances are broken by the earlier reference beat, then the earlier
detection. So a detection never counts for two reference beats, two detections near one reference
beat give one match and one false detection, and the result does not depend on input order.

This is the matcher itself; scoring (Se, +P, V-class rates, per-record and gross results, bootstrap
intervals) is ``pipeline.validation.ec57``. It lives in ``runtime`` because it is the one room that
the validation, the scenarios (training labels from matched annotations) and the benchmarks may all
import.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from runtime.errors import EdgemedError

_RELATIVE_SLACK = 1e-9  # a distance equal to the tolerance up to float rounding still matches


class MatchError(EdgemedError):
    """Beat positions or a tolerance that cannot be matched."""


class BeatMatch(NamedTuple):
    reference: np.ndarray  # int64 positions into the reference array, one per matched pair, ascending
    detected: np.ndarray  # int64 positions into the detected array, paired with ``reference``
    unmatched_reference: np.ndarray  # positions of reference beats without a detection (missed beats)
    unmatched_detected: np.ndarray  # positions of detections without a reference beat (false detections)


def _times(values: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or not np.all(np.isfinite(array)):
        raise MatchError(f"{name} beat times of shape {array.shape}", expected="1-D finite times or sample indices",
                         fix="pass one position per beat, in one unit for both arrays")
    return array


def match_beats(reference: np.ndarray, detected: np.ndarray, tolerance: float) -> BeatMatch:
    """Pairs of (reference, detection) within ±tolerance, one-to-one; positions and tolerance in one unit."""
    reference_times, detected_times = _times(reference, "reference"), _times(detected, "detected")
    if not np.isfinite(tolerance) or tolerance < 0:
        raise MatchError(f"tolerance {tolerance}", expected="a finite, non-negative number", fix="pass e.g. 0.15 s")
    reach = float(tolerance) * (1 + _RELATIVE_SLACK)
    order = np.argsort(detected_times, kind="stable")
    ordered = detected_times[order]
    low = np.searchsorted(ordered, reference_times - reach, side="left")
    high = np.searchsorted(ordered, reference_times + reach, side="right")
    counts = high - low
    reference_rows = np.repeat(np.arange(reference_times.size), counts)
    offsets = np.arange(reference_rows.size) - np.repeat(np.cumsum(counts) - counts, counts)
    detected_rows = order[low[reference_rows] + offsets]
    distance = np.abs(detected_times[detected_rows] - reference_times[reference_rows])
    inside = distance <= reach
    reference_rows, detected_rows, distance = reference_rows[inside], detected_rows[inside], distance[inside]
    reference_used = np.zeros(reference_times.size, dtype=bool)
    detected_used = np.zeros(detected_times.size, dtype=bool)
    pairs: list[tuple[int, int]] = []
    for candidate in np.lexsort((detected_times[detected_rows], reference_times[reference_rows], distance)):
        row, column = int(reference_rows[candidate]), int(detected_rows[candidate])
        if not reference_used[row] and not detected_used[column]:
            reference_used[row] = detected_used[column] = True
            pairs.append((row, column))
    pairs.sort(key=lambda pair: (reference_times[pair[0]], pair[0]))
    matched = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return BeatMatch(
        matched[:, 0], matched[:, 1], np.flatnonzero(~reference_used), np.flatnonzero(~detected_used)
    )
