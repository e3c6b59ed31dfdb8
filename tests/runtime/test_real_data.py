"""A device gives no class from a model its signed manifest says was not validated on real data."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runtime.contract import MANIFEST_NAME, BundleManifest, manifest_sha256
from runtime.real_data import (
    RealDataStatus,
    RealDataValidation,
    UnvalidatedBundleError,
    bundle_identity,
    check_real_data,
)
from runtime.runner import RunOptions, run
from runtime.trust import TrustPolicy
from tests.runtime.conftest import synthetic_ecg
from tests.runtime.pvc_bundle import build_pvc_bundle

REPOSITORY = Path(__file__).resolve().parents[2]
DEVELOPMENT = RunOptions(sample_rate_hz=360.0, trust=TrustPolicy.development())
SHORTFALL = "V: 12 real test examples from 1 source; the rule asks for 30 from 2"


def _with_data(folder: Path, synthetic: bool | None, evidence: dict | None) -> Path:
    """The bundle at ``folder`` with its manifest's data section saying ``synthetic`` and ``evidence``."""
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    manifest["data"]["synthetic"] = synthetic
    manifest["data"]["provenance"] = {} if evidence is None else {"evidence": evidence}
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1))
    return folder


def _evidence(passed: bool, synthetic_test_data: bool = False) -> dict:
    return {"passed": passed, "synthetic_test_data": synthetic_test_data, "enforced": True,
            "summary": "every class passed" if passed else SHORTFALL}


def _manifest(folder: Path) -> BundleManifest:
    return BundleManifest.from_dict(json.loads((folder / MANIFEST_NAME).read_text()))


@pytest.fixture(scope="module")
def bundle_folder(tmp_path_factory):
    return build_pvc_bundle(tmp_path_factory.mktemp("real-data") / "bundle")


@pytest.mark.parametrize(("synthetic", "evidence", "status", "said"), [
    (True, None, RealDataStatus.NOT_VALIDATED, "synthetic (a simulation)"),
    (False, _evidence(False), RealDataStatus.NOT_VALIDATED, SHORTFALL),
    (None, _evidence(True, synthetic_test_data=True), RealDataStatus.NOT_VALIDATED, "test data are synthetic"),
    (False, _evidence(True), RealDataStatus.VALIDATED, "passed"),
    (False, None, RealDataStatus.NOT_STATED, "no evidence verdict"),
    (None, {"passed": "yes"}, RealDataStatus.NOT_STATED, "no evidence verdict"),  # not the build's verdict shape
])
def test_the_verdict_is_read_from_the_manifest(tmp_path, bundle_folder, synthetic, evidence, status, said):
    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / MANIFEST_NAME).write_bytes((bundle_folder / MANIFEST_NAME).read_bytes())
    verdict = RealDataValidation.of(_manifest(_with_data(folder, synthetic, evidence)))
    assert verdict.status is status and said in verdict.reason


def test_bundle_identity_reads_the_manifest_alone_and_names_an_unreadable_one(tmp_path, bundle_folder):
    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / MANIFEST_NAME).write_bytes((bundle_folder / MANIFEST_NAME).read_bytes())
    _with_data(folder, False, _evidence(False))
    identity = bundle_identity(folder)  # no model file beside it: the manifest is all it reads
    raw = (folder / MANIFEST_NAME).read_bytes()
    assert identity["manifest_sha256"] == manifest_sha256(raw) and identity["bundle_id"] == _manifest(
        folder).bundle_id(manifest_sha256(raw))
    assert identity["real_data"] == RealDataStatus.NOT_VALIDATED.value and SHORTFALL in identity["real_data_reason"]
    assert set(bundle_identity(tmp_path / "missing")) == {"unreadable"}
    (folder / MANIFEST_NAME).write_text("{not json")
    assert set(bundle_identity(folder)) == {"unreadable"}


def test_a_signed_bundle_not_validated_on_real_data_is_refused_before_its_input_is_read(ecg_bundle_path, trust,
                                                                                           tmp_path, caplog):
    """The tiny ecg-arrhythmia bundle is signed and synthetic: a device that verified it gives no class with it."""
    with pytest.raises(UnvalidatedBundleError) as refused:
        run(ecg_bundle_path, tmp_path / "never-read.npy", RunOptions(sample_rate_hz=360.0, trust=trust))
    message = str(refused.value)
    assert "NOT validated on real data: its training and test data are synthetic" in message
    assert "--allow-unvalidated" in message
    signal, _ = synthetic_ecg(30, seed=1)
    np.save(tmp_path / "ecg.npy", signal)
    with caplog.at_level(logging.WARNING, logger="runtime.real_data"):
        events = list(run(ecg_bundle_path, tmp_path / "ecg.npy",
                          RunOptions(sample_rate_hz=360.0, trust=trust, allow_unvalidated=True)))
    assert events and "NOT VALIDATED ON REAL DATA — NOT FOR CLINICAL USE" in caplog.text


def test_an_unverified_development_run_of_it_is_warned_not_refused(tmp_path, caplog):
    folder = _with_data(build_pvc_bundle(tmp_path / "bundle"), False, _evidence(False))
    signal, _ = synthetic_ecg(30, seed=2)
    np.save(tmp_path / "ecg.npy", signal)
    with caplog.at_level(logging.WARNING, logger="runtime.real_data"):
        events = list(run(folder, tmp_path / "ecg.npy", DEVELOPMENT))
    assert events and "NOT VALIDATED ON REAL DATA" in caplog.text and SHORTFALL in caplog.text


def test_a_validated_bundle_runs_and_an_unstated_one_says_so(tmp_path, bundle_folder, caplog):
    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / MANIFEST_NAME).write_bytes((bundle_folder / MANIFEST_NAME).read_bytes())
    assert check_real_data(_manifest(_with_data(folder, False, _evidence(True))), "b", False).status is (
        RealDataStatus.VALIDATED)
    with caplog.at_level(logging.INFO, logger="runtime.real_data"):
        verdict = check_real_data(_manifest(_with_data(folder, None, None)), "b", allow_unvalidated=False)
    assert verdict.status is RealDataStatus.NOT_STATED and "real-data validation not stated" in caplog.text


def test_both_device_commands_refuse_it_in_one_line_and_allow_it_only_when_told(ecg_bundle_path, trust, tmp_path):
    from click.testing import CliRunner

    from pipeline.cli import main

    recording, output = tmp_path / "ecg.npy", tmp_path / "events.jsonl"
    np.save(recording, synthetic_ecg(20, seed=3)[0])
    arguments = [str(ecg_bundle_path), "--input", str(recording), "--sample-rate", "360", "--trust-store",
                 str(trust.store), "--version-state", str(tmp_path / "versions.json"), "--output", str(output)]
    refused = subprocess.run([sys.executable, "-m", "runtime", *arguments], capture_output=True, text=True,
                             cwd=REPOSITORY, timeout=120)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert "NOT validated on real data: its training and test data are synthetic" in refused.stderr
    assert not output.exists()
    allowed = subprocess.run([sys.executable, "-m", "runtime", *arguments, "--allow-unvalidated"],
                             capture_output=True, text=True, cwd=REPOSITORY, timeout=120)
    assert allowed.returncode == 0 and "NOT VALIDATED ON REAL DATA" in allowed.stderr and output.exists()
    output.unlink()
    edgemed = CliRunner().invoke(main, ["run", *arguments])
    assert edgemed.exit_code == 1 and "NOT validated on real data" in edgemed.output and not output.exists()
    assert CliRunner().invoke(main, ["run", *arguments, "--allow-unvalidated"]).exit_code == 0 and output.exists()
