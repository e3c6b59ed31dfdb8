"""The typed bundle contract: every task kind and a two-input model round-trip through to_dict/from_dict,
and every refusal names the field, what was found and what was expected."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from runtime.contract import (
    MODEL_NAME,
    SCHEMA_VERSION,
    AnomalyRule,
    BinaryRule,
    BundleManifest,
    DataSummary,
    ExportSummary,
    FileEntry,
    InputSpec,
    ManifestError,
    MulticlassRule,
    MultilabelRule,
    OutputSpec,
    Preprocessing,
    RegressionRule,
    Selection,
    TaskKind,
    UnsupportedSchemaError,
    parse_manifest,
)
from runtime.features import FeatureKind

BEAT = InputSpec("beat", (None, 252, 1), FeatureKind.WAVEFORM, sample_rate_hz=360.0, window_before_s=0.25,
                 window_after_s=0.45)
RR = InputSpec("rr", (None, 3), FeatureKind.TABULAR, feature_names=("pre_rr", "post_rr", "local_rr"))
ROW = InputSpec("input", (None, 2), FeatureKind.TABULAR, feature_names=("age", "weight"))

OUTPUTS = {
    TaskKind.MULTICLASS: OutputSpec(("probabilities",), TaskKind.MULTICLASS, ("N", "S", "V", "F"),
                                    MulticlassRule(0.5), semantics="softmax over AAMI classes"),
    TaskKind.BINARY: OutputSpec(("v_probability",), TaskKind.BINARY, ("non-V", "V"),
                                BinaryRule(0.31, "sensitivity ≥ 0.95 on validation")),
    TaskKind.MULTILABEL: OutputSpec(("logits",), TaskKind.MULTILABEL, ("af", "lbbb", "rbbb"),
                                    MultilabelRule((0.4, 0.5, 0.6), "F1-optimal per label on validation"),
                                    graph_outputs_logits=True),
    TaskKind.REGRESSION: OutputSpec(("qt", "hr"), TaskKind.REGRESSION, ("qt_interval", "heart_rate"),
                                    RegressionRule(("ms", "bpm"))),
    TaskKind.ANOMALY: OutputSpec(("score",), TaskKind.ANOMALY, ("normal", "anomalous"),
                                 AnomalyRule(-3.25, 0.01, "99th percentile of normal validation scores")),
}


def manifest(output: OutputSpec = OUTPUTS[TaskKind.MULTICLASS], inputs: tuple[InputSpec, ...] = (BEAT,)
             ) -> BundleManifest:
    return BundleManifest(
        scenario="ecg-test",
        description="a test bundle",
        inputs=inputs,
        output=output,
        preprocessing=Preprocessing("z-score per window", "cut beat windows around R-peaks"),
        variant="fp32",
        selection=Selection("fastest passing", "only variant", {"cpu_model": "test", "usable_cores": 2}),
        variants={"fp32": {"size_bytes": 1000, "gate": {"passed": True}}, "int8-static": {"size_bytes": 400}},
        export=ExportSummary(17, {"max_abs_diff": 1e-7, "batch_sizes": [1, 32]}, {"Conv": 3}, ("a warning",)),
        training={"epochs": 3, "history": {"loss": [1.0, 0.5]}},
        data=DataSummary(True, {"synthetic": True, "generator": "ecgsyn"}, 0, {"test": 10},
                         {"test": {"N": 10}}),
        lineage={"data": "0123456789ab", "bundle": "bundle123456"},
        files={MODEL_NAME: FileEntry("a" * 64, 1234), "report.md": FileEntry("B" * 64, 10)},
        tool_versions={"python": "3.11.7", "edgemed": "0.1.0"},
        created_at="2026-01-02T03:04:05+00:00",
    )


def as_json(value: BundleManifest) -> dict:
    return json.loads(json.dumps(value.to_dict()))


def refused(document: dict, error: type = ManifestError) -> ManifestError:
    with pytest.raises(error) as raised:
        BundleManifest.from_dict(document)
    return raised.value


@pytest.mark.parametrize("kind", list(TaskKind))
def test_every_task_kind_round_trips(kind):
    original = manifest(OUTPUTS[kind])
    document = as_json(original)
    assert document["schema_version"] == SCHEMA_VERSION == 2
    assert document["output"]["task"] == kind.value
    parsed = BundleManifest.from_dict(document)
    assert parsed == original and type(parsed.output.decision) is type(OUTPUTS[kind].decision)
    assert parsed.to_dict() == document
    assert parse_manifest(json.dumps(document).encode()) == original


def test_two_input_specs_round_trip_and_keep_their_geometry():
    original = manifest(OUTPUTS[TaskKind.BINARY], inputs=(BEAT, RR))
    parsed = BundleManifest.from_dict(as_json(original))
    assert parsed == original and [spec.name for spec in parsed.inputs] == ["beat", "rr"]
    beat, rr = parsed.inputs
    assert beat.r_peak_index == 90 and beat.window_samples == 252 and beat.sample_shape == (252, 1)
    assert rr.feature_names == ("pre_rr", "post_rr", "local_rr") and not rr.is_beat_window


def test_files_are_stored_lowercase_and_the_bundle_id_is_derived_once():
    parsed = BundleManifest.from_dict(as_json(manifest()))
    assert parsed.files["report.md"].sha256 == "b" * 64 and parsed.model_sha256 == "a" * 64
    assert parsed.bundle_id("f" * 64) == "bundle123456"
    document = as_json(manifest())
    del document["lineage"]["bundle"]
    assert BundleManifest.from_dict(document).bundle_id("f" * 64) == "f" * 12


def test_version_1_manifest_gets_the_clear_schema_error():
    document = as_json(manifest())
    document["schema_version"] = 1
    del document["output"]  # a real v1 manifest has no output section either: the version speaks first
    error = refused(document, UnsupportedSchemaError)
    message = str(error)
    assert "schema version 1" in message and "older edgemed" in message and "edgemed build" in message


@pytest.mark.parametrize(("version", "mentioned"), [(3, "newer edgemed"), ("2", "'2'"), (None, "None"),
                                                    (True, "True")])
def test_other_schema_versions_are_refused(version, mentioned):
    document = as_json(manifest())
    document["schema_version"] = version
    assert mentioned in str(refused(document, UnsupportedSchemaError))


def _set(document: dict, path: tuple, value) -> None:
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value


def _remove(document: dict, path: tuple) -> None:
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]


MISSING = [
    (("scenario",), "scenario"),
    (("inputs",), "inputs"),
    (("output",), "output"),
    (("variant",), "variant"),
    (("files",), "files"),
    (("created_at",), "created_at"),
    (("inputs", 0, "shape"), "inputs[0].shape"),
    (("inputs", 0, "feature_kind"), "inputs[0].feature_kind"),
    (("output", "task"), "output.task"),
    (("output", "names"), "output.names"),
    (("output", "decision"), "output.decision"),
    (("output", "decision", "low_confidence_below"), "output.decision.low_confidence_below"),
    (("preprocessing", "runtime"), "preprocessing.runtime"),
    (("export", "opset"), "export.opset"),
    (("data", "synthetic"), "data.synthetic"),
    (("selection", "reason"), "selection.reason"),
    (("files", MODEL_NAME, "sha256"), f"files.{MODEL_NAME}.sha256"),
]


@pytest.mark.parametrize(("path", "field"), MISSING, ids=[field for _, field in MISSING])
def test_a_missing_field_is_refused_by_name(path, field):
    document = as_json(manifest())
    _remove(document, path)
    error = refused(document)
    assert error.field == field  # optional values are null, never absent
    assert f"'{field}' is missing" in str(error) and "Expected:" in str(error) and "Fix:" in str(error)


WRONG_TYPES = [
    (("scenario",), 7, "scenario", "a non-empty string"),
    (("inputs",), {"name": "input"}, "inputs", "non-empty list"),
    (("inputs", 0), "input", "inputs[0]", "JSON object"),
    (("inputs", 0, "shape"), [252, 1], "inputs[0].shape", "null (the batch axis)"),
    (("inputs", 0, "shape"), [None, 252.0, 1], "inputs[0].shape", "positive integers"),
    (("inputs", 0, "dtype"), "float64", "inputs[0].dtype", "float32"),
    (("inputs", 0, "feature_kind"), "image", "inputs[0].feature_kind", "waveform, tabular"),
    (("inputs", 0, "sample_rate_hz"), "360", "inputs[0].sample_rate_hz", "finite number"),
    (("inputs", 0, "sample_rate_hz"), None, "inputs[0].sample_rate_hz", "positive rate"),
    (("inputs", 0, "window_after_s"), 0.5, "inputs[0].shape", "round(before × rate)"),
    (("inputs", 0, "window_after_s"), None, "inputs[0].window_after_s", "both sides"),
    (("output", "task"), "segmentation", "output.task", "multiclass, binary"),
    (("output", "labels"), "N,S,V,F", "output.labels", "list of strings"),
    (("output", "labels"), ["N", "N", "V", "F"], "output.labels", "distinct"),
    (("output", "graph_outputs_logits"), "no", "output.graph_outputs_logits", "true or false"),
    (("output", "decision", "low_confidence_below"), 1.5, "output.decision.low_confidence_below", "(0, 1)"),
    (("output", "decision"), [0.5], "output.decision", "JSON object"),
    (("variant",), "int4", "variant", "one of the listed variants"),
    (("variants", "fp32"), 3, "variants.fp32", "JSON object"),
    (("export", "opset"), 0, "export.opset", "≥ 1"),
    (("export", "warnings"), "none", "export.warnings", "list of strings"),
    (("data", "synthetic"), "yes", "data.synthetic", "true or false"),
    (("data", "provenance"), [], "data.provenance", "JSON object"),
    (("lineage", "data"), 12, "lineage", "strings"),
    (("files", MODEL_NAME, "bytes"), -1, f"files.{MODEL_NAME}.bytes", "≥ 0"),
    (("files", MODEL_NAME, "sha256"), "abc", f"files.{MODEL_NAME}.sha256", "64 hex digits"),
    (("files", "../model.onnx"), {"sha256": "a" * 64, "bytes": 1}, "files", "plain file names"),
    (("files", "manifest.json"), {"sha256": "a" * 64, "bytes": 1}, "files", "plain file names"),
    (("created_at",), "yesterday", "created_at", "ISO 8601"),
    (("tool_versions", "onnx"), 1.2, "tool_versions", "tool → version"),
    (("surprise",), 1, "surprise", "only"),
    (("output", "decision", "low_confidence_bellow"), 0.5, "output.decision.low_confidence_bellow", "only"),
]


@pytest.mark.parametrize(("path", "value", "field", "expected"), WRONG_TYPES,
                         ids=[f"{field}={value!r}"[:40] for _, value, field, _ in WRONG_TYPES])
def test_a_wrong_value_is_refused_with_field_found_and_expected(path, value, field, expected):
    document = as_json(manifest())
    _set(document, path, value)
    error = refused(document)
    assert error.field == field, str(error)
    assert error.found and expected in error.expected, str(error)


def test_files_without_the_model_are_refused():
    document = as_json(manifest())
    del document["files"][MODEL_NAME]
    error = refused(document)
    assert error.field == "files" and MODEL_NAME in error.expected


def test_duplicate_input_names_are_refused():
    document = as_json(manifest(inputs=(BEAT, RR)))
    document["inputs"][1]["name"] = "beat"
    assert refused(document).field == "inputs"


def _output_document(kind: TaskKind) -> dict:
    return as_json(manifest(OUTPUTS[kind], inputs=(ROW,)))


KIND_RULES = [
    (TaskKind.MULTICLASS, ("output", "labels"), ["only"], "output.labels", "at least 2 labels"),
    (TaskKind.BINARY, ("output", "labels"), ["a", "b", "c"], "output.labels", "(negative, positive)"),
    (TaskKind.BINARY, ("output", "names"), ["p", "q"], "output.names", "exactly one output"),
    (TaskKind.BINARY, ("output", "decision", "threshold"), 0.0, "output.decision.threshold", "between 0 and 1"),
    (TaskKind.BINARY, ("output", "decision", "threshold"), 1.0, "output.decision.threshold", "between 0 and 1"),
    (TaskKind.BINARY, ("output", "decision", "chosen_by"), " ", "output.decision.chosen_by", "non-empty"),
    (TaskKind.MULTILABEL, ("output", "decision", "thresholds"), [0.5, 0.5], "output.decision.thresholds",
     "one threshold per label"),
    (TaskKind.MULTILABEL, ("output", "decision", "thresholds"), [0.5, 0.5, 2], "output.decision.thresholds[2]",
     "between 0 and 1"),
    (TaskKind.REGRESSION, ("output", "decision", "units"), ["ms"], "output.decision.units", "one unit per output"),
    (TaskKind.REGRESSION, ("output", "decision", "units"), ["ms", ""], "output.decision.units[1]", "unit"),
    (TaskKind.REGRESSION, ("output", "graph_outputs_logits"), True, "output.graph_outputs_logits", "no activation"),
    (TaskKind.ANOMALY, ("output", "decision", "threshold"), math.inf, "output.decision.threshold", "finite"),
    (TaskKind.ANOMALY, ("output", "decision", "threshold"), math.nan, "output.decision.threshold", "finite"),
    (TaskKind.ANOMALY, ("output", "decision", "target_false_alarm_rate"), 0, "output.decision.target_false_alarm_rate",
     "(0, 1)"),
    (TaskKind.ANOMALY, ("output", "labels"), ["normal"], "output.labels", "(normal, anomalous)"),
]


@pytest.mark.parametrize(("kind", "path", "value", "field", "expected"), KIND_RULES,
                         ids=[f"{kind}-{field}={value!r}"[:50] for kind, _, value, field, _ in KIND_RULES])
def test_kind_specific_rules_are_enforced(kind, path, value, field, expected):
    document = _output_document(kind)
    _set(document, path, value)
    error = refused(json.loads(json.dumps(document)))
    assert error.field == field, str(error)
    assert expected in error.expected, str(error)


def test_a_rule_of_another_kind_is_refused():
    document = _output_document(TaskKind.BINARY)
    document["output"]["decision"] = {"low_confidence_below": 0.5}  # a multiclass rule under a binary task
    error = refused(document)
    assert error.field.startswith("output.decision")
    with pytest.raises(ManifestError, match="BinaryRule") as raised:
        OutputSpec(("p",), TaskKind.BINARY, ("no", "yes"), MulticlassRule())
    assert raised.value.field == "decision"


def test_tabular_inputs_need_one_name_per_column():
    with pytest.raises(ManifestError) as raised:
        InputSpec("rows", (None, 3), FeatureKind.TABULAR, feature_names=("a", "b"))
    assert raised.value.field == "feature_names" and "3 distinct column names" in raised.value.expected
    with pytest.raises(ManifestError) as raised:
        InputSpec("rows", (None, 2), FeatureKind.TABULAR, sample_rate_hz=100.0, feature_names=("a", "b"))
    assert raised.value.field == "sample_rate_hz"


def test_a_waveform_without_a_beat_window_has_no_r_peak():
    plain = InputSpec("signal", (None, 3600, 1), FeatureKind.WAVEFORM, sample_rate_hz=360.0)
    assert not plain.is_beat_window
    with pytest.raises(ManifestError, match="beat window"):
        _ = plain.r_peak_index


def test_unparseable_bytes_and_non_objects_are_manifest_errors():
    with pytest.raises(ManifestError, match="JSON"):
        parse_manifest(b"\x00{not json")
    with pytest.raises(ManifestError, match="not a JSON object"):
        parse_manifest(b"[1, 2]")


def test_free_form_sections_are_plain_json_copies():
    document = as_json(manifest())
    parsed = BundleManifest.from_dict(document)
    document["variants"]["fp32"]["size_bytes"] = 1
    assert parsed.variants["fp32"]["size_bytes"] == 1000  # a copy, not a view of the input
    with pytest.raises(ManifestError) as raised:
        ExportSummary(17, {"batch_sizes": {1, 32}})
    assert raised.value.field == "parity.batch_sizes"


def test_direct_construction_validates_like_from_dict():
    with pytest.raises(ManifestError) as raised:
        dataclasses.replace(manifest(), variant="missing")
    assert raised.value.field == "variant"


def test_the_recording_validation_section_is_optional_free_form_json():
    plain = as_json(manifest())
    assert "recording_validation" not in plain  # written only when set: manifests without it read as before
    assert BundleManifest.from_dict(plain).recording_validation is None
    section = {"shipped_variant": "fp32", "variants": {"fp32": {"per_record": [{"record": "119", "v_sensitivity": 1.0}],
                                                                "healthy": None}}}
    original = dataclasses.replace(manifest(), recording_validation=section)
    document = as_json(original)
    parsed = BundleManifest.from_dict(document)
    assert parsed == original and parsed.to_dict() == document
    document["recording_validation"]["shipped_variant"] = "int8"
    assert parsed.recording_validation["shipped_variant"] == "fp32"  # a copy
    assert refused({**plain, "recording_validation": [1, 2]}).field == "recording_validation"
