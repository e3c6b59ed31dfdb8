"""Anomaly detection on a REAL arterial-pressure series: an autoencoder on UCR InternalBleeding16.

The series (``data``): 7 501 points of a pulsatile pressure waveform (UCR Time Series Anomaly Archive,
KDD Cup 2021, as aeon 1.6.0 ships it); its first 1 200 points are the archive's anomaly-free training
prefix and one anomaly is labelled, samples 4187–4198: a 12-sample burst of jagged oscillation on the
down-stroke of one pulse. aeon's docstring calls the series "the heart rate of a patient with internal
bleeding"; the waveform contradicts that (a ~183-sample pulse, 56–104 units, dicrotic shape): it is a
blood-pressure waveform — an arterial pressure of a pig in an internal-bleeding study, per the archive's
description as we understand it (not verifiable offline; provenance says so).

**Sample rate: nominal.** Neither aeon nor the archive's files give one. The contract declares 250 Hz,
the rate a porcine haemorrhage study reports for its haemodynamic waveforms (Wertz et al. 2019; not
known to be this series' source); at 250 Hz a 183-sample pulse is 82 beats/min, plausible for an
anaesthetised pig. Every time figure (window, hop, false alarms per hour) scales with this assumption;
a device must resample its signal to it.

**Windows.** 128 samples (0.512 s nominal, about 70 % of a pulse), one every 8 samples (32 ms), cut by
``runtime.windows.model_windows`` exactly as the device cuts them. **No per-window normalisation**
(``WindowNormalization.NONE``): the graph scales with one mean and variance adapted on the training
windows, so level and amplitude stay visible to the model — a falling pressure is the physiology of
bleeding, and a per-window z-score would erase it and amplify the diastolic tail's small wiggles (the
comparison module measured both: ``benchmarks/results/vitals_attention_vs_autoencoder.md``). The price:
the device must feed the pressure in the training units (the archive's, mmHg-like), not raw ADC counts.

**Splits: contiguous time blocks, a gap of one window between blocks** (one series: no per-file split).
Windows overlapping the labelled anomaly by ≥ 6 samples are anomalous; windows with fewer anomalous
samples, or within 8 samples of the range, are ambiguous and left out of the test split (counted).
The alarm threshold is set at ``false_alarm_rate`` on the ``normal`` block, scores in the graph.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from pipeline.clinical.task_evaluation import DecisionConfig
from pipeline.clinical.task_gates import AnomalyGateConfig
from pipeline.config import BuildConfig, Profile, TrainConfig
from pipeline.errors import DataError
from pipeline.scenarios.base import DeviceContract, Progress, Scenario
from pipeline.scenarios.vitals_anomaly.data import (
    NOMINAL_RATE_HZ,
    BlockWindows,
    UcrSeries,
    VitalsDataConfig,
    block_windows,
    check_blocks,
    input_spec,
    load_series,
)
from pipeline.scenarios.vitals_anomaly.model import Architecture, VitalsModelConfig, build_vitals_model
from pipeline.scenarios.vitals_anomaly.provenance import describe_data
from pipeline.splits import DataSplits, Split
from runtime.contract import AnomalyRule, OutputSpec, Preprocessing, TaskKind

CLASS_NAMES = ("normal", "anomalous")
SET_BY_BUILD = "set by the build: the alarm threshold at the target false-alarm rate on the normal block's windows"


def series_windows(config: VitalsDataConfig) -> tuple[UcrSeries, dict[str, BlockWindows]]:
    """The series and the kept windows of every block (with their start samples and what was left out)."""
    series = load_series()
    spec = input_spec(config)
    blocks = config.blocks.to_dict()
    check_blocks({name: tuple(block) for name, block in blocks.items()}, config.window_samples, series.values.size)
    windows = {name: block_windows(series, tuple(block), spec, config.labels) for name, block in blocks.items()}
    for name in ("train", "validation", "calibration", "normal"):
        if windows[name].labels.any():
            raise DataError(f"the {name} block holds the labelled anomaly", expected="the anomaly in the test block",
                            fix="move the blocks: only the test split may hold anomalous windows")
    return series, windows


def _groups(windows: BlockWindows, config: VitalsDataConfig) -> np.ndarray:
    """Each window's bootstrap group: the labelled anomaly (one event, whatever blocks its windows start in), else
    the block of ``config.block_samples`` samples the window starts in."""
    blocks = [f"block {start // config.block_samples}" for start in windows.starts.tolist()]
    return np.where(windows.labels == 1, "the labelled anomaly", np.asarray(blocks, dtype=str))


def make_splits(config: VitalsDataConfig) -> DataSplits:
    """Windows of every block as labelled splits (``normal``: unlabelled, the threshold's data)."""
    series, windows = series_windows(config)
    splits = {name: Split(windows[name].inputs, windows[name].labels, _groups(windows[name], config))
              for name in ("train", "validation", "calibration", "test")}
    return DataSplits(**splits, normal=Split(windows["normal"].inputs), class_names=CLASS_NAMES,
                      task=TaskKind.ANOMALY, provenance=describe_data(series, config, windows),
                      group_unit=f"{config.block_samples}-sample block of the series (the windows starting in it; "
                                 "the windows holding the labelled anomaly: one group)")


class VitalsAnomalyScenario(Scenario):
    name = "vitals-anomaly"
    description = ("anomaly detection on a REAL arterial-pressure waveform (UCR InternalBleeding16, one labelled "
                   "anomaly): autoencoder, reconstruction error scored in the graph, threshold at 1 % false alarms")
    class_names = CLASS_NAMES
    task = TaskKind.ANOMALY
    version = 2  # 2: test windows grouped by block of the series for the bootstrap
    shipped_by_default = False  # one labelled anomaly and a nominal sample rate: too little real evidence (README)

    def __init__(self, architecture: Architecture = Architecture.AUTOENCODER) -> None:
        self.architecture = Architecture(architecture)
        if self.architecture is not Architecture.AUTOENCODER:
            self.name = f"vitals-anomaly-{self.architecture.value}"
            self.description = "the self-attention autoencoder measured beside vitals-anomaly (same data, contract)"

    def data_config(self, profile: Profile) -> VitalsDataConfig:
        return VitalsDataConfig()

    def model_config(self, profile: Profile) -> VitalsModelConfig:
        return VitalsModelConfig(architecture=self.architecture)

    def build_config(self, profile: Profile = Profile.FULL, seed: int = 0) -> BuildConfig:
        config = super().build_config(profile, seed)
        # A few hundred windows: small batches, many epochs, early stopping on the validation block's loss.
        train = TrainConfig(epochs=300, batch_size=32, learning_rate=2e-3, early_stopping_patience=20,
                            balance_classes=False)
        if profile is Profile.TINY:
            train = replace(train, epochs=4, early_stopping_patience=2)
        evaluate = replace(config.evaluate, decision=DecisionConfig(false_alarm_rate=0.01),
                           anomaly_gate=AnomalyGateConfig())
        return replace(config, train=train, evaluate=evaluate)

    def device_contract(self, data_config: object) -> DeviceContract:
        config: VitalsDataConfig = data_config  # type: ignore[assignment]
        seconds = config.window_samples / NOMINAL_RATE_HZ
        return DeviceContract(
            inputs=(input_spec(config),),
            output=OutputSpec(
                names=("anomaly_score",), task=TaskKind.ANOMALY, labels=CLASS_NAMES,
                decision=AnomalyRule(0.0, 0.01, SET_BY_BUILD),
                semantics="the autoencoder's mean squared reconstruction error of the window (the series' units "
                          "squared), computed in the graph; anomalous at or above the threshold"),
            preprocessing=Preprocessing(
                in_graph="scaling by the training windows' mean and variance (Normalization), encoder, decoder, "
                         "scaling back; then the reconstruction-error head (mean squared error per window)",
                runtime=(f"feed arterial pressure in the training units (the UCR series' mmHg-like values, not ADC "
                         f"counts: the window is NOT normalised); resample to {NOMINAL_RATE_HZ:g} Hz (a nominal "
                         f"rate: the series' true rate is undocumented); cut {config.window_samples} samples "
                         f"({seconds:.3f} s) every {config.hop_samples} samples; windows flagged non-finite, flat "
                         "or clipped are not scored — as the manifest's 'derived' says"),
            ),
        )

    def make_data(self, data_config: object, seed: int, progress: Progress | None = None) -> DataSplits:
        splits = make_splits(data_config)  # type: ignore[arg-type]
        if progress:
            progress(1, 1)
        return splits

    def build_model(self, model_config: object, train_inputs):
        return build_vitals_model(model_config, train_inputs)  # type: ignore[arg-type]


def vitals_anomaly_scenarios() -> list[Scenario]:
    """The registered pair: ``vitals-anomaly`` (shipped design) and ``vitals-anomaly-attention`` (measured beside)."""
    return [VitalsAnomalyScenario(Architecture.AUTOENCODER), VitalsAnomalyScenario(Architecture.ATTENTION)]
