"""Tabular bundles: CSV rows in, one prediction per row out.

The CSV needs a header naming the bundle's ``feature_names`` (any order); extra
columns are ignored with a log line. A missing column, an empty or non-numeric
cell, or a non-finite value is an error naming the column (and row).
"""

from __future__ import annotations

import csv
import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from runtime.decide import decide, require_single_label
from runtime.events import TabularPrediction
from runtime.features import FeatureKind
from runtime.readers import InputError

logger = logging.getLogger(__name__)

DEFAULT_BATCH_ROWS = 256  # rows per inference call


class MissingColumnError(InputError):
    """The CSV lacks one or more of the model's feature columns."""


class NonNumericCellError(InputError):
    """A feature cell is empty, not a number, or not finite."""


def read_feature_csv(path: Path, feature_names: tuple[str, ...]) -> np.ndarray:
    """The feature columns of a CSV as float32 (rows, features), in the bundle's column order."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"input file {path} does not exist", expected="a CSV file", fix="check the path")
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        raise InputError(f"{path.name} is empty", expected="a header row and data rows", fix="check the export")
    header = [cell.strip() for cell in rows[0]]
    positions = {name: header.index(name) for name in feature_names if name in header}
    missing = [name for name in feature_names if name not in positions]
    if missing:
        raise MissingColumnError(
            f"{path.name} lacks the column(s) {', '.join(missing)}",
            expected=f"a header with all {len(feature_names)} feature names of the bundle (any order)",
            fix=f"add the column(s) {', '.join(missing)} (names must match the manifest's inputs[0].feature_names)",
        )
    extra = [name for name in header if name not in feature_names]
    if extra:
        logger.info("%s: ignoring %d extra column(s): %s", path.name, len(extra), ", ".join(extra))
    data = [(line, row) for line, row in enumerate(rows[1:], start=2) if any(cell.strip() for cell in row)]
    values = np.empty((len(data), len(feature_names)), dtype=np.float64)
    for row_index, (line, row) in enumerate(data):
        for column_index, name in enumerate(feature_names):
            values[row_index, column_index] = _cell(row, positions[name], (row_index, line), name, path)
    return values.astype(np.float32)


def _cell(row: list[str], position: int, where: tuple[int, int], name: str, path: Path) -> float:
    text = row[position].strip() if position < len(row) else ""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
        problem = "is empty" if not text else f"'{text[:40]}' is not a number"
    else:
        problem = f"'{text[:40]}' is not a finite number"
    if not math.isfinite(value):
        raise NonNumericCellError(
            f"{path.name} row {where[0]} (line {where[1]}), column '{name}': {problem}",
            expected="a finite number in every feature cell",
            fix=f"repair column '{name}' on line {where[1]}, or drop that row",
        )
    return value


def predict_rows(
    bundle, rows: np.ndarray, batch_rows: int = DEFAULT_BATCH_ROWS, with_features: bool = False
) -> Iterator[TabularPrediction]:
    """Predictions for float rows already in the bundle's column order (checked before the first row)."""
    spec = bundle.input_spec
    if spec.feature_kind is not FeatureKind.TABULAR:
        raise InputError(
            "this bundle classifies waveforms, not table rows",
            expected="a tabular bundle for CSV rows",
            fix="feed the recording to runtime.ecg.EcgStream (python -m runtime BUNDLE --input signal)",
        )
    require_single_label(bundle.output, "tabular runner")
    values = np.asarray(rows, dtype=np.float32)
    if values.ndim != 2 or values.shape[1] != len(spec.feature_names):
        raise InputError(
            f"rows of shape {values.shape}",
            expected=f"(rows, {len(spec.feature_names)}) in the manifest's feature order",
            fix="pass one row per input with every feature",
        )
    return _predictions(bundle, values, batch_rows, with_features)


def _predictions(bundle, values: np.ndarray, batch_rows: int, with_features: bool) -> Iterator[TabularPrediction]:
    names = bundle.input_spec.feature_names
    for first in range(0, values.shape[0], max(1, batch_rows)):
        batch = values[first : first + batch_rows]
        started = time.perf_counter()
        outputs = bundle.predict(batch)
        latency_us = (time.perf_counter() - started) * 1e6 / max(1, batch.shape[0])
        for offset, decision in enumerate(decide(bundle.output, outputs)):
            yield TabularPrediction(
                row=first + offset,
                predicted_class=decision.label,
                probability=decision.confidence,
                probabilities=decision.scores,
                latency_us=latency_us,
                features=dict(zip(names, batch[offset].tolist())) if with_features else None,
            )


def predict_csv(
    bundle, path: Path, batch_rows: int = DEFAULT_BATCH_ROWS, with_features: bool = False
) -> Iterator[TabularPrediction]:
    """Read and check the whole CSV now; the returned iterator yields one prediction per data row."""
    rows = read_feature_csv(path, bundle.input_spec.feature_names)
    return predict_rows(bundle, rows, batch_rows, with_features)
