"""Published bundles (``<bundles>/<name>/``): manifest, reference profile, and how telemetry names them.

Manifests are read through the runtime's contract (``runtime.contract.parse_manifest``): the dashboard
sees exactly what a device sees, and a bundle it cannot parse is listed as a problem, not shown half-read.
A device's telemetry names its bundle by ``bundle_id`` (``BundleManifest.bundle_id``) and
``bundle_sha256`` (the manifest's or the model's sha256); ``BundleCatalog.match`` maps either back to
the bundle folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dashboard.data.files import DataUnavailableError, read_json_object
from runtime.contract import MANIFEST_NAME, PROFILE_NAME, BundleError, BundleManifest, manifest_sha256, parse_manifest


@dataclass(frozen=True)
class BundleInfo:
    """One published bundle, read once."""

    name: str  # the folder's name (the scenario or model name)
    path: Path
    manifest: BundleManifest
    manifest_sha256: str
    profile: dict[str, Any] | None  # reference_profile.json, when present and readable
    profile_problem: str | None  # why there is no profile, for the page

    @property
    def scenario(self) -> str:
        return self.manifest.scenario

    @property
    def shipped_variant(self) -> str:
        return self.manifest.variant

    @property
    def labels(self) -> list[str]:
        return list(self.manifest.output.labels)

    @property
    def lineage(self) -> dict[str, str]:
        return dict(self.manifest.lineage)

    @property
    def bundle_id(self) -> str:
        """The id the runtime puts in telemetry (the same ``BundleManifest.bundle_id``)."""
        return self.manifest.bundle_id(self.manifest_sha256)

    @property
    def model_sha256(self) -> str:
        return self.manifest.model_sha256

    def identifiers(self) -> set[str]:
        """Every string a telemetry record may use to name this bundle."""
        return {self.name, self.scenario, self.bundle_id, self.manifest_sha256, self.manifest_sha256[:12],
                self.model_sha256}


@dataclass(frozen=True)
class BundleCatalog:
    """Every readable bundle under a folder, plus what could not be read and why."""

    folder: Path
    bundles: tuple[BundleInfo, ...] = ()
    problems: tuple[str, ...] = ()  # one message per unreadable bundle folder
    _index: dict[str, BundleInfo] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for bundle in self.bundles:
            for identifier in bundle.identifiers():
                self._index.setdefault(identifier, bundle)

    def match(self, bundle_id: str | None, bundle_sha256: str | None = None) -> BundleInfo | None:
        """The bundle a telemetry record names, or None when it is not published here."""
        for key in (bundle_sha256, bundle_id):
            if key and key in self._index:
                return self._index[key]
        return None

    def by_name(self, name: str) -> BundleInfo | None:
        return next((bundle for bundle in self.bundles if bundle.name == name), None)


def read_bundle(folder: Path) -> BundleInfo:
    """The bundle in ``folder``; ``DataUnavailableError`` when its manifest is missing or refused by the contract."""
    manifest_path = folder / MANIFEST_NAME
    try:
        raw = manifest_path.read_bytes()
    except OSError as error:
        raise DataUnavailableError(f"the manifest of bundle {folder.name} cannot be read ({error})",
                                   fix="rebuild the bundle with 'edgemed build'") from None
    try:
        manifest = parse_manifest(raw)
    except BundleError as error:
        raise DataUnavailableError(f"bundle {folder.name} cannot be shown: {error.what}", expected=error.expected,
                                   fix=error.fix) from None
    profile: dict[str, Any] | None = None
    problem: str | None = None
    try:
        profile = read_json_object(folder / PROFILE_NAME, f"the reference profile of bundle {folder.name}")
        if not isinstance(profile.get("features"), dict) or not isinstance(profile.get("predictions"), dict):
            profile, problem = None, f"the reference profile of bundle {folder.name} has no features or predictions"
    except DataUnavailableError as error:
        problem = str(error)
    return BundleInfo(folder.name, folder, manifest, manifest_sha256(raw), profile, problem)


def catalog_fingerprint(folder: Path) -> tuple:
    """What ``read_catalog(folder)`` reads, as it stands on disk: per bundle folder its name and resolved path (a
    publish swaps a link) and the (inode, size, modification time) of its manifest and reference profile. A few
    ``stat`` calls: a page compares it on every run and reads the catalog again only when it changed."""
    if not folder.is_dir():
        return ()

    def state(path: Path) -> tuple[int, int, int] | None:
        try:
            found = path.stat()
        except OSError:
            return None
        return found.st_ino, found.st_size, found.st_mtime_ns

    return tuple((child.name, str(child.resolve()), state(child / MANIFEST_NAME), state(child / PROFILE_NAME))
                 for child in sorted(path for path in folder.iterdir() if path.is_dir()))


def read_catalog(folder: Path) -> BundleCatalog:
    """Every bundle folder (a folder holding manifest.json) directly under ``folder``."""
    if not folder.is_dir():
        return BundleCatalog(folder, (), (f"the bundles folder {folder} does not exist: run edgemed build",))
    bundles: list[BundleInfo] = []
    problems: list[str] = []
    for child in sorted(path for path in folder.iterdir() if path.is_dir()):
        if not (child / MANIFEST_NAME).exists():
            continue
        try:
            bundles.append(read_bundle(child))
        except DataUnavailableError as error:
            problems.append(str(error))
    return BundleCatalog(folder, tuple(bundles), tuple(problems))
