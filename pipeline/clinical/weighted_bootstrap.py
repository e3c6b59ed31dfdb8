"""Percentile bootstrap of any statistic written over per-sample weights.

The same replicate description as :mod:`pipeline.clinical.bootstrap_intervals`: a
replicate is how often each of the ``n`` samples was drawn (its weight column), so a
statistic is a function of the ``(n, replicates)`` weight matrix that returns arrays
whose first axis is the replicate — a matrix product for means and proportions,
``weighted_auroc`` for AUROC, ``weighted_confusion_matrices`` for confusion counts.
Draws come from ``resampled_weight_chunks`` and depend only on the seed, so two
statistics bootstrapped with the same seed see the same resampled sets.

This module imports numpy and its sibling modules only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from pipeline.clinical.bootstrap_intervals import percentile_interval, resampled_weight_chunks, thin_groups
from pipeline.clinical.metrics import Estimate

# statistic(weights (n, replicates)) → {name: array (replicates, ...)}
Statistic = Callable[[np.ndarray], dict[str, np.ndarray]]


def bootstrap_replicates(sample_count: int, replicates: int, seed: int, statistic: Statistic,
                         groups: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """``statistic`` of ``replicates`` resampled-with-replacement copies of ``sample_count`` samples (of their
    ``groups``, whole: ``resampled_weight_chunks``).

    With ``replicates == 0`` the statistic sees an ``(n, 0)`` weight matrix and returns
    empty arrays of the right trailing shape, which ``percentile_interval`` turns into NaN.
    """
    if replicates == 0:
        return statistic(np.zeros((sample_count, 0)))
    parts = [statistic(weights) for weights in resampled_weight_chunks(sample_count, replicates, seed, groups)]
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def weighted_means(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mean of each column of ``values`` (n, m) under each weight column: ``(replicates, m)``."""
    return (weights.T @ values) / weights.sum(axis=0)[:, None]


def estimates(point: np.ndarray, replicates: np.ndarray, confidence: float) -> list[Estimate]:
    """One ``Estimate`` per entry of the 1-D ``point``, its interval from ``replicates`` (R, len(point))."""
    low, high = percentile_interval(replicates, confidence)
    return [
        Estimate(value=float(value), low=float(lower), high=float(upper))
        for value, lower, upper in zip(np.atleast_1d(point), np.atleast_1d(low), np.atleast_1d(high), strict=True)
    ]


def undefined_where(items: list[Estimate], blank: np.ndarray) -> list[Estimate]:
    """``items`` with the interval of each one ``blank`` marks undefined (NaN; ``thin_groups``)."""
    return [replace(item, low=math.nan, high=math.nan) if flag else item
            for item, flag in zip(items, np.asarray(blank, dtype=bool).tolist(), strict=True)]


def whole_split_thin(groups: np.ndarray | None, sample_count: int) -> bool:
    """Whether the whole split spans too few groups for a cluster-bootstrap interval (``thin_groups``)."""
    return bool(thin_groups(groups, np.ones((1, sample_count), dtype=bool))[0])


def estimate(point: float, replicates: np.ndarray, confidence: float) -> Estimate:
    """``Estimate`` of a scalar statistic from its ``(R,)`` replicates."""
    return estimates(np.array([point]), replicates[:, None], confidence)[0]
