"""Stage ``bundle``: time every variant, ship the fastest one that passed the gate.

The bundle is the folder a device receives: ``model.onnx``, ``manifest.json``,
``reference_profile.json`` and ``report.md``. The manifest is a
``runtime.contract.BundleManifest`` written with ``to_dict()`` (and read back before it
is published); it records the sha256 of every other file so the runtime can refuse a
tampered or truncated bundle.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, replace
from pathlib import Path

from exporters.inputs import as_float32
from exporters.timing import InterleavedTiming
from pipeline.build.artifacts import Artifact, StageResult, artifact_id, run_stage
from pipeline.build.bundle_report import render_report
from pipeline.build.context import StageContext
from pipeline.build.device_manifest import (
    BundleInputs,
    BundleRequest,
    Choice,
    TestSources,
    assemble_manifest,
    file_table,
    write_manifest,
)
from pipeline.build.input_domain import with_domains
from pipeline.build.recording_results import load_recording_validation, manifest_section
from pipeline.build.reference_profile import build_reference_profile
from pipeline.build.stages.data import load_data
from pipeline.build.stages.evaluate import load_evaluation
from pipeline.build.stages.variants import load_predictions, variant_file
from pipeline.build.variant_latency import REFERENCE, LatencyResult, measure_variants
from pipeline.clinical.evidence import EvidenceVerdict, class_test_counts, judge_evidence, refuse_unvalidated
from pipeline.clinical.gate import GateVerdict
from pipeline.clinical.recording_gate import combine_verdicts
from pipeline.clinical.task_evaluation import TaskMetrics, summary
from pipeline.config import VariantName
from pipeline.errors import GateError
from pipeline.splits import select_rows
from runtime.contract import MODEL_NAME, PROFILE_NAME, SCHEMA_VERSION, InputSpec, TaskKind
from runtime.input_features import input_features

__all__ = ["BUNDLE_FOLDER", "BundleInputs", "BundleRequest", "choose_variant", "run_bundle_stage"]

# Part of the bundle stage's cache key: raised whenever what the stage writes changes within one
# schema version, so a bundle cached before is rebuilt rather than reused with the old content.
# 2: the latency fields took the benchmark's names (mean_us, p50_us … p99_us, median_of_windows_us).
# 3: per-kind outputs (thresholds chosen by the evaluate stage), per-kind variant summaries and profiles.
# 4: the recording validation (verdicts joined with the evaluate stage's, manifest section, report tables).
# 5: the report shows coarse-label notes, synthetic training data and the windows left out of every split.
# 6: the evidence rule (pipeline/clinical/evidence.py): judged before anything is timed, in the manifest and report.
# 7: the evidence per class says how concentrated it is (largest source's share, effective number of sources).
# 8: every input declares the domain it was developed on (pipeline/build/input_domain.py); the device enforces it.
# 9: the report's domain line lists a small tabular input's column ranges.
BUNDLE_CONTENT_REVISION = 9
BUNDLE_FOLDER = "bundle"
SELECTION_RULE = ("fastest batch-1 latency on this machine (all variants timed together in interleaved rounds, "
                  "ranked by the median of per-round ratios to fp32) among the variants that passed the clinical "
                  "gate; a reduced-precision variant must beat fp32 by the configured margin (default 5 %)")


def choose_variant(
    verdicts: dict[str, GateVerdict],
    latencies: dict[str, LatencyResult],
    required: VariantName | None,
    min_speedup: float = 0.0,
    not_made: dict[str, str] | None = None,
) -> tuple[str, str]:
    """(variant, reason) under the selection rule, or ``GateError``; ``not_made``: the variants the variants stage
    could not make, and why (named in the reason)."""
    not_made = not_made or {}
    if required is not None:
        verdict = verdicts.get(required.value)
        if verdict is None or not verdict.passed:
            why = verdict.reason if verdict else (f"it could not be made ({not_made[required.value]})"
                                                  if required.value in not_made else "it was not built")
            raise GateError(
                f"the required variant {required.value} cannot ship: {why}",
                expected="a variant that passed the clinical gate",
                fix="ship another variant (omit --variant) or change the quantization settings",
            )
        return required.value, f"required by configuration; it passed the gate ({verdict.reason})"
    passed = [name for name, verdict in verdicts.items() if verdict.passed]
    if not passed:
        raise GateError(
            "no variant passed the clinical gate",
            expected="at least the fp32 reference to pass",
            fix="inspect gate_verdicts.json in the evaluate artefact",
        )
    fastest = min(passed, key=lambda name: _rank(latencies[name]))
    others = ", ".join(f"{name} {_describe(latencies[name])}" for name in passed if name != fastest)
    reason = f"fastest passing variant: {_describe(latencies[fastest])} at batch 1"
    missing = "".join(f"; {name} could not be made ({why})" for name, why in not_made.items())
    ratio = latencies[fastest].ratio_to_fp32
    if fastest != REFERENCE and REFERENCE in passed and ratio is not None and ratio > 1.0 - min_speedup:
        return REFERENCE, (f"fp32 (the reference) ships: the fastest passing variant, {fastest} at "
                           f"{_describe(latencies[fastest])}, is less than {min_speedup:.0%} faster{missing}")
    return fastest, reason + (f" (other passing: {others})" if others else "") + missing


def _rank(latency: LatencyResult) -> float:
    # The per-round ratio to fp32 is measured within milliseconds of fp32, so it ranks more
    # reliably than the medians; without fp32 the medians decide.
    return latency.ratio_to_fp32 if latency.ratio_to_fp32 is not None else latency.median_of_windows_us


def _describe(latency: LatencyResult) -> str:
    # The ratio leads: measured within milliseconds of fp32 in every round, it ranks; the medians of
    # two variants can straddle the machine's speed states and disagree with it.
    if latency.ratio_to_fp32 is None:
        return f"{latency.median_of_windows_us:.1f} µs"
    return f"{latency.ratio_to_fp32:.2f}× fp32 ({latency.median_of_windows_us:.1f} µs median)"


def _quantization_summary(variant_metrics: dict) -> dict | None:
    """How an int8-static variant's settings were chosen (None for other variants)."""
    tuning = variant_metrics.get("int8_tuning")
    if not tuning:
        return None
    return {"settings": tuning["settings"], "label": tuning["chosen"], "rule": tuning["rule"],
            "checked_on": tuning.get("checked_on"), "candidates_measured": len(tuning["candidates"])}


def _variant_summary(
    name: str, size: int, latency: LatencyResult, metrics: TaskMetrics, verdict: GateVerdict,
    variant_metrics: dict, recordings: dict | None = None,
) -> dict:
    quantization = _quantization_summary(variant_metrics)
    layout = variant_metrics.get("conv_layout")
    return {
        **({"quantization": quantization} if quantization else {}),
        **({"conv_layout": {key: layout.get(key) for key in ("chosen", "reason", "rule")}}
           if layout and layout.get("lifted_ops") else {}),
        "size_bytes": size,
        "latency": latency.to_dict(),
        **summary(metrics),
        **({"recordings": recordings} if recordings else {}),
        "gate": verdict.to_dict(),
    }


def run_bundle_stage(request: BundleRequest, inputs: BundleInputs, context: StageContext) -> tuple[Artifact, bool]:
    """Time every variant, ship the fastest that passed every gate (the evaluate stage's and, when the scenario
    has held-out recordings, the validate stage's), and write the bundle folder."""

    def produce(work: Path) -> StageResult:
        evidence = judge_test_evidence(request, inputs.data, inputs.test_sources)
        refuse_unvalidated(evidence, f"the bundle for {request.scenario}")
        splits = load_data(inputs.data)
        metrics, verdicts = load_evaluation(inputs.evaluate)
        recordings = load_recording_validation(inputs.validate) if inputs.validate is not None else None
        if recordings is not None:
            verdicts = {name: combine_verdicts(verdict, recordings.verdicts[name])
                        for name, verdict in verdicts.items()}
        timing = InterleavedTiming(request.bundle.rounds, request.bundle.runs_per_round, request.bundle.warmup_runs)
        latencies = measure_variants(
            {name: inputs.variants.path(variant_file(name)) for name in metrics},
            as_float32(select_rows(splits.test.inputs, slice(0, 1))),
            timing,
            request.bundle.threads,
            lambda done, total: context.progress("latency", done, total),
        )
        chosen, reason = choose_variant(verdicts, latencies, request.bundle.required_variant,
                                        request.bundle.min_speedup_over_fp32,
                                        inputs.variants.metrics.get("not_made", {}))
        variants = {
            name: _variant_summary(
                name,
                inputs.variants.path(variant_file(name)).stat().st_size,
                latencies[name],
                metrics[name],
                verdicts[name],
                inputs.variants.metrics["variants"].get(name, {}),
                recordings.variant_summary(name) if recordings is not None else None,
            )
            for name in metrics
        }
        folder = work / BUNDLE_FOLDER
        folder.mkdir()
        shutil.copyfile(inputs.variants.path(variant_file(chosen)), folder / MODEL_NAME)
        section = manifest_section(recordings, chosen) if recordings is not None else None
        manifest = assemble_manifest(request, inputs, Choice(chosen, reason, variants, SELECTION_RULE), bundle_id,
                                     folder, metrics[chosen], section, evidence)
        manifest = replace(manifest, inputs=with_domains(manifest.inputs, splits, request.bundle.domain_margin,
                                                          request.contract.domain_scales))
        profile = build_reference_profile(
            input_features(splits.test.inputs, manifest.inputs),
            load_predictions(inputs.variants)[chosen],
            manifest.output.labels,
            _feature_kind(manifest.inputs),
            output=manifest.output,
        )
        (folder / PROFILE_NAME).write_text(json.dumps(profile, indent=1))
        (folder / "report.md").write_text(render_report(manifest, metrics[chosen]))
        write_manifest(folder, replace(manifest, files=file_table(folder)))
        return StageResult({"variant": chosen, "reason": reason, "variants": variants})

    parent = inputs.validate or inputs.evaluate  # the validate stage's id chains to the evaluate stage's
    stage_config = {"request": asdict(request), "schema_version": SCHEMA_VERSION,
                    "content_revision": BUNDLE_CONTENT_REVISION}
    bundle_id = artifact_id("bundle", stage_config, parent.id)
    return run_stage("bundle", stage_config, parent, context.root, produce)


def judge_test_evidence(request: BundleRequest, data_artifact: Artifact, test_sources: TestSources | None
                        ) -> EvidenceVerdict:
    """The evidence rule (``request.bundle.evidence``) on the data stage's real test examples per class and, where
    the build records them (``test_sources``), their sources."""
    data = data_artifact.metrics
    provenance = data.get("provenance") or {}
    output = request.contract.output
    counts = class_test_counts(data.get("class_balance") or {}, data.get("sizes") or {}, output.labels)
    if output.task is TaskKind.ANOMALY and not counts.get(output.labels[-1]):
        # an alarm never measured on a real anomaly is a claim nobody validated: with no labelled anomalies in the
        # test split (an autoencoder's normal-only data), the anomalous class has 0 real test examples, not a pass
        counts = {**counts, output.labels[-1]: 0}
    sources = test_sources(provenance, counts) if test_sources is not None else None
    return judge_evidence(request.bundle.evidence, counts, synthetic=provenance.get("synthetic") is True,
                          sources=sources)


def _feature_kind(specs: tuple[InputSpec, ...]) -> str:
    """The profile's feature kind: the one input's, or ``mixed`` when the inputs differ."""
    kinds = {spec.feature_kind.value for spec in specs}
    return kinds.pop() if len(kinds) == 1 else "mixed"
