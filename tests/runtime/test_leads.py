"""A bundle declares the leads its model was validated on, and the device refuses a recording of another lead.

The contract: ``InputSpec.leads`` (standard names, waveform inputs only, written to the manifest only when declared).
The device: a signal CSV (or WFDB, HDF5…) that names its lead is checked before a sample is judged; one that names no
lead runs and says its lead was not checked; a bundle that declares no leads checks nothing.
"""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pytest

from pipeline.scenarios.ecg_pvc.mitdb import load_records
from runtime.__main__ import main as device_main
from runtime.contract import InputSpec
from runtime.contract.errors import ManifestError
from runtime.events import BeatEvent
from runtime.leads import (
    LeadStatementError,
    UnvalidatedLeadError,
    check_recording_lead,
    is_standard_lead,
    recorded_channel,
    validated_leads,
)
from runtime.runner import RunOptions, run
from runtime.trust import TrustPolicy
from tests.runtime.pvc_bundle import RESIDUAL, RR_INPUT, WINDOW, build_pvc_bundle

MLII_RESIDUAL = dataclasses.replace(RESIDUAL, leads=("MLII",))
UNSIGNED = RunOptions(trust=TrustPolicy.development())


@pytest.fixture(scope="module")
def mlii_bundle(tmp_path_factory):
    return build_pvc_bundle(tmp_path_factory.mktemp("leads") / "bundle", (MLII_RESIDUAL, RR_INPUT))


@pytest.fixture(scope="module")
def record_100_mv():
    record = load_records(["100"])[0]
    return record.signal_mv[: int(60 * record.sample_rate_hz)]


def _csv(path, header: str, samples: np.ndarray):
    path.write_text(header + "\n" + "\n".join(f"{value:.4f}" for value in samples) + "\n")
    return path


def test_standard_names_are_what_recorded_channel_writes():
    assert recorded_channel("'Lead II'") == "II" and recorded_channel("V5 (mV)") == "V5"
    assert is_standard_lead("MLII") and is_standard_lead("Fp1-F7")
    assert not is_standard_lead("mlii") and not is_standard_lead("Lead II") and not is_standard_lead("ecg")


def test_leads_round_trip_and_are_written_only_when_declared():
    written = MLII_RESIDUAL.to_dict()
    assert written["leads"] == ["MLII"]
    assert InputSpec.from_dict(json.loads(json.dumps(written))) == MLII_RESIDUAL
    assert "leads" not in RESIDUAL.to_dict() and InputSpec.from_dict(RESIDUAL.to_dict()).leads == ()


@pytest.mark.parametrize(("spec", "leads"), [
    (RESIDUAL, ("mlii",)),  # not the standard spelling
    (RESIDUAL, ("MLII", "MLII")),
    (RESIDUAL, ("Jane Doe",)),
    (RR_INPUT, ("MLII",)),  # a table has no lead
])
def test_leads_that_are_no_standard_names_or_on_a_table_are_refused(spec, leads):
    with pytest.raises(ManifestError, match="leads"):
        dataclasses.replace(spec, leads=leads)


def test_inputs_that_declare_leads_must_declare_the_same_ones(tmp_path):
    both = dataclasses.replace(RESIDUAL, leads=("V5", "MLII"))
    assert validated_leads([RR_INPUT, both]) == ("V5", "MLII")
    assert validated_leads([RESIDUAL, RR_INPUT]) == ()
    window = dataclasses.replace(WINDOW, leads=("MLII",))
    build_pvc_bundle(tmp_path / "same", (window, MLII_RESIDUAL, RR_INPUT))  # agreeing inputs are a valid manifest
    with pytest.raises(ManifestError, match=r"inputs\[\]\.leads.*the same leads on every input"):
        build_pvc_bundle(tmp_path / "different", (window, both, RR_INPUT))


def test_the_check_refuses_another_lead_and_says_which_and_how(caplog):
    with pytest.raises(UnvalidatedLeadError) as refused:
        check_recording_lead([MLII_RESIDUAL, RR_INPUT], "V5", "v5.csv")
    message = str(refused.value)
    assert "v5.csv is lead V5" in message and "validated on MLII only" in message
    assert "Expected: a recording of MLII" in message and "--channel" in message
    with pytest.raises(UnvalidatedLeadError, match="lead II;"):  # II is not MLII: another electrode placement
        check_recording_lead([MLII_RESIDUAL], "II", "ii.csv")
    check_recording_lead([MLII_RESIDUAL], "MLII", "mlii.csv")
    check_recording_lead([RESIDUAL, RR_INPUT], "V5", "v5.csv")  # nothing declared: nothing checked
    with caplog.at_level(logging.INFO, logger="runtime.leads"):
        check_recording_lead([MLII_RESIDUAL], None, "plain.csv")
    assert "the input does not name its lead: not checked (this bundle was validated on MLII)" in caplog.text
    assert "plain" not in caplog.text  # a log never names the file: its name may be a patient's


def test_the_device_refuses_a_v5_recording_before_judging_a_beat(tmp_path, mlii_bundle, record_100_mv):
    v5 = _csv(tmp_path / "v5.csv", "V5", record_100_mv)
    with pytest.raises(UnvalidatedLeadError, match=r"v5\.csv is lead V5"):
        run(mlii_bundle, v5, dataclasses.replace(UNSIGNED, sample_rate_hz=360.0))


@pytest.mark.parametrize("header", ["'MLII'", "ecg"])
def test_a_validated_or_unnamed_lead_runs_and_classifies_beats(tmp_path, mlii_bundle, record_100_mv, header):
    recording = _csv(tmp_path / "record.csv", header, record_100_mv)
    events = list(run(mlii_bundle, recording, dataclasses.replace(UNSIGNED, sample_rate_hz=360.0)))
    beats = [event for event in events if isinstance(event, BeatEvent)]
    assert len(beats) > 60 and sum(beat.classified for beat in beats) > 50  # a minute of record 100: ~75 beats


def test_no_log_of_a_run_names_the_input_file_which_may_be_a_patients_name(tmp_path, mlii_bundle, record_100_mv,
                                                                           caplog):
    recording = _csv(tmp_path / "john_doe_1961-04-02.csv", "ecg", record_100_mv)
    with caplog.at_level(logging.DEBUG):
        events = list(run(mlii_bundle, recording, dataclasses.replace(UNSIGNED, sample_rate_hz=250.0)))  # 250 ≠ file
    assert events and "model rate" in caplog.text and "not checked" in caplog.text  # the run did log
    assert "john" not in caplog.text.lower() and "1961" not in caplog.text


def test_the_device_command_refuses_it_with_one_line_and_writes_nothing(tmp_path, mlii_bundle, record_100_mv,
                                                                        capsys):
    v5 = _csv(tmp_path / "v5.csv", "V5 (mV)", record_100_mv)
    output = tmp_path / "events.jsonl"
    status = device_main([str(mlii_bundle), "--input", str(v5), "--sample-rate", "360", "--allow-unsigned",
                          "--output", str(output)])
    error = capsys.readouterr().err
    assert status == 1 and not output.exists()
    assert error.startswith("error: v5.csv is lead V5; this bundle's model was validated on MLII only")
    assert "Traceback" not in error


def test_a_lead_the_device_states_is_checked_for_a_file_that_names_none(tmp_path, mlii_bundle, record_100_mv):
    """``--lead``: an .npy carries no lead, so the device says which; V5 is refused, MLII runs, a header that names
    another lead than the one stated is refused, and a name that is no lead is refused as such."""
    signal = tmp_path / "signal.npy"
    np.save(signal, record_100_mv)
    options = dataclasses.replace(UNSIGNED, sample_rate_hz=360.0)
    with pytest.raises(UnvalidatedLeadError, match=r"signal\.npy is lead V5"):
        run(mlii_bundle, signal, dataclasses.replace(options, lead="v5"))
    beats = [event for event in run(mlii_bundle, signal, dataclasses.replace(options, lead="Lead MLII"))
             if isinstance(event, BeatEvent)]
    assert len(beats) > 60
    named = _csv(tmp_path / "named.csv", "MLII", record_100_mv)
    with pytest.raises(LeadStatementError, match=r"named\.csv names lead MLII, and --lead says V5"):
        run(mlii_bundle, named, dataclasses.replace(options, lead="V5"))
    with pytest.raises(LeadStatementError, match="is no standard lead or electrode name"):
        run(mlii_bundle, signal, dataclasses.replace(options, lead="chest"))


def test_lead_is_refused_where_there_is_no_signal_to_state_it_for(tmp_path, mlii_bundle, capsys):
    arrays = tmp_path / "beats.npz"
    np.savez(arrays, residual=np.zeros((2, 252, 1), np.float32), rr=np.ones((2, 6), np.float32))
    status = device_main([str(mlii_bundle), "--input", str(arrays), "--lead", "MLII", "--allow-unsigned"])
    error = capsys.readouterr().err
    assert status == 1 and "--lead 'MLII' was given, but 'beats.npz' is not a signal recording" in error
