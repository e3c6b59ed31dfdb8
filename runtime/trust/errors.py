"""Why a bundle was refused by the device's trust checks, or its folder by the file checks.

Every class is a ``BundleError``: nothing ran, no session exists. Each refusal has its own
class so a device (and a test) can tell them apart.
"""

from __future__ import annotations

from runtime.contract import BundleError
from runtime.errors import EdgemedError, IntegrityError


class TrustError(BundleError):
    """The bundle is not trusted by this device (the base of the signature and version refusals)."""


class UnsignedBundleError(TrustError):
    """The bundle has no signature (or none this device can check) and unsigned bundles are not allowed."""


class BadSignatureError(TrustError, IntegrityError):
    """The signature does not verify over manifest.json with the key it names, or is malformed."""


class UnknownKeyError(TrustError):
    """The bundle is signed by a key that is not in this device's trust store."""


class RevokedKeyError(TrustError):
    """The bundle is signed by (or names) a key this device's trust store lists as revoked."""


class KeyPurposeError(TrustError):
    """The signed manifest claims a key purpose (production) the trust store does not record for that key."""


class RollbackError(TrustError):
    """The bundle's version is older than the newest this device has run (a downgrade)."""


class TrustStoreError(EdgemedError):
    """The trust store (public keys) or the version state cannot be used as they are."""


class VerificationUnavailableError(EdgemedError):
    """Signatures cannot be checked here: the ``cryptography`` package is missing."""


class MissingFileError(BundleError):
    """A file the manifest lists (or the manifest itself, or the folder) is missing."""


class TruncatedFileError(BundleError):
    """A file's size differs from the size the manifest records (usually a cut-off copy)."""


class TamperedFileError(BundleError, IntegrityError):
    """A file's sha256 differs from the one the manifest records."""


class UnlistedModelFileError(BundleError):
    """A model file is in the bundle tree (any subfolder) without being listed (and hashed) in the manifest."""


class UnreadableFileError(BundleError):
    """A bundle file or folder exists but cannot be read (permissions, an I/O error, a name the OS cannot hold)."""


class LinkInBundleError(BundleError):
    """A symbolic link (or another non-regular file) is inside the bundle folder, where only plain files belong."""
