"""The bundle contract, owned by the runtime: what a bundle declares and the device relies on.

``BundleManifest`` (schema 2) with its ``InputSpec`` per model input (and, for inputs the ECG stream
computes per beat, their ``Derivation`` with its RR and template settings; and the ``InputDomain`` the model
was developed on, which the device enforces), ``OutputSpec`` (a ``TaskKind``
and its typed decision rule) and the file table. The build writes ``to_dict()``, the runtime and
the dashboard read ``from_dict()`` / ``parse_manifest``; nobody reads the JSON by hand.

Dependency rule: the standard library, ``runtime.errors`` and ``runtime.features`` (for
``FeatureKind``) only; it never opens a session.
"""

from runtime.contract.derived import (
    RR_FEATURE_NAMES,
    Derivation,
    RrFeatureConfig,
    StreamFeature,
    TemplateConfig,
    WindowConfig,
    WindowNormalization,
)
from runtime.contract.domain import DEFAULT_DOMAIN_MARGIN, DomainScale, InputDomain
from runtime.contract.errors import (
    BundleError,
    ManifestError,
    UnsupportedBundleError,
    UnsupportedSchemaError,
)
from runtime.contract.inputs import InputSpec
from runtime.contract.manifest import (
    MANIFEST_NAME,
    MODEL_NAME,
    PROFILE_NAME,
    SCHEMA_VERSION,
    SUPPORTED_SCHEMA_VERSIONS,
    BundleManifest,
    DataSummary,
    ExportSummary,
    FileEntry,
    Preprocessing,
    Selection,
    check_schema_version,
    manifest_sha256,
    parse_manifest,
)
from runtime.contract.outputs import (
    RULES,
    AnomalyRule,
    BinaryRule,
    DecisionRule,
    MulticlassRule,
    MultilabelRule,
    OutputSpec,
    RegressionRule,
    TaskKind,
)
from runtime.contract.release import KeyPurpose, Release

__all__ = [
    "DEFAULT_DOMAIN_MARGIN",
    "MANIFEST_NAME",
    "MODEL_NAME",
    "PROFILE_NAME",
    "RR_FEATURE_NAMES",
    "RULES",
    "SCHEMA_VERSION",
    "SUPPORTED_SCHEMA_VERSIONS",
    "AnomalyRule",
    "BinaryRule",
    "BundleError",
    "BundleManifest",
    "DataSummary",
    "DecisionRule",
    "Derivation",
    "DomainScale",
    "ExportSummary",
    "FileEntry",
    "InputDomain",
    "InputSpec",
    "KeyPurpose",
    "ManifestError",
    "MulticlassRule",
    "MultilabelRule",
    "OutputSpec",
    "Preprocessing",
    "RegressionRule",
    "Release",
    "RrFeatureConfig",
    "Selection",
    "StreamFeature",
    "TaskKind",
    "TemplateConfig",
    "UnsupportedBundleError",
    "UnsupportedSchemaError",
    "WindowConfig",
    "WindowNormalization",
    "check_schema_version",
    "manifest_sha256",
    "parse_manifest",
]
