"""The bundle manifest, schema 2: every field a device or the dashboard reads, typed and validated.

``BundleManifest.from_dict`` refuses anything it cannot use with a ``ManifestError`` naming the
field; ``to_dict`` writes what ``from_dict`` reads. The free-form parts (each variant's metrics, the
training history, the export's parity numbers, the machine the choice was measured on) stay plain
JSON objects: they are shown to people, never decided on.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from runtime.contract.errors import REBUILD, ManifestError, UnsupportedSchemaError, invalid, show, within
from runtime.contract.fields import Fields, is_integer, json_object
from runtime.contract.inputs import InputSpec
from runtime.contract.outputs import OutputSpec
from runtime.contract.release import Release
from runtime.contract.sections import DataSummary, ExportSummary, FileEntry, Preprocessing, Selection, is_text

SCHEMA_VERSION = 2  # 2: typed inputs (several), output with a task kind and its decision rule
SUPPORTED_SCHEMA_VERSIONS = frozenset({SCHEMA_VERSION})
MANIFEST_NAME = "manifest.json"
MODEL_NAME = "model.onnx"
PROFILE_NAME = "reference_profile.json"


def _plain_file_name(name: object) -> bool:
    return is_text(name) and name not in (".", "..", MANIFEST_NAME) and not {"/", "\\"} & set(name)


def _strings(value: object, field_name: str, expected: str) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(is_text(k) and is_text(v) for k, v in value.items()):
        raise invalid(field_name, show(value), expected)
    return dict(value)


@dataclass(frozen=True)
class BundleManifest:
    """Everything a bundle declares about itself (``manifest.json``, schema 2)."""

    scenario: str  # the scenario's or user model's name
    description: str
    inputs: tuple[InputSpec, ...]  # one per graph input, distinct names
    output: OutputSpec
    preprocessing: Preprocessing
    variant: str  # the shipped variant (a key of ``variants``)
    selection: Selection
    variants: dict[str, Any]  # free-form: variant → size, latency, metrics with CIs, gate verdict
    export: ExportSummary
    training: dict[str, Any]  # free-form: epochs, history, or who trained it
    data: DataSummary
    lineage: dict[str, str]  # stage → artefact id; "bundle" is the bundle's own id
    files: dict[str, FileEntry]  # every file beside the manifest; model.onnx among them
    tool_versions: dict[str, str]
    created_at: str  # ISO 8601
    schema_version: int = SCHEMA_VERSION
    release: Release | None = None  # set when published (version, signing key); null in the build's cache
    # free-form: the recording-level validation of every variant through the device stream (per record, gross,
    # healthy recordings, gate verdicts), for scenarios validated on held-out recordings; None for the others
    recording_validation: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        check_schema_version(self.schema_version)
        for name in ("scenario", "variant", "created_at"):
            if not is_text(getattr(self, name)):
                raise invalid(name, show(getattr(self, name)), "a non-empty string")
        if not isinstance(self.description, str):
            raise invalid("description", show(self.description), "a string")
        object.__setattr__(self, "inputs", tuple(self.inputs))
        names = [spec.name for spec in self.inputs]
        if not names or len(set(names)) < len(names):
            raise invalid("inputs", show(names), "at least one input, with distinct names")
        declared = {tuple(sorted(spec.leads)) for spec in self.inputs if spec.leads}
        if len(declared) > 1:  # a recording is one lead: inputs derived from it cannot be validated on different ones
            raise invalid("inputs[].leads", show([list(leads) for leads in sorted(declared)]),
                          "the same leads on every input that declares them")
        try:
            datetime.fromisoformat(self.created_at)
        except ValueError:
            raise invalid("created_at", show(self.created_at), "an ISO 8601 time") from None
        variants = json_object(self.variants, "variants")
        for name, summary in variants.items():
            if not isinstance(summary, dict):
                raise invalid(f"variants.{name}", show(summary), "a JSON object")
        if self.variant not in variants:
            raise invalid("variant", show(self.variant), f"one of the listed variants ({', '.join(variants)})")
        object.__setattr__(self, "variants", variants)
        object.__setattr__(self, "training", json_object(self.training, "training"))
        object.__setattr__(self, "lineage", _strings(self.lineage, "lineage", "stage → artefact id (strings)"))
        object.__setattr__(self, "tool_versions", _strings(self.tool_versions, "tool_versions", "tool → version"))
        if self.release is not None and not isinstance(self.release, Release):
            raise invalid("release", show(self.release), "a Release or null")
        if self.recording_validation is not None:
            object.__setattr__(self, "recording_validation",
                               json_object(self.recording_validation, "recording_validation"))
        self._check_files()

    def _check_files(self) -> None:
        if not isinstance(self.files, Mapping) or MODEL_NAME not in self.files:
            found = f"without {MODEL_NAME}: {show(self.files)}"
            raise invalid("files", found, f"every bundle file with its sha256 and size, {MODEL_NAME} among them")
        for name, entry in self.files.items():
            if not _plain_file_name(name):
                raise invalid("files", f"the file name {show(name)}", f"plain file names (not {MANIFEST_NAME})")
            if not isinstance(entry, FileEntry):
                raise invalid(f"files.{name}", show(entry), "a FileEntry")
        object.__setattr__(self, "files", dict(self.files))

    @property
    def model_sha256(self) -> str:
        return self.files[MODEL_NAME].sha256

    def bundle_id(self, manifest_sha256: str) -> str:
        """The id telemetry names the bundle by: ``lineage.bundle`` (the build's artefact id), else the first 12
        hex digits of the manifest's sha256. The one place this is derived."""
        return self.lineage.get("bundle") or manifest_sha256[:12]

    def to_dict(self) -> dict:
        return {
            "schema_version": self.schema_version,
            "scenario": self.scenario,
            "description": self.description,
            "inputs": [spec.to_dict() for spec in self.inputs],
            "output": self.output.to_dict(),
            "preprocessing": self.preprocessing.to_dict(),
            "variant": self.variant,
            "selection": self.selection.to_dict(),
            "variants": self.variants,
            "export": self.export.to_dict(),
            "training": self.training,
            "data": self.data.to_dict(),
            "lineage": self.lineage,
            "files": {name: entry.to_dict() for name, entry in self.files.items()},
            "tool_versions": self.tool_versions,
            "created_at": self.created_at,
            "release": None if self.release is None else self.release.to_dict(),
        } | ({} if self.recording_validation is None else {"recording_validation": self.recording_validation})

    @classmethod
    def from_dict(cls, data: object) -> BundleManifest:
        """The typed manifest, or ``UnsupportedSchemaError`` / ``ManifestError`` naming the refused field."""
        if not isinstance(data, dict):
            raise ManifestError(f"manifest.json holds {show(data)}, not a JSON object",
                                expected="a manifest.json written by edgemed's bundle stage", fix=REBUILD)
        check_schema_version(data.get("schema_version"))
        fields = Fields(data)
        fields.value("schema_version")
        manifest = cls(
            scenario=fields.text("scenario"),
            description=fields.text("description", empty=True),
            inputs=fields.sections("inputs", InputSpec.from_dict),
            output=fields.section("output", OutputSpec.from_dict),
            preprocessing=fields.section("preprocessing", _closed(Preprocessing.from_fields)),
            variant=fields.text("variant"),
            selection=fields.section("selection", _closed(Selection.from_fields)),
            variants=fields.json_object("variants"),
            export=fields.section("export", _closed(ExportSummary.from_fields)),
            training=fields.json_object("training"),
            data=fields.section("data", _closed(DataSummary.from_fields)),
            lineage=fields.json_object("lineage"),
            files=_files(fields),
            tool_versions=fields.json_object("tool_versions"),
            created_at=fields.text("created_at"),
            release=fields.optional_section("release", _closed(Release.from_fields)),
            # written only when set, so manifests without it read as before
            recording_validation=fields.optional_section("recording_validation", _free_form("recording_validation")),
        )
        fields.done()
        return manifest


def _closed(parse):
    """``parse``, then refuse any key it did not read."""

    def parse_all(fields: Fields):
        parsed = parse(fields)
        fields.done()
        return parsed

    return parse_all


def _free_form(name: str):
    """A free-form JSON object section (read whole: shown to people, never decided on)."""

    def parse(fields: Fields) -> dict[str, Any]:
        return json_object(fields.whole(), name)

    return parse


def _files(fields: Fields) -> dict[str, FileEntry]:
    files = fields.value("files", "an object: file name → {sha256, bytes}")
    if not isinstance(files, dict):
        raise invalid("files", show(files), "an object: file name → {sha256, bytes}")
    entries = {}
    for name, entry in files.items():
        if not _plain_file_name(name):
            raise invalid("files", f"the file name {show(name)}", f"plain file names (not {MANIFEST_NAME})")
        with within(f"files.{name}"):
            entries[name] = _closed(FileEntry.from_fields)(Fields(entry))
    return entries


def check_schema_version(version: object) -> None:
    """``UnsupportedSchemaError`` unless this runtime reads ``version``; says which edgemed wrote it."""
    supported = sorted(SUPPORTED_SCHEMA_VERSIONS)
    if is_integer(version) and version in SUPPORTED_SCHEMA_VERSIONS:
        return
    if is_integer(version) and version < min(supported):
        raise UnsupportedSchemaError(
            f"manifest schema version {version} was written by an older edgemed; this runtime reads schema "
            f"{', '.join(map(str, supported))} (typed inputs, the output's task kind and decision rule)",
            expected=f"schema_version in {supported}",
            fix="rebuild the bundle with 'edgemed build'",
        )
    if is_integer(version):
        raise UnsupportedSchemaError(
            f"manifest schema version {version} was written by a newer edgemed than this runtime",
            expected=f"schema_version in {supported}",
            fix="update the device runtime, or rebuild the bundle with the edgemed version installed here",
        )
    raise UnsupportedSchemaError(
        f"manifest schema_version is {show(version)}",
        expected=f"an integer schema_version in {supported}",
        fix=REBUILD,
    )


def manifest_sha256(raw: bytes) -> str:
    """The sha256 of the manifest's bytes (telemetry names the bundle by it)."""
    return hashlib.sha256(raw).hexdigest()


def parse_manifest(raw: bytes) -> BundleManifest:
    """``manifest.json``'s bytes → the typed manifest; every problem is a ``BundleError`` subclass."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as error:
        raise ManifestError(
            f"manifest.json does not parse as JSON ({type(error).__name__})",
            expected="a manifest.json written by edgemed's bundle stage",
            fix=REBUILD,
        ) from error
    return BundleManifest.from_dict(data)
