"""Scoring of the PVC leave-one-record-out measurement: threshold rule, EC57 counts, the markdown table.

The counts follow ``pipeline.validation.ec57.score_record`` exactly (end to end: a missed V beat is a
V FN, a false detection called V is a V FP); the benchmark room may not import the validation room,
so they are taken from the labels ``pipeline.scenarios.ecg_pvc.beats`` already matched with the
same matcher, and ``tests/pipeline/test_ecg_pvc_loro.py`` proves them equal to ``ec57``'s.
"""

from __future__ import annotations

import math

import numpy as np

from pipeline.scenarios.ecg_pvc.beats import FALSE_DETECTION, RecordBeats, V

COUNT_FIELDS = ("qrs_true_positives", "qrs_false_negatives", "qrs_false_positives", "v_true_positives",
                "v_false_negatives", "v_false_positives", "v_true_negatives")
RATE_NAMES = ("qrs_sensitivity", "qrs_positive_predictivity", "v_sensitivity", "v_positive_predictivity",
              "v_false_positive_rate")


def threshold_for_sensitivity(probabilities: np.ndarray, is_v: np.ndarray, target: float) -> float:
    """The largest threshold at which at least ``target`` of the V beats score ≥ it (0.5 without V beats)."""
    scores = np.sort(np.asarray(probabilities, dtype=np.float64)[np.asarray(is_v, dtype=bool)])[::-1]
    if scores.size == 0:
        return 0.5
    needed = max(1, math.ceil(target * scores.size - 1e-9))
    return float(scores[needed - 1])


def threshold_for_f1(probabilities: np.ndarray, is_v: np.ndarray) -> float:
    """The threshold (a score of a V beat) with the highest V F1; ties go to the highest threshold.

    Beats scoring ≥ the threshold are called V. 0.5 when there is no V beat.
    """
    scores = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(is_v, dtype=bool)
    if not labels.any():
        return 0.5
    order = np.argsort(-scores, kind="stable")
    ordered_scores, ordered_labels = scores[order], labels[order]
    last_of_tie = np.append(ordered_scores[1:] != ordered_scores[:-1], True)  # call every beat of a tied score
    true_positives = np.cumsum(ordered_labels)[last_of_tie]
    called = (np.arange(scores.size) + 1)[last_of_tie]
    f1 = 2 * true_positives / (called + labels.sum())
    return float(ordered_scores[last_of_tie][int(np.argmax(f1))])


def record_counts(beats: RecordBeats, predicted_v: np.ndarray) -> dict[str, int | str]:
    """EC57 counts of one record from its detections' labels and the model's V decisions."""
    predicted = np.asarray(predicted_v, dtype=bool)
    is_v = beats.labels == V
    false_detections = int(np.sum(beats.labels == FALSE_DETECTION))
    return {
        "record": beats.record,
        "qrs_true_positives": int(beats.peaks.size) - false_detections,
        "qrs_false_negatives": beats.missed_beats,
        "qrs_false_positives": false_detections,
        "v_true_positives": int(np.sum(is_v & predicted)),
        "v_false_negatives": int(np.sum(is_v & ~predicted)) + beats.missed_v,
        "v_false_positives": int(np.sum(~is_v & predicted)),
        "v_true_negatives": int(np.sum(~is_v & ~predicted)),
    }


def pooled_counts(counts: list[dict]) -> dict[str, int | str]:
    return {"record": "pooled", **{name: int(sum(item[name] for item in counts)) for name in COUNT_FIELDS}}


def rates(counts: dict) -> dict[str, float | None]:
    """QRS Se/+P and V Se/+P/FPR (None where 0 / 0), as ``ec57.rates``."""
    pairs = {
        "qrs_sensitivity": ("qrs_true_positives", "qrs_false_negatives"),
        "qrs_positive_predictivity": ("qrs_true_positives", "qrs_false_positives"),
        "v_sensitivity": ("v_true_positives", "v_false_negatives"),
        "v_positive_predictivity": ("v_true_positives", "v_false_positives"),
        "v_false_positive_rate": ("v_false_positives", "v_true_negatives"),
    }
    result: dict[str, float | None] = {}
    for name, (numerator, other) in pairs.items():
        denominator = counts[numerator] + counts[other]
        result[name] = counts[numerator] / denominator if denominator else None
    return result


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def markdown_table(folds: list[dict], pooled: dict, runs: int = 1) -> str:
    """One row per test record and a pooled row: beats, V, QRS Se/+P, V Se/+P/FPR (%), threshold. Rows whose
    counts are summed over ``runs`` runs of the same beats (training seeds) show each record's beats once and the
    summed V counts, and no threshold (each run chose its own)."""
    counted = "V TP / FN / FP" if runs == 1 else f"V TP / FN / FP (sum of {runs} seeds)"
    lines = [
        f"| record | beats | V | QRS Se | QRS +P | V Se | V +P | V FPR | {counted} | threshold |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in [*folds, {**pooled, "threshold": None}]:
        counts, values = row["counts"], row["rates"]
        beats = (counts["qrs_true_positives"] + counts["qrs_false_negatives"]) // runs
        v_beats = (counts["v_true_positives"] + counts["v_false_negatives"]) // runs
        threshold = "" if not isinstance(row.get("threshold"), float | int) else f"{row['threshold']:.3f}"
        name = f"**{counts['record']}**" if counts["record"] == "pooled" else counts["record"]
        lines.append(
            f"| {name} | {beats} | {v_beats} | {percent(values['qrs_sensitivity'])} | "
            f"{percent(values['qrs_positive_predictivity'])} | {percent(values['v_sensitivity'])} | "
            f"{percent(values['v_positive_predictivity'])} | {percent(values['v_false_positive_rate'])} | "
            f"{counts['v_true_positives']} / {counts['v_false_negatives']} / {counts['v_false_positives']} | "
            f"{threshold} |"
        )
    return "\n".join(lines)
