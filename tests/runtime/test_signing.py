"""Device trust: signed bundles, the trust store, rollback, safe reads, and the command lines' refusals.

Every refusal here must happen before any ONNX Runtime session exists (``no_session`` makes creating one
fail the test), and each has its own error class.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import runtime.session
from pipeline.build.signing import (
    KEY_INFO_NAME,
    PRIVATE_KEY_NAME,
    TRUST_STORE_FOLDER,
    KeyExistsError,
    KeyLocationError,
    SigningKey,
    SigningKeyError,
    generate_keys,
)
from pipeline.cli import main as edgemed
from pipeline.cli.run import run_command
from runtime.__main__ import main as device_main
from runtime.bundle import (
    BadSignatureError,
    BundleError,
    LinkInBundleError,
    ManifestError,
    RollbackError,
    UnknownKeyError,
    UnlistedModelFileError,
    UnreadableFileError,
    UnsignedBundleError,
    load_bundle,
)
from runtime.contract import KeyPurpose
from runtime.trust import (
    KeyPurposeError,
    RevokedKeyError,
    SignatureFile,
    TrustPolicy,
    TrustStoreError,
    VersionState,
    check_signature,
    key_id,
)
from runtime.trust.signature import raw_public_bytes
from tests.runtime.conftest import resign

MANIFEST, SIGNATURE, MODEL = "manifest.json", "manifest.sig", "model.onnx"


@pytest.fixture
def no_session(monkeypatch):
    """Fail the test if a refused bundle gets as far as creating a session."""

    def forbidden(*args, **kwargs):
        raise AssertionError("create_session was called for a bundle that should have been refused")

    monkeypatch.setattr(runtime.session, "create_session", forbidden)


def _edit(folder: Path, change) -> None:
    """Edit manifest.json as an attacker would: the signature stays as it was."""
    manifest = json.loads((folder / MANIFEST).read_text())
    change(manifest)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))


def _rogue_key() -> SigningKey:
    private = Ed25519PrivateKey.generate()
    return SigningKey(private, key_id(raw_public_bytes(private.public_key())), KeyPurpose.PRODUCTION, Path("rogue"))


def _swap_model_and_rehash(folder: Path) -> None:
    data = bytearray((folder / MODEL).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / MODEL).write_bytes(bytes(data))
    _edit(folder, lambda m: m["files"][MODEL].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data)))


def _shift_window(manifest: dict) -> None:
    spec = manifest["inputs"][0]
    rate = spec["sample_rate_hz"]
    spec["window_before_s"] += 10 / rate  # same window length (the contract still holds), R-peak moved
    spec["window_after_s"] -= 10 / rate


def _flip_signature_bit(folder: Path) -> None:
    signature = SignatureFile.parse((folder / SIGNATURE).read_bytes())
    flipped = bytes([signature.signature[0] ^ 1]) + signature.signature[1:]
    (folder / SIGNATURE).write_bytes(SignatureFile(signature.key_id, flipped).to_bytes())


def _sign_with_another_key_under_the_trusted_id(folder: Path) -> None:
    trusted_id = SignatureFile.parse((folder / SIGNATURE).read_bytes()).key_id
    forged = _rogue_key().private_key.sign((folder / MANIFEST).read_bytes())
    (folder / SIGNATURE).write_bytes(SignatureFile(trusted_id, forged).to_bytes())


def _reverse(key: str):
    def change(manifest: dict) -> None:
        section = manifest["output"] if key == "labels" else manifest["inputs"][0]
        section[key] = section[key][::-1]

    return change


# name → (scenario bundle, damage). Every one of them must end in BadSignatureError, before any session.
TAMPERED = {
    "model bytes changed, hash and size rewritten": ("ecg", _swap_model_and_rehash),
    "labels reversed": ("ecg", lambda folder: _edit(folder, _reverse("labels"))),
    "feature names reversed": ("breast", lambda folder: _edit(folder, _reverse("feature_names"))),
    "window shifted": ("ecg", lambda folder: _edit(folder, _shift_window)),
    "synthetic flag flipped": ("ecg", lambda folder: _edit(folder, lambda m: m["data"].update(
        synthetic=not m["data"]["synthetic"]))),
    "threshold lowered": ("ecg", lambda folder: _edit(folder, lambda m: m["output"]["decision"].update(
        low_confidence_below=0.01))),
    "bundle_version raised": ("ecg", lambda folder: _edit(folder, lambda m: m["release"].update(
        bundle_version=m["release"]["bundle_version"] + 10**6))),
    "key purpose relabelled": ("ecg", lambda folder: _edit(folder, lambda m: m["release"].update(
        key_purpose="production"))),
    "one byte of whitespace added": ("breast", lambda folder: (folder / MANIFEST).write_bytes(
        (folder / MANIFEST).read_bytes() + b" ")),
    "signature bit flipped": ("ecg", _flip_signature_bit),
    "wrongly signed (another key claiming the trusted id)": ("ecg", _sign_with_another_key_under_the_trusted_id),
    "malformed signature file": ("ecg", lambda folder: (folder / SIGNATURE).write_text("{}")),
}


@pytest.fixture
def bundles(ecg_bundle_path, breast_bundle_path) -> dict[str, Path]:
    return {"ecg": ecg_bundle_path, "breast": breast_bundle_path}


@pytest.mark.parametrize("tampering", list(TAMPERED))
def test_every_tampered_bundle_is_refused_before_any_session(tampering, bundles, copy_bundle, trust, no_session):
    scenario, damage = TAMPERED[tampering]
    folder = copy_bundle(bundles[scenario])
    damage(folder)
    with pytest.raises(BadSignatureError) as raised:
        load_bundle(folder, trust=trust)
    assert "Expected:" in str(raised.value) and "Fix:" in str(raised.value)
    # The development allowance does not excuse a signature that fails with a key the device knows.
    with pytest.raises(BadSignatureError):
        load_bundle(folder, trust=TrustPolicy(trust.keys, allow_unsigned=True))


def test_unsigned_bundle_is_refused_unless_allowed_and_then_warned_about_on_every_load(
    ecg_bundle_path, copy_bundle, trust, caplog, monkeypatch
):
    folder = copy_bundle(ecg_bundle_path)
    (folder / SIGNATURE).unlink()
    real = runtime.session.create_session
    monkeypatch.setattr(runtime.session, "create_session", lambda *a, **k: pytest.fail("session for unsigned"))
    with pytest.raises(UnsignedBundleError, match="not signed") as raised:
        load_bundle(folder, trust=trust)
    assert "--allow-unsigned" in str(raised.value)
    with pytest.raises(UnsignedBundleError):
        load_bundle(folder)  # the default policy trusts nothing
    monkeypatch.setattr(runtime.session, "create_session", real)
    caplog.set_level("WARNING")
    for _ in range(2):
        bundle = load_bundle(folder, provider="cpu", threads=1, trust=TrustPolicy.development())
        assert bundle.signed_by is None
    warnings = [record for record in caplog.records if "UNSIGNED BUNDLE" in record.getMessage()]
    assert len(warnings) == 2 and all(record.levelname == "WARNING" for record in warnings)


def test_unknown_key_is_refused_and_only_the_allowance_loads_it_unverified(
    ecg_bundle_path, copy_bundle, trust, caplog, monkeypatch
):
    folder = copy_bundle(ecg_bundle_path)
    rogue = _rogue_key()
    _edit(folder, lambda m: m["release"].update(key_id=rogue.key_id))
    (folder / SIGNATURE).write_bytes(rogue.sign((folder / MANIFEST).read_bytes()).to_bytes())
    monkeypatch.setattr(runtime.session, "create_session", lambda *a, **k: pytest.fail("session for unknown key"))
    with pytest.raises(UnknownKeyError, match=rogue.key_id) as raised:
        load_bundle(folder, trust=trust)
    assert trust.describe() in str(raised.value)
    with pytest.raises(UnknownKeyError, match="no trust store"):
        load_bundle(folder)
    monkeypatch.undo()
    caplog.set_level("WARNING")
    bundle = load_bundle(folder, provider="cpu", threads=1, trust=TrustPolicy(trust.keys, allow_unsigned=True))
    assert bundle.signed_by is None
    assert any("NOT VERIFIED" in record.getMessage() for record in caplog.records)


def test_a_signed_manifest_must_name_its_key_and_carry_a_version(ecg_bundle_path, copy_bundle, trust, signing_key,
                                                                 no_session):
    folder = copy_bundle(ecg_bundle_path)
    _edit(folder, lambda m: m["release"].update(key_id="0" * 16))
    resign(folder, signing_key)
    with pytest.raises(BadSignatureError, match="names signing key 0000000000000000"):
        load_bundle(folder, trust=trust)
    _edit(folder, lambda m: m.update(release=None))
    resign(folder, signing_key)
    with pytest.raises(ManifestError, match="no release section"):
        load_bundle(folder, trust=trust)


def _released(source: Path, copy_bundle, key: SigningKey, version: int, name: str) -> Path:
    folder = copy_bundle(source)
    folder = folder.rename(folder.with_name(name))
    _edit(folder, lambda m: m["release"].update(bundle_version=version))
    resign(folder, key)
    return folder


def test_rollback_is_refused_and_only_verified_versions_are_recorded(
    ecg_bundle_path, copy_bundle, trust, signing_key, tmp_path, monkeypatch
):
    state = tmp_path / "state" / "bundle-versions.json"
    policy = TrustPolicy(trust.keys, version_state=state)
    base = json.loads((ecg_bundle_path / MANIFEST).read_text())["release"]["bundle_version"]
    older, current = (_released(ecg_bundle_path, copy_bundle, signing_key, base + step, f"v{step}") for step in (0, 1))
    load_bundle(current, provider="cpu", threads=1, trust=policy)
    assert VersionState(state).newest("ecg-arrhythmia") == base + 1
    load_bundle(current, provider="cpu", threads=1, trust=policy)  # the same version again is fine
    monkeypatch.setattr(runtime.session, "create_session", lambda *a, **k: pytest.fail("session for a rollback"))
    with pytest.raises(RollbackError, match=f"version {base}, older than version {base + 1}"):
        load_bundle(older, trust=policy)
    # An unsigned bundle's version is not authenticated: never recorded, even when it claims a huge one.
    monkeypatch.undo()
    unsigned = copy_bundle(ecg_bundle_path)
    _edit(unsigned, lambda m: m["release"].update(bundle_version=base + 10**9, key_id=None, key_purpose=None))
    (unsigned / SIGNATURE).unlink()
    load_bundle(unsigned, provider="cpu", threads=1, trust=TrustPolicy(trust.keys, True, state))
    assert VersionState(state).newest("ecg-arrhythmia") == base + 1
    assert sorted(path.name for path in state.parent.iterdir()) == ["bundle-versions.json", "bundle-versions.json.lock"]


def test_an_unreadable_version_state_refuses_every_load(ecg_bundle_path, trust, tmp_path, no_session):
    state = tmp_path / "bundle-versions.json"
    state.write_text("{not json")
    with pytest.raises(TrustStoreError, match="is not JSON"):
        load_bundle(ecg_bundle_path, trust=TrustPolicy(trust.keys, version_state=state))
    with pytest.raises(TrustStoreError, match="cannot be"):  # a path no state file can be at
        load_bundle(ecg_bundle_path, trust=TrustPolicy(trust.keys, version_state=state / "below-a-file.json"))
    with pytest.raises(TrustStoreError, match="cannot be written"):
        VersionState(state / "below-a-file.json").record("x", 1, "0" * 64)


def test_development_key_is_said_loudly_on_load(ecg_bundle, caplog, ecg_bundle_path, trust):
    assert ecg_bundle.signed_by is not None and ecg_bundle.release.key_purpose is KeyPurpose.DEVELOPMENT
    caplog.set_level("WARNING")
    load_bundle(ecg_bundle_path, provider="cpu", threads=1, trust=trust)
    assert any("DEVELOPMENT key" in record.getMessage() for record in caplog.records)


# -- the trust store ------------------------------------------------------------------------------------------


def test_trust_store_holds_public_keys_only(signing_key, tmp_path):
    store = tmp_path / "store"
    with pytest.raises(TrustStoreError, match="not a folder"):
        TrustPolicy.from_store(store)
    store.mkdir()
    with pytest.raises(TrustStoreError, match="no public key"):
        TrustPolicy.from_store(store)
    (store / "key.pem").write_bytes(signing_key.path.read_bytes())
    with pytest.raises(TrustStoreError, match="private key"):
        TrustPolicy.from_store(store)
    (store / "key.pem").write_text("-----BEGIN PUBLIC KEY-----\ngarbage\n-----END PUBLIC KEY-----\n")
    with pytest.raises(TrustStoreError, match="not a readable PEM"):
        TrustPolicy.from_store(store)
    public = signing_key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (store / "key.pem").write_bytes(public)
    (store / "README.txt").write_text("not a key: ignored")
    policy = TrustPolicy.from_store(store)
    assert set(policy.keys) == {signing_key.key_id} and policy.version_state == store / "bundle-versions.json"


def _store_with(tmp_path: Path, *keys: SigningKey) -> Path:
    """A trust store holding the public key files ``edgemed keys generate`` wrote for ``keys``."""
    store = tmp_path / "provisioned"
    store.mkdir(exist_ok=True)
    for key in keys:
        source = key.path.parent / TRUST_STORE_FOLDER / f"{key.key_id}.pem"
        (store / source.name).write_bytes(source.read_bytes())
    return store


def test_the_trust_store_records_each_keys_purpose_and_a_development_key_cannot_release_for_patients(
        ecg_bundle_path, copy_bundle, signing_key, tmp_path, no_session):
    """A signed manifest's key purpose was the manifest's own claim: a development key could sign one saying
    "production". The public key file records the purpose; a manifest claiming another is refused."""
    pem = (signing_key.path.parent / TRUST_STORE_FOLDER / f"{signing_key.key_id}.pem").read_bytes()
    assert pem.startswith(b"edgemed-key-purpose: development\n-----BEGIN PUBLIC KEY-----")
    policy = TrustPolicy.from_store(_store_with(tmp_path, signing_key))
    assert policy.keys[signing_key.key_id].purpose is KeyPurpose.DEVELOPMENT
    folder = copy_bundle(ecg_bundle_path)
    _edit(folder, lambda m: m["release"].update(key_purpose="production"))
    resign(folder, signing_key)
    with pytest.raises(KeyPurposeError, match=r"says its key .* is a production key; this device's trust store "
                                              r"records it as a development key"):
        load_bundle(folder, trust=policy)
    bare = tmp_path / "bare"  # a key file without the line (provisioned before it existed): the manifest decides
    bare.mkdir()
    (bare / "key.pem").write_bytes(pem.split(b"\n", 1)[1])
    assert TrustPolicy.from_store(bare).keys[signing_key.key_id].purpose is None
    (bare / "key.pem").write_bytes(b"edgemed-key-purpose: clinical\n" + pem.split(b"\n", 1)[1])
    with pytest.raises(TrustStoreError, match="records key purpose 'clinical'"):
        TrustPolicy.from_store(bare)


def test_a_revoked_key_is_refused_with_its_pem_still_there_and_under_the_allowance(
        ecg_bundle_path, copy_bundle, signing_key, tmp_path, no_session):
    replacement = SigningKey.load(generate_keys(tmp_path / "replacement", KeyPurpose.PRODUCTION).private_key)
    store = _store_with(tmp_path, signing_key, replacement)
    result = CliRunner().invoke(edgemed, ["keys", "revoke", signing_key.key_id, "--trust-store", str(store),
                                          "--reason", "laptop lost"])
    assert result.exit_code == 0, result.output
    assert CliRunner().invoke(edgemed, ["keys", "revoke", signing_key.key_id, "--trust-store", str(store)]
                              ).exit_code == 0  # listed once
    listed = (store / "revoked").read_text()
    assert listed.count(signing_key.key_id) == 1 and "laptop lost" in listed
    policy = TrustPolicy.from_store(store)
    assert set(policy.keys) == {replacement.key_id} and policy.revoked == {signing_key.key_id}
    with pytest.raises(RevokedKeyError, match=f"signed by key {signing_key.key_id}, which .* revoked"):
        load_bundle(ecg_bundle_path, trust=policy)
    with pytest.raises(RevokedKeyError):
        load_bundle(ecg_bundle_path, trust=TrustPolicy.from_store(store, allow_unsigned=True))
    unsigned = copy_bundle(ecg_bundle_path)  # its signature removed: the manifest still names the revoked key
    (unsigned / SIGNATURE).unlink()
    with pytest.raises(RevokedKeyError, match="manifest names signing key"):
        load_bundle(unsigned, trust=TrustPolicy.from_store(store, allow_unsigned=True))
    bad = CliRunner().invoke(edgemed, ["keys", "revoke", "not-a-key", "--trust-store", str(store)])
    assert bad.exit_code == 2 and "is not a key id" in bad.output


def test_a_damaged_revocation_list_or_a_store_of_revoked_keys_is_refused(signing_key, tmp_path):
    store = _store_with(tmp_path, signing_key)
    (store / "revoked").write_text("# comment\nPatient John Smith\n")
    with pytest.raises(TrustStoreError, match="line 2 is not a key id \\(18 characters\\)") as refused:
        TrustPolicy.from_store(store)
    assert "John" not in str(refused.value)
    (store / "revoked").write_text(f"{signing_key.key_id}\n")
    with pytest.raises(TrustStoreError, match=r"every key in trust store .* is revoked"):
        TrustPolicy.from_store(store)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400))
def test_random_signature_files_only_raise_bad_signature(ecg_bundle_path, trust, data):
    with pytest.raises(BadSignatureError):
        check_signature(trust, (ecg_bundle_path / MANIFEST).read_bytes(), data, "fuzz")


# -- what is read is what runs --------------------------------------------------------------------------------


def test_the_session_runs_the_bytes_that_were_hashed(
    ecg_bundle_path, breast_bundle_path, ecg_bundle, copy_bundle, trust, monkeypatch
):
    folder = copy_bundle(ecg_bundle_path)
    other = (breast_bundle_path / MODEL).read_bytes()
    real = runtime.session.create_session
    given_model = {}

    def swap_file_then_create(model, settings):
        (folder / MODEL).write_bytes(other)  # after the hash was checked, before the session
        given_model["bytes"] = model
        return real(model, settings)

    monkeypatch.setattr(runtime.session, "create_session", swap_file_then_create)
    bundle = load_bundle(folder, provider="cpu", threads=1, trust=trust)
    assert (folder / MODEL).read_bytes() == other
    assert hashlib.sha256(given_model["bytes"]).hexdigest() == bundle.model_sha256 == ecg_bundle.model_sha256
    windows = np.random.default_rng(3).normal(size=(4, 252, 1)).astype(np.float32)
    assert np.array_equal(bundle.predict(windows), ecg_bundle.predict(windows))
    (folder / "reference_profile.json").write_text("{}")  # the profile too is the verified one
    assert bundle.reference_profile()["feature_kind"] == "waveform"


LINKED = {
    "model": MODEL,
    "manifest": MANIFEST,
    "report": "report.md",
}


@pytest.mark.parametrize("target", list(LINKED))
def test_a_symlinked_file_is_refused_even_with_the_right_content(target, ecg_bundle_path, copy_bundle, trust,
                                                                 tmp_path, no_session):
    folder = copy_bundle(ecg_bundle_path)
    name = LINKED[target]
    outside = tmp_path / f"outside-{name}"
    outside.write_bytes((folder / name).read_bytes())  # same bytes: the hash alone would pass
    (folder / name).unlink()
    (folder / name).symlink_to(outside)
    with pytest.raises(LinkInBundleError, match="symbolic link"):
        load_bundle(folder, trust=trust)


def test_links_and_model_files_anywhere_in_the_tree_are_refused(ecg_bundle_path, copy_bundle, trust, tmp_path,
                                                                no_session):
    assert ecg_bundle_path.is_symlink()  # the published path itself may be a link (see test_publish)
    folder = copy_bundle(ecg_bundle_path)
    (folder / "extra").mkdir()
    (folder / "extra" / "model.onnx").write_bytes((folder / MODEL).read_bytes())
    with pytest.raises(UnlistedModelFileError, match=r"extra/model\.onnx"):
        load_bundle(folder, trust=trust)
    (folder / "extra" / "model.onnx").unlink()
    (folder / "extra" / "deeper").mkdir()
    (folder / "extra" / "deeper" / "weights.onnx_data").write_bytes(b"x")
    with pytest.raises(UnlistedModelFileError, match=r"weights\.onnx_data"):
        load_bundle(folder, trust=trust)
    (folder / "extra" / "deeper" / "weights.onnx_data").unlink()
    (folder / "extra" / "outside").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(LinkInBundleError, match="extra/outside"):
        load_bundle(folder, trust=trust)
    (folder / "extra" / "outside").unlink()
    if hasattr(os, "mkfifo"):  # a FIFO would block a plain open(): refused without being opened
        os.mkfifo(folder / "extra" / "pipe")
        with pytest.raises(LinkInBundleError, match="not a regular file"):
            load_bundle(folder, trust=trust)


@pytest.mark.parametrize("relabel", ["removed", "relabelled to an unknown key"])
def test_a_manifest_naming_a_trusted_signer_is_never_excused_by_the_allowance(relabel, ecg_bundle_path, copy_bundle,
                                                                            trust, no_session):
    """The manifest edited, then its signature removed, or its key id changed to one the device does not know (so
    the allowance would skip it): the manifest still names the trusted key that signed it, so even under
    --allow-unsigned the bundle is refused; a device with no keys (development) loads it, loudly unverified."""
    folder = copy_bundle(ecg_bundle_path)
    _edit(folder, lambda m: m["output"]["decision"].update(low_confidence_below=0.01))
    if relabel == "removed":
        (folder / SIGNATURE).unlink()
    else:
        signature = SignatureFile.parse((folder / SIGNATURE).read_bytes())
        (folder / SIGNATURE).write_bytes(SignatureFile("0123456789abcdef", signature.signature).to_bytes())
    with pytest.raises(BadSignatureError, match=r"which this device trusts, but manifest\.sig is missing or by "
                                                r"another key") as raised:
        load_bundle(folder, trust=TrustPolicy(trust.keys, allow_unsigned=True))
    assert "Expected:" in str(raised.value) and "Fix: do not use this bundle" in str(raised.value)


def test_unreadable_files_folders_and_impossible_names_are_refused_by_name(ecg_bundle_path, copy_bundle, trust,
                                                                          tmp_path, monkeypatch, no_session):
    """Permission and I/O errors are bundle refusals naming the file (not tracebacks), even as root (simulated); a
    folder that cannot be listed is refused, never skipped; a file name too long for the file system, a folder in
    place of a listed file, and a file given as the bundle folder are each said as what they are."""
    import errno

    import runtime.trust.folder as folder_module
    from runtime.trust import BundleFolder

    folder = copy_bundle(ecg_bundle_path)
    real_open = os.open

    def denied(path, flags, *args, **kwargs):
        if str(path).endswith("report.md"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(folder_module.os, "open", denied)
    with pytest.raises(UnreadableFileError, match=r"report\.md in bundle .* cannot be read \(Permission denied\)"):
        load_bundle(folder, trust=trust)
    monkeypatch.undo()
    real_fwalk = os.fwalk

    def unlistable(*args, onerror=None, **kwargs):
        onerror(PermissionError(errno.EACCES, "Permission denied", "sub"))
        yield from real_fwalk(*args, onerror=onerror, **kwargs)

    monkeypatch.setattr(folder_module.os, "fwalk", unlistable)
    with pytest.raises(UnreadableFileError, match=r"sub in bundle .* \(its contents cannot be checked\)"):
        load_bundle(folder, trust=trust)
    monkeypatch.undo()
    with BundleFolder(folder) as opened, pytest.raises(BundleError, match="a file name of 300 characters"):
        opened.read("a" * 300)
    report = next(name for name in os.listdir(folder) if name.endswith(".md"))
    (folder / report).unlink()
    (folder / report).mkdir()
    with pytest.raises(LinkInBundleError, match=f"{report} in the bundle is a folder, where the manifest lists a "
                                                "file") as raised:
        load_bundle(folder, trust=trust)
    assert "symbolic" not in str(raised.value)
    with pytest.raises(BundleError, match="is a file, not a folder"):
        load_bundle(folder / MANIFEST, trust=trust)


def test_an_unreadable_trust_store_is_refused_by_name(trust, tmp_path, monkeypatch):
    import errno
    from pathlib import Path as PathType

    def denied(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(PathType, "iterdir", denied)
    with pytest.raises(TrustStoreError, match=r"cannot be read \(Permission denied\)") as raised:
        TrustPolicy.from_store(trust.store)
    assert "Fix: check the trust store's permissions" in str(raised.value)


def test_unlisted_plain_files_in_subfolders_are_only_logged(ecg_bundle_path, copy_bundle, trust, caplog):
    folder = copy_bundle(ecg_bundle_path)
    (folder / "notes").mkdir()
    (folder / "notes" / "readme.txt").write_text("hello")
    caplog.set_level("WARNING")
    load_bundle(folder, provider="cpu", threads=1, trust=trust)
    assert any("notes/readme.txt" in record.getMessage() for record in caplog.records)


# -- command lines --------------------------------------------------------------------------------------------


def _rows(tmp_path: Path) -> Path:
    path = tmp_path / "rows.npy"
    np.save(path, np.ones((2, 30), dtype=np.float32))
    return path


def test_device_command_line_refuses_with_exit_1_and_allows_only_what_it_is_told(
    breast_bundle_path, copy_bundle, trust, tmp_path, capsys, caplog
):
    rows, store = str(_rows(tmp_path)), str(trust.store)
    assert device_main([str(breast_bundle_path), "--input", rows]) == 1
    assert "not trusted here (no trust store was given)" in capsys.readouterr().err
    state = str(tmp_path / "state.json")
    assert device_main([str(breast_bundle_path), "--input", rows, "--trust-store", store,
                        "--version-state", state]) == 0
    assert json.loads(Path(state).read_text())["bundles"]["breast-cancer"]["bundle_version"] > 0
    unsigned = copy_bundle(breast_bundle_path)
    (unsigned / SIGNATURE).unlink()
    assert device_main([str(unsigned), "--input", rows, "--trust-store", store]) == 1
    assert "is not signed" in capsys.readouterr().err
    assert device_main([str(unsigned), "--input", rows, "--allow-unsigned"]) == 0
    assert any("UNSIGNED BUNDLE" in record.getMessage() for record in caplog.records)  # stderr: the next test
    assert device_main([str(breast_bundle_path), "--input", rows, "--trust-store", str(tmp_path / "none")]) == 1
    assert "is not a folder" in capsys.readouterr().err


def test_device_command_line_in_a_subprocess_warns_about_unsigned_bundles(breast_bundle_path, copy_bundle, tmp_path):
    unsigned = copy_bundle(breast_bundle_path)
    (unsigned / SIGNATURE).unlink()
    command = [sys.executable, "-m", "runtime", str(unsigned), "--input", str(_rows(tmp_path))]
    refused = subprocess.run(command, capture_output=True, text=True, timeout=120)
    allowed = subprocess.run([*command, "--allow-unsigned"], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and "UnsignedBundle" not in refused.stderr and "not signed" in refused.stderr
    assert allowed.returncode == 0 and "WARNING" in allowed.stderr and "UNSIGNED BUNDLE" in allowed.stderr


def test_edgemed_run_takes_the_same_trust_options(breast_bundle_path, trust, tmp_path):
    rows = str(_rows(tmp_path))
    runner = CliRunner()
    refused = runner.invoke(run_command, [str(breast_bundle_path), "--input", rows])
    assert refused.exit_code == 1 and "not trusted here" in refused.output
    allowed = runner.invoke(run_command, [str(breast_bundle_path), "--input", rows, "--trust-store", str(trust.store),
                                          "--version-state", str(tmp_path / "state.json")])
    assert allowed.exit_code == 0, allowed.output


# -- keys ------------------------------------------------------------------------------------------------------


def test_keys_generate_writes_0600_and_refuses_to_overwrite(tmp_path):
    folder = tmp_path / "keys"
    runner = CliRunner()
    first = runner.invoke(edgemed, ["keys", "generate", "--out", str(folder), "--purpose", "production"])
    assert first.exit_code == 0, first.output
    private = folder / PRIVATE_KEY_NAME
    assert private.stat().st_mode & 0o777 == 0o600
    info = json.loads((folder / KEY_INFO_NAME).read_text())
    assert info["purpose"] == "production" and info["algorithm"] == "ed25519"
    public = folder / TRUST_STORE_FOLDER / f"{info['key_id']}.pem"
    assert public.is_file() and b"PRIVATE" not in public.read_bytes()
    assert set(TrustPolicy.from_store(public.parent).keys) == {info["key_id"]}
    before = private.read_bytes()
    again = runner.invoke(edgemed, ["keys", "generate", "--out", str(folder), "--purpose", "production"])
    assert again.exit_code == 2 and "already exists" in again.output and private.read_bytes() == before
    with pytest.raises(KeyExistsError):
        generate_keys(folder, KeyPurpose.PRODUCTION)
    forced = runner.invoke(edgemed, ["keys", "generate", "--out", str(folder), "--purpose", "development", "--force"])
    assert forced.exit_code == 0 and "DEVELOPMENT KEY" in forced.output
    assert private.read_bytes() != before and private.stat().st_mode & 0o777 == 0o600
    assert len(list((folder / TRUST_STORE_FOLDER).iterdir())) == 1  # the replaced key is no longer offered
    assert SigningKey.load(private).purpose is KeyPurpose.DEVELOPMENT


def test_a_private_key_readable_by_others_or_without_its_info_is_refused(tmp_path):
    files = generate_keys(tmp_path / "keys", KeyPurpose.PRODUCTION)
    files.private_key.chmod(0o644)
    with pytest.raises(SigningKeyError, match="readable by others"):
        SigningKey.load(files.private_key)
    files.private_key.chmod(0o600)
    files.info.unlink()
    with pytest.raises(SigningKeyError, match=r"key\.json"):
        SigningKey.load(files.private_key)


def test_keys_are_never_written_into_a_bundle_or_a_committable_path(ecg_bundle_path, copy_bundle, tmp_path):
    bundle = copy_bundle(ecg_bundle_path)
    with pytest.raises(KeyLocationError, match="inside the bundle folder"):
        generate_keys(bundle / "keys", KeyPurpose.DEVELOPMENT)
    repository = tmp_path / "repository"
    repository.mkdir()
    subprocess.run(["git", "init", "-q", str(repository)], check=True)
    (repository / ".gitignore").write_text(".edgemed-keys/\n")
    with pytest.raises(KeyLocationError, match="is not git-ignored"):
        generate_keys(repository / "keys", KeyPurpose.DEVELOPMENT)
    assert not (repository / "keys").exists()
    files = generate_keys(repository / ".edgemed-keys" / "dev", KeyPurpose.DEVELOPMENT)
    assert files.private_key.is_file()
    result = CliRunner().invoke(edgemed, ["keys", "generate", "--out", str(repository / "src"), "--purpose",
                                          "production"])
    assert result.exit_code == 2 and "could be committed" in result.output


def test_the_signature_verifies_with_a_second_implementation_of_the_check(ecg_bundle_path, signing_key):
    """Ed25519 over the manifest's exact bytes: cryptography's own verify, without edgemed's wrapper, agrees."""
    raw = (ecg_bundle_path / MANIFEST).read_bytes()
    signature = SignatureFile.parse((ecg_bundle_path / SIGNATURE).read_bytes())
    signing_key.private_key.public_key().verify(signature.signature, raw)  # raises when it does not match
    assert signature.key_id == signing_key.key_id == json.loads(raw)["release"]["key_id"]


def test_every_refusal_is_a_bundle_error_of_its_own_class():
    refusals = (UnsignedBundleError, BadSignatureError, UnknownKeyError, RollbackError, LinkInBundleError,
                UnlistedModelFileError, UnreadableFileError)
    assert all(issubclass(error, BundleError) for error in refusals)
    assert not any(issubclass(first, second) for first in refusals for second in refusals if first is not second)
