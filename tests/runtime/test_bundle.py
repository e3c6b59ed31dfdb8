"""Bundle verification: every kind of damage is refused by its own error before any session exists.

The damaged copies are signed again (``resign``) so that each reaches the check it is about; the trust
refusals themselves (unsigned, bad signature, unknown key, rollback) are in ``test_signing.py``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import runtime.session
from runtime.bundle import (
    BundleError,
    InputShapeError,
    ManifestError,
    MissingFileError,
    ModelContractError,
    TamperedFileError,
    TruncatedFileError,
    UnlistedModelFileError,
    UnsupportedOpsetError,
    UnsupportedSchemaError,
    load_bundle,
    onnxruntime_max_opset,
)
from runtime.contract import BundleManifest, MulticlassRule, TaskKind
from runtime.errors import IntegrityError
from runtime.features import FeatureKind
from runtime.hashing import sha256_file
from runtime.session import ProviderError, available_providers
from tests.runtime.conftest import resign


@pytest.fixture
def no_session(monkeypatch):
    """Fail the test if a damaged bundle gets as far as creating a session."""

    def forbidden(*args, **kwargs):
        raise AssertionError("create_session was called for a bundle that should have been refused")

    monkeypatch.setattr(runtime.session, "create_session", forbidden)


def _edit_manifest(folder: Path, change) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _flip_byte(folder: Path) -> None:
    data = bytearray((folder / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "model.onnx").write_bytes(bytes(data))


def _truncate(folder: Path) -> None:
    data = (folder / "model.onnx").read_bytes()
    (folder / "model.onnx").write_bytes(data[: len(data) - 100])


DAMAGE = {
    "tampered byte": (_flip_byte, TamperedFileError, "sha256"),
    "truncated file": (_truncate, TruncatedFileError, "bytes"),
    "missing file": (lambda folder: (folder / "report.md").unlink(), MissingFileError, "report.md"),
    "missing manifest": (lambda folder: (folder / "manifest.json").unlink(), MissingFileError, "manifest.json"),
    "unparseable manifest": (
        lambda folder: (folder / "manifest.json").write_bytes(b"\x00{not json"),
        ManifestError,
        "JSON",
    ),
    "newer schema version": (
        lambda folder: _edit_manifest(folder, lambda m: m.update(schema_version=3)),
        UnsupportedSchemaError,
        "newer edgemed",
    ),
    "schema 1 (older edgemed)": (
        lambda folder: _edit_manifest(folder, lambda m: m.update(schema_version=1)),
        UnsupportedSchemaError,
        "edgemed build",
    ),
    "missing decision rule": (
        lambda folder: _edit_manifest(folder, lambda m: m["output"].pop("decision")),
        ManifestError,
        "output.decision",
    ),
    "misspelt rule field": (
        lambda folder: _edit_manifest(folder, lambda m: m["output"]["decision"].update(low_confidence_bellow=0.9)),
        ManifestError,
        "output.decision.low_confidence_bellow",
    ),
    "window that does not fit the shape": (
        lambda folder: _edit_manifest(folder, lambda m: m["inputs"][0].update(window_after_s=0.5)),
        ManifestError,
        "inputs[0].shape",
    ),
    "unsupported opset": (
        lambda folder: _edit_manifest(folder, lambda m: m["export"].update(opset=99)),
        UnsupportedOpsetError,
        "99",
    ),
    "unlisted model file": (
        lambda folder: (folder / "extra.onnx").write_bytes(b"x"),
        UnlistedModelFileError,
        "extra.onnx",
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_bundle_is_refused_by_its_own_error_before_any_session(
    damage, ecg_bundle_path, copy_bundle, no_session, trust, signing_key
):
    change, error_type, mentioned = DAMAGE[damage]
    folder = copy_bundle(ecg_bundle_path)
    change(folder)
    if (folder / "manifest.json").exists():
        resign(folder, signing_key)  # a signed but broken build: the check itself must refuse it
    with pytest.raises(error_type) as raised:
        load_bundle(folder, trust=trust)
    message = str(raised.value)
    assert isinstance(raised.value, BundleError)
    assert mentioned in message and "Expected:" in message and "Fix:" in message


def test_truncation_names_expected_and_actual_size(ecg_bundle_path, copy_bundle, no_session, trust):
    folder = copy_bundle(ecg_bundle_path)
    recorded = json.loads((folder / "manifest.json").read_text())["files"]["model.onnx"]["bytes"]
    _truncate(folder)
    with pytest.raises(TruncatedFileError, match=f"{recorded - 100} bytes .* {recorded} bytes"):
        load_bundle(folder, trust=trust)


def test_tampering_is_also_an_integrity_error(ecg_bundle_path, copy_bundle, no_session, trust):
    folder = copy_bundle(ecg_bundle_path)
    _flip_byte(folder)
    with pytest.raises(IntegrityError):
        load_bundle(folder, trust=trust)


def test_unsupported_opset_names_both_versions(ecg_bundle_path, copy_bundle, no_session, trust, signing_key):
    import onnxruntime

    folder = copy_bundle(ecg_bundle_path)
    _edit_manifest(folder, lambda m: m["export"].update(opset=99))
    resign(folder, signing_key)
    with pytest.raises(UnsupportedOpsetError) as raised:
        load_bundle(folder, trust=trust)
    assert "opset 99" in str(raised.value) and onnxruntime.__version__ in str(raised.value)


@pytest.mark.parametrize(
    ("version", "opset"),
    [
        ("1.20.1", 21),
        ("1.21.0", 22),
        ("1.22.2", 22),
        ("1.23.0", 23),
        ("1.32.0", 23),
        ("1.17.3", 20),
        ("0.9", 15),
        ("garbage", 15),
    ],
)
def test_opset_table(version, opset):
    assert onnxruntime_max_opset(version) == opset


def test_valid_bundles_load_with_identity_and_predict(ecg_bundle, breast_bundle, ecg_bundle_path):
    assert ecg_bundle.model_sha256 == sha256_file(ecg_bundle_path / "model.onnx")
    assert len(ecg_bundle.bundle_id) == 12 and ecg_bundle.provider == "CPUExecutionProvider"
    assert ecg_bundle.variant == json.loads((ecg_bundle_path / "manifest.json").read_text())["variant"]
    assert ecg_bundle.labels == ("N", "S", "V", "F")
    assert isinstance(ecg_bundle.manifest, BundleManifest) and ecg_bundle.manifest.schema_version == 2
    assert ecg_bundle.output.task is TaskKind.MULTICLASS and ecg_bundle.output.decision == MulticlassRule(0.5)
    assert breast_bundle.output.decision == MulticlassRule(None)
    assert breast_bundle.input_spec.feature_kind is FeatureKind.TABULAR and len(breast_bundle.inputs) == 1
    assert ecg_bundle.input_spec.window_samples == 252 and ecg_bundle.input_spec.r_peak_index == 90
    probabilities = ecg_bundle.predict(np.random.default_rng(0).normal(size=(5, 252, 1)))
    assert probabilities.shape == (5, 4) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    assert breast_bundle.predict(np.ones((3, 30))).shape == (3, 2)
    assert ecg_bundle.predict(np.zeros((0, 252, 1))).shape == (0, 4)
    assert ecg_bundle.reference_profile()["feature_kind"] == "waveform"


def test_wrong_batch_shape_is_an_input_error(ecg_bundle):
    with pytest.raises(InputShapeError, match=r"\(n, 252, 1\)"):
        ecg_bundle.predict(np.zeros((2, 100, 1)))


def test_best_provider_is_used_when_none_is_named(ecg_bundle_path, trust):
    bundle = load_bundle(ecg_bundle_path, trust=trust)
    assert bundle.provider in available_providers()


def test_unknown_provider_is_refused(ecg_bundle_path, trust):
    if "TensorrtExecutionProvider" in available_providers():
        pytest.skip("TensorRT is installed here")
    with pytest.raises(ProviderError, match="CPUExecutionProvider"):
        load_bundle(ecg_bundle_path, provider="tensorrt", trust=trust)


def test_decisions_follow_the_manifest_rule(ecg_bundle):
    windows = np.random.default_rng(1).normal(size=(6, 252, 1))
    probabilities = ecg_bundle.predict(windows)
    decisions = ecg_bundle.decide(windows)
    assert [decision.label for decision in decisions] == [ecg_bundle.labels[i] for i in probabilities.argmax(axis=1)]
    assert [decision.low_confidence for decision in decisions] == (probabilities.max(axis=1) < 0.5).tolist()


def test_bundle_id_is_the_lineage_id_or_the_manifest_hash(ecg_bundle_path, copy_bundle, trust, signing_key):
    lineage_id = json.loads((ecg_bundle_path / "manifest.json").read_text())["lineage"]["bundle"]
    assert load_bundle(ecg_bundle_path, provider="cpu", trust=trust).bundle_id == lineage_id
    folder = copy_bundle(ecg_bundle_path)
    _edit_manifest(folder, lambda m: m["lineage"].pop("bundle"))
    resign(folder, signing_key)
    bundle = load_bundle(folder, provider="cpu", trust=trust)
    assert bundle.bundle_id == bundle.manifest_sha256[:12] != lineage_id


def test_manifest_and_model_from_different_builds_are_refused(ecg_bundle_path, copy_bundle, trust, signing_key):
    folder = copy_bundle(ecg_bundle_path)
    _edit_manifest(folder, lambda m: m["output"].update(names=["scores"]))
    resign(folder, signing_key)
    with pytest.raises(ModelContractError, match="scores"):
        load_bundle(folder, provider="cpu", trust=trust)
    _edit_manifest(folder, lambda m: m["output"].update(names=["probabilities"], labels=["N", "S", "V"]))
    resign(folder, signing_key)
    with pytest.raises(ModelContractError, match="3"):
        load_bundle(folder, provider="cpu", trust=trust)
