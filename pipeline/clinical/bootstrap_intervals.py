"""Vectorised percentile bootstrap for classification metrics.

A bootstrap replicate resamples the ``n`` test samples with replacement. Instead
of materialising each resampled set, a replicate is described by how often each
original sample was drawn (its *weights*), so every metric of every replicate is
one numpy expression over a ``(replicates, ...)`` array:

* the weights of all replicates come from one ``np.bincount`` over ``replicate * n + index``;
* confusion matrices are one matrix product of a one-hot (cell × sample) indicator
  with the weights;
* sensitivity, specificity, PPV, F1, accuracy and macro-F1 are derived from them;
* one-vs-rest AUROC is the Mann–Whitney statistic with weights: the samples are
  negatives are sorted by score once, and each positive counts the (weighted)
  negatives strictly below it plus half of those tied with it, read off a
  cumulative sum at ``searchsorted`` positions. With all weights
  equal to 1 this is exactly ``sklearn.metrics.roc_auc_score`` (average ranks).

Undefined values (0/0: a class absent from a replicate, no predicted positives)
are NaN; intervals use ``np.nanpercentile``.

Correlated test samples (overlapping windows of one recording, the beats of one patient) are not
independent draws: resampling them one by one gives intervals narrower than the evidence. Given
``groups`` (one cluster id per sample: a recording, a recording's time block), a replicate draws as
many whole groups as there are, with replacement, and every sample weighs what its group was drawn
(the cluster bootstrap). With one group per sample in sample order it is the plain bootstrap, draw
for draw.

This module imports numpy and the project's error types only.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from pipeline.errors import DataError

# Replicates are processed in chunks of at most this many (replicate × sample)
# cells, which bounds memory for large test sets (~32 MiB of int64 indices).
CHUNK_CELLS = 1 << 22
# A cluster-bootstrap interval needs the samples it is about to span at least this many groups (``thin_groups``).
MINIMUM_GROUPS = 2


@dataclass(frozen=True)
class ReplicateMetrics:
    """Every metric for every replicate: shape ``(replicates,)`` or ``(replicates, k)``."""

    accuracy: np.ndarray
    macro_f1: np.ndarray
    sensitivity: np.ndarray
    specificity: np.ndarray
    ppv: np.ndarray
    f1: np.ndarray
    auroc: np.ndarray


def safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator`` as float, NaN wherever the denominator is 0."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    result = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    np.divide(numerator, denominator, out=result, where=denominator != 0)
    return result


def sample_weights(indices: np.ndarray, sample_count: int) -> np.ndarray:
    """How often each sample was drawn in each replicate, sample-major: ``(n, replicates)`` float64.

    ``indices`` is ``(replicates, m)``: row ``r`` lists the samples drawn for replicate ``r``.
    Sample-major layout makes the per-sample gathers and cumulative sums below contiguous.
    """
    replicates = indices.shape[0]
    offsets = np.arange(replicates, dtype=np.int64)[:, None] * sample_count
    counts = np.bincount((indices + offsets).ravel(), minlength=replicates * sample_count)
    return np.ascontiguousarray(counts.reshape(replicates, sample_count).T, dtype=np.float64)


def weighted_confusion_matrices(
    labels: np.ndarray, predictions: np.ndarray, weights: np.ndarray, class_count: int
) -> np.ndarray:
    """Confusion matrices ``(replicates, k, k)`` (rows true, columns predicted), one per weight column.

    Each sample adds its weight to its (true, predicted) cell: one matrix product with a
    one-hot cell indicator. Weights are small integers, so float64 sums are exact.
    """
    cells = class_count * class_count
    cell_of_sample = labels.astype(np.int64) * class_count + predictions.astype(np.int64)
    indicator = np.zeros((cells, labels.shape[0]))
    indicator[cell_of_sample, np.arange(labels.shape[0])] = 1.0
    counts = np.rint(indicator @ weights).astype(np.int64)  # (cells, replicates)
    return counts.T.reshape(weights.shape[1], class_count, class_count)


def rates_from_confusion(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class rates of a stack of confusion matrices ``(..., k, k)``; NaN where undefined."""
    true_positive = np.diagonal(confusion, axis1=-2, axis2=-1).astype(np.float64)
    actual_positive = confusion.sum(axis=-1)
    predicted_positive = confusion.sum(axis=-2)
    total = confusion.sum(axis=(-2, -1))[..., None]
    false_negative = actual_positive - true_positive
    false_positive = predicted_positive - true_positive
    true_negative = total - actual_positive - false_positive
    return {
        "sensitivity": safe_divide(true_positive, actual_positive),
        "specificity": safe_divide(true_negative, true_negative + false_positive),
        "ppv": safe_divide(true_positive, predicted_positive),
        "f1": safe_divide(2 * true_positive, 2 * true_positive + false_positive + false_negative),
        "accuracy": safe_divide(true_positive.sum(axis=-1), total[..., 0]),
    }


def nan_mean_rows(values: np.ndarray) -> np.ndarray:
    """Mean of each row ignoring NaN; NaN (without a warning) for an all-NaN row."""
    defined = ~np.isnan(values)
    return safe_divide(np.where(defined, values, 0.0).sum(axis=-1), defined.sum(axis=-1))


def weighted_auroc(positive: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """One-vs-rest AUROC per weight column ``(n, replicates)``; NaN without both classes.

    AUROC = Σ_positives w_i · (W_neg(score < s_i) + ½ W_neg(score = s_i)) / (W_pos · W_neg),
    the Mann–Whitney U with average ranks for ties, each sample counted ``w`` times.
    With ``cumulative`` the running weight of the score-sorted negatives, the bracket
    is ½ (cumulative[left] + cumulative[right]) for ``searchsorted`` positions left/right.
    """
    negative_indices = np.flatnonzero(~positive)
    negative_order = negative_indices[np.argsort(scores[negative_indices], kind="stable")]
    negative_scores = scores[negative_order]
    positive_scores = scores[positive]
    left = np.searchsorted(negative_scores, positive_scores, side="left")
    right = np.searchsorted(negative_scores, positive_scores, side="right")
    cumulative = np.zeros((negative_order.shape[0] + 1, weights.shape[1]))
    np.cumsum(weights[negative_order], axis=0, out=cumulative[1:])
    positive_weights = weights[positive]
    concordant = 0.5 * np.einsum("ir,ir->r", positive_weights, cumulative[left] + cumulative[right])
    return safe_divide(concordant, positive_weights.sum(axis=0) * cumulative[-1])


def metrics_for_indices(
    labels: np.ndarray, probabilities: np.ndarray, predictions: np.ndarray, indices: np.ndarray
) -> ReplicateMetrics:
    """All metrics for the resampled sets given by ``indices`` ``(replicates, n)``."""
    return metrics_for_weights(labels, probabilities, predictions, sample_weights(indices, len(labels)))


def metrics_for_weights(
    labels: np.ndarray, probabilities: np.ndarray, predictions: np.ndarray, weights: np.ndarray
) -> ReplicateMetrics:
    """All metrics for the resampled sets whose sample weights are the columns of ``weights`` ``(n, replicates)``."""
    class_count = probabilities.shape[1]
    confusion = weighted_confusion_matrices(labels, predictions, weights, class_count)
    rates = rates_from_confusion(confusion)
    auroc = np.stack(
        [weighted_auroc(labels == cls, probabilities[:, cls], weights) for cls in range(class_count)],
        axis=1,
    )
    return ReplicateMetrics(
        accuracy=rates["accuracy"],
        macro_f1=nan_mean_rows(rates["f1"]),
        sensitivity=rates["sensitivity"],
        specificity=rates["specificity"],
        ppv=rates["ppv"],
        f1=rates["f1"],
        auroc=auroc,
    )


def resampled_index_chunks(sample_count: int, replicates: int, seed: int,
                           row_cells: int | None = None) -> Iterator[np.ndarray]:
    """Yield ``(chunk, n)`` index arrays; the draws depend only on the seed, not on chunking (``row_cells``: the
    cells one replicate takes downstream, default ``n``, which sizes the chunks)."""
    rng = np.random.default_rng(seed)
    chunk_size = max(1, CHUNK_CELLS // max(row_cells or sample_count, 1))
    for start in range(0, replicates, chunk_size):
        rows = min(chunk_size, replicates - start)
        chunk = np.empty((rows, sample_count), dtype=np.int64)
        for row in range(rows):
            chunk[row] = rng.integers(0, sample_count, size=sample_count)
        yield chunk


def group_codes(groups: np.ndarray, sample_count: int) -> tuple[np.ndarray, int]:
    """Each sample's group as an index into the sorted distinct ``groups``, and how many groups there are;
    ``DataError`` unless ``groups`` is one id per sample."""
    groups = np.asarray(groups)
    if groups.ndim != 1 or groups.shape[0] != sample_count:
        raise DataError(f"the resampling groups have shape {groups.shape} for {sample_count} test samples",
                        expected=f"one group id per test sample: shape ({sample_count},)",
                        fix="give every test sample the id of its recording (or recording block)")
    distinct, codes = np.unique(groups, return_inverse=True)
    return codes.reshape(-1).astype(np.int64), int(distinct.shape[0])


def thin_groups(groups: np.ndarray | None, masks: np.ndarray) -> np.ndarray:
    """For each row of ``masks`` ``(k, n)`` (the samples a metric is about: a class's, the whole split), whether those
    samples span fewer than ``MINIMUM_GROUPS`` groups: the cluster bootstrap cannot vary what one group holds, so
    such an interval would be a single point, not an uncertainty; it is reported undefined instead. All False
    without ``groups`` (samples taken as independent)."""
    masks = np.asarray(masks, dtype=bool)
    if groups is None:
        return np.zeros(masks.shape[0], dtype=bool)
    codes, _ = group_codes(groups, masks.shape[1])
    return np.array([np.unique(codes[mask]).shape[0] < MINIMUM_GROUPS for mask in masks], dtype=bool)


def resampled_weight_chunks(sample_count: int, replicates: int, seed: int,
                            groups: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """Yield ``(n, chunk)`` sample weights of ``replicates`` resamples: samples drawn with replacement, or, with
    ``groups``, whole groups drawn with replacement (as many as there are), each sample weighing its group's
    draws. The draws depend only on the seed."""
    if groups is None:
        for indices in resampled_index_chunks(sample_count, replicates, seed):
            yield sample_weights(indices, sample_count)
        return
    codes, group_count = group_codes(groups, sample_count)
    for indices in resampled_index_chunks(group_count, replicates, seed, row_cells=max(sample_count, group_count)):
        yield sample_weights(indices, group_count)[codes]


def bootstrap_metrics(labels: np.ndarray, probabilities: np.ndarray, replicates: int, seed: int,
                      groups: np.ndarray | None = None) -> ReplicateMetrics:
    """Metrics of ``replicates`` resampled-with-replacement copies of the test set (of its ``groups``, whole)."""
    predictions = probabilities.argmax(axis=1)
    parts = [
        metrics_for_weights(labels, probabilities, predictions, weights)
        for weights in resampled_weight_chunks(len(labels), replicates, seed, groups)
    ]
    if not parts:
        empty = np.empty((0, probabilities.shape[1]))
        return ReplicateMetrics(empty[:, 0], empty[:, 0], empty, empty, empty, empty, empty)
    return ReplicateMetrics(
        **{
            name: np.concatenate([getattr(part, name) for part in parts])
            for name in ReplicateMetrics.__dataclass_fields__
        }
    )


def percentile_interval(values: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile CI over axis 0, ignoring NaN replicates; NaN where no replicate is defined."""
    tail = 100.0 * (1.0 - confidence) / 2.0
    if values.shape[0] == 0:
        missing = np.full(values.shape[1:], np.nan)
        return missing, missing.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices → NaN, which is intended
        low, high = np.nanpercentile(values, [tail, 100.0 - tail], axis=0)
    return low, high
