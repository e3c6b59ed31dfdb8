"""Whether a bundle's model was validated on real data, as its signed manifest says, and what a device does about it.

The build judges each class's real, independent test evidence (``pipeline.clinical.evidence``) and writes the verdict
into the manifest (``data.provenance.evidence``: ``passed``, ``synthetic_test_data``, a one-line ``summary``);
``data.synthetic`` says whether the data were a simulation. The manifest is signed, so the verdict a device reads is
the build's.

A device gives no class from a model that was not validated on real data: ``check_real_data`` refuses such a bundle
(``UnvalidatedBundleError``, before any input is read) unless the operator allows it for development
(``--allow-unvalidated``), and then every run logs NOT VALIDATED ON REAL DATA — NOT FOR CLINICAL USE. The device
(``runtime.runner.run``) refuses only a bundle it verified by signature: one loaded unverified under the development
allowance (``--allow-unsigned``) is a development run already, and is warned the same way. A manifest that states no
verdict (an older bundle, or one written by hand) runs, and the log says its validation is not stated.

Dependency rule: the standard library and the runtime's own contract only (this package ships to the device).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from runtime.contract import MANIFEST_NAME, BundleManifest, manifest_sha256, parse_manifest
from runtime.errors import EdgemedError

logger = logging.getLogger(__name__)

MAX_REASON_CHARS = 240  # the build's summary line, as a refusal shows it


class RealDataStatus(StrEnum):
    VALIDATED = "validated on real data"
    NOT_VALIDATED = "NOT validated on real data"
    NOT_STATED = "real-data validation not stated"


class UnvalidatedBundleError(EdgemedError):
    """The bundle's manifest says its model was not validated on real data: the device judges no sample with it."""


@dataclass(frozen=True)
class RealDataValidation:
    status: RealDataStatus
    reason: str  # why, in one line (the build's own words where it wrote them)

    @classmethod
    def of(cls, manifest: BundleManifest) -> RealDataValidation:
        """The verdict ``manifest`` carries: synthetic data, synthetic test data or a failed evidence verdict is
        NOT_VALIDATED; a passed verdict on real test data is VALIDATED; no verdict is NOT_STATED."""
        provenance: Mapping[str, Any] = manifest.data.provenance or {}
        evidence = provenance.get("evidence")
        if manifest.data.synthetic is True:
            return cls(RealDataStatus.NOT_VALIDATED, "its training and test data are synthetic (a simulation)")
        if not isinstance(evidence, Mapping) or not isinstance(evidence.get("passed"), bool):
            return cls(RealDataStatus.NOT_STATED, "its manifest carries no evidence verdict (an older or hand-made "
                                                  "bundle)")
        if evidence.get("synthetic_test_data") is True:
            return cls(RealDataStatus.NOT_VALIDATED, "its test data are synthetic")
        if not evidence["passed"]:
            summary = evidence.get("summary")
            told = summary.strip()[:MAX_REASON_CHARS] if isinstance(summary, str) and summary.strip() else ""
            return cls(RealDataStatus.NOT_VALIDATED, "its real test evidence fell short" + (f" ({told})" if told
                                                                                             else ""))
        return cls(RealDataStatus.VALIDATED, "every class passed the build's real-data evidence rule")


def check_real_data(manifest: BundleManifest, name: str, allow_unvalidated: bool) -> RealDataValidation:
    """Refuse a bundle whose manifest says it was not validated on real data (``UnvalidatedBundleError``), unless
    ``allow_unvalidated`` (development: a WARNING every run); log what was found either way."""
    verdict = RealDataValidation.of(manifest)
    if verdict.status is RealDataStatus.NOT_VALIDATED:
        if not allow_unvalidated:
            raise UnvalidatedBundleError(
                f"bundle {name} was NOT validated on real data: {verdict.reason}; its classes are not for patients",
                expected="a bundle whose build passed the real-data evidence rule (the report's evidence table)",
                fix="build and publish a validated bundle; only for development, pass --allow-unvalidated",
            )
        logger.warning("bundle %s: NOT VALIDATED ON REAL DATA — NOT FOR CLINICAL USE (%s); run under the development "
                       "allowance (--allow-unvalidated)", name, verdict.reason)
    elif verdict.status is RealDataStatus.NOT_STATED:
        logger.info("bundle %s: %s: %s", name, verdict.status.value, verdict.reason)
    return verdict


def bundle_identity(folder: Path) -> dict[str, Any]:
    """Which bundle a figure or a run used (id, shipped variant, manifest and model sha256) and what its signed
    manifest says about real data (``real_data``: the status, ``real_data_reason``: why), read from the manifest alone
    (no model session); ``{"unreadable": why}`` when the manifest cannot be read."""
    try:
        raw = (Path(folder) / MANIFEST_NAME).read_bytes()
        manifest = parse_manifest(raw)
    except (OSError, EdgemedError) as error:
        return {"unreadable": str(getattr(error, "what", error))}
    sha256 = manifest_sha256(raw)
    verdict = RealDataValidation.of(manifest)
    return {"bundle_id": manifest.bundle_id(sha256), "variant": manifest.variant, "manifest_sha256": sha256,
            "model_sha256": manifest.model_sha256, "real_data": verdict.status.value,
            "real_data_reason": verdict.reason}
