"""The input domain a bundle declares (``runtime.contract.InputDomain``), measured on the development data.

Per model input and column (a tabular input's features, a waveform's channels): the smallest and largest value of
the development rows — the training, validation and calibration splits, every row the build learnt or tuned on;
never the test split — widened by ``margin`` of that range on each side (a constant column: of its value); for a
waveform also the range of each window's spread, widened alike. Then the held-out test split is checked against
it: its rows outside are counted in the domain (``held_out_outside``), and the bundle report shows them, since the
device would flag such a row ``out_of_domain`` and give it no class. The device enforces the domain with the same
per-row extremes (``runtime.domain.column_extremes``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import numpy as np

from pipeline.splits import DataSplits, Split
from runtime.contract import DomainScale, InputDomain, InputSpec
from runtime.domain import column_extremes, outside_rows
from runtime.features import FeatureKind

DEVELOPMENT_SPLITS = ("train", "validation", "calibration")
NAMED_RANGES = 8  # a tabular input with at most this many columns has each column's range in its report line


def split_inputs(split: Split, specs: tuple[InputSpec, ...]) -> dict[str, np.ndarray]:
    """A split's rows per input name (a single-input split's plain array under its input's name), as float32,
    named as ``runtime.input_features.input_features`` names them for the reference profile."""
    inputs = split.inputs if isinstance(split.inputs, Mapping) else {specs[0].name: split.inputs}
    return {spec.name: np.asarray(inputs[spec.name], dtype=np.float32).reshape(-1, *spec.sample_shape)
            for spec in specs}


def _widened(low: np.ndarray, high: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    span = high - low
    span = np.where(span > 0, span, np.abs(low))  # a constant column: a share of its value (0 stays exact)
    return low - margin * span, high + margin * span


def measure_domain(spec: InputSpec, development: np.ndarray, held_out: np.ndarray, margin: float,
                   basis: str, scale: DomainScale = DomainScale.AS_FED) -> InputDomain | None:
    """``spec``'s domain from its ``development`` rows (seen at ``scale``), checked on the ``held_out`` rows; None
    when the development rows hold no finite value in some column (nothing to measure a range on)."""
    with np.errstate(invalid="ignore"):
        lows, highs = column_extremes(spec, development, scale)
        finite = np.isfinite(lows) & np.isfinite(highs)
        if not len(development) or not finite.any(axis=0).all():
            return None
        low, high = _widened(np.nanmin(np.where(finite, lows, np.nan), axis=0),
                             np.nanmax(np.where(finite, highs, np.nan), axis=0), margin)
        spread_low = spread_high = None
        if spec.feature_kind is not FeatureKind.TABULAR:
            spreads = np.where(finite, highs - lows, np.nan)
            spread_low, spread_high = _widened(np.nanmin(spreads, axis=0), np.nanmax(spreads, axis=0), margin)
            spread_low = np.maximum(spread_low, 0.0)
    domain = InputDomain(tuple(low.tolist()), tuple(high.tolist()),
                         None if spread_low is None else tuple(spread_low.tolist()),
                         None if spread_high is None else tuple(spread_high.tolist()), margin, scale, basis)
    outside = int(outside_rows(replace(spec, domain=domain), held_out).sum()) if len(held_out) else 0
    return replace(domain, held_out_rows=len(held_out), held_out_outside=outside)


def with_domains(specs: tuple[InputSpec, ...], splits: DataSplits, margin: float,
                 scales: tuple[DomainScale, ...] = ()) -> tuple[InputSpec, ...]:
    """``specs``, each with its domain measured on ``splits`` (development rows; checked on the test split) at its
    scale in ``scales`` (one per input, in order; none given: as fed)."""
    used = [name for name in DEVELOPMENT_SPLITS if len(getattr(splits, name))]
    if not used:
        return specs
    parts = [split_inputs(getattr(splits, name), specs) for name in used]
    development = {spec.name: np.concatenate([part[spec.name] for part in parts]) for spec in specs}
    held_out = split_inputs(splits.test, specs) if len(splits.test) else {
        spec.name: np.zeros((0, *spec.sample_shape), np.float32) for spec in specs}
    rows = len(next(iter(development.values())))
    kind = "synthetic" if splits.provenance.get("synthetic") is True else "real"
    basis = f"{rows:,} development rows ({', '.join(used)} splits; {kind})"
    scales = scales or (DomainScale.AS_FED,) * len(specs)
    return tuple(replace(spec, domain=measure_domain(spec, development[spec.name], held_out[spec.name], margin,
                                                     basis, scale)) for spec, scale in zip(specs, scales, strict=True))


def domain_line(spec: InputSpec) -> str:
    """The report's line on ``spec``'s domain: what it was measured on and what of the held-out split it refuses."""
    domain = spec.domain
    if domain is None:
        return f"- input `{spec.name}`: no input domain (not range-checked on the device)"
    columns = "per feature" if spec.feature_kind is FeatureKind.TABULAR else "per channel, values and window spread"
    if domain.scale is DomainScale.WINDOW_ZSCORE:
        columns += ", each window z-scored first as the graph does: units and offset do not matter"
    line = (f"- input `{spec.name}` domain ({columns}): the range of {domain.basis}, widened by "
            f"{domain.margin:.0%} of it on each side; a row outside is flagged `out_of_domain` on the device and "
            f"never classified. Held-out test rows outside: {domain.held_out_outside:,} of {domain.held_out_rows:,}")
    if domain.held_out_outside:
        line += (f" — **the device would not classify {domain.held_out_outside / domain.held_out_rows:.1%} of the "
                 "held-out rows; the metrics above include them**")
    if spec.feature_kind is FeatureKind.TABULAR and len(domain.low) <= NAMED_RANGES:
        names = spec.feature_names or tuple(f"column {index}" for index in range(len(domain.low)))
        line += ". Classified only within: " + ", ".join(
            f"{name} {low:.4g} to {high:.4g}" for name, low, high in zip(names, domain.low, domain.high, strict=True))
    return line
