"""What a healthcare scenario is: data + Keras model + metrics + device contract.

A scenario knows how to make its labelled splits and an untrained model, and
describes what the device must feed the model and how it decides from the answer
(``DeviceContract``, in ``runtime.contract``'s types). Stages never special-case a
scenario; they only call this interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.clinical.evidence import ClassSources
from pipeline.clinical.gate import GateConfig
from pipeline.config import BuildConfig, Profile, shrink_for_tests
from pipeline.errors import StageError
from pipeline.splits import DataSplits
from runtime.contract import DomainScale, InputSpec, MulticlassRule, OutputSpec, Preprocessing, TaskKind
from runtime.features import summary_features

if TYPE_CHECKING:
    import keras

    from pipeline.validation.recordings import AnnotatedRecording

Progress = Callable[[int, int], None]


DEFAULT_OUTPUT_NAME = "probabilities"  # the exporter's default graph output name; the bundle writes the real one


@dataclass(frozen=True)
class DeviceContract:
    """What the device feeds the model and how it decides from the answer, in the runtime's own
    contract types (``runtime.contract``): the bundle stage writes these into the manifest."""

    inputs: tuple[InputSpec, ...]  # one per model input, batch axis None first
    output: OutputSpec  # task kind, labels, decision rule (its names are replaced by the export's)
    preprocessing: Preprocessing  # what the graph does itself, what the device must do first
    # How each input's domain is measured and checked (one per input; none: as fed). A waveform whose graph z-scores
    # every window itself says WINDOW_ZSCORE: its units do not matter, so neither may its domain's.
    domain_scales: tuple[DomainScale, ...] = ()

    def __post_init__(self) -> None:
        if self.domain_scales and len(self.domain_scales) != len(self.inputs):
            raise StageError(
                f"the device contract gives {len(self.domain_scales)} domain scale(s) for {len(self.inputs)} input(s)",
                expected="one DomainScale per input, in the inputs' order, or none (every input as fed)",
                fix="list a scale for every input of the scenario's device contract",
            )

    @property
    def input(self) -> InputSpec:
        """The one input of a single-input model (every scenario so far)."""
        if len(self.inputs) != 1:
            raise StageError(
                f"the model takes {len(self.inputs)} inputs",
                expected="a single-input scenario for this step",
                fix="feed each input by name",
            )
        return self.inputs[0]


def multiclass_output(
    labels: tuple[str, ...], semantics: str, low_confidence_below: float | None = None
) -> OutputSpec:
    """A softmax over ``labels`` applied in the graph, decided by argmax (flagging low top probabilities)."""
    return OutputSpec(
        names=(DEFAULT_OUTPUT_NAME,),
        task=TaskKind.MULTICLASS,
        labels=tuple(labels),
        decision=MulticlassRule(low_confidence_below),
        semantics=semantics,
    )


class Scenario(ABC):
    """One healthcare task. Subclasses are registered in ``pipeline.scenarios``."""

    name: str
    description: str
    class_names: tuple[str, ...]
    gate: GateConfig = GateConfig()
    task: TaskKind = TaskKind.MULTICLASS  # what the model outputs: a softmax (multiclass) or one sigmoid (binary)
    # Bump when the scenario's data or model *code* changes what it produces: the version is
    # part of the cache key, so stale cached data and models are not reused.
    version: int = 1
    # Built by ``make build`` / ``edgemed build`` without scenario names. A scenario whose outputs are not
    # validated on real data (the synthetic ECG classes) stays registered but is built only when named.
    shipped_by_default: bool = True

    @abstractmethod
    def device_contract(self, data_config: object) -> DeviceContract:
        """The device contract (inputs, output and its decision rule, preprocessing) for a data config."""

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

    def test_sources(self, provenance: Mapping[str, Any], counts: Mapping[str, int]) -> dict[str, ClassSources] | None:
        """Per class, where its test examples (``counts``: per class) come from — examples per recording or
        subject — and which of those sources training also used, read from the data stage's ``provenance``: the
        evidence rule's independence check (pipeline/clinical/evidence.py). None: not recorded (only the examples
        are counted)."""
        return None

    def recording_source(self, data_config: object) -> dict | None:
        """What the ``validate`` stage runs every variant on, as data (its cache key); None: the scenario has no
        held-out recordings and its build has no ``validate`` stage."""
        return None

    def validation_recordings(self, data_config: object) -> list[AnnotatedRecording]:
        """The held-out annotated recordings ``recording_source`` describes (never seen by training)."""
        raise StageError(f"scenario {self.name} has no held-out recordings", expected="a recording_source",
                         fix="validate on recordings only scenarios that declare them")

    def features(self, inputs: np.ndarray, data_config: object) -> dict[str, np.ndarray]:
        """Summary features used by the reference profile (and device telemetry)."""
        spec = self.device_contract(data_config).input
        return summary_features(inputs, spec.feature_kind, spec.feature_names)
