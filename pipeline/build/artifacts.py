"""Hash-addressed, cached stage artefacts with lineage (Olive-style).

An artefact is a folder ``<root>/<stage>/<id>/`` holding the stage's files and a
``manifest.json``. Its id is a short hash of (stage, config, parent id, edgemed
version), so the same request maps to the same folder and is reused, while a
changed setting produces a new id for that stage and everything after it.

A stage writes into a temporary sibling folder; the manifest is written last and
the folder is renamed into place in one step. An interrupted build therefore
never leaves a folder at the final path, and a folder at the final path whose
files no longer match their recorded sha256 is rebuilt, not reused.

The id says what was asked for, not what came out: a stage whose output is chosen by
measurement (the int8 settings, by timing) can be rebuilt under the same id with other
content. So each manifest records the sha256 of its parent's manifest
(``parent_manifest_sha256``), and a cached artefact is reused only while that parent is
the very one it was made from; otherwise it is rebuilt, and with it everything after it.
The manifest itself carries a ``seal`` (the sha256 of its other fields): metrics edited in
place are not reused either, since later stages build the bundle's manifest from them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import platform
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from importlib import metadata
from pathlib import Path
from typing import Any

from pipeline.errors import StageError
from runtime.hashing import sha256_file
from runtime.version import EDGEMED_VERSION

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
_TRACKED_TOOLS = (
    "numpy",
    "tensorflow",
    "keras",
    "tf2onnx",
    "onnx",
    "onnxruntime",
    "scikit-learn",
    "neurokit2",
)


def to_jsonable(value: Any) -> Any:
    """Dataclasses, enums, paths and tuples → plain JSON types (stable for hashing)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: to_jsonable(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(item) for item in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return value.item()
    return value


def artifact_id(stage: str, config: Any, parent_id: str | None) -> str:
    """Short hash of what determines a stage's output."""
    payload = json.dumps(
        {"stage": stage, "config": to_jsonable(config), "parent": parent_id, "edgemed": EDGEMED_VERSION},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def tool_versions(names: tuple[str, ...] | None = None) -> dict[str, str]:
    """Installed versions of the tools that shape an artefact (``names``: just these, for a cache key)."""
    versions = {"python": platform.python_version(), "edgemed": EDGEMED_VERSION} if names is None else {}
    for name in _TRACKED_TOOLS if names is None else names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            if names is not None:
                versions[name] = "not installed"
    return versions


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temporary file in the same folder, then rename over ``path``."""
    write_text_atomic(path, json.dumps(to_jsonable(data), indent=2, sort_keys=False, allow_nan=False) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file in the same folder, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class Artifact:
    """A finished stage output: its folder and its manifest."""

    stage: str
    id: str
    directory: Path
    manifest: dict

    def path(self, name: str) -> Path:
        return self.directory / name

    @property
    def metrics(self) -> dict:
        return self.manifest.get("metrics", {})


@dataclass(frozen=True)
class StageResult:
    """What a stage function returns: metrics for the manifest (JSON-able)."""

    metrics: dict


def _file_hashes(directory: Path) -> dict[str, str]:
    return {
        str(path.relative_to(directory)): sha256_file(path)
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != MANIFEST_NAME
    }


def manifest_seal(manifest: dict) -> str:
    """sha256 of a stage manifest's fields other than ``seal`` (canonical JSON)."""
    fields = {key: value for key, value in manifest.items() if key != "seal"}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, allow_nan=False).encode()).hexdigest()


def manifest_sha256(artifact: Artifact) -> str:
    """sha256 of the artefact's manifest file as written: what a child records of its parent."""
    return sha256_file(artifact.path(MANIFEST_NAME))


def load_artifact(directory: Path) -> Artifact | None:
    """The artefact at ``directory`` if it is complete and intact, else None."""
    manifest_path = directory / MANIFEST_NAME
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError):
        logger.warning("unreadable manifest at %s; the stage will be rebuilt", manifest_path)
        return None
    if not isinstance(manifest, dict) or manifest.get("seal") != manifest_seal(manifest):
        logger.warning("the manifest at %s was changed after it was written (or predates its seal); the stage will "
                       "be rebuilt", manifest_path)
        return None
    recorded = manifest.get("files", {})
    if _file_hashes(directory) != recorded:
        logger.warning("files in %s do not match their manifest; the stage will be rebuilt", directory)
        return None
    return Artifact(manifest["stage"], manifest["id"], directory, manifest)


# A stage's temporary folder: ``.<artefact id>.<mkdtemp's 8 random characters>``.
WORK_FOLDER = re.compile(r"\.[0-9a-f]{12}\.[a-z0-9_]{8}")
STALE_AFTER_S = 10.0  # an unlocked work folder at least this old is a killed build's (covers mkdtemp → lock)


def lock_work_folder(folder: Path) -> int | None:
    """Hold an exclusive lock on ``folder`` while a build writes in it (POSIX ``flock``; None elsewhere).

    The kernel drops the lock when the process dies, however it dies: an unlocked work folder is stale.
    """
    try:
        import fcntl
    except ImportError:
        return None
    descriptor = os.open(folder, os.O_RDONLY)
    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return descriptor


def unlock_work_folder(descriptor: int | None) -> None:
    if descriptor is not None:
        os.close(descriptor)


def remove_stale_work_folders(parent: Path, pattern: re.Pattern[str] = WORK_FOLDER) -> list[Path]:
    """Remove the work folders under ``parent`` that a killed build left (no live build holds their lock)."""
    try:
        import fcntl
    except ImportError:  # without flock a live folder cannot be told from a stale one: leave them
        return []
    removed: list[Path] = []
    if not Path(parent).is_dir():
        return removed
    for path in sorted(Path(parent).iterdir()):
        if not pattern.fullmatch(path.name):
            continue
        try:
            if path.is_symlink() or not path.is_dir() or time.time() - path.stat().st_mtime < STALE_AFTER_S:
                continue
            descriptor = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # a live build holds it
        finally:
            os.close(descriptor)
        shutil.rmtree(path, ignore_errors=True)
        logger.warning("removed %s, left by a build that was killed", path)
        removed.append(path)
    return removed


def run_stage(
    stage: str,
    config: Any,
    parent: Artifact | None,
    root: Path,
    produce: Callable[[Path], StageResult],
) -> tuple[Artifact, bool]:
    """Reuse the cached artefact for (stage, config, parent) or produce it.

    ``produce(work_directory)`` writes the stage's files into an empty folder and
    returns its metrics. Returns the artefact and whether it was reused.
    """
    parent_id = parent.id if parent else None
    parent_manifest = manifest_sha256(parent) if parent else None
    identifier = artifact_id(stage, config, parent_id)
    final = Path(root) / stage / identifier
    remove_stale_work_folders(final.parent)
    cached = load_artifact(final)
    if cached is not None and cached.manifest.get("parent_manifest_sha256") != parent_manifest:
        logger.warning("stage %s: %s was made from another %s than the one now in place (rebuilt since, with "
                       "other content); it will be rebuilt", stage, identifier, parent.stage if parent else "parent")
        cached = None
    if cached is not None:
        logger.info("stage %s: reusing %s", stage, identifier)
        return cached, True
    if final.exists():
        shutil.rmtree(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{identifier}.", dir=final.parent))
    lock = lock_work_folder(work)  # dies with this process: the next run removes a killed build's folder
    started = datetime.now(UTC)
    clock = time.perf_counter()
    try:
        result = produce(work)
        manifest = {
            "id": identifier,
            "stage": stage,
            "parent_id": parent_id,
            "parent_manifest_sha256": parent_manifest,
            "config": to_jsonable(config),
            "metrics": to_jsonable(result.metrics),
            "files": _file_hashes(work),
            "tool_versions": tool_versions(),
            "started_at": started.isoformat(),
            "ended_at": datetime.now(UTC).isoformat(),
            "duration_s": round(time.perf_counter() - clock, 3),
        }
        manifest["seal"] = manifest_seal(manifest)
        write_json_atomic(work / MANIFEST_NAME, manifest)
        os.replace(work, final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        unlock_work_folder(lock)
    if load_artifact(final) is None:
        raise StageError(
            f"stage {stage} wrote {final} but its files do not verify",
            expected="every file to match the sha256 recorded in its manifest",
            fix="check the disk for errors and rerun; report a bug if it repeats",
        )
    return Artifact(stage, identifier, final, manifest), False
