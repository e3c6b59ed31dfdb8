"""Stage ``validate``: every variant through the full device stream on the scenario's held-out recordings, gated.

For scenarios that declare held-out annotated recordings (``Scenario.recording_source``). Each variant is
written into a temporary bundle exactly as the bundle stage would write it (``device_manifest``: the
contract's derived inputs, that variant's own threshold from the evaluate stage), loaded with
``runtime.bundle.load_bundle`` and run by ``pipeline.validation.recordings`` — resampling, quality checks,
R-peak detection, windows, RR features, template, batched inference, the decision rule — on every held-out
recording, and on the healthy PLUX recordings when asked. The recording gate
(``pipeline.clinical.recording_gate``) judges every variant against fp32 and against absolute floors; the
bundle stage ships only a variant that passed this gate and the evaluate stage's.

Cached like every stage: its id is a hash of the recordings' description (dataset hash, records, excerpt),
the contract, the stream settings, the gate, the healthy recordings present, and the evaluate artefact's id.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline.build.artifacts import Artifact, StageResult, run_stage, to_jsonable
from pipeline.build.context import StageContext
from pipeline.build.device_manifest import BundleInputs, BundleRequest, Choice, assemble_manifest, write_manifest
from pipeline.build.recording_results import RESULTS_FILE
from pipeline.build.stages.evaluate import load_evaluation
from pipeline.build.stages.variants import variant_file
from pipeline.clinical.recording_gate import REFERENCE, judge_recordings
from pipeline.config import ValidateConfig
from pipeline.scenarios.base import Scenario
from pipeline.validation.ec57 import Ec57Config
from pipeline.validation.real_ecg import ecg_files, signal_samples_folder
from pipeline.validation.recordings import AnnotatedRecording, RecordingValidationConfig, gate_figures, validate_bundle
from runtime.contract import MODEL_NAME

logger = logging.getLogger(__name__)

SELECTION_RULE = "none: a temporary bundle of one variant for the validate stage, never published"
WHAT = ("Every variant through the full device stream (runtime.ecg.EcgStream with the settings `edgemed run` uses "
        "for files: quality checks, resampling, R-peak detection, beat windows, RR features, running template, "
        "batched inference, the variant's own threshold) on held-out annotated records; detections matched to the "
        "reference beats one-to-one within ±150 ms (AAMI EC57); a beat the stream leaves unclassified (quality "
        "flag, warming up) counts as detected and called non-V")


@dataclass(frozen=True)
class ValidateRequest:
    """What the validate stage runs: the scenario's held-out recordings and the bundle each variant would be."""

    scenario: Scenario
    data: object  # the scenario's data config (which records are held out)
    bundle: BundleRequest  # the contract every temporary bundle carries
    config: ValidateConfig


def recording_config(config: ValidateConfig) -> RecordingValidationConfig:
    """The stream and EC57 settings of the recording gate (the benchmarks' stream gate reuses them)."""
    return RecordingValidationConfig(ec57=Ec57Config(replicates=config.bootstrap_replicates,
                                                     confidence=config.confidence),
                                     healthy=config.healthy_recordings)


def healthy_files() -> list[list] | None:
    """The healthy recordings present (name, bytes): part of the cache key; None when none are installed."""
    folder = signal_samples_folder()
    return None if folder is None else [[path.name, path.stat().st_size] for path in ecg_files(folder)]


def _describe(recordings: list[AnnotatedRecording]) -> list[dict]:
    return [{"record": item.name, "description": item.description, "duration_s": round(item.duration_s, 1),
             "reference_beats": int(item.beats_s.size), "reference_v": int(item.is_v.sum())} for item in recordings]


def _validate_variant(name: str, request: ValidateRequest, inputs: BundleInputs, metrics,
                      recordings: list[AnnotatedRecording]) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"edgemed-validate-{name}-") as scratch:
        folder = Path(scratch)
        shutil.copyfile(inputs.variants.path(variant_file(name)), folder / MODEL_NAME)
        manifest = assemble_manifest(request.bundle, inputs, Choice(name, SELECTION_RULE, {name: {}}, SELECTION_RULE),
                                     f"validate-{name}", folder, metrics)
        write_manifest(folder, manifest)
        summary = validate_bundle(folder, recordings, recording_config(request.config))
    threshold = getattr(manifest.output.decision, "threshold", None)
    return {"threshold": threshold, **summary, "figures": gate_figures(summary)}


def run_validate_stage(request: ValidateRequest, inputs: BundleInputs, context: StageContext
                       ) -> tuple[Artifact, bool]:
    scenario, config = request.scenario, request.config
    source = scenario.recording_source(request.data)

    def produce(work: Path) -> StageResult:
        recordings = scenario.validation_recordings(request.data)
        metrics, _ = load_evaluation(inputs.evaluate)
        names = [REFERENCE, *[name for name in metrics if name != REFERENCE]]
        results: dict[str, dict] = {}
        for index, name in enumerate(names):
            context.progress("validate", index, len(names))
            results[name] = _validate_variant(name, request, inputs, metrics[name], recordings)
            reference = None if name == REFERENCE else results[REFERENCE]["figures"]
            verdict = judge_recordings(name, results[name]["figures"], reference, config.gate)
            results[name]["verdict"] = verdict.to_dict()
            logger.info("validate %s: %s", name, verdict.reason)
        context.progress("validate", len(names), len(names))
        healthy = results[REFERENCE].get("healthy")
        document = to_jsonable({
            "what": WHAT,
            "source": source,
            "records": _describe(recordings),
            "gate": {"rule": config.gate.describe(), "config": config.gate},
            "intervals": f"percentile bootstrap over records, {config.bootstrap_replicates} replicates, "
                         f"{config.confidence:.0%}",
            "healthy_recordings": ("not asked for" if healthy is None else
                                   healthy.get("source") if healthy.get("available") else healthy.get("note")),
            "variants": results,
        })
        (work / RESULTS_FILE).write_text(json.dumps(document, indent=1))
        return StageResult({"passed": {name: entry["verdict"]["passed"] for name, entry in results.items()},
                            "figures": {name: entry["figures"] for name, entry in results.items()}})

    stage_config = {
        "scenario": scenario.name,
        "scenario_version": scenario.version,
        "source": source,
        "contract": asdict(request.bundle.contract),
        "validate": config,
        "stream": asdict(recording_config(config)),
        "healthy_files": healthy_files() if config.healthy_recordings else None,
    }
    return run_stage("validate", stage_config, inputs.evaluate, context.root, produce)
