"""The signature format: Ed25519 over the exact bytes of manifest.json, stored beside it.

``manifest.sig`` is a small JSON object::

    {"format": "edgemed-manifest-signature/1", "algorithm": "ed25519",
     "key_id": "<16 hex>", "signature": "<base64 of 64 bytes>"}

The manifest lists every other file with its sha256 and size, so one signature covers the whole
bundle. A key's id is the first 16 hex digits of the sha256 of its raw 32-byte public key; it tells
the device which trusted key to verify with (it is not itself a secret or a proof). The check can be
reproduced without edgemed: ``openssl pkeyutl -verify -pubin -inkey KEY.pem -rawin -in manifest.json
-sigfile SIG.bin`` with the base64-decoded signature.

All cryptography is the ``cryptography`` package's; it is imported when a key or signature is
first used, so a device without it still runs unsigned bundles under the development allowance.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runtime.contract.release import KEY_ID_PATTERN
from runtime.trust.errors import BadSignatureError, TrustStoreError, VerificationUnavailableError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

SIGNATURE_NAME = "manifest.sig"
SIGNATURE_FORMAT = "edgemed-manifest-signature/1"
ALGORITHM = "ed25519"
SIGNATURE_BYTES = 64
MAX_SIGNATURE_FILE_BYTES = 4096  # a signature file is ~200 bytes; anything far larger is not one
MAX_KEY_FILE_BYTES = 16384
_FIELDS = ("format", "algorithm", "key_id", "signature")
_NOT_SIGNED_HERE = "do not use this bundle; publish it again with 'edgemed build --sign-key KEY' from a trusted build"


def _cryptography():
    """The Ed25519 and PEM parts of ``cryptography``, or a typed error naming the package."""
    try:
        from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError as error:
        raise VerificationUnavailableError(
            f"bundle signatures cannot be checked: the cryptography package is not installed ({error})",
            expected="cryptography (a dependency of edgemed's runtime)",
            fix="pip install 'cryptography>=42' on the device",
        ) from error
    return ed25519, serialization, InvalidSignature, UnsupportedAlgorithm


def key_id(raw_public_key: bytes) -> str:
    """A key's id: the first 16 hex digits of sha256 over its raw 32-byte Ed25519 public key."""
    return hashlib.sha256(raw_public_key).hexdigest()[:16]


def raw_public_bytes(public_key: Ed25519PublicKey) -> bytes:
    _, serialization, _, _ = _cryptography()
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_from_pem(data: bytes, source: str) -> Ed25519PublicKey:
    """The Ed25519 public key in a PEM file's bytes; ``TrustStoreError`` for anything else (a private key too)."""
    ed25519, serialization, _, unsupported = _cryptography()
    if b"PRIVATE KEY" in data:
        raise TrustStoreError(
            f"{source} holds a private key",
            expected="only public keys in a trust store",
            fix="if this folder is the signing key's own folder, pass its trust-store/ subfolder instead ('edgemed "
            "keys generate' writes the public key there); otherwise move the private key out of the trust store to "
            "the build machine — do not delete it: it signs your bundles",
        )
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, unsupported) as error:
        raise TrustStoreError(
            f"{source} is not a readable PEM public key ({error})",
            expected="an Ed25519 public key in PEM (SubjectPublicKeyInfo)",
            fix="copy the public key file written by 'edgemed keys generate' again",
        ) from error
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise TrustStoreError(
            f"{source} holds a {type(key).__name__}, not an Ed25519 public key",
            expected="an Ed25519 public key",
            fix="generate the signing key with 'edgemed keys generate'",
        )
    return key


@dataclass(frozen=True)
class SignatureFile:
    """The parsed ``manifest.sig``."""

    key_id: str
    signature: bytes  # 64 bytes
    algorithm: str = ALGORITHM

    def to_bytes(self) -> bytes:
        document = {"format": SIGNATURE_FORMAT, "algorithm": self.algorithm, "key_id": self.key_id,
                    "signature": base64.b64encode(self.signature).decode("ascii")}
        return (json.dumps(document, indent=2) + "\n").encode("utf-8")

    @classmethod
    def parse(cls, raw: bytes) -> SignatureFile:
        """``manifest.sig``'s bytes → its fields; ``BadSignatureError`` naming what is wrong."""

        def refuse(found: str) -> BadSignatureError:
            return BadSignatureError(f"{SIGNATURE_NAME} {found}", expected=(
                f"a JSON object with {', '.join(_FIELDS)} (algorithm {ALGORITHM}, a {SIGNATURE_BYTES}-byte "
                "base64 signature)"), fix=_NOT_SIGNED_HERE)

        if len(raw) > MAX_SIGNATURE_FILE_BYTES:
            raise refuse(f"is {len(raw)} bytes long")
        try:
            document = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError):
            raise refuse("does not parse as JSON") from None
        if not isinstance(document, dict) or sorted(document) != sorted(_FIELDS):
            raise refuse(f"has the fields {sorted(document) if isinstance(document, dict) else type(document)}")
        if document["format"] != SIGNATURE_FORMAT or document["algorithm"] != ALGORITHM:
            raise refuse(f"is format {document['format']!r} with algorithm {document['algorithm']!r}")
        identifier = document["key_id"]
        if not isinstance(identifier, str) or not KEY_ID_PATTERN.fullmatch(identifier):
            raise refuse(f"names the key id {identifier!r}")
        try:
            signature = base64.b64decode(str(document["signature"]), validate=True)
        except (binascii.Error, ValueError):
            raise refuse("holds a signature that is not base64") from None
        if len(signature) != SIGNATURE_BYTES:
            raise refuse(f"holds a {len(signature)}-byte signature")
        return cls(identifier, signature)


def verify(public_key: Ed25519PublicKey, signature: SignatureFile, manifest_bytes: bytes) -> None:
    """``BadSignatureError`` unless ``signature`` is ``public_key``'s Ed25519 signature of exactly these bytes."""
    _, _, invalid_signature, _ = _cryptography()
    try:
        public_key.verify(signature.signature, manifest_bytes)
    except invalid_signature:
        raise BadSignatureError(
            f"the signature in {SIGNATURE_NAME} does not match manifest.json (key id {signature.key_id})",
            expected="manifest.json exactly as it was signed when the bundle was published",
            fix=_NOT_SIGNED_HERE,
        ) from None
