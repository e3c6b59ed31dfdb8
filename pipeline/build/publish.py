"""Publish a bundle so that ``bundles/<name>`` is a complete bundle at every moment.

Layout under the bundles folder::

    <name>                          → .versions/<name>/v<version>-<random>   (a relative symbolic link)
    .versions/<name>/v<version>-…/  complete published bundles (manifest stamped with its release, signed)
    .versions/<name>/.staging-…     a publish in progress (a killed build's is removed by the next publish)

A publish copies the bundle stage's folder into a staging folder, stamps and signs it
(``signing.stamp_release``), flushes it to disk, renames it to its version folder, then points
``<name>`` at it by renaming a new link over the old one: ``rename(2)`` replaces the link in one step,
so a reader finds the old bundle or the new one, never nothing and never a mix (the runtime resolves
the link once and reads every file from that one folder). The newest ``KEEP_VERSIONS`` version folders
stay, so a device or a test reading the previous version while a new one lands still finds its files.

Links and the runtime agree: the published *path* may be a link (this one), but nothing *inside* a
bundle folder may be — the runtime refuses any link in the tree. Copy a bundle to a device with its
contents (``cp -rL bundles/<name> …``, ``rsync -aL``); ``shutil.copytree`` follows the top link too.

A ``bundles/<name>`` that is a plain folder (published by an older edgemed) is exchanged for the link
in one step with Linux's ``renameat2(RENAME_EXCHANGE)``; where that is missing it is moved aside first,
the only case with a moment without a bundle (logged).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path

from pipeline.build.artifacts import lock_work_folder, remove_stale_work_folders, unlock_work_folder
from pipeline.build.signing import SigningKey, next_bundle_version, stamp_release
from runtime.contract import MANIFEST_NAME
from runtime.contract.fields import is_integer

logger = logging.getLogger(__name__)

VERSIONS_FOLDER = ".versions"
KEEP_VERSIONS = 3  # version folders kept per bundle name (the published one among them)
STAGING_PREFIX = ".staging-"
_VERSION_FOLDER = re.compile(r"v(\d+)-[0-9a-f]{8}")
_STAGING = re.compile(re.escape(STAGING_PREFIX) + r"[a-z0-9_]{8}")
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def versions_folder(destination: Path) -> Path:
    return destination.parent / VERSIONS_FOLDER / destination.name


def _fsync(path: Path) -> None:
    with contextlib.suppress(OSError):  # folders cannot be opened for fsync on every OS
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            _fsync(path)
    _fsync(folder)


def published_version(destination: Path) -> int | None:
    """The newest bundle_version published at ``destination``: its manifest's, or a version folder's name."""
    found = []
    with contextlib.suppress(OSError, ValueError, AttributeError, TypeError):
        release = json.loads((destination / MANIFEST_NAME).read_text()).get("release") or {}
        if is_integer(release.get("bundle_version")):
            found.append(release["bundle_version"])
    versions = versions_folder(destination)
    if versions.is_dir():
        found += [int(match[1]) for path in versions.iterdir() if (match := _VERSION_FOLDER.fullmatch(path.name))]
    return max(found, default=None)


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where that is not available."""
    try:
        function = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)  # libc's, on Linux (glibc ≥ 2.28)
    except (OSError, TypeError):  # no C library to look in (Windows)
        return False
    if function is None:
        return False
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    result = function(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE)
    return result == 0


def _point(destination: Path, target: Path) -> None:
    """Make ``destination`` a link to ``target``, replacing what is there in one rename."""
    link = destination.parent / f".{destination.name}.link-{uuid.uuid4().hex[:8]}"
    os.symlink(os.path.relpath(target, destination.parent), link)
    try:
        if destination.is_dir() and not destination.is_symlink():  # a folder an older edgemed published
            legacy = versions_folder(destination) / f"legacy-{uuid.uuid4().hex[:8]}"
            if _exchange(link, destination):
                os.replace(link, legacy)  # ``link`` now names the old folder
                logger.info("bundle %s: the published folder became a link (old folder kept as %s)", destination,
                            legacy.name)
                return
            logger.warning("bundle %s: moving the old published folder aside before linking (renameat2 is not "
                           "available): %s has no bundle for a moment", destination, destination)
            os.replace(destination, legacy)
        os.replace(link, destination)
    finally:
        if link.is_symlink():
            link.unlink()
    _fsync(destination.parent)


def _prune(versions: Path, current: Path, keep: int) -> None:
    folders = sorted((path for path in versions.iterdir() if _VERSION_FOLDER.fullmatch(path.name)),
                     key=lambda path: int(_VERSION_FOLDER.fullmatch(path.name)[1]), reverse=True)
    for path in folders[keep:]:
        if path != current:
            shutil.rmtree(path, ignore_errors=True)
    for path in versions.glob("legacy-*"):
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _publishing(versions: Path):
    """One publish of a bundle name at a time (POSIX ``flock``; elsewhere nothing)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    descriptor = os.open(versions, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def publish(source: Path, destination: Path, key: SigningKey | None = None, keep: int = KEEP_VERSIONS) -> Path:
    """Publish the bundle folder ``source`` at ``destination`` (a link swapped in one rename); sign with ``key``."""
    destination = Path(destination)
    versions = versions_folder(destination)
    versions.mkdir(parents=True, exist_ok=True)
    with _publishing(versions):
        remove_stale_work_folders(versions, _STAGING)
        version = next_bundle_version(published_version(destination))
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=versions))
        lock = lock_work_folder(staging)
        try:
            shutil.copytree(source, staging, dirs_exist_ok=True)
            stamp_release(staging, version, key)
            _fsync_tree(staging)
            final = versions / f"v{version}-{uuid.uuid4().hex[:8]}"
            os.replace(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        finally:
            unlock_work_folder(lock)
        _point(destination, final)
        _prune(versions, final, keep)
    logger.info("bundle %s: version %d published (%s)", destination, version,
                f"signed by {key.purpose.value} key {key.key_id}" if key else "UNSIGNED")
    return destination
