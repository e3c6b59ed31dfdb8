"""The recording gate for a LiteRT peer: the peer through the full device stream on the held-out recordings.

What the ``validate`` stage does for each ONNX variant, done for a LiteRT model: a temporary bundle is
written exactly as the validate stage writes one (``device_manifest.assemble_manifest``: the contract's
derived inputs, the peer's *own* decision rule chosen on the decision data) around the fp32 ONNX model,
loaded as a device loads it, and every model call of the stream (``runtime.ecg``: resampling, quality
checks, R-peak detection, windows, RR features, running template, batches) goes to the LiteRT interpreter
instead of the ONNX session (``PeerBundle``). The beats are scored (AAMI EC57) and judged by the scenario's
recording gate against ONNX fp32's figures from the validate artefact — the same records, stream
settings, healthy recordings and gate the build used.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline.benchmark.litert_models import LiteRtModel
from pipeline.benchmark.same_gate import RecordingVerdict
from pipeline.build.artifacts import to_jsonable
from pipeline.build.device_manifest import BundleInputs, BundleRequest, Choice, assemble_manifest, write_manifest
from pipeline.build.stages.validate import recording_config
from pipeline.build.stages.variants import variant_file
from pipeline.clinical.recording_gate import judge_recordings
from pipeline.clinical.task_evaluation import REFERENCE, TaskMetrics
from pipeline.config import ValidateConfig
from pipeline.scenarios.base import Scenario
from pipeline.validation.recordings import (
    RecordingValidationConfig,
    gate_figures,
    healthy_recordings,
    score_events,
    stream_events,
    summarise_counts,
)
from runtime.bundle import load_bundle
from runtime.contract import MODEL_NAME
from runtime.trust import TrustPolicy

logger = logging.getLogger(__name__)

SELECTION_RULE = "none: a temporary bundle for the benchmark's recording gate of a LiteRT peer, never published"


@dataclass(frozen=True)
class RecordingSetting:
    """What the validate stage ran its variants on and with."""

    scenario: Scenario
    data_config: object  # the scenario's data config (which records are held out)
    validate: ValidateConfig  # the recording gate and the bootstrap
    bundle: BundleRequest  # the contract every temporary bundle carries
    inputs: BundleInputs  # the build's artefacts (the fp32 ONNX model, the evaluate stage's decision data)
    reference_figures: dict  # ONNX fp32's gate figures from the validate artefact
    stream_settings: dict  # the stream settings the validate artefact recorded (its config's "stream")
    measured_on: str  # the recordings in words


class PeerBundle:
    """A loaded bundle whose model calls go to a LiteRT interpreter: what the stream reads of a bundle (inputs,
    output and its decision rule, variant) is the bundle's; ``predict`` is the peer's."""

    def __init__(self, bundle, model: LiteRtModel, name: str) -> None:
        self._bundle = bundle
        self._model = model
        self.variant = name

    def __getattr__(self, attribute: str):
        return getattr(self._bundle, attribute)

    def predict(self, batch):
        return self._model.predict(batch)


def _same_settings(setting: RecordingSetting, config: RecordingValidationConfig) -> bool:
    ours = json.dumps(to_jsonable(asdict(config)), sort_keys=True)
    return ours == json.dumps(setting.stream_settings, sort_keys=True)


def run_recording_gate(setting: RecordingSetting, name: str, model_path: Path, metrics: TaskMetrics
                       ) -> RecordingVerdict:
    """The recording gate's verdict on the LiteRT model at ``model_path`` (``metrics``: its sample-gate metrics,
    which carry its own threshold)."""
    config = recording_config(setting.validate)
    if not _same_settings(setting, config):
        return RecordingVerdict(None, "not run: the validate artefact was made with other stream settings than "
                                      "this code's (rebuild with edgemed build)", None, setting.measured_on)
    recordings = setting.scenario.validation_recordings(setting.data_config)
    with tempfile.TemporaryDirectory(prefix="edgemed-bench-stream-") as scratch:
        folder = Path(scratch)
        shutil.copyfile(setting.inputs.variants.path(variant_file(REFERENCE)), folder / MODEL_NAME)
        manifest = assemble_manifest(setting.bundle, setting.inputs, Choice(name, SELECTION_RULE, {name: {}},
                                     SELECTION_RULE), f"bench-{name.replace(' ', '-')}", folder, metrics)
        write_manifest(folder, manifest)
        bundle = PeerBundle(load_bundle(folder, trust=TrustPolicy.development()), LiteRtModel(model_path, 1), name)
        counts, skipped = [], {}
        for recording in recordings:
            events = stream_events(bundle, recording.signal, recording.sample_rate_hz, config)
            record_counts, skipped[recording.name] = score_events(recording, events, config)
            counts.append(record_counts)
        healthy = healthy_recordings(bundle, config) if config.healthy else None
    figures = gate_figures(summarise_counts(counts, skipped, config, healthy))
    verdict = judge_recordings(name, figures, setting.reference_figures, setting.validate.gate)
    logger.info("recording gate of %s: %s", name, verdict.reason)
    return RecordingVerdict(verdict.passed, verdict.reason, figures, setting.measured_on)
