"""The telemetry record schema: what a device may send, and the pseudonymous device id."""

from __future__ import annotations

from typing import Any

import pytest

from runtime.features import WAVEFORM_FEATURES
from runtime.telemetry.records import TelemetryError, pseudonymous_device_id, validate_record

DEVICE_ID = pseudonymous_device_id("SN-0001", "fleet-salt")


def class_result(label: str = "N", confidence: float = 0.97, low_confidence: bool = False) -> dict[str, Any]:
    """A multiclass/binary result object (schema 2)."""
    return {"class": label, "confidence": confidence, "low_confidence": low_confidence}


def sample_record(**changes: Any) -> dict[str, Any]:
    """A valid schema-2 multiclass record without a sequence (the outbox assigns it); ``changes`` override fields."""
    record: dict[str, Any] = {
        "time": "2025-03-01T12:00:00Z",
        "device_id": DEVICE_ID,
        "bundle_id": "ecg-arrhythmia",
        "bundle_sha256": "ab" * 32,
        "variant": "int8-static",
        "provider": "CPUExecutionProvider",
        "latency_us": 412,
        "task": "multiclass",
        "result": class_result(),
        "quality_flags": ["baseline_wander"],
        "features": {"mean": 0.01, "std": 1.0, "peak_to_peak": 3.2},
    }
    record.update(changes)
    return record


def rejection(record: Any, **options: Any) -> TelemetryError:
    with pytest.raises(TelemetryError) as error:
        validate_record(record, **options)
    return error.value


def test_valid_record_is_normalised():
    checked = validate_record(sample_record(sequence=7, time="2025-03-01T12:00:00.5+00:00"))
    assert checked["time"] == "2025-03-01T12:00:00.500000Z"
    assert checked["latency_us"] == 412.0 and isinstance(checked["latency_us"], float)
    assert checked["sequence"] == 7
    assert validate_record(checked) == checked


def test_sequence_is_required_unless_the_outbox_will_assign_it():
    assert rejection(sample_record()).field == "sequence"
    assert "sequence" not in validate_record(sample_record(), sequence_required=False)


def test_unknown_key_is_named():
    error = rejection(sample_record(sequence=1, firmware_build="7.1"))
    assert error.field == "firmware_build" and "firmware_build" in str(error)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"patient_name": "x"}, "patient_name"),
        ({"mrn": "x"}, "mrn"),
        ({"dob": "x"}, "dob"),
        ({"email": "x"}, "email"),
        ({"PhoneNumber": "x"}, "PhoneNumber"),
        ({"features": {"mean": 0.0, "DateOfBirth": 1990.0}}, "features.DateOfBirth"),
        ({"features": {"home_address": 1.0}}, "features.home_address"),
        ({"features": {"ssn": 1.0}}, "features.ssn"),
    ],
)
def test_patient_identifiers_are_refused_naming_the_field(changes, field):
    error = rejection(sample_record(sequence=1, **changes))
    assert error.field == field
    assert field in str(error) and "patient identifier" in str(error)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"features": {"mean": 0.0, "window": [0.1, 0.2, 0.3]}}, "features.window"),
        ({"samples": [1, 2, 3]}, "samples"),
        ({"quality_flags": ["noisy", 0.5]}, "quality_flags"),
    ],
)
def test_lists_of_numbers_are_refused_as_raw_waveforms(changes, field):
    error = rejection(sample_record(sequence=1, **changes))
    assert error.field == field and "raw waveform" in str(error)


def test_long_strings_are_refused_without_echoing_them():
    secret = "Jane Doe, 12 High Street " * 10
    error = rejection(sample_record(sequence=1, result=class_result(secret)))
    assert error.field == "result.class" and "200 characters" in str(error)
    assert "Jane" not in str(error)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"result": class_result(confidence=1.5)}, "result.confidence"),
        ({"result": class_result(confidence="high")}, "result.confidence"),
        ({"latency_us": True}, "latency_us"),
        ({"latency_us": float("nan")}, "latency_us"),
        ({"time": "2025-03-01T12:00:00"}, "time"),
        ({"time": "2025-03-01T13:00:00+01:00"}, "time"),
        ({"time": "yesterday"}, "time"),
        ({"bundle_sha256": "not-a-digest"}, "bundle_sha256"),
        ({"device_id": "SN-0001"}, "device_id"),
        ({"features": {"mean": "0.1"}}, "features.mean"),
        ({"features": {"nested": {"a": 1.0}}}, "features.nested"),
        ({"sequence": 0}, "sequence"),
    ],
)
def test_wrong_types_and_ranges_name_the_field(changes, field):
    error = rejection(sample_record(**{"sequence": 1, **changes}))
    assert error.field == field and field in str(error)


def test_missing_field_is_named():
    record = sample_record(sequence=1)
    del record["bundle_id"]
    assert rejection(record).field == "bundle_id"


def test_real_feature_names_are_not_mistaken_for_identifiers():
    tabular = ["mean radius", "worst concave points", "mean fractal dimension", "area error"]
    features = {name: 1.0 for name in (*WAVEFORM_FEATURES, *tabular)}
    assert validate_record(sample_record(sequence=1, features=features))["features"] == features


def test_pseudonymous_device_id_is_stable_and_hides_the_serial():
    serial = "SN-0001"
    identifier = pseudonymous_device_id(serial, "fleet-salt")
    assert identifier == pseudonymous_device_id(serial, "fleet-salt")
    assert len(identifier) == 32 and int(identifier, 16) >= 0
    assert serial.lower() not in identifier and "0001" not in identifier
    assert identifier != pseudonymous_device_id(serial, "other-salt")
    assert identifier != pseudonymous_device_id("SN-0002", "fleet-salt")
    with pytest.raises(TelemetryError):
        pseudonymous_device_id("", "fleet-salt")


RESULTS = {  # a valid result per task kind (schema 2)
    "multiclass": class_result(),
    "binary": class_result("V", 0.64),
    "multilabel": {"labels": ["af", "rbbb"], "scores": {"af": 0.81, "lbbb": 0.2, "rbbb": 0.55}},
    "regression": {"values": {"qt_interval": 412.5, "heart_rate": 61}, "units": {"qt_interval": "ms",
                                                                                 "heart_rate": "bpm"}},
    "anomaly": {"class": "anomalous", "score": 4.2, "alarm": True, "threshold": 3.25},
}


def test_every_task_kind_has_a_result_shape_and_the_runtime_makes_the_same_keys():
    from runtime.contract import TaskKind
    from runtime.results import UNJUDGED_FLAGS as RUNTIME_UNJUDGED_FLAGS
    from runtime.telemetry.records import RESULT_FIELDS, UNJUDGED_FLAGS

    assert set(RESULT_FIELDS) == set(TaskKind) == set(RESULTS)
    assert set(RUNTIME_UNJUDGED_FLAGS) == UNJUDGED_FLAGS
    for task, result in RESULTS.items():
        checked = validate_record(sample_record(sequence=1, task=task, result=result))
        assert checked["task"] == task and set(checked["result"]) == set(RESULT_FIELDS[task])
    assert validate_record(sample_record(sequence=1, task="regression", result=RESULTS["regression"])
                           )["result"]["values"]["heart_rate"] == 61.0


@pytest.mark.parametrize(
    ("task", "result", "field"),
    [
        ("multiclass", {"class": "N", "confidence": 0.9}, "result.low_confidence"),
        ("binary", class_result(low_confidence="no"), "result.low_confidence"),
        ("multilabel", {"labels": ["af", "af"], "scores": {"af": 0.8}}, "result.labels"),
        ("multilabel", {"labels": ["pvc"], "scores": {"af": 0.8}}, "result.labels"),
        ("multilabel", {"labels": [], "scores": {"af": 1.8}}, "result.scores.af"),
        ("multilabel", {"labels": [], "scores": [0.1, 0.2]}, "result.scores"),
        ("regression", {"values": {"qt": float("nan")}, "units": {"qt": "ms"}}, "result.values.qt"),
        ("regression", {"values": {"qt": 400.0}, "units": {"hr": "bpm"}}, "result.units"),
        ("regression", {"values": {}, "units": {}}, "result.values"),
        ("anomaly", {"class": "anomalous", "score": 1.0, "alarm": False, "threshold": 0.5}, "result.alarm"),
        ("anomaly", {"class": "normal", "score": 10**400, "alarm": False, "threshold": 0.5}, "result.score"),
        ("segmentation", class_result(), "task"),
        (["multiclass"], class_result(), "task"),
        ("multiclass", "N", "result"),
        ("multiclass", None, "result"),
    ],
)
def test_malformed_results_are_refused_naming_the_field(task, result, field):
    error = rejection(sample_record(sequence=1, task=task, result=result))
    assert error.field == field and field in str(error)


def test_an_unjudged_record_has_a_null_result_and_says_why():
    flagged = sample_record(sequence=1, task="regression", result=None, quality_flags=["input_not_finite"])
    assert validate_record(flagged)["result"] is None
    assert rejection({**flagged, "result": RESULTS["regression"]}).field == "result"  # never a silent answer
    assert rejection({**flagged, "quality_flags": []}).field == "result"


def test_schema_1_records_of_older_devices_are_still_read_under_their_version():
    legacy = {key: value for key, value in sample_record(sequence=3).items() if key not in ("task", "result")}
    legacy |= {"predicted_class": "N", "confidence": 0.97}
    checked = validate_record(legacy, schema_version=1)
    assert checked["predicted_class"] == "N" and checked["confidence"] == 0.97 and "task" not in checked
    assert rejection(legacy).field == "confidence"  # not a schema-2 field (unknown keys are named in order)
    assert rejection(sample_record(sequence=1), schema_version=1).field == "result"
    assert rejection({**legacy, "confidence": 2.0}, schema_version=1).field == "confidence"
    assert rejection(legacy, schema_version=4).field == "schema_version"
    assert rejection(legacy, schema_version=3).field == "schema_version"  # 3 is the aggregate schema


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"quality_flags": ["noisy", "0.1,0.2,0.3"]}, "quality_flags[1]"),
        ({"bundle_id": "x 1 2 3 4 5"}, "bundle_id"),
        ({"variant": "1;2"}, "variant"),
        ({"features": {"0.1,0.2": 1.0}}, "features.<key of 7 characters>"),  # a waveform as a key: never echoed
    ],
)
def test_numbers_hidden_in_text_are_refused_on_the_device_too(changes, field):
    assert rejection(sample_record(**changes), sequence_required=False).field == field


def test_a_refused_key_that_is_free_text_is_named_by_its_length_only():
    name = "Jane Doe DOB 1962-04-01 " * 40
    error = rejection(sample_record(sequence=1, features={name: 1.0}))
    assert error.field == f"features.<key of {len(name)} characters>"
    assert "Jane" not in str(error) and "1962" not in str(error) and len(str(error)) < 600


def test_units_are_the_bundles_or_short_units_never_free_text():
    from runtime.telemetry.records import Vocabulary

    record = sample_record(sequence=1, task="regression",
                           result={"values": {"qt_interval": 412.5}, "units": {"qt_interval": "ms"}})
    assert validate_record(record, vocabulary=Vocabulary())["result"]["units"] == {"qt_interval": "ms"}
    assert validate_record(record, vocabulary=Vocabulary(units=frozenset({"ms"})))
    with pytest.raises(TelemetryError, match="is not a unit the bundle declares"):
        validate_record(record, vocabulary=Vocabulary(units=frozenset({"s"})))
    record["result"]["units"]["qt_interval"] = "Jane Doe MRN 00123456 DOB 1962-04-01"
    with pytest.raises(TelemetryError, match="is not a short unit") as refused:
        validate_record(record, vocabulary=Vocabulary())
    assert "Jane" not in str(refused.value)


def test_the_closed_flag_vocabulary_holds_every_flag_the_runtime_sets():
    from runtime.ecg.quality import QualityFlag
    from runtime.features import WAVEFORM_FEATURES
    from runtime.results import UNJUDGED_FLAGS as RUNTIME_UNJUDGED
    from runtime.telemetry.records import KNOWN_QUALITY_FLAGS, SUMMARY_FEATURE_NAMES

    assert {flag.value for flag in QualityFlag} | set(RUNTIME_UNJUDGED) <= KNOWN_QUALITY_FLAGS
    assert set(WAVEFORM_FEATURES) <= SUMMARY_FEATURE_NAMES
