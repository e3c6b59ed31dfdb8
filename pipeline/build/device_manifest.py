"""The device manifest a build writes (``runtime.contract.BundleManifest``), assembled from the scenario's contract,
the stage artefacts and the variant that goes in the folder.

The bundle stage writes the shipped bundle's manifest with it; the validate stage writes the same manifest (with
that variant's own threshold) into a temporary bundle per variant, so the device stream validates exactly what a
device would load.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.build.artifacts import Artifact, to_jsonable, tool_versions
from pipeline.build.machine import machine_fingerprint
from pipeline.build.stages.export import export_outputs
from pipeline.clinical.anomaly_metrics import AlarmAgreement, AnomalyMetrics
from pipeline.clinical.evidence import ClassSources, EvidenceVerdict
from pipeline.clinical.task_evaluation import TaskMetrics
from pipeline.clinical.thresholded_metrics import BinaryMetrics, MultilabelMetrics
from pipeline.config import BundleConfig
from pipeline.errors import StageError
from pipeline.scenarios.base import DeviceContract
from runtime.contract import (
    MANIFEST_NAME,
    AnomalyRule,
    BinaryRule,
    BundleManifest,
    DataSummary,
    DecisionRule,
    ExportSummary,
    FileEntry,
    InputSpec,
    ManifestError,
    MultilabelRule,
    OutputSpec,
    Selection,
)
from runtime.hashing import sha256_file

LINEAGE_STAGES = ("data", "model", "export", "variants", "evaluate", "validate")


# A build's record of where each class's test examples come from, given the data stage's provenance and the test
# examples per class (None: not recorded): ``Scenario.test_sources``
TestSources = Callable[[Mapping[str, Any], Mapping[str, int]], Mapping[str, ClassSources] | None]


@dataclass(frozen=True)
class BundleInputs:
    """The upstream artefacts a bundle draws on (its lineage)."""

    data: Artifact
    model: Artifact  # train (scenario) or import (user model)
    export: Artifact
    variants: Artifact
    evaluate: Artifact
    validate: Artifact | None = None  # the recording validation, for scenarios with held-out recordings
    # Where the test examples of each class come from (``Scenario.test_sources``, given the data stage's
    # provenance); None: not recorded (a user's data)
    test_sources: TestSources | None = None


@dataclass(frozen=True)
class BundleRequest:
    """Everything that determines a bundle's content (hashed into its id)."""

    scenario: str
    description: str
    contract: DeviceContract  # inputs, output with its decision rule, preprocessing (runtime.contract types)
    bundle: BundleConfig


@dataclass(frozen=True)
class Choice:
    """The variant in the folder, why, every variant's summary, and the selection rule in words."""

    variant: str
    reason: str
    variants: dict
    rule: str


def machine() -> dict:
    """Where the latency-based choices (layout, int8 settings, shipped variant) were measured."""
    fingerprint = machine_fingerprint()
    return {key: fingerprint[key] for key in ("cpu_model", "architecture", "isa_flags", "usable_cores")} | {
        "onnxruntime": fingerprint["onnxruntime"]["version"]}


def decision_rule(output: OutputSpec, metrics: TaskMetrics, decision_data: str | None) -> DecisionRule:
    """A variant's own decision rule: the threshold(s) the evaluate stage chose for it."""
    where = f" on the {decision_data}" if decision_data else ""
    if isinstance(metrics, BinaryMetrics):
        point = metrics.operating_point
        return BinaryRule(point.threshold, f"{point.rule}{where} (sensitivity {point.sensitivity:.3f}, specificity "
                                           f"{point.specificity:.3f} there; {point.positives} positive, "
                                           f"{point.negatives} negative samples)")
    if isinstance(metrics, MultilabelMetrics):
        return MultilabelRule(tuple(point.threshold for point in metrics.operating_points),
                              f"{metrics.operating_points[0].rule}, per label{where}")
    if isinstance(metrics, AnomalyMetrics | AlarmAgreement):
        threshold = metrics.alarm_threshold if isinstance(metrics, AnomalyMetrics) else metrics.candidate_threshold
        chosen_by = threshold.rule.replace("normal calibration scores", f"normal scores{where}")
        return AnomalyRule(threshold.threshold, threshold.false_alarm_rate,
                           f"{chosen_by}; achieved {threshold.achieved_false_alarm_rate:.4f}")
    return output.decision


def contract_output(request: BundleRequest, inputs: BundleInputs, metrics: TaskMetrics) -> OutputSpec:
    """The contract's output under the exported graph output's name, with the variant's decision rule; labels
    checked against the data's."""
    output = request.contract.output
    class_names = tuple(inputs.data.metrics["class_names"])
    if output.labels != class_names:
        raise StageError(
            f"the device contract's labels {list(output.labels)} differ from the data's labels {list(class_names)}",
            expected="the same labels in the same order",
            fix="make the scenario's class_names match the labels its data uses",
        )
    try:
        return replace(output, names=export_outputs(inputs.export),
                       decision=decision_rule(output, metrics, inputs.evaluate.metrics.get("decision_data")))
    except ManifestError as error:
        raise StageError(
            f"the variant's decision rule does not fit the contract: {error.what}",
            expected=error.expected,
            fix="check the model's scores on the decision data (a sigmoid that saturates at exactly 0 or 1 "
            "cannot carry a threshold strictly between them)",
        ) from error


def contract_inputs(request: BundleRequest, inputs: BundleInputs) -> tuple[InputSpec, ...]:
    """The contract's inputs; a single input under the exported graph input's name."""
    specs = request.contract.inputs
    graph_inputs = inputs.export.metrics.get("inputs")
    if len(specs) == 1 and graph_inputs and len(graph_inputs) == 1:
        return (replace(specs[0], name=graph_inputs[0]),)
    return specs


def data_summary(metrics: dict, evidence: EvidenceVerdict | None = None) -> DataSummary:
    """The manifest's data section; the evidence verdict goes into its provenance (``evidence``)."""
    provenance = to_jsonable(metrics["provenance"])
    if evidence is not None:
        provenance = {**provenance, "evidence": evidence.to_dict()}
    return DataSummary(
        synthetic=provenance.get("synthetic"),
        provenance=provenance,
        seed=metrics["seed"],
        sizes=to_jsonable(metrics["sizes"]),
        class_balance=to_jsonable(metrics["class_balance"]),
    )


def file_table(folder: Path) -> dict[str, FileEntry]:
    return {
        path.name: FileEntry(sha256_file(path), path.stat().st_size)
        for path in sorted(folder.iterdir())
        if path.name != MANIFEST_NAME
    }


def assemble_manifest(request: BundleRequest, inputs: BundleInputs, choice: Choice, bundle_id: str, folder: Path,
                      metrics: TaskMetrics, recording_validation: dict | None = None,
                      evidence: EvidenceVerdict | None = None) -> BundleManifest:
    """The manifest of ``folder`` holding ``choice.variant`` (``metrics``: that variant's, for its decision rule)."""
    export = inputs.export.metrics
    lineage = {stage: artifact.id for stage in LINEAGE_STAGES
               if (artifact := getattr(inputs, stage)) is not None}
    return BundleManifest(
        scenario=request.scenario,
        description=request.description,
        inputs=contract_inputs(request, inputs),
        output=contract_output(request, inputs, metrics),
        preprocessing=request.contract.preprocessing,
        variant=choice.variant,
        selection=Selection(choice.rule, choice.reason, to_jsonable(machine())),
        variants=to_jsonable(choice.variants),
        export=ExportSummary(export["opset"], to_jsonable(export["parity"]), to_jsonable(export["op_census"]),
                             tuple(export["warnings"])),
        training=to_jsonable(inputs.model.metrics),
        data=data_summary(inputs.data.metrics, evidence),
        lineage={**lineage, "bundle": bundle_id},
        files=file_table(folder),
        tool_versions=tool_versions(),
        created_at=datetime.now(UTC).isoformat(),
        recording_validation=recording_validation,
    )


def write_manifest(folder: Path, manifest: BundleManifest) -> None:
    """Write ``to_dict()``, after proving the device's parser reads it back unchanged."""
    text = json.dumps(manifest.to_dict(), indent=2)
    if json.dumps(BundleManifest.from_dict(json.loads(text)).to_dict(), indent=2) != text:  # text: NaN-safe
        raise StageError(
            "the bundle manifest does not read back as written",
            expected="BundleManifest.from_dict(to_dict()) to write the same JSON",
            fix="report this as a bug in runtime/contract",
        )
    (folder / MANIFEST_NAME).write_text(text)
