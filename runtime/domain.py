"""Is a model input inside the values its bundle was developed on (``runtime.contract.InputDomain``)?

Every inference path asks before it runs the model: the row runner (``runtime.rows``), the ECG stream's beats
(``runtime.ecg.beats``) and the windowed stream (``runtime.windows``). A row, beat or window outside is flagged
``out_of_domain`` (``runtime.results.OUT_OF_DOMAIN``) and gets no class, value or alarm: the model was never
shown such input, so its answer would be a guess with full confidence (a row in other units, a window of another
shape). An input without a domain (a bundle built before domains) is never outside.

Per column — a tabular input's features, a waveform's channels — a row's smallest and largest value must lie in
[``low``, ``high``]; a waveform window's spread (largest − smallest, per channel) in [``spread_low``,
``spread_high``]. Under ``DomainScale.WINDOW_ZSCORE`` (a graph that z-scores each window itself) both are taken
in standard deviations of the window. Rows holding NaN or ±inf are the non-finite check's (their comparisons here
are false).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from runtime.contract import DomainScale, InputSpec
from runtime.features import FeatureKind

MINIMUM_STD = 1e-6  # a window flatter than this is divided by this when z-scored (no division by zero)


def column_extremes(spec: InputSpec, values: np.ndarray, scale: DomainScale = DomainScale.AS_FED
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(smallest, largest) value per row and column of ``values`` (rows, *spec.sample_shape): (rows, columns) each;
    a tabular row's columns are its features (smallest = largest = the value), a waveform's its channels. Under
    ``WINDOW_ZSCORE`` a waveform's extremes are in standard deviations from its window's mean (per channel)."""
    rows = values.shape[0]
    if spec.feature_kind is FeatureKind.TABULAR:
        table = values.reshape(rows, -1)
        return table, table
    view = values.reshape(rows, -1, spec.channels)
    if view.shape[1] == 0:
        empty = np.zeros((rows, spec.channels), dtype=values.dtype)
        return empty, empty
    low, high = view.min(axis=1), view.max(axis=1)
    if scale is DomainScale.WINDOW_ZSCORE:
        wide = view.astype(np.float64)
        mean = wide.mean(axis=1)
        deviation = np.maximum(wide.std(axis=1), MINIMUM_STD)  # a flat window: its extremes stay near 0
        low, high = (low - mean) / deviation, (high - mean) / deviation
    return low, high


def outside_columns(spec: InputSpec, values: np.ndarray) -> np.ndarray:
    """bool (rows, columns): where each row's input leaves ``spec.domain`` (all False without a domain)."""
    domain = spec.domain
    rows = values.shape[0]
    if domain is None:
        return np.zeros((rows, 1), dtype=bool)
    low, high = column_extremes(spec, values, domain.scale)
    outside = (low < np.asarray(domain.low)) | (high > np.asarray(domain.high))
    if domain.has_spread:
        spread = high - low
        outside |= (spread < np.asarray(domain.spread_low)) | (spread > np.asarray(domain.spread_high))
    return outside


def outside_rows(spec: InputSpec, values: np.ndarray) -> np.ndarray:
    """bool per row: its input leaves ``spec.domain``."""
    return outside_columns(spec, values).any(axis=1)


def outside_any(specs: Sequence[InputSpec], batch: Mapping[str, np.ndarray]) -> np.ndarray:
    """bool per row: any of its inputs leaves its domain (``batch``: each input's rows by name)."""
    rows = next(iter(batch.values())).shape[0] if batch else 0
    found = np.zeros(rows, dtype=bool)
    for spec in specs:
        if spec.domain is not None:
            found |= outside_rows(spec, batch[spec.name])
    return found


def outside_names(specs: Sequence[InputSpec], batch: Mapping[str, np.ndarray]) -> list[tuple[str, ...]]:
    """Per row: what leaves its domain — a tabular input's columns (``input.column`` when there are several
    inputs), a waveform input's name (``input[channel]`` for several channels)."""
    rows = next(iter(batch.values())).shape[0] if batch else 0
    found: list[list[str]] = [[] for _ in range(rows)]
    prefix_inputs = len(specs) > 1
    for spec in specs:
        if spec.domain is None:
            continue
        outside = outside_columns(spec, batch[spec.name])
        prefix = f"{spec.name}." if prefix_inputs else ""
        for row in np.flatnonzero(outside.any(axis=1)).tolist():
            columns = np.flatnonzero(outside[row]).tolist()
            if spec.feature_kind is FeatureKind.TABULAR:
                found[row] += [f"{prefix}{spec.feature_names[column]}" for column in columns]
            elif spec.channels == 1:
                found[row].append(spec.name)
            else:
                found[row] += [f"{spec.name}[{column}]" for column in columns]
    return [tuple(names) for names in found]
