"""What a healthcare scenario is: data + Keras model + metrics + device input spec.

A scenario knows how to make its labelled splits and an untrained model, and
describes what the device must feed the model. Stages never special-case a
scenario; they only call this interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from pipeline.clinical.gate import GateConfig
from pipeline.config import BuildConfig, Profile, shrink_for_tests
from pipeline.splits import DataSplits
from runtime.features import FeatureKind, summary_features

if TYPE_CHECKING:
    import keras

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class InputSpec:
    """What the device feeds the model, recorded in the bundle manifest."""

    shape: tuple[int, ...]  # per-sample shape, no batch axis
    feature_kind: FeatureKind
    name: str = "input"
    dtype: str = "float32"
    sample_rate_hz: float | None = None  # waveform scenarios only
    window_before_s: float | None = None  # seconds before the R-peak in a beat window
    window_after_s: float | None = None  # seconds after the R-peak (R-peak excluded)
    feature_names: tuple[str, ...] = ()  # tabular scenarios: column order
    preprocessing_in_graph: str = "none"  # what the ONNX graph does itself
    runtime_preprocessing: str = "none"  # what the device must do before calling the model
    output_semantics: str = "softmax probabilities over the labels, in label order"
    thresholds: dict = field(default_factory=lambda: {"decision": "argmax"})


class Scenario(ABC):
    """One healthcare task. Subclasses are registered in ``pipeline.scenarios``."""

    name: str
    description: str
    class_names: tuple[str, ...]
    gate: GateConfig = GateConfig()
    # Bump when the scenario's data or model *code* changes what it produces: the version is
    # part of the cache key, so stale cached data and models are not reused.
    version: int = 1

    @abstractmethod
    def input_spec(self, data_config: object) -> InputSpec:
        """The device input contract for a given data config."""

    @abstractmethod
    def data_config(self, profile: Profile) -> object:
        """The frozen data-config dataclass for a profile."""

    @abstractmethod
    def model_config(self, profile: Profile) -> object:
        """The frozen model-architecture dataclass for a profile."""

    @abstractmethod
    def make_data(self, data_config: object, seed: int, progress: Progress | None = None) -> DataSplits:
        """Labelled, seed-fixed train/validation/calibration/test splits."""

    @abstractmethod
    def build_model(self, model_config: object, train_inputs: np.ndarray) -> keras.Model:
        """A compiled-free, untrained Keras model (training compiles it)."""

    def build_config(self, profile: Profile = Profile.FULL, seed: int = 0) -> BuildConfig:
        """Default build settings for a profile; CLI options override fields."""
        config = BuildConfig(
            scenario=self.name, data=self.data_config(profile), model=self.model_config(profile), seed=seed
        )
        config = replace(config, evaluate=replace(config.evaluate, gate=self.gate))
        if profile is Profile.TINY:
            config = shrink_for_tests(config)
        return config

    def features(self, inputs: np.ndarray, data_config: object) -> dict[str, np.ndarray]:
        """Summary features used by the reference profile (and device telemetry)."""
        spec = self.input_spec(data_config)
        return summary_features(inputs, spec.feature_kind, spec.feature_names)
