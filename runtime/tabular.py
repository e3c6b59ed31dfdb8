"""Tabular bundles: CSV (or 2-D ``.npy``) rows in, one prediction per row out, for every task kind.

The CSV needs a header naming the bundle's ``feature_names`` (any order); extra columns are ignored
with a log line. A missing column, or an empty or non-numeric cell, is an error naming the column
(and row). A cell that is a number but not a finite float32 (``nan``, ``inf``, ``1e39``) is read as
it is: the row runner (``runtime.rows``) flags that row and gives it no answer.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from runtime.events import RowPrediction
from runtime.features import FeatureKind
from runtime.readers import InputError, describe_non_number, is_number, read_csv_rows
from runtime.rows import DEFAULT_BATCH_ROWS, predict_arrays

logger = logging.getLogger(__name__)


class MissingColumnError(InputError):
    """The CSV lacks one or more of the model's feature columns."""


class NonNumericCellError(InputError):
    """A feature cell is empty or not a number."""


def read_feature_csv(path: Path, feature_names: tuple[str, ...]) -> np.ndarray:
    """The feature columns of a CSV as float32 (rows, features), in the bundle's column order.

    ``nan``, ``inf`` and numbers beyond float32 stay NaN / ±inf (the row runner flags those rows).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"input file {path} does not exist", expected="a CSV file", fix="check the path")
    rows = read_csv_rows(path)  # UTF-8, no NUL bytes, no cell over MAX_CELL_CHARS (InputError otherwise)
    if not rows:
        raise InputError(f"{path.name} is empty", expected="a header row and data rows", fix="check the export")
    header = [cell.strip() for cell in rows[0]]
    twice = sorted({name for name in feature_names if header.count(name) > 1})
    if twice:
        raise MissingColumnError(
            f"{path.name} names the column '{twice[0]}' {header.count(twice[0])} times",
            expected="each feature column once (which of them would be the feature is not clear)",
            fix=f"keep one '{twice[0]}' column and rename or drop the others",
        )
    positions = {name: header.index(name) for name in feature_names if name in header}
    missing = [name for name in feature_names if name not in positions]
    if missing:
        raise _missing_columns(path.name, header, feature_names, missing)
    extra = [name for name in header if name not in feature_names]
    if extra:
        logger.info("the input: ignoring %d column(s) that are not the model's features", len(extra))  # never the
        # file's name or its header cells in a log: either may be a patient's name
    data = [(line, row) for line, row in enumerate(rows[1:], start=2) if any(cell.strip() for cell in row)]
    if not data:
        raise InputError(f"{path.name} has a header but no data rows", expected="a header row and data rows",
                         fix="check the export: every row to judge below the header")
    for line, row in data:
        if len(row) > len(header):  # e.g. an unquoted "1,2": every later cell would shift one column
            raise NonNumericCellError(
                f"{path.name} line {line} has {len(row)} cells but the header names {len(header)} columns",
                expected="one cell per header column in every row",
                fix=f"repair line {line} (quote a cell that holds a comma, or drop the extra cells)",
            )
    values = np.empty((len(data), len(feature_names)), dtype=np.float64)
    for row_index, (line, row) in enumerate(data):
        for column_index, name in enumerate(feature_names):
            values[row_index, column_index] = _cell(row, positions[name], (row_index, line), name, path)
    with np.errstate(over="ignore"):
        return values.astype(np.float32)


def _missing_columns(name: str, header: list[str], feature_names: tuple[str, ...],
                     missing: list[str]) -> MissingColumnError:
    """The refusal of a header without every feature, saying what the header holds without echoing its cells (a
    file without a header row has a patient's data there): how many cells are numbers, and the cells that differ
    from a missing feature name only in case, spacing or punctuation, or a character or two."""
    numbers = sum(is_number(cell) for cell in header)
    if header and numbers == len(header):
        return MissingColumnError(
            f"{name} has no header row: its first row is {len(header)} numbers",
            expected=f"a header row naming the bundle's {len(feature_names)} feature columns (any order)",
            fix=f"add a first row naming the columns: {','.join(feature_names)} (if the data are in that order)",
        )
    near = _near_names(header, feature_names, missing)
    matched = sum(1 for cell in header if cell in feature_names)
    what = (f"{name} lacks the column(s) {', '.join(missing)} (its header has {len(header)} column(s), {matched} of "
            f"them feature names of the bundle)")
    fix = f"add the column(s) {', '.join(missing)} (names must match the manifest's inputs[0].feature_names)"
    if near:
        fix = ("rename " + ", ".join(f"'{cell}' to '{wanted}'" for wanted, cell in near.items())
               + (f", and add {', '.join(name for name in missing if name not in near)}"
                  if len(near) < len(missing) else "") + " (names must match the manifest's feature names exactly)")
    return MissingColumnError(what, expected=f"a header with all {len(feature_names)} feature names of the bundle "
                                             "(any order)", fix=fix)


def _squeezed(text: str) -> str:
    return "".join(character for character in text.casefold() if character.isalnum())


def _near_names(header: list[str], feature_names: tuple[str, ...], missing: list[str]) -> dict[str, str]:
    """missing feature name → the header cell that is nearly it (same letters and digits, or ≥ 0.85 alike); a cell
    that already names a feature is never offered."""
    unused = [cell for cell in header if cell not in feature_names]
    near = {}
    for wanted in missing:
        same = [cell for cell in unused if _squeezed(cell) == _squeezed(wanted)]
        close = same or difflib.get_close_matches(wanted, unused, n=1, cutoff=0.85)
        if close:
            near[wanted] = close[0]
            unused.remove(close[0])
    return near


def _cell(row: list[str], position: int, where: tuple[int, int], name: str, path: Path) -> float:
    text = row[position].strip() if position < len(row) else ""
    try:
        return float(text)
    except ValueError:
        problem = describe_non_number(text)
    raise NonNumericCellError(
        f"{path.name} row {where[0]} (line {where[1]}), column '{name}': {problem}",
        expected="a number in every feature cell",
        fix=f"repair column '{name}' on line {where[1]}, or drop that row",
    )


def predict_rows(
    bundle, rows: np.ndarray, batch_rows: int = DEFAULT_BATCH_ROWS, with_features: bool = False
) -> Iterator[RowPrediction]:
    """Predictions for rows already in the bundle's column order (checked before the first row)."""
    spec = bundle.input_spec
    if spec.feature_kind is not FeatureKind.TABULAR:
        raise InputError(
            "this bundle classifies waveforms, not table rows",
            expected="a tabular bundle for CSV rows",
            fix="feed the recording to runtime.ecg.EcgStream (python -m runtime BUNDLE --input signal), or pre-cut "
            f"windows as an .npz holding '{spec.name}'",
        )
    values = np.asarray(rows)
    if values.ndim != 2 or values.shape[1] != len(spec.feature_names):
        raise InputError(
            f"rows of shape {values.shape}",
            expected=f"(rows, {len(spec.feature_names)}) in the manifest's feature order",
            fix="pass one row per input with every feature",
        )
    return predict_arrays(bundle, {spec.name: values}, batch_rows, with_features, source="rows")


def predict_csv(
    bundle, path: Path, batch_rows: int = DEFAULT_BATCH_ROWS, with_features: bool = False
) -> Iterator[RowPrediction]:
    """Read and check the whole CSV now; the returned iterator yields one prediction per data row."""
    rows = read_feature_csv(path, bundle.input_spec.feature_names)
    return predict_rows(bundle, rows, batch_rows, with_features)
