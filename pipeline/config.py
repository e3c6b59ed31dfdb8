"""Typed configuration of a build: one frozen dataclass per stage.

Every field that changes a stage's output is part of that stage's config, so it
is part of the stage's artefact id; fields that do not change outputs (progress
display, output folders) are not here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum

from exporters.keras_to_onnx import ExportConfig
from exporters.parity import PARITY_BATCH_SIZES, PARITY_SAMPLES, PARITY_TOLERANCE
from exporters.quantization import ActivationType, QuantizationConfig, QuantizationFormat, TuningConfig
from exporters.timing import InterleavedTiming
from exporters.variants import VariantName
from pipeline.clinical.evidence import EvidenceRule
from pipeline.clinical.gate import GateConfig
from pipeline.clinical.metrics import EvaluationConfig
from pipeline.clinical.recording_gate import RecordingGateConfig
from pipeline.clinical.regression_gate import RegressionGateConfig
from pipeline.clinical.task_evaluation import DecisionConfig
from pipeline.clinical.task_gates import AnomalyGateConfig, BinaryGateConfig, MultilabelGateConfig
from runtime.contract import DEFAULT_DOMAIN_MARGIN, TaskKind


class Profile(StrEnum):
    """How big a build is: ``full`` for real bundles, ``tiny`` for tests and smoke runs."""

    FULL = "full"
    TINY = "tiny"


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 40  # upper bound; early stopping usually ends sooner
    batch_size: int = 64  # small batches generalise well on a few thousand samples
    learning_rate: float = 1e-3  # Adam default
    early_stopping_patience: int = 6  # epochs without validation-loss improvement before stopping
    balance_classes: bool = True  # weight classes inversely to frequency so rare classes are learned


@dataclass(frozen=True)
class ParityConfig:
    tolerance: float = PARITY_TOLERANCE  # max |Δ| allowed between Keras and ONNX outputs
    batch_sizes: tuple[int, ...] = PARITY_BATCH_SIZES  # two sizes prove the dynamic batch axis
    samples: int = PARITY_SAMPLES  # real test inputs compared (all of them if the split is smaller)


@dataclass(frozen=True)
class ExportStageConfig:
    export: ExportConfig = field(default_factory=ExportConfig)
    parity: ParityConfig = field(default_factory=ParityConfig)


# The tiny profile's int8 search: per-channel or per-tensor scales (7-bit weights, as every search), briefly timed.
TINY_TUNING = TuningConfig(
    formats=(QuantizationFormat.QDQ,),
    activation_types=(ActivationType.UINT8,),
    channels_last=(True,),
    float_linear_outputs=(False,),
    max_float_nodes=1,
    timing=InterleavedTiming(rounds=3, runs_per_round=10, warmup_runs=5),
)


@dataclass(frozen=True)
class VariantsConfig:
    variants: tuple[VariantName, ...] = tuple(VariantName)  # fp32 is always made: it is the reference
    quantization: QuantizationConfig = field(default_factory=QuantizationConfig)
    # int8-static settings chosen per model by measurement (exporters.quantization.tuning) within this
    # search; None = quantize with ``quantization`` exactly as given.
    int8_tuning: TuningConfig | None = field(default_factory=TuningConfig)
    # fp32 ships its convolutions as 2-D (ORT's NCHWc kernels) when that measures faster.
    choose_conv_layout: bool = True


@dataclass(frozen=True)
class EvaluateConfig:
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    gate: GateConfig = field(default_factory=GateConfig)  # multiclass
    binary_gate: BinaryGateConfig = field(default_factory=BinaryGateConfig)
    multilabel_gate: MultilabelGateConfig = field(default_factory=MultilabelGateConfig)
    regression_gate: RegressionGateConfig = field(default_factory=RegressionGateConfig)
    anomaly_gate: AnomalyGateConfig = field(default_factory=AnomalyGateConfig)
    # How binary/multilabel thresholds and anomaly alarm thresholds are chosen (per variant, on held-out data).
    decision: DecisionConfig = field(default_factory=DecisionConfig)

    def gate_for(self, kind: TaskKind | str) -> object:
        """The gate config of task ``kind`` (what ``judge_variant_for_task`` takes)."""
        return {TaskKind.MULTICLASS: self.gate, TaskKind.BINARY: self.binary_gate,
                TaskKind.MULTILABEL: self.multilabel_gate, TaskKind.REGRESSION: self.regression_gate,
                TaskKind.ANOMALY: self.anomaly_gate}[TaskKind(kind)]

    def stage_key(self, kind: TaskKind | str) -> dict:
        """What changes the evaluation of a ``kind`` output (the evaluate stage's cache key): the bootstrap,
        that kind's gate and, for thresholded kinds, how thresholds are chosen."""
        kind = TaskKind(kind)
        thresholded = kind in (TaskKind.BINARY, TaskKind.MULTILABEL, TaskKind.ANOMALY)
        return {"task": kind, "evaluation": self.evaluation, "gate": self.gate_for(kind),
                "decision": self.decision if thresholded else None}


@dataclass(frozen=True)
class ValidateConfig:
    """The ``validate`` stage (scenarios with held-out recordings): every variant through the device stream."""

    gate: RecordingGateConfig = field(default_factory=RecordingGateConfig)  # floors and limits versus fp32
    bootstrap_replicates: int = 2000  # bootstrap over records for the gross figures' intervals
    confidence: float = 0.95  # two-sided interval level
    healthy_recordings: bool = True  # also the healthy PLUX recordings (when biosignalsnotebooks is installed)


@dataclass(frozen=True)
class BundleConfig:
    warmup_runs: int = 50  # batch-1 runs per variant discarded before timing
    rounds: int = 31  # interleaved rounds (every variant timed in each; see pipeline.build.variant_latency)
    runs_per_round: int = 100  # batch-1 runs per variant per round
    threads: int = 1  # intra-op threads while timing: one core, as on a small device
    required_variant: VariantName | None = None  # ship exactly this one (fails if it did not pass the gate)
    # A reduced-precision variant ships instead of fp32 only when at least this much faster
    # (ratio to fp32 ≤ 1 − margin): within timing noise, the reference's accuracy wins.
    min_speedup_over_fp32: float = 0.05
    # How much real, independent test evidence each class needs to ship (pipeline/clinical/evidence.py)
    evidence: EvidenceRule = field(default_factory=EvidenceRule)
    # The input domain the device enforces (runtime.domain): the development rows' range per column, widened by
    # this share of it on each side; rows outside are flagged out_of_domain and never classified
    domain_margin: float = DEFAULT_DOMAIN_MARGIN


@dataclass(frozen=True)
class BuildConfig:
    """Everything that determines a build, grouped by stage."""

    scenario: str
    data: object  # the scenario's own frozen data-config dataclass
    model: object  # the scenario's own frozen model-architecture dataclass
    seed: int = 0  # fixes the data splits, weight initialisation and shuffling
    train: TrainConfig = field(default_factory=TrainConfig)
    export: ExportStageConfig = field(default_factory=ExportStageConfig)
    variants: VariantsConfig = field(default_factory=VariantsConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    validate: ValidateConfig = field(default_factory=ValidateConfig)  # only scenarios with held-out recordings
    bundle: BundleConfig = field(default_factory=BundleConfig)


def shrink_for_tests(config: BuildConfig) -> BuildConfig:
    """The ``tiny`` profile: same stages, a fraction of the work (seconds, not minutes)."""
    evaluation = replace(config.evaluate.evaluation, bootstrap_samples=200)
    return replace(
        config,
        train=replace(config.train, epochs=4, early_stopping_patience=2),
        variants=replace(
            config.variants,
            quantization=replace(config.variants.quantization, calibration_samples=64),
            int8_tuning=TINY_TUNING if config.variants.int8_tuning is not None else None,
        ),
        evaluate=replace(config.evaluate, evaluation=evaluation),
        validate=replace(config.validate, bootstrap_replicates=200),
        # a smoke build is never a release: its evidence verdict is recorded and said, not enforced
        bundle=replace(config.bundle, warmup_runs=10, rounds=5, runs_per_round=40,
                       evidence=replace(config.bundle.evidence, enforced=False)),
    )
