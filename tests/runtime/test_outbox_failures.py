"""Telemetry never costs the clinical output, and an outbox is never another program's file.

Found by a device-input audit: a disk that filled during a run, or a ``--telemetry-outbox`` pointing at another
program's SQLite file with a ``records`` table, stopped the run with a traceback after some events were printed;
a file of another program's tables was taken as an outbox and had edgemed's tables added to it.
"""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from pipeline.scenarios.ecg_pvc.mitdb import SAMPLE_RATE_HZ, load_records
from runtime.runner import RunOptions, TelemetryMode, TelemetrySink, run
from runtime.telemetry import Outbox, TelemetryError, pseudonymous_device_id
from runtime.trust import TrustPolicy
from tests.runtime.pvc_bundle import TWO_INPUTS, build_pvc_bundle

DEVICE = pseudonymous_device_id("SN-OUTBOX", "fleet-salt")


@pytest.fixture(scope="module")
def bundle_and_signal(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pvc")
    signal = load_records(("119",))[0].signal_mv[: 120 * int(SAMPLE_RATE_HZ)].astype(np.float32)  # real MIT-BIH
    np.save(folder / "signal.npy", signal)
    return build_pvc_bundle(folder / "bundle", TWO_INPUTS), folder / "signal.npy"


def _decisions(event) -> dict:
    """What the device told: every field but its own latency and telemetry's summary features."""
    return {key: value for key, value in event.to_dict().items() if key not in ("latency_us", "features")}


@pytest.mark.parametrize("mode", [TelemetryMode.RECORDS, TelemetryMode.AGGREGATES])
def test_an_outbox_that_fails_mid_run_leaves_the_clinical_output_complete(bundle_and_signal, tmp_path, monkeypatch,
                                                                          caplog, mode):
    bundle, signal = bundle_and_signal
    development = TrustPolicy.development()
    expected = [_decisions(event) for event in run(bundle, signal, RunOptions(sample_rate_hz=SAMPLE_RATE_HZ,
                                                                              trust=development))]
    original, calls = TelemetrySink.add, []

    def add(sink, event):
        calls.append(event)
        if len(calls) == 40:
            raise sqlite3.OperationalError("database or disk is full")
        return original(sink, event)

    monkeypatch.setattr(TelemetrySink, "add", add)
    options = RunOptions(sample_rate_hz=SAMPLE_RATE_HZ, trust=development, device_id=DEVICE,
                         telemetry_outbox=tmp_path / "outbox.sqlite3", telemetry_mode=mode)
    with caplog.at_level("ERROR", logger="runtime.runner"):
        found = [_decisions(event) for event in run(bundle, signal, options)]
    assert found == expected and len(expected) > 100  # every event, in order, none twice
    assert len(calls) == 40  # telemetry stopped at the failure, and said so once
    assert caplog.text.count("telemetry NOT complete") == 1 and "database or disk is full" in caplog.text


def test_another_programs_database_is_refused_and_left_as_it_was(tmp_path):
    path = tmp_path / "patients.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE patients (name TEXT, mrn TEXT)")
    with pytest.raises(TelemetryError, match="another program") as caught:
        Outbox(path, DEVICE)
    assert "new --telemetry-outbox path" in caught.value.fix
    with sqlite3.connect(path) as connection:
        tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"patients"}


def test_a_records_table_of_another_shape_is_refused(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE records (x TEXT)")
    with pytest.raises(TelemetryError, match="another program"):
        Outbox(path, DEVICE)


def test_an_outbox_reopens_after_its_own_use(tmp_path):
    with Outbox(tmp_path / "outbox.sqlite3", DEVICE) as outbox:
        outbox.append(_record())
    with Outbox(tmp_path / "outbox.sqlite3", DEVICE) as outbox:
        assert outbox.count() == 1


def _record() -> dict:
    from runtime.telemetry.records import utc_timestamp

    return {"time": utc_timestamp(), "bundle_id": "pvc-stream-test", "bundle_sha256": "0" * 64,
            "variant": "fp32", "provider": "CPUExecutionProvider", "task": "multiclass", "latency_us": 10.0,
            "quality_flags": [], "features": {}, "result": {"class": "V", "confidence": 0.9, "low_confidence": False}}
