"""The build's gate, gathered from its artefacts and config: what ``same_gate`` judges the peers with.

From the ``data`` artefact: the test split and the decision data; from ``variants``: ONNX fp32's outputs on
both (the reference); from the scenario's build config: the gate configs, the threshold rule, the
bootstrap; from ``evaluate`` and ``validate``: the ONNX variants' own verdicts and, for scenarios with
held-out recordings, what the recording gate ran (``stream_gate.RecordingSetting``).
"""

from __future__ import annotations

from pipeline.benchmark.same_gate import GateSetting, Judgement, onnx_judgements
from pipeline.benchmark.stream_gate import RecordingSetting
from pipeline.build.device_manifest import BundleInputs, BundleRequest
from pipeline.build.recording_results import load_recording_validation
from pipeline.build.stages.evaluate import load_evaluation, task_data
from pipeline.build.stages.variants import decision_split, load_decision_predictions, load_predictions
from pipeline.clinical.task_evaluation import REFERENCE
from pipeline.splits import DataSplits, data_kind


def describe_test_split(name: str, splits: DataSplits, artifacts: dict) -> str:
    """``ecg-pvc test split (6,842 samples from held-out records 100, 105, 119; MIT-BIH …; real data); thresholds
    chosen on the validation split (4271 samples)`` — ``SYNTHETIC data`` where the scenario's data is (its
    provenance's ``synthetic`` flag: ecg-arrhythmia)."""
    data_config = (artifacts["data"].manifest.get("config") or {}).get("data")
    records = data_config.get("records") if isinstance(data_config, dict) else None
    test_records = records.get("test") if isinstance(records, dict) else None
    source = splits.provenance.get("name") or splits.provenance.get("source")
    text = f"{name} test split ({len(splits.test):,} samples"
    if test_records:
        text += f" from held-out records {', '.join(map(str, test_records))}"
    text += (f"; {source}" if source else "") + f"; {data_kind(splits.provenance)})"
    decision_data = artifacts["evaluate"].metrics.get("decision_data")
    return text + (f"; thresholds chosen on the {decision_data}" if decision_data else "")


def describe_recordings(document: dict) -> str:
    """``held-out records 100, 105, 119 (whole: 1806 s each) through the device stream …; healthy: …``."""
    records = document.get("records") or []
    durations = sorted({round(item.get("duration_s", 0)) for item in records})
    length = f"{durations[0]} s each" if len(durations) == 1 else "whole"
    text = (f"held-out records {', '.join(str(item['record']) for item in records)} ({length}) through the "
            f"device stream, beats matched to the reference annotations (AAMI EC57)")
    healthy = document.get("healthy_recordings")
    return text + (f"; false PVC rate on {healthy}" if healthy else "")


def gate_setting(name: str, splits: DataSplits, artifacts: dict, scenario, config) -> GateSetting:
    """How the build judged ``name``'s variants, to judge its peers the same way."""
    variants = artifacts["variants"]
    found = decision_split(splits)
    reference_decision = load_decision_predictions(variants).get(REFERENCE) if found is not None else None
    recordings = None
    validate = artifacts.get("validate")
    if validate is not None:
        model = artifacts.get("train") or artifacts.get("import")
        inputs = BundleInputs(data=artifacts["data"], model=model, export=artifacts["export"], variants=variants,
                              evaluate=artifacts["evaluate"], validate=validate)
        request = BundleRequest(scenario.name, scenario.description, scenario.device_contract(config.data),
                                config.bundle)
        document = load_recording_validation(validate).document
        recordings = RecordingSetting(scenario, config.data, config.validate, request, inputs,
                                      validate.metrics["figures"][REFERENCE], validate.manifest["config"]["stream"],
                                      describe_recordings(document))
    return GateSetting(
        task=task_data(splits),
        evaluate=config.evaluate,
        test_inputs=splits.test.inputs,
        decision_inputs=found[1].inputs if found is not None else None,
        reference_test=load_predictions(variants)[REFERENCE],
        reference_decision=reference_decision,
        measured_on=describe_test_split(name, splits, artifacts),
        recordings=recordings,
    )


def build_judgements(setting: GateSetting, artifacts: dict) -> dict[str, Judgement]:
    """The ONNX variants' judgements: their evaluate (and validate) verdicts as the build recorded them."""
    metrics, verdicts = load_evaluation(artifacts["evaluate"])
    validate = artifacts.get("validate")
    if validate is None:
        return onnx_judgements(setting, metrics, verdicts)
    recordings = load_recording_validation(validate)
    figures = {name: entry.get("figures") for name, entry in recordings.document["variants"].items()}
    return onnx_judgements(setting, metrics, verdicts, recordings.verdicts, figures,
                           setting.recordings.measured_on if setting.recordings is not None else "")
