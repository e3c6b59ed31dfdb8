"""Agreement of a regression model's outputs with the reference values, per output and in its units.

For each output, with errors ``e = prediction − target`` (Bland–Altman's "new method
minus reference" sign): MAE, RMSE, bias (mean error) and the Bland–Altman 95 % limits
of agreement ``bias ± 1.96 · SD(e)`` (sample SD, ``ddof = 1``), each with a percentile
bootstrap interval. Point estimates come from scikit-learn (MAE, RMSE) and numpy; the
bootstrap writes every statistic as a weighted mean over the samples (one matrix
product per chunk of replicates, see :mod:`pipeline.clinical.weighted_bootstrap`),
with errors centred first so the variance does not lose digits to cancellation.

With one sample the limits of agreement are undefined: NaN in memory, ``None`` in JSON.

This module must not import tensorflow, keras or onnx.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import mean_absolute_error, root_mean_squared_error

from pipeline.clinical.metrics import DEFAULT_EVALUATION_CONFIG, Estimate, EvaluationConfig
from pipeline.clinical.weighted_bootstrap import (
    bootstrap_replicates,
    estimates,
    undefined_where,
    weighted_means,
    whole_split_thin,
)
from pipeline.errors import DataError

LIMITS_OF_AGREEMENT_Z = 1.96  # Bland–Altman: 95 % of normally distributed differences lie within bias ± 1.96 SD
REGRESSION_METRICS = ("mae", "rmse", "bias", "lower_limit", "upper_limit")


@dataclass(frozen=True)
class OutputMetrics:
    """Error statistics of one output, all in ``unit``."""

    name: str
    unit: str  # e.g. "mmHg", "bpm"; "" for unitless outputs
    mae: Estimate  # mean absolute error
    rmse: Estimate  # root mean squared error
    bias: Estimate  # mean of prediction − target
    lower_limit: Estimate  # bias − 1.96 SD: Bland–Altman lower 95 % limit of agreement
    upper_limit: Estimate  # bias + 1.96 SD: upper limit

    @property
    def limits_width(self) -> float:
        """Distance between the limits of agreement (2 · 1.96 · SD); NaN when undefined."""
        return self.upper_limit.value - self.lower_limit.value

    def to_dict(self) -> dict:
        data: dict = {"name": self.name, "unit": self.unit}
        data.update({metric: getattr(self, metric).to_dict() for metric in REGRESSION_METRICS})
        return data

    @classmethod
    def from_dict(cls, data: dict) -> OutputMetrics:
        estimates_by_metric = {metric: Estimate.from_dict(data[metric]) for metric in REGRESSION_METRICS}
        return cls(name=str(data["name"]), unit=str(data["unit"]), **estimates_by_metric)


@dataclass(frozen=True)
class RegressionMetrics:
    """Everything the regression gate and the reports need about one model on one split."""

    samples: int
    outputs: tuple[OutputMetrics, ...]

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(output.name for output in self.outputs)

    def output(self, name: str) -> OutputMetrics:
        for output in self.outputs:
            if output.name == name:
                return output
        raise DataError(
            f"no metrics for output {name!r}",
            expected=f"one of {list(self.output_names)}",
            fix="use an output name from the scenario's output names",
        )

    def to_dict(self) -> dict:
        return {"samples": self.samples, "outputs": [output.to_dict() for output in self.outputs]}

    @classmethod
    def from_dict(cls, data: dict) -> RegressionMetrics:
        return cls(
            samples=int(data["samples"]), outputs=tuple(OutputMetrics.from_dict(item) for item in data["outputs"])
        )


def _as_columns(values: np.ndarray, what: str) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim not in (1, 2) or values.shape[0] == 0:
        raise DataError(
            f"{what} have shape {values.shape}",
            expected="a non-empty (samples,) or (samples, outputs) array",
            fix=f"pass one row of {what} per sample",
        )
    if not np.issubdtype(values.dtype, np.number) or not np.all(np.isfinite(values)):
        raise DataError(
            f"{what} contain NaN, inf or non-numbers",
            expected="finite numbers",
            fix="check the model output (a NaN usually means a broken export or quantization) and the targets",
        )
    return values.astype(np.float64).reshape(values.shape[0], -1)


def _validate(
    targets: np.ndarray, predictions: np.ndarray, output_names: Sequence[str], units: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], tuple[str, ...]]:
    targets, predictions = _as_columns(targets, "targets"), _as_columns(predictions, "predictions")
    if targets.shape != predictions.shape:
        raise DataError(
            f"targets have shape {targets.shape} but predictions {predictions.shape}",
            expected="one prediction per target, output for output",
            fix="predict on the same split whose targets you pass",
        )
    names, unit_names = tuple(str(name) for name in output_names), tuple(str(unit) for unit in units)
    if len(names) != targets.shape[1] or len(set(names)) != len(names) or len(unit_names) != len(names):
        raise DataError(
            f"{targets.shape[1]} outputs but output names {list(names)} and units {list(unit_names)}",
            expected="one distinct name and one unit per output column",
            fix="pass the scenario's output names and units (use '' for a unitless output)",
        )
    return targets, predictions, names, unit_names


def _replicate_statistic(errors: np.ndarray):
    sample_count = errors.shape[0]
    centre = errors.mean(axis=0)
    centred, absolute, squared = errors - centre, np.abs(errors), errors**2
    bessel = sample_count / (sample_count - 1) if sample_count > 1 else math.nan

    def statistic(weights: np.ndarray) -> dict[str, np.ndarray]:
        shift = weighted_means(centred, weights)
        variance = np.maximum(weighted_means(centred**2, weights) - shift**2, 0.0) * bessel
        bias = centre + shift
        spread = LIMITS_OF_AGREEMENT_Z * np.sqrt(variance)
        return {
            "mae": weighted_means(absolute, weights),
            "rmse": np.sqrt(weighted_means(squared, weights)),
            "bias": bias,
            "lower_limit": bias - spread,
            "upper_limit": bias + spread,
        }

    return statistic


def evaluate_regression(
    targets: np.ndarray,
    predictions: np.ndarray,
    output_names: Sequence[str],
    units: Sequence[str],
    config: EvaluationConfig = DEFAULT_EVALUATION_CONFIG,
    groups: np.ndarray | None = None,
) -> RegressionMetrics:
    """MAE, RMSE, bias and limits of agreement of ``predictions`` against ``targets``, per output, with CIs."""
    targets, predictions, names, unit_names = _validate(targets, predictions, output_names, units)
    errors = predictions - targets
    bias = errors.mean(axis=0)
    spread = LIMITS_OF_AGREEMENT_Z * (errors.std(axis=0, ddof=1) if errors.shape[0] > 1 else np.full_like(bias, np.nan))
    point = {
        "mae": mean_absolute_error(targets, predictions, multioutput="raw_values"),
        "rmse": root_mean_squared_error(targets, predictions, multioutput="raw_values"),
        "bias": bias,
        "lower_limit": bias - spread,
        "upper_limit": bias + spread,
    }
    replicates = bootstrap_replicates(
        errors.shape[0], config.bootstrap_samples, config.seed, _replicate_statistic(errors), groups
    )
    thin = np.full(len(names), whole_split_thin(groups, errors.shape[0]))
    by_metric = {
        metric: undefined_where(estimates(point[metric], replicates[metric], config.confidence), thin)
        for metric in REGRESSION_METRICS
    }
    outputs = tuple(
        OutputMetrics(name=name, unit=unit, **{metric: by_metric[metric][column] for metric in REGRESSION_METRICS})
        for column, (name, unit) in enumerate(zip(names, unit_names, strict=True))
    )
    return RegressionMetrics(samples=int(errors.shape[0]), outputs=outputs)
