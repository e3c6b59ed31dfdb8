"""Device trust: signed bundles, provisioned public keys, rollback protection, and safe reads.

``policy`` (what a device trusts and the checks), ``signature`` (the Ed25519 signature format and
key ids), ``versions`` (the newest bundle version run per bundle), ``folder`` (reading a bundle
folder once: regular files only, no links, no unlisted model files), ``errors`` (one class per
refusal). ``runtime.bundle.load_bundle`` runs them in order before any ONNX Runtime session.

Dependency rule: the standard library, ``runtime.contract``, ``runtime.errors``, ``runtime.hashing`` and the
``cryptography`` package (imported when a signature or key is first used).
"""

from runtime.trust.errors import (
    BadSignatureError,
    KeyPurposeError,
    LinkInBundleError,
    MissingFileError,
    RevokedKeyError,
    RollbackError,
    TamperedFileError,
    TruncatedFileError,
    TrustError,
    TrustStoreError,
    UnknownKeyError,
    UnlistedModelFileError,
    UnreadableFileError,
    UnsignedBundleError,
    VerificationUnavailableError,
)
from runtime.trust.folder import MODEL_SUFFIXES, BundleFolder
from runtime.trust.policy import TrustedKey, TrustPolicy, Verdict, check_release, check_signature, record_run
from runtime.trust.signature import ALGORITHM, SIGNATURE_NAME, SignatureFile, key_id
from runtime.trust.versions import VERSION_STATE_NAME, VersionState

__all__ = [
    "ALGORITHM",
    "MODEL_SUFFIXES",
    "SIGNATURE_NAME",
    "VERSION_STATE_NAME",
    "BadSignatureError",
    "BundleFolder",
    "KeyPurposeError",
    "LinkInBundleError",
    "MissingFileError",
    "RevokedKeyError",
    "RollbackError",
    "SignatureFile",
    "TamperedFileError",
    "TruncatedFileError",
    "TrustError",
    "TrustPolicy",
    "TrustStoreError",
    "TrustedKey",
    "UnknownKeyError",
    "UnlistedModelFileError",
    "UnreadableFileError",
    "UnsignedBundleError",
    "Verdict",
    "VerificationUnavailableError",
    "VersionState",
    "check_release",
    "check_signature",
    "key_id",
    "record_run",
]
