"""What publishing adds to a bundle: its monotonic version and the key that signed it.

The build's cached bundle carries ``release: null``; ``edgemed build`` stamps the published copy
(``pipeline/build/signing.py``) before it signs the manifest's bytes, so the version and the key's
purpose are covered by the signature. The device refuses a bundle whose ``bundle_version`` is older
than the newest it has run (``runtime/trust``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from runtime.contract.errors import invalid, show
from runtime.contract.fields import Fields, is_integer

KEY_ID_PATTERN = re.compile(r"[0-9a-f]{16}")  # the first 16 hex digits of sha256(raw Ed25519 public key)


class KeyPurpose(StrEnum):
    """What a signing key is for; recorded when it is generated and in every bundle it signs."""

    DEVELOPMENT = "development"  # `make build`'s key on a developer's machine: never for patients
    PRODUCTION = "production"  # a release key, kept off developer machines


@dataclass(frozen=True)
class Release:
    """The published bundle's version and signing key (``key_id``/``key_purpose`` null: published unsigned)."""

    bundle_version: int  # ≥ 1; strictly increases with every publish of one bundle name (UTC seconds, see build)
    published_at: str  # ISO 8601
    key_id: str | None = None
    key_purpose: KeyPurpose | None = None

    def __post_init__(self) -> None:
        if not is_integer(self.bundle_version) or self.bundle_version < 1:
            raise invalid("bundle_version", show(self.bundle_version), "an integer ≥ 1")
        try:
            datetime.fromisoformat(self.published_at)
        except (TypeError, ValueError):
            raise invalid("published_at", show(self.published_at), "an ISO 8601 time") from None
        if self.key_id is not None and not (isinstance(self.key_id, str) and KEY_ID_PATTERN.fullmatch(self.key_id)):
            raise invalid("key_id", show(self.key_id), "16 lowercase hex digits or null")
        if self.key_purpose is not None:
            if self.key_purpose not in tuple(KeyPurpose):
                raise invalid("key_purpose", show(self.key_purpose), f"one of {', '.join(KeyPurpose)} or null")
            object.__setattr__(self, "key_purpose", KeyPurpose(self.key_purpose))
        if (self.key_id is None) != (self.key_purpose is None):
            raise invalid("key_purpose", show(self.key_purpose), "set together with key_id (both null: unsigned)")

    @property
    def signed(self) -> bool:
        return self.key_id is not None

    def to_dict(self) -> dict:
        return {"bundle_version": self.bundle_version, "published_at": self.published_at, "key_id": self.key_id,
                "key_purpose": None if self.key_purpose is None else self.key_purpose.value}

    @classmethod
    def from_fields(cls, fields: Fields) -> Release:
        return cls(fields.integer("bundle_version", minimum=1), fields.text("published_at"),
                   fields.text("key_id", optional=True), fields.text("key_purpose", optional=True))
