"""AAMI EC57-style beat-by-beat scoring: QRS detection and V-class (PVC) results, per record and gross.

Matching (``runtime.ecg.beat_matching.match_beats``): a detected beat matches a reference beat
within ±150 ms, one-to-one, nearest pair first, ties to the earlier reference beat then the earlier
detection. From the matches:

* QRS detection: TP = matched pairs, FN = reference beats without a detection, FP = detections
  without a reference beat; Se = TP / (TP + FN), +P = TP / (TP + FP).
* V class, end to end (the stricter reading): over matched pairs, reference V and detected V is a
  V TP, reference V and detected non-V a V FN, reference non-V and detected V a V FP, both non-V a
  V TN. A reference V beat that was not detected at all is also a V FN; a false detection that was
  called V is also a V FP (called non-V, a V TN). Se = TP / (TP + FN), +P = TP / (TP + FP),
  FPR = FP / (FP + TN).

Gross results pool the counts of all records (EC57's "gross" statistics; records with many beats
weigh more). Intervals: percentile bootstrap over records — a replicate draws as many records as
there are, with replacement, and pools their counts — seeded, so a report is reproducible.
Undefined rates (0 / 0) are NaN in the arrays and ``None`` in dictionaries.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np

from pipeline.errors import DataError
from runtime.ecg.beat_matching import BeatMatch, match_beats

__all__ = [
    "BeatCounts",
    "BeatMatch",
    "Ec57Config",
    "bootstrap_intervals",
    "gross_counts",
    "match_beats",
    "rates",
    "score_record",
    "summarise",
]

METRICS = ("qrs_sensitivity", "qrs_positive_predictivity", "v_sensitivity", "v_positive_predictivity",
           "v_false_positive_rate")


@dataclass(frozen=True)
class Ec57Config:
    tolerance_s: float = 0.15  # AAMI EC57 match window, each side of a reference beat
    replicates: int = 2000  # bootstrap replicates over records
    confidence: float = 0.95  # two-sided interval level
    seed: int = 0  # bootstrap draws: the same seed gives the same intervals


@dataclass(frozen=True)
class BeatCounts:
    """Beat-by-beat counts of one record (or of several, pooled)."""

    record: str
    qrs_true_positives: int
    qrs_false_negatives: int
    qrs_false_positives: int
    v_true_positives: int = 0
    v_false_negatives: int = 0
    v_false_positives: int = 0
    v_true_negatives: int = 0


def _boolean(values: np.ndarray | None, size: int, name: str) -> np.ndarray:
    if values is None:
        return np.zeros(size, dtype=bool)
    array = np.asarray(values)
    if array.shape != (size,) or array.dtype != bool:
        raise DataError(f"{name} labels of {array.dtype} {array.shape}", expected=f"{size} booleans, one per beat",
                        fix="pass a boolean 'is V' array aligned with the beat positions")
    return array


def score_record(
    record: str,
    reference_s: np.ndarray,
    detected_s: np.ndarray,
    reference_is_v: np.ndarray | None = None,
    detected_is_v: np.ndarray | None = None,
    config: Ec57Config = Ec57Config(),
) -> BeatCounts:
    """Counts of one record; leave both label arrays out to score QRS detection only."""
    match = match_beats(reference_s, detected_s, config.tolerance_s)
    reference_v = _boolean(reference_is_v, np.asarray(reference_s).size, "reference")
    detected_v = _boolean(detected_is_v, np.asarray(detected_s).size, "detected")
    paired_reference, paired_detected = reference_v[match.reference], detected_v[match.detected]
    false_detections_v = detected_v[match.unmatched_detected]
    missed_v = reference_v[match.unmatched_reference]
    return BeatCounts(
        record=str(record),
        qrs_true_positives=int(match.reference.size),
        qrs_false_negatives=int(match.unmatched_reference.size),
        qrs_false_positives=int(match.unmatched_detected.size),
        v_true_positives=int(np.sum(paired_reference & paired_detected)),
        v_false_negatives=int(np.sum(paired_reference & ~paired_detected) + missed_v.sum()),
        v_false_positives=int(np.sum(~paired_reference & paired_detected) + false_detections_v.sum()),
        v_true_negatives=int(np.sum(~paired_reference & ~paired_detected) + (~false_detections_v).sum()),
    )


def _count_matrix(counts: Sequence[BeatCounts]) -> np.ndarray:
    """(records, 7) int64 counts, columns in BeatCounts field order after ``record``."""
    names = [field.name for field in fields(BeatCounts)][1:]
    return np.array([[getattr(item, name) for name in names] for item in counts], dtype=np.int64).reshape(-1, 7)


def _rate_columns(matrix: np.ndarray) -> np.ndarray:
    """The five metrics for each row of pooled counts (NaN where undefined): (rows, 5)."""
    qrs_tp, qrs_fn, qrs_fp, v_tp, v_fn, v_fp, v_tn = (matrix[..., column].astype(np.float64) for column in range(7))
    pairs = ((qrs_tp, qrs_tp + qrs_fn), (qrs_tp, qrs_tp + qrs_fp), (v_tp, v_tp + v_fn), (v_tp, v_tp + v_fp),
             (v_fp, v_fp + v_tn))
    columns = []
    for numerator, denominator in pairs:
        column = np.full(np.shape(numerator), np.nan)
        np.divide(numerator, denominator, out=column, where=denominator > 0)
        columns.append(column)
    return np.stack(columns, axis=-1)


def rates(counts: BeatCounts) -> dict[str, float | None]:
    """QRS Se/+P and V Se/+P/FPR of one count set (None where 0 / 0)."""
    values = _rate_columns(_count_matrix([counts]))[0]
    return {name: (None if math.isnan(value) else float(value)) for name, value in zip(METRICS, values)}


def gross_counts(counts: Sequence[BeatCounts], record: str = "gross") -> BeatCounts:
    """All records' counts summed (EC57 gross statistics)."""
    total = _count_matrix(counts).sum(axis=0)
    return BeatCounts(record, *(int(value) for value in total))


def bootstrap_intervals(counts: Sequence[BeatCounts], config: Ec57Config = Ec57Config()
                        ) -> dict[str, tuple[float, float] | None]:
    """Percentile intervals of the gross metrics, resampling whole records with replacement."""
    matrix = _count_matrix(counts)
    if matrix.shape[0] == 0:
        raise DataError("no records to bootstrap", expected="at least one record's counts", fix="score records first")
    generator = np.random.default_rng(config.seed)
    draws = generator.integers(0, matrix.shape[0], size=(config.replicates, matrix.shape[0]))
    pooled = matrix[draws].sum(axis=1)  # (replicates, 7)
    values = _rate_columns(pooled)
    tail = 100 * (1 - config.confidence) / 2
    intervals: dict[str, tuple[float, float] | None] = {}
    for column, name in enumerate(METRICS):
        finite = values[:, column][np.isfinite(values[:, column])]
        intervals[name] = (
            (float(np.percentile(finite, tail)), float(np.percentile(finite, 100 - tail))) if finite.size else None
        )
    return intervals


def summarise(counts: Sequence[BeatCounts], config: Ec57Config = Ec57Config()) -> dict:
    """Per-record counts and rates, the gross counts and rates, and the bootstrap intervals (JSON-ready)."""
    gross = gross_counts(counts)
    return {
        "matching": f"one-to-one within ±{config.tolerance_s * 1000:.0f} ms, nearest first, ties to the earlier beat",
        "per_record": [{**asdict(item), **rates(item)} for item in counts],
        "gross": {**asdict(gross), **rates(gross)},
        "intervals": {
            "method": f"percentile bootstrap over records, {config.replicates} replicates, seed {config.seed}",
            "confidence": config.confidence,
            **{name: list(value) if value else None for name, value in bootstrap_intervals(counts, config).items()},
        },
    }
