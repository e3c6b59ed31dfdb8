"""Rollback protection: the newest ``bundle_version`` this device has run, per bundle name.

A small JSON file (by default ``bundle-versions.json`` in the trust store)::

    {"format": 1, "bundles": {"ecg-arrhythmia": {"bundle_version": 1767225600,
     "manifest_sha256": "…", "recorded_at": "2026-01-01T00:00:00+00:00"}}}

keyed by the manifest's ``scenario`` (a device may run several bundles, each with its own history).
Only versions of verified (signed) bundles are recorded: an unsigned bundle's version is not
authenticated, and recording it would let a forged bundle with a huge version lock out every real
update. The file is replaced atomically (temporary file, fsync, rename, fsync of the folder) under
an exclusive lock, and a version never goes down. An unreadable file refuses every load: the
device cannot know what it ran, so it fails closed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from runtime.contract.fields import is_integer
from runtime.trust.errors import RollbackError, TrustStoreError

logger = logging.getLogger(__name__)

VERSION_STATE_NAME = "bundle-versions.json"
STATE_FORMAT = 1
MAX_STATE_BYTES = 1 << 20


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``<path>.lock`` for a read-modify-write (POSIX; elsewhere the rename alone)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: the atomic rename still keeps the file whole
        yield
        return
    descriptor = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def _unreadable(path: Path, why: str) -> TrustStoreError:
    return TrustStoreError(
        f"the bundle version state {path} {why}",
        expected=f"the JSON file this runtime writes (format {STATE_FORMAT})",
        fix="restore it from a backup; deleting it resets rollback protection, so do that only on a device "
        "whose bundles you have checked",
    )


class VersionState:
    """The newest bundle version run per bundle name, kept in one JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _read(self) -> dict[str, dict]:
        try:
            with self.path.open("rb") as handle:
                raw = handle.read(MAX_STATE_BYTES + 1)
        except FileNotFoundError:
            return {}
        except OSError as error:
            raise _unreadable(self.path, f"cannot be read ({error})") from error
        if len(raw) > MAX_STATE_BYTES:
            raise _unreadable(self.path, f"is larger than {MAX_STATE_BYTES} bytes")
        try:
            document = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError):
            raise _unreadable(self.path, "is not JSON") from None
        if not isinstance(document, dict):
            raise _unreadable(self.path, "is not a JSON object")
        bundles = document.get("bundles")
        if document.get("format") != STATE_FORMAT or not isinstance(bundles, dict) or not all(
            isinstance(entry, dict) and is_integer(entry.get("bundle_version")) for entry in bundles.values()
        ):
            raise _unreadable(self.path, "is not in the expected format")
        return bundles

    def newest(self, name: str) -> int | None:
        """The newest version of bundle ``name`` this device has run, or None."""
        entry = self._read().get(name)
        return None if entry is None else int(entry["bundle_version"])

    def check(self, name: str, version: int) -> None:
        """``RollbackError`` when ``version`` is older than the newest recorded for ``name``."""
        newest = self.newest(name)
        if newest is not None and version < newest:
            raise RollbackError(
                f"bundle {name} has version {version}, older than version {newest} this device has already run",
                expected=f"bundle_version ≥ {newest} (a downgrade is refused)",
                fix="install the current bundle; to go back on purpose, publish the old model again as a new "
                "build (it gets a newer version)",
            )

    def record(self, name: str, version: int, manifest_sha256: str) -> None:
        """Remember ``version`` for ``name`` unless a newer one is already recorded (atomic replace)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with _locked(self.path):
                bundles = self._read()
                previous = bundles.get(name)
                if previous is not None and int(previous["bundle_version"]) >= version:
                    return
                bundles[name] = {"bundle_version": version, "manifest_sha256": manifest_sha256,
                                 "recorded_at": datetime.now(UTC).isoformat()}
                _write_atomic(self.path, {"format": STATE_FORMAT, "bundles": bundles})
        except OSError as error:
            raise TrustStoreError(
                f"the bundle version state {self.path} cannot be written ({error.strerror or error})",
                expected="a writable file for the newest bundle version run (rollback protection)",
                fix="pass --version-state FILE on a writable disk (a read-only trust store needs one)",
            ) from error
        logger.info("bundle %s: version %d recorded in %s", name, version, self.path)


def _write_atomic(path: Path, document: dict) -> None:
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w") as handle:
            json.dump(document, handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable (POSIX; not possible on Windows)
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
