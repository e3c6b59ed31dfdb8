"""The telemetry record schema: what a device may send, and the pseudonymous device id."""

from __future__ import annotations

from typing import Any

import pytest

from runtime.features import WAVEFORM_FEATURES
from runtime.telemetry.records import TelemetryError, pseudonymous_device_id, validate_record

DEVICE_ID = pseudonymous_device_id("SN-0001", "fleet-salt")


def sample_record(**changes: Any) -> dict[str, Any]:
    """A valid record without a sequence (the outbox assigns it); ``changes`` override fields."""
    record: dict[str, Any] = {
        "time": "2025-03-01T12:00:00Z",
        "device_id": DEVICE_ID,
        "bundle_id": "ecg-arrhythmia",
        "bundle_sha256": "ab" * 32,
        "variant": "int8-static",
        "provider": "CPUExecutionProvider",
        "latency_us": 412,
        "predicted_class": "N",
        "confidence": 0.97,
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
    error = rejection(sample_record(sequence=1, predicted_class=secret))
    assert error.field == "predicted_class" and "200 characters" in str(error)
    assert "Jane" not in str(error)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"confidence": 1.5}, "confidence"),
        ({"confidence": "high"}, "confidence"),
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
