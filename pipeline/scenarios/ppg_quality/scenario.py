"""PPG window quality: P(motion artefact) per 4 s window of REAL PPG, a depthwise-separable 1-D CNN for a wearable.

Binary, not multiclass: the only labelled distinction the data supports is motion artefact vs an acceptable pulse
(the sources label whole files "rest" or "motion artefact"; nothing finer). The device flags the windows it cannot
judge at all (flat line, clipping, gaps) before the model; the model answers the one question left.

Splits are by recording, and inside the one motion file by contiguous time blocks at least one window apart
(``data.check_blocks`` refuses anything else):

* **train**: real rest PPG — ``bvp_rest`` 0–78 s (PLUX hub, BVP sensor) and both oximeter channels of ``hspo2`` —
  as clean windows, plus SYNTHETIC artefacts added to copies of them (``artefacts``): no real artefact is trained on;
* **validation** (early stopping; the operating threshold): both channels of ``fspo2`` (clean) and the motion file's
  first 9 s (real artefact episode 1, 4.0–8.6 s);
* **calibration** (int8 ranges only): ``bvp_rest`` 82 s–end with synthetic artefacts;
* **test** (every figure the gate and report give): ``bvp_2017`` (another PLUX device, unseen), heartpy's
  ``data.csv`` (another device, 100 Hz, unseen) and the motion file from 13 s on (real artefact episode 2,
  13.7–16.7 s, and 10 s of clean BITalino pulse: the only clean windows from the artefact file's own device).

The test split's positives are the windows of ONE real artefact episode: its sensitivity is a statement about that
episode, and its bootstrap interval (over overlapping windows) is far narrower than the evidence warrants.

The operating threshold is the lowest with specificity ≥ 0.95 on the validation split's 348 clean windows: its 9
artefact windows (one episode) cannot resolve a sensitivity target, and a quality gate that drops one clean window in
twenty loses a little data, while a missed artefact feeds a wrong pulse rate downstream. Not shipped by ``make build``:
the gate compares variants with fp32, but the evidence that the model finds artefacts is two real episodes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from pipeline.clinical.evidence import ClassSources, sources_by_split
from pipeline.clinical.task_evaluation import DecisionConfig, ThresholdRuleName
from pipeline.config import BuildConfig, Profile, TrainConfig
from pipeline.scenarios.base import DeviceContract, Progress, Scenario
from pipeline.scenarios.ppg_quality import catalogue, data
from pipeline.scenarios.ppg_quality.artefacts import ArtefactConfig, VariationConfig
from pipeline.scenarios.ppg_quality.assembly import WindowOptions, assemble_block
from pipeline.scenarios.ppg_quality.data import Block
from pipeline.scenarios.ppg_quality.model import PpgModelConfig, build_ppg_model
from pipeline.splits import SPLIT_NAMES, DataSplits, Split
from runtime.contract import BinaryRule, InputSpec, OutputSpec, Preprocessing, TaskKind
from runtime.contract.derived import Derivation, WindowConfig, WindowNormalization
from runtime.features import FeatureKind

CLASS_NAMES = ("acceptable", "motion_artefact")
SET_BY_BUILD = "set by the build on the validation split (evaluate stage)"


@dataclass(frozen=True)
class BlockSplits:
    train: tuple[Block, ...] = (Block("bvp_rest", 0.0, 78.0), Block("hspo2_ch9"), Block("hspo2_ch10"))
    validation: tuple[Block, ...] = (Block("fspo2_ch9"), Block("fspo2_ch10"), Block("motion", 0.0, 9.0))
    calibration: tuple[Block, ...] = (Block("bvp_rest", 82.0),)
    test: tuple[Block, ...] = (Block("bvp_2017"), Block("heartpy_data"), Block("motion", 13.0))

    def of(self, split: str) -> tuple[Block, ...]:
        return getattr(self, split)

    def describe(self) -> dict[str, list[str]]:
        return {name: [f"{block.recording} {block.start_s:g}–{'end' if block.end_s is None else f'{block.end_s:g}'} s"
                       for block in self.of(name)] for name in SPLIT_NAMES}


@dataclass(frozen=True)
class PpgQualityDataConfig:
    model_rate_hz: float = 50.0  # PPG has little above 8 Hz; 50 Hz keeps the pulse's shape
    window_s: float = 4.0  # four to five beats at rest
    hop_s: float = 0.5  # the device judges a window every 0.5 s
    minimum_artefact_overlap_s: float = 1.0  # an artefact window holds at least 1 s of a marked episode
    # The bootstrap's group: the windows of one recording starting in one 10-s block are resampled together
    # (windows overlap 3.5 s of 4; one artefact episode spans several).
    block_s: float = 10.0
    blocks: BlockSplits = field(default_factory=BlockSplits)
    artefacts: ArtefactConfig = field(default_factory=ArtefactConfig)
    variation: VariationConfig = field(default_factory=VariationConfig)  # of the synthetic copies' clean pulse
    synthetic_splits: tuple[str, ...] = ("train", "calibration")  # the splits that get synthetic artefacts

    @property
    def window_samples(self) -> int:
        return round(self.window_s * self.model_rate_hz)

    def window_options(self, synthetic_copies: int) -> WindowOptions:
        return WindowOptions(self.minimum_artefact_overlap_s, self.block_s, synthetic_copies, self.artefacts,
                             self.variation)


TINY_BLOCKS = BlockSplits(train=(Block("bvp_rest", 0.0, 40.0),), calibration=(Block("bvp_rest", 82.0),),
                          validation=(Block("fspo2_ch9", 0.0, 30.0), Block("motion", 0.0, 9.0)),
                          test=(Block("bvp_2017"), Block("motion", 13.0)))


class PpgQualityScenario(Scenario):
    name = "ppg-quality"
    description = ("PPG window quality on REAL PPG: P(motion artefact) per 4 s window at 50 Hz from a depthwise-"
                   "separable 1-D CNN (1,289 parameters, 30,160 MACs a window); trained on real rest PPG with "
                   "synthetic artefacts, tested on a held-out real artefact episode and unseen rest recordings")
    class_names = CLASS_NAMES
    task = TaskKind.BINARY
    version = 2  # 2: test windows grouped by recording × block for the bootstrap
    shipped_by_default = False

    def data_config(self, profile: Profile) -> PpgQualityDataConfig:
        if profile is Profile.TINY:
            return PpgQualityDataConfig(blocks=TINY_BLOCKS, artefacts=ArtefactConfig(replicas=2))
        return PpgQualityDataConfig()

    def model_config(self, profile: Profile) -> PpgModelConfig:
        return PpgModelConfig()

    def build_config(self, profile: Profile = Profile.FULL, seed: int = 0) -> BuildConfig:
        config = super().build_config(profile, seed)
        train = TrainConfig(epochs=50, batch_size=64, learning_rate=2e-3, early_stopping_patience=12)
        if profile is Profile.TINY:
            train = replace(train, epochs=2, early_stopping_patience=1)
        decision = DecisionConfig(threshold_rule=ThresholdRuleName.TARGET_SPECIFICITY, threshold_target=0.95)
        return replace(config, train=train, evaluate=replace(config.evaluate, decision=decision))

    def device_contract(self, data_config: object) -> DeviceContract:
        config: PpgQualityDataConfig = data_config  # type: ignore[assignment]
        window = WindowConfig(hop_s=config.hop_s, normalization=WindowNormalization.ZSCORE)
        return DeviceContract(
            inputs=(InputSpec("ppg", (None, config.window_samples, 1), FeatureKind.WAVEFORM,
                              sample_rate_hz=config.model_rate_hz, derived=Derivation.signal_window(window)),),
            output=OutputSpec(names=("probabilities",), task=TaskKind.BINARY, labels=CLASS_NAMES,
                              decision=BinaryRule(0.5, SET_BY_BUILD),
                              semantics="the sigmoid probability that the window holds a motion artefact"),
            preprocessing=Preprocessing(
                in_graph="none: the window arrives z-scored",
                runtime=(f"read the PPG channel as raw ADC counts; resample to {config.model_rate_hz:g} Hz "
                         f"(runtime.resample); cut {config.window_s:g} s windows every {config.hop_s:g} s; flag "
                         "non-finite, flat and clipped windows instead of judging them; z-score each window "
                         "(runtime.windows.model_windows) — as the manifest's 'derived' says"),
            ),
        )

    def make_data(self, data_config: object, seed: int, progress: Progress | None = None) -> DataSplits:
        config: PpgQualityDataConfig = data_config  # type: ignore[assignment]
        data.check_blocks({name: config.blocks.of(name) for name in SPLIT_NAMES}, config.window_s)
        spec = self.device_contract(config).input
        keys = sorted({block.recording for name in SPLIT_NAMES for block in config.blocks.of(name)})
        recordings = {key: data.load_recording(catalogue.source(key), config.model_rate_hz) for key in keys}
        rng = np.random.default_rng(seed)
        splits, counts = {}, {}
        for index, name in enumerate(SPLIT_NAMES):
            synthetic = config.artefacts.replicas if name in config.synthetic_splits else 0
            built = [assemble_block(recordings[block.recording], block, spec, config.window_options(synthetic), rng)
                     for block in config.blocks.of(name)]
            splits[name] = Split(np.concatenate([item.inputs for item in built]),
                                 np.concatenate([item.labels for item in built]),
                                 np.concatenate([item.groups for item in built]))
            counts[name] = [item.counts for item in built]
            if progress:
                progress(index + 1, len(SPLIT_NAMES))
        return DataSplits(**splits, class_names=CLASS_NAMES, task=TaskKind.BINARY,
                          provenance=_provenance(config, recordings, counts),
                          group_unit=f"recording × {config.block_s:g}-s block (the windows starting in it)")

    def test_sources(self, provenance: Mapping[str, Any], counts: Mapping[str, int]) -> dict[str, ClassSources]:
        """Each real window's recording (its block's); synthetic copies are no source."""
        tallies = {"acceptable": CLASS_NAMES[0], "artefact": CLASS_NAMES[1]}
        return sources_by_split(
            (block["block"].split(" ")[0], label, split, block["real"].get(tally, 0))
            for split, blocks in provenance["windows_per_block"].items() for block in blocks
            for tally, label in tallies.items())

    def build_model(self, model_config: object, train_inputs):
        config: PpgModelConfig = model_config  # type: ignore[assignment]
        return build_ppg_model(config, np.asarray(train_inputs).shape[1])


def _exclusions(counts: dict) -> str:
    """How many real windows each split left out, and why (the report shows the split rule)."""
    parts = []
    for name in SPLIT_NAMES:
        real = [item["real"] for item in counts[name]]
        uncertain = sum(item.get("excluded_uncertain", 0) for item in real)
        flagged = sum(value for item in real for key, value in item.items() if key.startswith("flagged_"))
        parts.append(f"{name} {uncertain} + {flagged}")
    return ("real windows left out for touching uncertain time or too little of an episode + flagged by the device's "
            "quality checks: " + ", ".join(parts))


def _provenance(config: PpgQualityDataConfig, recordings: dict[str, data.PpgRecording], counts: dict) -> dict:
    files = {key: {"file": f"{item.source.package}/{item.source.path}", "sha256": item.source.sha256,
                   "channel": item.source.channel, "device": item.source.device,
                   "source_label": item.source.source_label, "file_rate_hz": round(item.file_rate_hz, 3),
                   "duration_s": round(item.duration_s, 2),
                   "marked_segments": [[segment.start_s, segment.end_s, segment.kind.value]
                                       for segment in item.source.segments],
                   "unmarked_time_is": item.source.default_kind.value} for key, item in recordings.items()}
    return {
        "synthetic": False,  # every figure (validation threshold, test metrics) is measured on real recordings
        "synthetic_training_data": (
            "the train and calibration splits add SYNTHETIC motion artefacts (pipeline/scenarios/ppg_quality/"
            f"artefacts.py: transients, excursions, steps, noise bursts; {config.artefacts.replicas} copies of each "
            "block) to real rest PPG; their only artefact windows are synthetic"),
        "source": ("biosignalsnotebooks 0.6.14 signal_samples (PLUX / BITalino PPG, .h5) and heartpy 1.2.7 "
                   "data/data.csv; labels are COARSE: per file, with the motion file's artefact episodes marked by "
                   "eye, and the test split's artefact windows all come from one real episode"),
        "licence": ("biosignalsnotebooks: MIT (PLUX Wireless Biosignals); heartpy: GPL-3 per its README and package "
                    "metadata (its LICENSE file reads MIT) — its CSV is read from the installed package at build "
                    "time as a test recording, never vendored, redistributed or trained on"),
        "trained_on": ("real rest PPG windows (" + ", ".join(config.blocks.describe()["train"]) + ") as acceptable, "
                       "and SYNTHETIC artefacts added to varied copies of them as motion artefact; no real artefact"),
        "labels": ("COARSE: the sources label whole files (rest / 'contains some motion artifacts'); the motion "
                   "file's artefact episodes (4.0–8.6 s, 13.7–16.7 s) and clean stretch (19.8 s–end) were marked by "
                   "eye for this scenario; windows touching uncertain time or < "
                   f"{config.minimum_artefact_overlap_s:g} s of an episode are excluded from every split"),
        "record_splits": config.blocks.describe(),
        "split_rule": ("whole recordings, and in the motion file contiguous time blocks at least one window "
                       f"({config.window_s:g} s) apart (data.check_blocks refuses blocks of one file in two splits "
                       "closer than that); " + _exclusions(counts)),
        "windows": {"model_rate_hz": config.model_rate_hz, "window_s": config.window_s, "hop_s": config.hop_s,
                    "cut_by": "runtime.windows.model_windows (the device's code)"},
        "windows_per_block": counts,
        "recordings": files,
        "duplicates": {name: f"byte-identical to {key}: not used again" for name, key in catalogue.DUPLICATES.items()},
        "test_evidence": ("the test split's artefact windows all come from ONE real episode (13.7–16.7 s of "
                          "bvp_motion_artifact.h5); windows overlap by 3.5 s, so intervals over windows overstate "
                          "the evidence"),
    }
