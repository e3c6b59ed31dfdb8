"""Summary features of a model's inputs, named one way for the build's reference profile and the device.

One input: its features as they are (``peak_to_peak``, or a tabular input's column names). Several
inputs: ``<input>/<feature>`` (``residual/kurtosis``, ``rr/pre_rr_s``). The bundle stage profiles the
test split with this function and the device computes telemetry with it, on the arrays the model is
fed, so drift always compares like with like.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from runtime.contract import InputSpec
from runtime.features import FeatureKind, summary_features


def feature_prefix(spec: InputSpec, specs: Sequence[InputSpec]) -> str:
    """``""`` for a bundle's only input, ``"<input>/"`` when there are several."""
    return f"{spec.name}/" if len(specs) > 1 else ""


def input_features(inputs: np.ndarray | Mapping[str, np.ndarray], specs: Sequence[InputSpec]) -> dict[str, np.ndarray]:
    """Per sample, the summary features of every input (``inputs``: one array for a single-input model, or
    input name → array with the same rows)."""
    if not isinstance(inputs, Mapping):
        (spec,) = specs
        inputs = {spec.name: inputs}
    features: dict[str, np.ndarray] = {}
    with np.errstate(all="ignore"):  # a non-finite sample gives non-finite features, which telemetry leaves out
        for spec in specs:
            values = np.asarray(inputs[spec.name])
            if spec.feature_kind is FeatureKind.WAVEFORM and values.ndim > 1:
                values = values.reshape(values.shape[0], values.shape[1], -1)
            prefix = feature_prefix(spec, specs)
            for name, column in summary_features(values, spec.feature_kind, spec.feature_names).items():
                features[f"{prefix}{name}"] = np.asarray(column, dtype=np.float64)
    return features
