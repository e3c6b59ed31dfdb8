"""What the collector knows about bundles: each published bundle's labels and reference-profile features.

``BundleVocabularies(folder)`` reads every ``<folder>/*/manifest.json`` (and its ``reference_profile.json``)
once, and answers ``for_record(record)``: the ``Vocabulary`` a record of that bundle must keep to (looked up
by ``bundle_sha256``, then ``bundle_id``), or the fixed ``Vocabulary()`` for a bundle it does not know.
Nothing here imports Streamlit; a missing or unreadable folder just means "no bundle known".
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from runtime.telemetry.records import Vocabulary

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
REFERENCE_PROFILE = "reference_profile.json"


def vocabulary_from_bundle(folder: Path) -> tuple[str, str, Vocabulary] | None:
    """(manifest sha256, bundle id, vocabulary) of the bundle in ``folder``, or None when it cannot be read."""
    try:
        data = (folder / MANIFEST).read_bytes()
        manifest = json.loads(data)
        profile = json.loads((folder / REFERENCE_PROFILE).read_text()) if (folder / REFERENCE_PROFILE).is_file() \
            else {}
    except (OSError, ValueError) as error:
        logger.info("skipping %s for the collector's vocabulary: %s", folder, type(error).__name__)
        return None
    if not isinstance(manifest, dict) or not isinstance(profile, dict):
        return None
    digest = hashlib.sha256(data).hexdigest()
    lineage = manifest.get("lineage") if isinstance(manifest.get("lineage"), dict) else {}
    bundle_id = lineage.get("bundle") or digest[:12]
    output = manifest.get("output") if isinstance(manifest.get("output"), dict) else {}
    labels = [label for label in output.get("labels", []) if isinstance(label, str)]
    decision = output.get("decision") if isinstance(output.get("decision"), dict) else {}
    units = [unit for unit in decision.get("units") or [] if isinstance(unit, str)]
    features = [name for name in profile.get("features", []) if isinstance(name, str)]
    if not features:  # no reference profile: the manifest's own input feature names (a tabular bundle's columns)
        inputs = manifest.get("inputs") if isinstance(manifest.get("inputs"), list) else []
        features = [name for spec in inputs if isinstance(spec, dict)
                    for name in (spec.get("feature_names") or []) if isinstance(name, str)]
    vocabulary = Vocabulary(
        feature_names=frozenset(features) | Vocabulary().feature_names,
        labels=frozenset(labels) if labels else None,
        units=frozenset(units) if units else None,
    )
    return digest, str(bundle_id), vocabulary


class BundleVocabularies:
    """The vocabularies of the bundles under a folder, by manifest sha256 and by bundle id."""

    def __init__(self, folder: Path | str | None = None) -> None:
        self.by_sha256: dict[str, Vocabulary] = {}
        self.by_id: dict[str, Vocabulary] = {}
        root = Path(folder) if folder is not None else None
        if root is not None and root.is_dir():
            for manifest in sorted(root.glob(f"*/{MANIFEST}")):
                found = vocabulary_from_bundle(manifest.parent)
                if found is not None:
                    digest, bundle_id, vocabulary = found
                    self.by_sha256[digest] = vocabulary
                    self.by_id[bundle_id] = vocabulary
        logger.info("collector vocabulary: %d known bundle(s)", len(self.by_sha256))

    def for_record(self, record: Any) -> Vocabulary:
        if isinstance(record, dict):
            known = self.by_sha256.get(str(record.get("bundle_sha256")))
            known = known or self.by_id.get(str(record.get("bundle_id")))
            if known is not None:
                return known
        return Vocabulary()
