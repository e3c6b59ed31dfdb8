"""ECG beat classification into the AAMI classes N, S, V, F with a 1D-CNN.

The training data is SYNTHETIC (see ``ecg_synthesis``): no labelled arrhythmia
database installs offline, so beats are simulated with neurokit2's ECGSYN model
and principled morphology changes for the ectopic classes. Metrics measured on it
describe performance on synthetic beats, not clinical accuracy.

The model z-scores each window in its graph (LayerNormalization over time), so
it is invariant to the device's ADC gain and baseline; the device must resample
to 360 Hz, detect R-peaks and cut windows of 0.25 s before / 0.45 s after.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.clinical.gate import GateConfig
from pipeline.config import Profile
from pipeline.scenarios.base import DeviceContract, Progress, Scenario, multiclass_output
from pipeline.scenarios.ecg_arrhythmia.synthesis import (
    CLASS_NAMES,
    EcgSynthesisConfig,
    synthesize_beats,
    window_samples,
)
from pipeline.splits import DataSplits, Split, split_by_group
from runtime.contract import DomainScale, InputSpec, Preprocessing
from runtime.features import FeatureKind


@dataclass(frozen=True)
class EcgDataConfig:
    synthesis: EcgSynthesisConfig = field(default_factory=EcgSynthesisConfig)
    train_fraction: float = 0.6  # records, not beats: a patient never spans two splits
    validation_fraction: float = 0.15
    calibration_fraction: float = 0.1
    test_fraction: float = 0.15


@dataclass(frozen=True)
class EcgModelConfig:
    filters: tuple[int, ...] = (16, 32, 32)  # Conv1D widths, kernel sizes below
    kernel_sizes: tuple[int, ...] = (7, 5, 5)
    dense_units: int = 32
    dropout: float = 0.2


class EcgArrhythmiaScenario(Scenario):
    name = "ecg-arrhythmia"
    description = "1D-CNN AAMI beat classifier (N/S/V/F) on SYNTHETIC single-lead ECG at 360 Hz"
    class_names = CLASS_NAMES
    gate = GateConfig()
    version = 3  # 2: R-peak alignment jitter, wider P/Q amplitude range; 3: test beats grouped by record
    # Synthetic training and test data: its S/F (and V) outputs are unvalidated on real beats, so it is built only
    # when named (tests, a synthetic test signal); ``make build`` ships ecg-pvc instead.
    shipped_by_default = False

    def data_config(self, profile: Profile) -> EcgDataConfig:
        if profile is Profile.TINY:
            return EcgDataConfig(synthesis=EcgSynthesisConfig(beats=800, records=12))
        return EcgDataConfig()

    def model_config(self, profile: Profile) -> EcgModelConfig:
        return EcgModelConfig()

    def device_contract(self, data_config: object) -> DeviceContract:
        synthesis = data_config.synthesis  # type: ignore[attr-defined]
        return DeviceContract(
            inputs=(InputSpec(
                "input",
                (None, window_samples(synthesis), 1),
                FeatureKind.WAVEFORM,
                sample_rate_hz=float(synthesis.sample_rate_hz),
                window_before_s=synthesis.window_before_s,
                window_after_s=synthesis.window_after_s,
            ),),
            # A beat whose top class probability is under one half is flagged for review.
            output=multiclass_output(self.class_names, "softmax probabilities over AAMI classes [N, S, V, F]",
                                     low_confidence_below=0.5),
            preprocessing=Preprocessing(
                in_graph="per-window z-score over time (LayerNormalization, no learned scale)",
                runtime=(
                    f"resample to {synthesis.sample_rate_hz} Hz; detect R-peaks; cut "
                    f"{synthesis.window_before_s} s before and {synthesis.window_after_s} s after each R-peak "
                    "(R-peak at index round(before × rate)); shape (batch, samples, 1) float32; "
                    "units and baseline do not matter"
                ),
            ),
            domain_scales=(DomainScale.WINDOW_ZSCORE,),  # the graph z-scores each window: units do not matter
        )

    def make_data(self, data_config: object, seed: int, progress: Progress | None = None) -> DataSplits:
        config: EcgDataConfig = data_config  # type: ignore[assignment]
        beats = synthesize_beats(config.synthesis, seed, progress)
        fractions = {
            "train": config.train_fraction,
            "validation": config.validation_fraction,
            "calibration": config.calibration_fraction,
            "test": config.test_fraction,
        }
        indices = split_by_group(beats.record_ids, fractions, seed)
        return DataSplits(
            **{name: Split(beats.windows[rows], beats.labels[rows],
                           np.asarray([f"synthetic record {record}" for record in beats.record_ids[rows].tolist()]))
               for name, rows in indices.items()},
            class_names=CLASS_NAMES,
            provenance=beats.provenance,
            group_unit="synthetic record: one simulated patient's beats",
        )

    def build_model(self, model_config: object, train_inputs: np.ndarray):
        import keras

        config: EcgModelConfig = model_config  # type: ignore[assignment]
        inputs = keras.Input(shape=train_inputs.shape[1:], name="input")
        hidden = keras.layers.LayerNormalization(axis=1, center=False, scale=False, name="zscore")(inputs)
        for index, (filters, kernel) in enumerate(zip(config.filters, config.kernel_sizes)):
            hidden = keras.layers.Conv1D(filters, kernel, padding="same", activation="relu", name=f"conv_{index}")(
                hidden
            )
            if index < len(config.filters) - 1:
                hidden = keras.layers.MaxPooling1D(2, name=f"pool_{index}")(hidden)
        hidden = keras.layers.Flatten(name="flatten")(hidden)  # keeps where each wave sits (prematurity)
        hidden = keras.layers.Dense(config.dense_units, activation="relu", name="dense")(hidden)
        hidden = keras.layers.Dropout(config.dropout, name="dropout")(hidden)
        outputs = keras.layers.Dense(len(CLASS_NAMES), activation="softmax", name="probabilities")(hidden)
        return keras.Model(inputs, outputs, name="ecg_beat_cnn")
