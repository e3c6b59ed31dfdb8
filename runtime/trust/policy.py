"""What a device trusts: the public keys it was provisioned with, and whether unsigned bundles may run.

``TrustPolicy.from_store(DIR)`` reads every ``*.pem`` public key in a trust store folder (a private
key there is refused: it never belongs on a device), each with the purpose its file records (an
``edgemed-key-purpose: development|production`` line before the PEM, as ``edgemed keys generate`` writes
it), the revoked key ids in ``DIR/revoked`` (one per line, ``#`` comments; ``edgemed keys revoke``), and keeps
the newest bundle version run per bundle name in ``DIR/bundle-versions.json`` (or another given file).
``load_bundle(…, trust=…)`` then refuses, before any session exists:

* a bundle signed by a revoked key, or whose manifest names one (``RevokedKeyError``), whatever the allowance
  and even when its ``.pem`` is still in the store;
* a signed manifest claiming a purpose the store records otherwise for its key (``KeyPurposeError``): a
  development key cannot sign a "production" release;

* an unsigned bundle (``UnsignedBundleError``) — unless the policy allows unsigned bundles for
  development, which logs a WARNING on every load; under that allowance a signature by a key the
  device does not know is not checked either (deleting the signature would have the same effect);
* a signature that does not verify, or is malformed (``BadSignatureError``), whatever the allowance;
* a signature by a key that is not in the store (``UnknownKeyError``);
* under the allowance too, a manifest that names a signing key this device trusts without a signature by that
  key (``BadSignatureError``): a signed bundle whose signature was removed or re-labelled after its manifest was
  edited;
* a version older than the newest the device has run (``RollbackError``).

``TrustPolicy()`` trusts nothing: every bundle is refused. That is ``load_bundle``'s default.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.contract import MANIFEST_NAME, BundleManifest, KeyPurpose, ManifestError
from runtime.contract.release import KEY_ID_PATTERN
from runtime.trust.errors import (
    BadSignatureError,
    KeyPurposeError,
    RevokedKeyError,
    TrustStoreError,
    UnknownKeyError,
    UnsignedBundleError,
)
from runtime.trust.signature import (
    MAX_KEY_FILE_BYTES,
    SIGNATURE_NAME,
    SignatureFile,
    key_id,
    public_key_from_pem,
    raw_public_bytes,
    verify,
)
from runtime.trust.versions import VERSION_STATE_NAME, VersionState

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

logger = logging.getLogger(__name__)

KEY_SUFFIX = ".pem"
_NOT_FOR_PATIENTS = "NOT FOR CLINICAL USE"


PURPOSE_LINE = "edgemed-key-purpose:"  # before the PEM in a trust-store key file: the key's recorded purpose
REVOKED_NAME = "revoked"  # key ids no bundle may be signed by, one per line


@dataclass(frozen=True)
class TrustedKey:
    key_id: str
    public_key: Ed25519PublicKey
    source: Path | None  # the file it was read from
    purpose: KeyPurpose | None = None  # as the trust store records it (None: a key file without the line)


def key_file_purpose(data: bytes, source: str) -> KeyPurpose | None:
    """The purpose a trust-store key file records before its PEM, or None when it records none."""
    head = data.split(b"-----BEGIN", 1)[0].decode("utf-8", errors="replace")
    for line in head.splitlines():
        if line.strip().lower().startswith(PURPOSE_LINE):
            value = line.strip()[len(PURPOSE_LINE):].strip()
            try:
                return KeyPurpose(value)
            except ValueError:
                raise TrustStoreError(
                    f"{source} records key purpose {value[:40]!r}",
                    expected=f"'{PURPOSE_LINE} development' or '{PURPOSE_LINE} production' before the PEM",
                    fix="copy the public key file written by 'edgemed keys generate' again",
                ) from None
    return None


def read_revoked(path: Path) -> frozenset[str]:
    """The key ids listed in a trust store's ``revoked`` file (none when there is no file)."""
    if not path.exists():
        return frozenset()
    identifiers = set()
    with path.open("rb") as handle:
        text = handle.read(MAX_KEY_FILE_BYTES * 64).decode("utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        if not KEY_ID_PATTERN.fullmatch(entry):
            raise TrustStoreError(
                f"{path} line {number} is not a key id ({len(entry)} characters)",
                expected="one key id per line (16 lowercase hexadecimal digits), '#' comments",
                fix="write it with 'edgemed keys revoke KEY_ID --trust-store DIR'",
            )
        identifiers.add(entry)
    return frozenset(identifiers)


@dataclass(frozen=True)
class TrustPolicy:
    """The keys a device trusts, the development allowance, and where rollback state is kept."""

    keys: Mapping[str, TrustedKey] = field(default_factory=dict)  # key id → key
    allow_unsigned: bool = False  # development only: run bundles whose signature cannot be checked
    version_state: Path | None = None  # newest bundle version run per bundle name; None = no rollback check
    store: Path | None = None  # the trust store folder the keys came from (for messages)
    revoked: frozenset[str] = frozenset()  # key ids no bundle may be signed by (the store's ``revoked`` file)

    @classmethod
    def from_store(cls, folder: Path | str, *, allow_unsigned: bool = False,
                   version_state: Path | str | None = None) -> TrustPolicy:
        """The public keys in ``folder`` (``*.pem``); rollback state in ``version_state`` or the folder."""
        folder = Path(folder)
        if not folder.is_dir():
            raise TrustStoreError(
                f"trust store {folder} is not a folder",
                expected="a folder of Ed25519 public keys (*.pem)",
                fix="provision the device with the public key(s) of the build that signs its bundles "
                "(the trust-store folder 'edgemed keys generate' writes)",
            )
        keys = {}
        try:
            for path in sorted(folder.iterdir()):
                if path.suffix != KEY_SUFFIX or not path.is_file():
                    continue
                with path.open("rb") as handle:
                    data = handle.read(MAX_KEY_FILE_BYTES)
                public_key = public_key_from_pem(data, str(path))
                identifier = key_id(raw_public_bytes(public_key))
                keys[identifier] = TrustedKey(identifier, public_key, path, key_file_purpose(data, str(path)))
            revoked = read_revoked(folder / REVOKED_NAME)
        except OSError as error:
            where = error.filename if isinstance(error.filename, str) else str(folder)
            raise TrustStoreError(
                f"trust store {where} cannot be read ({error.strerror or type(error).__name__})",
                expected="a trust-store folder and public keys the device's user can read",
                fix="check the trust store's permissions (and the disk)",
            ) from None
        if not keys:
            raise TrustStoreError(
                f"trust store {folder} holds no public key (*{KEY_SUFFIX})",
                expected="at least one Ed25519 public key",
                fix="copy the signing key's public key (trust-store/<key id>.pem) into it",
            )
        keys = {identifier: key for identifier, key in keys.items() if identifier not in revoked}
        if not keys:
            raise TrustStoreError(
                f"every key in trust store {folder} is revoked ({', '.join(sorted(revoked))})",
                expected="at least one public key that is not revoked",
                fix="provision the public key of the key that replaced the revoked one",
            )
        logger.info("trust store %s: keys %s%s", folder, ", ".join(keys),
                    f"; revoked {', '.join(sorted(revoked))}" if revoked else "")
        state = Path(version_state) if version_state is not None else folder / VERSION_STATE_NAME
        return cls(keys, allow_unsigned, state, folder, revoked)

    @classmethod
    def development(cls, version_state: Path | str | None = None) -> TrustPolicy:
        """No trusted keys, unsigned bundles allowed (with a WARNING on every load): build machines and tests."""
        return cls(allow_unsigned=True, version_state=None if version_state is None else Path(version_state))

    @classmethod
    def from_options(cls, store: Path | None, allow_unsigned: bool, version_state: Path | None) -> TrustPolicy:
        """The policy the command lines' ``--trust-store``, ``--allow-unsigned`` and ``--version-state`` ask for.

        A ``--version-state`` whose folder does not exist is refused (``TrustStoreError``): a mistyped path would
        otherwise start an empty rollback state, and a downgrade would run unnoticed."""
        if version_state is not None and not Path(version_state).parent.is_dir():
            raise TrustStoreError(
                f"--version-state {version_state}: the folder {Path(version_state).parent} does not exist",
                expected="the rollback state file of this device (created on first use inside an existing folder; "
                "default: bundle-versions.json in the trust store)",
                fix="check the path; create the folder first if this device really starts a new rollback state")
        if store is not None:
            return cls.from_store(store, allow_unsigned=allow_unsigned, version_state=version_state)
        return cls(allow_unsigned=allow_unsigned, version_state=version_state)

    def describe(self) -> str:
        if self.store is None:
            return "no trust store was given"
        return f"the trust store {self.store} holds {', '.join(self.keys)}"


@dataclass(frozen=True)
class Verdict:
    """What the signature check established: the verifying key's id, or None (unsigned, allowed)."""

    key_id: str | None = None

    @property
    def verified(self) -> bool:
        return self.key_id is not None


def check_signature(policy: TrustPolicy, manifest_bytes: bytes, signature_bytes: bytes | None,
                    bundle: str) -> Verdict:
    """Verify ``manifest.sig`` over the manifest's exact bytes under ``policy``; refuse or allow (loudly)."""
    if signature_bytes is None:
        if not policy.allow_unsigned:
            raise UnsignedBundleError(
                f"bundle {bundle} is not signed (no {SIGNATURE_NAME} beside {MANIFEST_NAME})",
                expected="a bundle signed by a key in this device's trust store",
                fix="publish it with 'edgemed build --sign-key KEY'; for development only, run with "
                "--allow-unsigned (TrustPolicy.development())",
            )
        logger.warning("UNSIGNED BUNDLE %s loaded under the development allowance (--allow-unsigned): its origin "
                       "is not verified. %s", bundle, _NOT_FOR_PATIENTS)
        return Verdict()
    signature = SignatureFile.parse(signature_bytes)  # malformed: refused even under the allowance
    if signature.key_id in policy.revoked:
        raise RevokedKeyError(
            f"bundle {bundle} is signed by key {signature.key_id}, which this device's trust store lists as revoked",
            expected="a signature by a key that is trusted and not revoked",
            fix="do not use this bundle; install one signed by the key that replaced the revoked one",
        )
    trusted = policy.keys.get(signature.key_id)
    if trusted is None:
        if policy.allow_unsigned:
            logger.warning("bundle %s is signed by key %s, which this device does not trust (%s): signature NOT "
                           "VERIFIED, loaded under the development allowance (--allow-unsigned). %s", bundle,
                           signature.key_id, policy.describe(), _NOT_FOR_PATIENTS)
            return Verdict()
        raise UnknownKeyError(
            f"bundle {bundle} is signed by key {signature.key_id}, which is not trusted here ({policy.describe()})",
            expected="a signature by a key in this device's trust store",
            fix="provision the signing key's public key (trust-store/<key id>.pem) into the trust store, or "
            "install a bundle from your release build",
        )
    verify(trusted.public_key, signature, manifest_bytes)
    return Verdict(signature.key_id)


def check_release(policy: TrustPolicy, verdict: Verdict, manifest: BundleManifest, bundle: str) -> None:
    """The signed manifest names its signer and version; no rollback; a development key said loudly."""
    release = manifest.release
    if release is not None and release.key_id in policy.revoked:  # unsigned under the allowance, yet it claims one
        raise RevokedKeyError(
            f"bundle {bundle}'s manifest names signing key {release.key_id}, which this device's trust store lists "
            "as revoked", expected="a bundle released under a key that is not revoked",
            fix="do not use this bundle; install one signed by the key that replaced the revoked one",
        )
    if verdict.verified:
        if release is None:
            raise ManifestError(
                f"the signed manifest of bundle {bundle} has no release section (bundle_version, signing key)",
                expected="release.bundle_version and release.key_id in every signed bundle",
                fix="publish the bundle with 'edgemed build --sign-key KEY', which writes and signs both",
                field="release",
                found="null",
            )
        if release.key_id != verdict.key_id:
            raise BadSignatureError(
                f"bundle {bundle}'s manifest names signing key {release.key_id} but {SIGNATURE_NAME} is by "
                f"{verdict.key_id}",
                expected="the signature of the key the manifest names",
                fix="do not use this bundle; publish it again with 'edgemed build --sign-key KEY'",
            )
        recorded = policy.keys[verdict.key_id].purpose
        if recorded is not None and release.key_purpose is not recorded:
            raise KeyPurposeError(
                f"bundle {bundle}'s signed manifest says its key {release.key_id} is a "
                f"{release.key_purpose.value if release.key_purpose else 'unstated'} key; this device's trust store "
                f"records it as a {recorded.value} key",
                expected=f"release.key_purpose {recorded.value}, as the trust store records for {release.key_id}",
                fix="do not use this bundle; a development key cannot release for patients (sign with the "
                "production key)",
            )
        if release.key_purpose is KeyPurpose.DEVELOPMENT:
            logger.warning("bundle %s is signed with a DEVELOPMENT key (%s, such as make build's). %s", bundle,
                           release.key_id, _NOT_FOR_PATIENTS)
    elif release is not None and release.key_id in policy.keys:  # unverified (the allowance), yet it claims a
        raise BadSignatureError(                                   # signer this device trusts
            f"bundle {bundle}'s manifest names signing key {release.key_id}, which this device trusts, but "
            f"{SIGNATURE_NAME} is missing or by another key",
            expected=f"a {SIGNATURE_NAME} by {release.key_id} that verifies over {MANIFEST_NAME}",
            fix="do not use this bundle (its manifest may have been edited after signing); copy it again from "
            "its release build",
        )
    if policy.version_state is None:
        return
    if release is None:
        logger.warning("bundle %s carries no bundle_version (published before versions existed): rollback is "
                       "not checked", bundle)
        return
    VersionState(policy.version_state).check(manifest.scenario, release.bundle_version)


def record_run(policy: TrustPolicy, verdict: Verdict, manifest: BundleManifest, manifest_sha256: str) -> None:
    """Remember a verified bundle's version as run (never an unverified one's: it is not authenticated)."""
    if policy.version_state is None or not verdict.verified or manifest.release is None:
        return
    VersionState(policy.version_state).record(manifest.scenario, manifest.release.bundle_version, manifest_sha256)
