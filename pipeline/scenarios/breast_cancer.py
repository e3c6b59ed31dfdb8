"""Tabular diagnosis: malignant vs benign from the Wisconsin Diagnostic Breast Cancer data.

Real labelled data that ships with scikit-learn (569 patients × 30 features of
cell nuclei measured on digitised fine-needle-aspirate images; 212 malignant,
357 benign). Standardisation lives inside the Keras model (a ``Normalization``
layer adapted on the training split), so the ONNX model takes raw features.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.clinical.evidence import ClassSources, one_source_each
from pipeline.clinical.gate import GateConfig
from pipeline.config import Profile
from pipeline.scenarios.base import DeviceContract, Progress, Scenario, multiclass_output
from pipeline.splits import DataSplits, Split, split_indices
from runtime.contract import InputSpec, Preprocessing
from runtime.features import FeatureKind


@dataclass(frozen=True)
class BreastCancerDataConfig:
    train_fraction: float = 0.55  # fit
    validation_fraction: float = 0.15  # early stopping
    calibration_fraction: float = 0.10  # int8 static calibration only
    test_fraction: float = 0.20  # parity, clinical metrics, reference profile (~114 patients)


@dataclass(frozen=True)
class BreastCancerModelConfig:
    hidden_units: tuple[int, ...] = (32, 16)  # MLP widths
    dropout: float = 0.2  # between hidden layers


def _load_dataset() -> tuple[np.ndarray, np.ndarray, tuple[str, ...], tuple[str, ...]]:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    names = tuple(str(name).replace(" ", "_") for name in bunch.feature_names)
    classes = tuple(str(name) for name in bunch.target_names)
    return bunch.data.astype(np.float32), bunch.target.astype(np.int64), names, classes


class BreastCancerScenario(Scenario):
    name = "breast-cancer"
    description = "MLP on the Wisconsin Diagnostic Breast Cancer data (real labels, scikit-learn)"
    class_names = ("malignant", "benign")  # scikit-learn's target order: 0 = malignant
    # Missing a malignancy costs more than a false alarm: keep the default limits,
    # which already bound the malignant sensitivity drop to 2 points.
    gate = GateConfig()
    version = 2  # 2: the data stage records how the test intervals resample (every patient a sample of her own)

    def data_config(self, profile: Profile) -> BreastCancerDataConfig:
        return BreastCancerDataConfig()

    def model_config(self, profile: Profile) -> BreastCancerModelConfig:
        return BreastCancerModelConfig()

    def device_contract(self, data_config: object) -> DeviceContract:
        _, _, feature_names, _ = _load_dataset()
        return DeviceContract(
            inputs=(InputSpec("input", (None, len(feature_names)), FeatureKind.TABULAR,
                              feature_names=tuple(feature_names)),),
            output=multiclass_output(self.class_names, "softmax probabilities over [malignant, benign]"),
            preprocessing=Preprocessing(
                in_graph="standardisation of each raw feature (Keras Normalization, train mean/variance)",
                runtime="none: pass the 30 raw features as float32 in the listed column order",
            ),
        )

    def make_data(self, data_config: object, seed: int, progress: Progress | None = None) -> DataSplits:
        config: BreastCancerDataConfig = data_config  # type: ignore[assignment]
        inputs, labels, _, classes = _load_dataset()
        fractions = {
            "train": config.train_fraction,
            "validation": config.validation_fraction,
            "calibration": config.calibration_fraction,
            "test": config.test_fraction,
        }
        indices = split_indices(labels, fractions, seed)
        if progress:
            progress(1, 1)
        from sklearn import __version__ as sklearn_version

        return DataSplits(
            **{name: Split(inputs[rows], labels[rows]) for name, rows in indices.items()},
            class_names=classes,
            provenance={
                "synthetic": False,
                "source": "Wisconsin Diagnostic Breast Cancer (sklearn.datasets.load_breast_cancer)",
                "scikit_learn_version": sklearn_version,
                "licence": "scikit-learn BSD-3-Clause; dataset from the UCI Machine Learning Repository",
                "samples": len(labels),
            },
        )

    def test_sources(self, provenance: Mapping[str, Any], counts: Mapping[str, int]) -> dict[str, ClassSources]:
        """One row per patient (the study's unit), split by row: each test example its own source."""
        return one_source_each(counts)

    def build_model(self, model_config: object, train_inputs: np.ndarray):
        import keras

        config: BreastCancerModelConfig = model_config  # type: ignore[assignment]
        normalization = keras.layers.Normalization(axis=-1, name="standardise")
        normalization.adapt(train_inputs)
        inputs = keras.Input(shape=train_inputs.shape[1:], name="input")
        hidden = normalization(inputs)
        for index, units in enumerate(config.hidden_units):
            hidden = keras.layers.Dense(units, activation="relu", name=f"dense_{index}")(hidden)
            hidden = keras.layers.Dropout(config.dropout, name=f"dropout_{index}")(hidden)
        outputs = keras.layers.Dense(len(self.class_names), activation="softmax", name="probabilities")(hidden)
        return keras.Model(inputs, outputs, name="breast_cancer_mlp")
