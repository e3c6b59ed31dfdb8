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
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from exporters.timing import InterleavedTiming
from pipeline.build.artifacts import Artifact, StageResult, artifact_id, run_stage, to_jsonable, tool_versions
from pipeline.build.bundle_report import render_report
from pipeline.build.context import StageContext
from pipeline.build.machine import machine_fingerprint
from pipeline.build.reference_profile import build_reference_profile
from pipeline.build.stages.data import load_data
from pipeline.build.stages.evaluate import load_evaluation
from pipeline.build.stages.variants import load_predictions, variant_file
from pipeline.build.variant_latency import REFERENCE, LatencyResult, measure_variants
from pipeline.clinical.gate import GateVerdict
from pipeline.clinical.metrics import ClinicalMetrics
from pipeline.config import BundleConfig, VariantName
from pipeline.errors import GateError, StageError
from pipeline.scenarios.base import DeviceContract
from runtime.contract import (
    MANIFEST_NAME,
    MODEL_NAME,
    PROFILE_NAME,
    SCHEMA_VERSION,
    BundleManifest,
    DataSummary,
    ExportSummary,
    FileEntry,
    OutputSpec,
    Selection,
    TaskKind,
)
from runtime.features import summary_features
from runtime.hashing import sha256_file

# Part of the bundle stage's cache key: raised whenever what the stage writes changes within one
# schema version, so a bundle cached before is rebuilt rather than reused with the old content.
# 2: the latency fields took the benchmark's names (mean_us, p50_us … p99_us, median_of_windows_us).
BUNDLE_CONTENT_REVISION = 2
BUNDLE_FOLDER = "bundle"
SELECTION_RULE = ("fastest batch-1 latency on this machine (all variants timed together in interleaved rounds, "
                  "ranked by the median of per-round ratios to fp32) among the variants that passed the clinical "
                  "gate; a reduced-precision variant must beat fp32 by the configured margin (default 5 %)")


@dataclass(frozen=True)
class BundleInputs:
    """The upstream artefacts a bundle draws on (its lineage)."""

    data: Artifact
    model: Artifact  # train (scenario) or import (user model)
    export: Artifact
    variants: Artifact
    evaluate: Artifact


@dataclass(frozen=True)
class BundleRequest:
    """Everything that determines a bundle's content (hashed into its id)."""

    scenario: str
    description: str
    contract: DeviceContract  # inputs, output with its decision rule, preprocessing (runtime.contract types)
    bundle: BundleConfig


def choose_variant(
    verdicts: dict[str, GateVerdict],
    latencies: dict[str, LatencyResult],
    required: VariantName | None,
    min_speedup: float = 0.0,
) -> tuple[str, str]:
    """(variant, reason) under the selection rule, or ``GateError``."""
    if required is not None:
        verdict = verdicts.get(required.value)
        if verdict is None or not verdict.passed:
            why = verdict.reason if verdict else "it was not built"
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
    ratio = latencies[fastest].ratio_to_fp32
    if fastest != REFERENCE and REFERENCE in passed and ratio is not None and ratio > 1.0 - min_speedup:
        return REFERENCE, (f"fp32 (the reference) ships: the fastest passing variant, {fastest} at "
                           f"{_describe(latencies[fastest])}, is less than {min_speedup:.0%} faster")
    return fastest, reason + (f" (other passing: {others})" if others else "")


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
    name: str, size: int, latency: LatencyResult, metrics: ClinicalMetrics, verdict: GateVerdict,
    variant_metrics: dict,
) -> dict:
    quantization = _quantization_summary(variant_metrics)
    layout = variant_metrics.get("conv_layout")
    return {
        **({"quantization": quantization} if quantization else {}),
        **({"conv_layout": {key: layout.get(key) for key in ("chosen", "reason", "rule")}}
           if layout and layout.get("lifted_ops") else {}),
        "size_bytes": size,
        "latency": latency.to_dict(),
        "macro_f1": metrics.macro_f1.to_dict(),
        "accuracy": metrics.accuracy.to_dict(),
        "sensitivity": {item.name: item.sensitivity.to_dict() for item in metrics.per_class},
        "gate": verdict.to_dict(),
    }


def _machine() -> dict:
    """Where the latency-based choices (layout, int8 settings, shipped variant) were measured."""
    fingerprint = machine_fingerprint()
    return {key: fingerprint[key] for key in ("cpu_model", "architecture", "isa_flags", "usable_cores")} | {
        "onnxruntime": fingerprint["onnxruntime"]["version"]}


def _output(request: BundleRequest, inputs: BundleInputs) -> OutputSpec:
    """The contract's output under the exported graph output's name; class labels checked against the data's."""
    output = request.contract.output
    class_names = tuple(inputs.data.metrics["class_names"])
    if output.task in (TaskKind.MULTICLASS, TaskKind.BINARY) and output.labels != class_names:
        raise StageError(
            f"the device contract's labels {list(output.labels)} differ from the data's classes {list(class_names)}",
            expected="the same labels in the same order",
            fix="make the scenario's class_names match the labels its data uses",
        )
    return replace(output, names=(inputs.export.manifest["config"]["export"]["output_name"],))


def _data_summary(metrics: dict) -> DataSummary:
    provenance = to_jsonable(metrics["provenance"])
    return DataSummary(
        synthetic=provenance.get("synthetic"),
        provenance=provenance,
        seed=metrics["seed"],
        sizes=to_jsonable(metrics["sizes"]),
        class_balance=to_jsonable(metrics["class_balance"]),
    )


def _file_table(folder: Path) -> dict[str, FileEntry]:
    return {
        path.name: FileEntry(sha256_file(path), path.stat().st_size)
        for path in sorted(folder.iterdir())
        if path.name != MANIFEST_NAME
    }


@dataclass(frozen=True)
class Choice:
    """The shipped variant, why, and every variant's summary."""

    variant: str
    reason: str
    variants: dict


def _manifest(request: BundleRequest, inputs: BundleInputs, choice: Choice, bundle_id: str,
              folder: Path) -> BundleManifest:
    export = inputs.export.metrics
    lineage = {stage: getattr(inputs, stage).id for stage in ("data", "model", "export", "variants", "evaluate")}
    return BundleManifest(
        scenario=request.scenario,
        description=request.description,
        inputs=request.contract.inputs,
        output=_output(request, inputs),
        preprocessing=request.contract.preprocessing,
        variant=choice.variant,
        selection=Selection(SELECTION_RULE, choice.reason, to_jsonable(_machine())),
        variants=to_jsonable(choice.variants),
        export=ExportSummary(export["opset"], to_jsonable(export["parity"]), to_jsonable(export["op_census"]),
                             tuple(export["warnings"])),
        training=to_jsonable(inputs.model.metrics),
        data=_data_summary(inputs.data.metrics),
        lineage={**lineage, "bundle": bundle_id},
        files=_file_table(folder),
        tool_versions=tool_versions(),
        created_at=datetime.now(UTC).isoformat(),
    )


def _write_manifest(folder: Path, manifest: BundleManifest) -> None:
    """Write ``to_dict()``, after proving the device's parser reads it back unchanged."""
    text = json.dumps(manifest.to_dict(), indent=2)
    if json.dumps(BundleManifest.from_dict(json.loads(text)).to_dict(), indent=2) != text:  # text: NaN-safe
        raise StageError(
            "the bundle manifest does not read back as written",
            expected="BundleManifest.from_dict(to_dict()) to write the same JSON",
            fix="report this as a bug in runtime/contract",
        )
    (folder / MANIFEST_NAME).write_text(text)


def run_bundle_stage(request: BundleRequest, inputs: BundleInputs, context: StageContext) -> tuple[Artifact, bool]:
    def produce(work: Path) -> StageResult:
        splits = load_data(inputs.data)
        metrics, verdicts = load_evaluation(inputs.evaluate)
        timing = InterleavedTiming(request.bundle.rounds, request.bundle.runs_per_round, request.bundle.warmup_runs)
        latencies = measure_variants(
            {name: inputs.variants.path(variant_file(name)) for name in metrics},
            splits.test.inputs[:1].astype("float32"),
            timing,
            request.bundle.threads,
            lambda done, total: context.progress("latency", done, total),
        )
        chosen, reason = choose_variant(verdicts, latencies, request.bundle.required_variant,
                                        request.bundle.min_speedup_over_fp32)
        variants = {
            name: _variant_summary(
                name,
                inputs.variants.path(variant_file(name)).stat().st_size,
                latencies[name],
                metrics[name],
                verdicts[name],
                inputs.variants.metrics["variants"].get(name, {}),
            )
            for name in metrics
        }
        folder = work / BUNDLE_FOLDER
        folder.mkdir()
        shutil.copyfile(inputs.variants.path(variant_file(chosen)), folder / MODEL_NAME)
        spec = request.contract.input
        profile = build_reference_profile(
            summary_features(splits.test.inputs, spec.feature_kind, spec.feature_names),
            load_predictions(inputs.variants)[chosen],
            splits.class_names,
            spec.feature_kind.value,
        )
        (folder / PROFILE_NAME).write_text(json.dumps(profile, indent=1))
        manifest = _manifest(request, inputs, Choice(chosen, reason, variants), bundle_id, folder)
        (folder / "report.md").write_text(render_report(manifest, metrics[chosen]))
        _write_manifest(folder, replace(manifest, files=_file_table(folder)))
        return StageResult({"variant": chosen, "reason": reason, "variants": variants})

    stage_config = {"request": asdict(request), "schema_version": SCHEMA_VERSION,
                    "content_revision": BUNDLE_CONTENT_REVISION}
    bundle_id = artifact_id("bundle", stage_config, inputs.evaluate.id)
    return run_stage("bundle", stage_config, inputs.evaluate, context.root, produce)
