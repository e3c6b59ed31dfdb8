"""Signing keys (``edgemed keys generate``) and signing a bundle as it is published.

A key folder, as ``generate_keys`` writes it::

    <folder>/signing-key.pem            the Ed25519 private key, PKCS#8 PEM, mode 0600 (never leaves the build)
    <folder>/key.json                   its id, algorithm and purpose (development or production)
    <folder>/trust-store/<key id>.pem   the public key: copy this folder's files into a device's trust store

Where a private key may be written: never inside a bundle folder (it would ship), and inside a git
repository only at a git-ignored path (it would be committed otherwise); ``make build``'s development
key lives in ``.edgemed-keys/dev/``, which ``.gitignore`` lists. An existing key is never overwritten
without ``force``: the bundles it signed and the devices that trust it depend on it.

At publish, ``stamp_release`` writes the bundle's ``release`` section (its monotonic
``bundle_version`` and the key's id and purpose) into the published copy's manifest.json and signs
those exact bytes into ``manifest.sig``. The build's cached artefacts stay unsigned, so another key
(or none) never rebuilds a stage.

All cryptography is the ``cryptography`` package's Ed25519.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import UsageError
from runtime.contract import MANIFEST_NAME, MODEL_NAME, BundleManifest, KeyPurpose, Release, parse_manifest
from runtime.contract.release import KEY_ID_PATTERN
from runtime.trust import SIGNATURE_NAME, SignatureFile, TrustedKey, TrustPolicy, check_signature, key_id
from runtime.trust.policy import PURPOSE_LINE, REVOKED_NAME, read_revoked
from runtime.trust.signature import raw_public_bytes

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

logger = logging.getLogger(__name__)

PRIVATE_KEY_NAME = "signing-key.pem"
KEY_INFO_NAME = "key.json"
TRUST_STORE_FOLDER = "trust-store"
DEVELOPMENT_KEY_FOLDER = Path(".edgemed-keys") / "dev"  # make build's key (git-ignored)
MAX_KEY_FILE_BYTES = 16384


class KeyLocationError(UsageError):
    """A private key would be written where it could ship or be committed, or where it cannot be written."""


class KeyExistsError(UsageError):
    """A key is already there and overwriting it was not asked for."""


class SigningKeyError(UsageError):
    """The signing key given cannot be used (missing, unreadable, readable by others, without its key.json)."""


@dataclass(frozen=True)
class KeyFiles:
    """What ``generate_keys`` wrote."""

    key_id: str
    purpose: KeyPurpose
    private_key: Path
    info: Path
    public_key: Path


# -- where a private key may live ----------------------------------------------------------------------------


def _bundle_folder_above(path: Path) -> Path | None:
    """The nearest folder at or above ``path`` that holds a bundle (manifest.json with model.onnx or manifest.sig)."""
    markers = (MODEL_NAME, SIGNATURE_NAME)
    for folder in [path, *path.parents]:
        if (folder / MANIFEST_NAME).is_file() and any((folder / name).exists() for name in markers):
            return folder
    return None


def _repository_above(path: Path) -> Path | None:
    return next((folder for folder in [path, *path.parents] if (folder / ".git").exists()), None)


def check_key_location(private_key: Path) -> None:
    """``KeyLocationError`` when ``private_key`` would sit in a bundle or at a path git would commit."""
    private_key = Path(os.path.realpath(private_key))  # where it would really be written
    bundle = _bundle_folder_above(private_key.parent)
    if bundle is not None:
        raise KeyLocationError(
            f"{private_key} is inside the bundle folder {bundle}",
            expected="a private key outside every bundle (a bundle is copied to devices)",
            fix=f"write the key elsewhere, e.g. --out {DEVELOPMENT_KEY_FOLDER} in the repository (git-ignored)",
        )
    repository = _repository_above(private_key.parent)
    if repository is None:
        return
    try:
        result = subprocess.run(["git", "-C", str(repository), "check-ignore", "-q", str(private_key)],
                                capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as error:
        raise KeyLocationError(
            f"{private_key} is inside the git repository {repository} and git cannot say whether it is ignored "
            f"({error})",
            expected="a private key outside the repository, or at a git-ignored path",
            fix="install git, or write the key outside the repository",
        ) from error
    if result.returncode != 0:
        why = "is not git-ignored" if result.returncode == 1 else f"cannot be checked ({result.stderr.strip()})"
        raise KeyLocationError(
            f"{private_key} is inside the git repository {repository} and {why}: it could be committed",
            expected="a private key outside the repository, or at a git-ignored path",
            fix=f"use --out {DEVELOPMENT_KEY_FOLDER} (git-ignored) or a folder outside the repository",
        )


# -- generating ----------------------------------------------------------------------------------------------


def _write_private(path: Path, data: bytes, force: bool) -> None:
    """Write ``data`` readable by its owner only (0600), never through an existing file or link; with ``force``
    a new file replaces the old one in one rename."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    target = path.with_name(f".{path.name}.{os.getpid()}.new") if force else path
    if force:
        target.unlink(missing_ok=True)
    descriptor = os.open(target, flags, 0o600)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(descriptor, 0o600)  # whatever the umask
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    if force:
        os.replace(target, path)


def generate_keys(folder: Path | str, purpose: KeyPurpose, *, force: bool = False) -> KeyFiles:
    """A new Ed25519 signing key in ``folder``: private key (0600), ``key.json`` and the public key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    folder = Path(os.path.abspath(folder))
    private_path, info_path = folder / PRIVATE_KEY_NAME, folder / KEY_INFO_NAME
    check_key_location(private_path)
    if (private_path.exists() or private_path.is_symlink()) and not force:
        raise KeyExistsError(
            f"{private_path} already exists",
            expected="an empty key folder",
            fix="keep the existing key (bundles it signed and devices that trust it depend on it), or pass "
            "--force to replace it",
        )
    store = folder / TRUST_STORE_FOLDER
    if store.exists() and not store.is_dir():  # checked before anything is written: no half-made key folder
        raise KeyLocationError(f"{store} is a file, where the key's trust store folder goes",
                               expected=f"no file named {TRUST_STORE_FOLDER} in the key folder",
                               fix="move that file away, or choose another --out folder")
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise KeyLocationError(f"the key folder {folder} cannot be made ({error.strerror or error})",
                               expected="a folder that exists or can be created",
                               fix="choose another --out folder") from None
    private_key = Ed25519PrivateKey.generate()
    identifier = key_id(raw_public_bytes(private_key.public_key()))
    _write_private(private_path, private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()), force)
    if force and store.is_dir():
        shutil.rmtree(store)  # the replaced key's public key must not stay trusted by accident
    store.mkdir(exist_ok=True)
    public_path = store / f"{identifier}.pem"
    # the purpose before the PEM: a device's trust store then knows it, whatever a manifest signed with it claims
    public_path.write_bytes(f"{PURPOSE_LINE} {purpose.value}\n".encode() + private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    info = {"key_id": identifier, "algorithm": "ed25519", "purpose": purpose.value,
            "created_at": datetime.now(UTC).isoformat(), "public_key": f"{TRUST_STORE_FOLDER}/{public_path.name}"}
    info_path.write_text(json.dumps(info, indent=2) + "\n")
    logger.info("generated %s signing key %s in %s", purpose.value, identifier, folder)
    return KeyFiles(identifier, purpose, private_path, info_path, public_path)


def revoke_key(store: Path | str, identifier: str, reason: str = "") -> Path:
    """Add ``identifier`` to the trust store's ``revoked`` file (written to a temporary file, then renamed: a device
    never reads half a list); devices given the file refuse every bundle that key signed. Returns the file."""
    store = Path(store)
    if not KEY_ID_PATTERN.fullmatch(identifier):
        raise SigningKeyError(f"{identifier[:40]!r} is not a key id", expected="16 lowercase hexadecimal digits "
                              "(the name of the key's .pem in a trust store, or key.json's key_id)",
                              fix="copy the key id from 'edgemed keys generate''s output or key.json")
    if not store.is_dir():
        raise KeyLocationError(f"trust store {store} is not a folder", expected="a trust-store folder",
                               fix="pass the folder devices are provisioned from (--trust-store)")
    path = store / REVOKED_NAME
    listed = read_revoked(path)
    if identifier in listed:
        return path
    text = path.read_text(encoding="utf-8") if path.exists() else "# key ids no bundle may be signed by\n"
    note = " ".join(reason.split())[:200]
    text += f"{identifier}  # revoked {datetime.now(UTC).date().isoformat()}{': ' + note if note else ''}\n"
    temporary = path.with_name(f".{REVOKED_NAME}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
    return path


# -- signing -------------------------------------------------------------------------------------------------


def _key_error(path: Path, what: str, fix: str) -> SigningKeyError:
    return SigningKeyError(f"signing key {path} {what}",
                           expected=f"a private key written by 'edgemed keys generate' (with its {KEY_INFO_NAME})",
                           fix=fix)


@dataclass(frozen=True)
class SigningKey:
    """A loaded Ed25519 private key, its id and its purpose."""

    private_key: Ed25519PrivateKey
    key_id: str
    purpose: KeyPurpose
    path: Path

    @classmethod
    def load(cls, path: Path | str) -> SigningKey:
        """The key at ``path`` (PEM) with the purpose from ``key.json`` beside it; refused when others can read it."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        path = Path(path)
        generate = "generate one with 'edgemed keys generate --purpose production --out DIR'"
        try:
            mode = path.stat().st_mode
            data = path.read_bytes()[:MAX_KEY_FILE_BYTES]
        except OSError as error:
            raise _key_error(path, f"cannot be read ({error.strerror})", generate) from error
        if os.name == "posix" and mode & 0o077:
            raise _key_error(path, f"is readable by others (mode {oct(mode & 0o777)})", f"chmod 600 {path}")
        try:
            private_key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as error:
            raise _key_error(path, f"is not an unencrypted PEM private key ({error})", generate) from error
        if not isinstance(private_key, Ed25519PrivateKey):
            raise _key_error(path, f"is a {type(private_key).__name__}, not Ed25519", generate)
        identifier = key_id(raw_public_bytes(private_key.public_key()))
        info_path = path.with_name(KEY_INFO_NAME)
        try:
            info = json.loads(info_path.read_text())
            purpose = KeyPurpose(info["purpose"])
            recorded = info["key_id"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise _key_error(path, f"has no readable {info_path.name} beside it ({error})", generate) from error
        if recorded != identifier:
            raise _key_error(path, f"has id {identifier} but {info_path.name} describes key {recorded}",
                             "keep each key with its own key.json (generate them together)")
        return cls(private_key, identifier, purpose, path)

    def sign(self, data: bytes) -> SignatureFile:
        return SignatureFile(self.key_id, self.private_key.sign(data))

    def trust_policy(self) -> TrustPolicy:
        """A policy trusting this key alone (the publish checks its own signature with the device's code)."""
        return TrustPolicy({self.key_id: TrustedKey(self.key_id, self.private_key.public_key(), self.path,
                                                    self.purpose)})


def next_bundle_version(previous: int | None, now: float | None = None) -> int:
    """The UTC publish time in whole seconds, and always above the version it replaces.

    Time needs no shared counter, so builds on several machines (or after the cache was wiped) still
    increase; ``previous + 1`` covers two publishes within one second and a clock that went back.
    """
    stamp = int(time.time() if now is None else now)
    return stamp if previous is None else max(stamp, previous + 1)


def stamp_release(folder: Path, version: int, key: SigningKey | None) -> BundleManifest:
    """Write ``release`` into ``folder``'s manifest.json and, with a key, sign those exact bytes into manifest.sig."""
    manifest = parse_manifest((folder / MANIFEST_NAME).read_bytes())
    release = Release(version, datetime.now(UTC).isoformat(timespec="seconds"),
                      key.key_id if key else None, key.purpose if key else None)
    stamped = dataclasses.replace(manifest, release=release)
    raw = json.dumps(stamped.to_dict(), indent=2).encode("utf-8")
    (folder / MANIFEST_NAME).write_bytes(raw)
    (folder / SIGNATURE_NAME).unlink(missing_ok=True)
    if key is not None:
        signature = key.sign(raw)
        (folder / SIGNATURE_NAME).write_bytes(signature.to_bytes())
        check_signature(key.trust_policy(), raw, signature.to_bytes(), str(folder))  # the device's own check
    return stamped
