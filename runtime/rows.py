"""The row runner: any bundle, any task kind, one or several inputs; one ``RowPrediction`` per row.

Rows arrive as ``{input name: array}``, one row per sample in every array: a tabular bundle's CSV
(``runtime.tabular``) or 2-D ``.npy`` feeds its only input; an ``.npz`` (``read_npz``) holds one array
per input name, for any bundle (several inputs, or pre-cut waveform windows). Rows of every input
run together through ``Bundle.predict``.

Checked before the first row, each with an error naming the input: every input of the manifest has
an array (others are ignored with a log line), numbers only, every array has the same rows, and each
row has its input's shape (a trailing channel axis of 1 may be left out). Then per row: NaN, ±inf or
a number beyond float32 in any input flags the row ``input_not_finite`` and it never reaches the
model; an input outside the values the bundle was developed on (its manifest's ``domain``, ``runtime.domain``)
flags it ``out_of_domain`` and it never reaches the model either; outputs that are not finite flag it
``output_not_finite``. A flagged row gets no class, value or alarm (``RowPrediction.result`` is None) — never a
silent answer.
"""

from __future__ import annotations

import logging
import math
import time
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from runtime.bundle import InputShapeError
from runtime.contract import InputSpec
from runtime.decide import decide
from runtime.domain import outside_names
from runtime.events import RowPrediction
from runtime.features import FeatureKind
from runtime.input_features import input_features
from runtime.readers import MAX_ARRAY_BYTES, InputError, read_npy_header, read_npy_stream
from runtime.results import INPUT_NOT_FINITE, OUT_OF_DOMAIN, OUTPUT_NOT_FINITE, result_for

logger = logging.getLogger(__name__)

DEFAULT_BATCH_ROWS = 256  # rows per inference call
NUMERIC_KINDS = "biuf"  # numpy dtype kinds the runner converts to float32: bool, integers, floats


class MissingInputError(InputError):
    """The input file has no array for one or more of the model's inputs."""


class RowCountError(InputError):
    """The arrays of the inputs hold different numbers of rows."""


def _as_float32(values: np.ndarray) -> np.ndarray:
    """float32 copy; numbers beyond float32 become ±inf (flagged per row later, not warned about here)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(values, dtype=np.float32)


def _fitted(spec: InputSpec, values: np.ndarray, source: str) -> np.ndarray:
    """``values`` as (rows, *spec.sample_shape) float32, or ``InputError`` naming the input."""
    if values.dtype.kind not in NUMERIC_KINDS:
        raise InputError(
            f"{source}: input '{spec.name}' holds {values.dtype} values",
            expected="numbers (bool, integer or floating point)",
            fix=f"save '{spec.name}' as a numeric array",
        )
    expected = spec.sample_shape
    if values.ndim == len(expected) and values.shape[1:] == expected[:-1] and expected[-1] == 1:
        values = values[..., None]  # (rows, samples) for a (rows, samples, 1) input
    if values.ndim != len(expected) + 1 or values.shape[1:] != expected:
        raise InputShapeError(
            f"{source}: input '{spec.name}' has shape {values.shape}",
            expected=f"(rows, {', '.join(map(str, expected))}) as the manifest's input '{spec.name}' declares",
            fix="one row per sample, each cut exactly as the manifest's inputs section describes",
        )
    return _as_float32(values)


def check_arrays(bundle, arrays: Mapping[str, np.ndarray], source: str = "input") -> dict[str, np.ndarray]:
    """Every input's rows as float32 in its manifest shape; typed ``InputError`` subclasses otherwise."""
    specs = {spec.name: spec for spec in bundle.inputs}
    missing = [name for name in specs if name not in arrays]
    if missing:
        raise MissingInputError(
            f"{source} has no array for the input(s) {', '.join(missing)}"
            + (f" (it holds {', '.join(sorted(arrays))})" if arrays else ""),
            expected=f"one array per model input, named {', '.join(specs)}",
            fix="save every input under its manifest name, e.g. numpy.savez(path, "
            + ", ".join(f"{name}=…" for name in specs) + ")",
        )
    extra = sorted(set(arrays) - set(specs))
    if extra:
        logger.info("the input: ignoring %d array(s) the model does not take", len(extra))  # no file or array names
    fitted = {name: _fitted(spec, np.asarray(arrays[name]), source) for name, spec in specs.items()}
    rows = {name: values.shape[0] for name, values in fitted.items()}
    if len(set(rows.values())) > 1:
        raise RowCountError(
            f"{source}: the inputs hold different numbers of rows ("
            + ", ".join(f"{name}: {count}" for name, count in rows.items()) + ")",
            expected="the same rows in every input: row i of each array is one sample",
            fix="cut every input from the same samples, in the same order",
        )
    return fitted


MAX_NPZ_ARRAYS = 64  # arrays in one .npz: one per model input, and a few the model ignores


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` by name (no pickles), or ``InputError``.

    Each member's ``.npy`` header is checked before anything is allocated (``runtime.readers.read_npy_stream``):
    a header claiming more bytes than the member holds, an empty array or a non-numeric dtype is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"input file {path} does not exist", expected="an .npz file", fix="check the path")
    try:
        with zipfile.ZipFile(path) as archive:
            members = [info for info in archive.infolist() if not info.is_dir()]
            if not members:
                raise _npz_refusal(path, "it holds no arrays")
            if len(members) > MAX_NPZ_ARRAYS:
                raise _npz_refusal(path, f"it holds {len(members)} members, over {MAX_NPZ_ARRAYS}")
            names = [info.filename[:-4] if info.filename.endswith(".npy") else info.filename for info in members]
            twice = sorted({name for name in names if names.count(name) > 1})
            if twice:
                raise _npz_refusal(path, f"it holds two arrays named '{twice[0]}'")
            declared = 0  # every header first: the whole archive's arrays within one array's budget, before any
            for info, name in zip(members, names, strict=True):  # allocation (a deflated member may claim GiB)
                with archive.open(info) as member:
                    shape, _, dtype = read_npy_header(member, f"{path.name}: input '{name}'")
                declared += math.prod(shape) * dtype.itemsize
            if declared > MAX_ARRAY_BYTES:
                raise _npz_refusal(path, f"its arrays decode to {declared} bytes, over {MAX_ARRAY_BYTES}")
            arrays: dict[str, np.ndarray] = {}
            for info, name in zip(members, names, strict=True):
                with archive.open(info) as member:
                    arrays[name] = read_npy_stream(member, info.file_size, f"{path.name}: input '{name}'")
            return arrays
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, NotImplementedError, RuntimeError) as error:
        raise _npz_refusal(path, f"{type(error).__name__}: {str(error)[:120]}") from None


def _npz_refusal(path: Path, problem: str) -> InputError:
    return InputError(
        f"{path.name} is not a readable .npz archive ({problem})",
        expected="numeric arrays saved with numpy.savez, one per input name",
        fix="re-save the inputs with numpy.savez(path, name=array, …)",
    )


def _feature_names(specs: tuple[InputSpec, ...]) -> list[tuple[InputSpec, str]]:
    """(input, prefix) per input: bare feature names for one input, ``input.feature`` for several."""
    return [(spec, f"{spec.name}." if len(specs) > 1 else "") for spec in specs]


def _not_finite(specs: tuple[InputSpec, ...], batch: Mapping[str, np.ndarray]) -> list[tuple[str, ...]]:
    """Per row: the inputs (tabular: the columns) holding NaN, ±inf or a value beyond float32."""
    rows = next(iter(batch.values())).shape[0]
    found: list[list[str]] = [[] for _ in range(rows)]
    for spec, prefix in _feature_names(specs):
        values = batch[spec.name].reshape(rows, -1)
        bad = ~np.isfinite(values)
        for row in np.flatnonzero(bad.any(axis=1)).tolist():
            if spec.feature_kind is FeatureKind.TABULAR:
                found[row] += [f"{prefix}{spec.feature_names[column]}" for column in np.flatnonzero(bad[row])]
            else:
                found[row].append(spec.name)
    return [tuple(names) for names in found]


def _features(specs: tuple[InputSpec, ...], batch: Mapping[str, np.ndarray]) -> list[dict[str, float]]:
    """Per row: the summary features of its inputs (``runtime.input_features``), as telemetry and drift use them."""
    rows = next(iter(batch.values())).shape[0]
    per_row: list[dict[str, float]] = [{} for _ in range(rows)]
    for name, column in input_features(batch, specs).items():
        for row, value in enumerate(column.tolist()):
            per_row[row][name] = value
    return per_row


def predict_arrays(
    bundle, arrays: Mapping[str, np.ndarray], batch_rows: int = DEFAULT_BATCH_ROWS, with_features: bool = False,
    source: str = "input",
) -> Iterator[RowPrediction]:
    """Check every array now; the returned iterator yields one prediction per row, in row order."""
    return _predictions(bundle, check_arrays(bundle, arrays, source), max(1, batch_rows), with_features)


def predict_npz(
    bundle, path: Path, batch_rows: int = DEFAULT_BATCH_ROWS, with_features: bool = False
) -> Iterator[RowPrediction]:
    """Read and check the whole ``.npz`` now; the iterator yields one prediction per row."""
    return predict_arrays(bundle, read_npz(path), batch_rows, with_features, source=Path(path).name)


def _predictions(bundle, feed: dict[str, np.ndarray], batch_rows: int, with_features: bool
                 ) -> Iterator[RowPrediction]:
    specs, output = bundle.inputs, bundle.output
    total = next(iter(feed.values())).shape[0]
    for first in range(0, total, batch_rows):
        batch = {name: values[first : first + batch_rows] for name, values in feed.items()}
        size = next(iter(batch.values())).shape[0]
        not_finite = _not_finite(specs, batch)
        outside = outside_names(specs, batch)
        judged = np.array([not bad and not far for bad, far in zip(not_finite, outside, strict=True)], dtype=bool)
        started = time.perf_counter()
        outputs = bundle.predict({name: values[judged] for name, values in batch.items()})
        latency_us = (time.perf_counter() - started) * 1e6 / size
        answered = np.isfinite(outputs).all(axis=1)
        decisions = iter(decide(output, outputs[answered]))
        answers = iter(answered.tolist())
        features = _features(specs, batch) if with_features else [None] * size
        for offset in range(size):
            flags, result = (), None
            if not_finite[offset]:
                flags = (INPUT_NOT_FINITE,)
            elif outside[offset]:
                flags = (OUT_OF_DOMAIN,)
            elif not next(answers):
                flags = (OUTPUT_NOT_FINITE,)
            else:
                result = result_for(output, next(decisions))
            yield RowPrediction(first + offset, output.task.value, result, latency_us, flags, not_finite[offset],
                                features[offset], outside[offset])
        if not judged.all():
            logger.warning("rows %d–%d: %d row(s) flagged, not judged (non-finite inputs, or inputs outside the "
                           "values the model was developed on)", first, first + size - 1, int((~judged).sum()))
