"""Read a bundle folder once, safely: plain files only, each read exactly once.

The path a device is given may itself be a symbolic link (a published ``bundles/<name>`` points at
a versioned folder and is swapped atomically by the build); it is resolved once, and the folder it
names is opened once, so every later read comes from that one folder even if a new bundle is
published meanwhile. Inside the folder there are no links at all: a symlink (or a FIFO, socket or
device) anywhere in the tree is refused, files are opened without following links (``O_NOFOLLOW``
relative to the opened folder where the OS has it), so no path can lead outside the bundle. A model
file that the manifest does not list is refused wherever it sits, subfolders included; other
unlisted files are logged and ignored.

The bytes returned are the bytes checked: the caller hashes them and hands the same bytes on (the
model to ONNX Runtime), so a file swapped on disk after the check is never what runs.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path

from runtime.contract import MANIFEST_NAME, FileEntry
from runtime.hashing import sha256_bytes
from runtime.trust.errors import (
    LinkInBundleError,
    MissingFileError,
    TamperedFileError,
    TruncatedFileError,
    UnlistedModelFileError,
    UnreadableFileError,
)
from runtime.trust.signature import SIGNATURE_NAME

logger = logging.getLogger(__name__)

MODEL_SUFFIXES = (".onnx", ".ort", ".onnx_data", ".data", ".pb", ".tflite")  # never accepted unlisted
MAX_MANIFEST_BYTES = 16 << 20  # a manifest is tens of kilobytes
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
# Relative opens inside the opened folder where the OS supports them (Linux, macOS); elsewhere paths + lstat.
_DIRECTORY_HANDLES = os.open in os.supports_dir_fd and hasattr(os, "O_DIRECTORY") and hasattr(os, "O_NOFOLLOW")
_COPY_AGAIN = "copy the complete bundle folder again from its source"


def _link_error(name: str, what: str) -> LinkInBundleError:
    return LinkInBundleError(
        f"{name} in the bundle is {what}",
        expected="only regular files (and plain folders) inside a bundle folder: no symbolic links",
        fix="copy the bundle with its files' contents (cp -rL, rsync -L), never as links",
    )


def _special_file_error(name: str, mode: int) -> LinkInBundleError:
    """A listed name that is a folder, or any entry that is a FIFO, socket or device."""
    if stat.S_ISDIR(mode):
        return LinkInBundleError(f"{name} in the bundle is a folder, where the manifest lists a file",
                                 expected=f"{name} as a regular file", fix=_COPY_AGAIN)
    return LinkInBundleError(f"{name} in the bundle is not a regular file (a pipe, socket or device)",
                             expected="only regular files and plain folders inside a bundle folder",
                             fix=_COPY_AGAIN)


def _unreadable(name: str, error: OSError) -> UnreadableFileError:
    reason = error.strerror or type(error).__name__
    return UnreadableFileError(f"{name} cannot be read ({reason})",
                               expected="a bundle whose folder and files the device's user can read",
                               fix="check the bundle's permissions (and the disk), or copy it again")


class BundleFolder:
    """A bundle folder, resolved and opened once (``with BundleFolder(path) as folder: …``)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.root = Path(os.path.realpath(self.path))  # resolved once: the folder every read comes from
        self._descriptor: int | None = None

    def __enter__(self) -> BundleFolder:
        if not self.root.is_dir():
            exists = self.root.exists()
            raise MissingFileError(
                f"bundle folder {self.path} " + ("is a file, not a folder" if exists else "does not exist"),
                expected=f"a folder holding {MANIFEST_NAME} and model.onnx",
                fix="pass the path of a published bundle (bundles/<name>)" + (
                    ", not one of its files" if exists else ""),
            )
        if _DIRECTORY_HANDLES:
            try:
                self._descriptor = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
            except FileNotFoundError as error:  # replaced between resolving and opening
                raise MissingFileError(f"bundle folder {self.path} disappeared while it was opened",
                                       expected="a published bundle", fix="load it again") from error
            except OSError as error:
                raise _unreadable(f"bundle folder {self.path}", error) from None
        return self

    def __exit__(self, *exc_info) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None

    def moved(self) -> bool:
        """Whether the path now resolves to another folder (a publish swapped its link since it was opened)."""
        return os.path.realpath(self.path) != str(self.root)

    # -- reads ------------------------------------------------------------------------------------------------

    def _open(self, name: str) -> int:
        try:
            if self._descriptor is not None:
                return os.open(name, _READ_FLAGS, dir_fd=self._descriptor)
            if stat.S_ISLNK(os.lstat(self.root / name).st_mode):
                raise _link_error(name, "a symbolic link")
            return os.open(self.root / name, _READ_FLAGS)
        except OSError as error:
            if error.errno == errno.ELOOP or (error.errno == errno.EMLINK and os.path.islink(self.root / name)):
                raise _link_error(name, "a symbolic link") from None
            if isinstance(error, FileNotFoundError | NotADirectoryError | IsADirectoryError):
                raise MissingFileError(
                    f"{name} is missing from bundle {self.path}",
                    expected=f"{MANIFEST_NAME} and every file it lists",
                    fix=_COPY_AGAIN,
                ) from None
            if error.errno == errno.ENAMETOOLONG:
                raise MissingFileError(f"the bundle lists a file name of {len(name)} characters",
                                       expected="plain file names the file system can hold", fix=_COPY_AGAIN) from None
            raise _unreadable(f"{name} in bundle {self.path}", error) from None
        except ValueError:  # a name the OS cannot hold (an embedded NUL byte)
            raise MissingFileError(f"the bundle lists the file name {name!r}", expected="plain file names",
                                   fix=_COPY_AGAIN) from None

    def read(self, name: str, size: int | None = None, limit: int = MAX_MANIFEST_BYTES) -> bytes:
        """The bytes of the regular file ``name`` (``size``: the size it must have; else at most ``limit``)."""
        descriptor = self._open(name)
        try:
            status = os.fstat(descriptor)
            if not stat.S_ISREG(status.st_mode):
                raise _special_file_error(name, status.st_mode)
            if size is not None and status.st_size != size:
                raise TruncatedFileError(
                    f"bundle file {name} is {status.st_size} bytes but the manifest records {size} bytes",
                    expected=f"exactly {size} bytes",
                    fix="the copy is incomplete or altered: " + _COPY_AGAIN,
                )
            cap = limit if size is None else size
            with os.fdopen(os.dup(descriptor), "rb") as handle:
                data = handle.read(cap + 1)
        except OSError as error:  # an I/O error while reading
            raise _unreadable(f"{name} in bundle {self.path}", error) from None
        finally:
            os.close(descriptor)
        if len(data) > cap:
            raise TruncatedFileError(f"bundle file {name} is larger than {cap} bytes",
                                     expected=f"at most {cap} bytes", fix=_COPY_AGAIN)
        return data

    def read_signature(self) -> bytes | None:
        """``manifest.sig``'s bytes, or None when the bundle has none."""
        try:
            return self.read(SIGNATURE_NAME, limit=1 << 16)
        except MissingFileError:
            return None

    def read_listed(self, files: Mapping[str, FileEntry]) -> dict[str, bytes]:
        """Every listed file's bytes, each checked against its recorded size and sha256."""
        contents = {}
        for name, entry in files.items():
            data = self.read(name, size=entry.bytes)
            digest = sha256_bytes(data)
            if digest != entry.sha256:
                raise TamperedFileError(
                    f"bundle file {name} has sha256 {digest[:16]}… but the manifest records {entry.sha256[:16]}…",
                    expected="the content the bundle was built with",
                    fix="do not use this bundle; copy it again from a trusted source",
                )
            contents[name] = data
        return contents

    # -- the tree ---------------------------------------------------------------------------------------------

    def _entries(self) -> Iterator[tuple[str, os.stat_result]]:
        """(path relative to the folder, lstat) of everything below it, links never followed; a folder that cannot
        be listed is refused (``_refuse_unlisted``), never skipped: what is in it would go unchecked."""
        if self._descriptor is not None:
            for folder, directories, names, descriptor in os.fwalk(dir_fd=self._descriptor, follow_symlinks=False,
                                                                   onerror=self._refuse_unlisted):
                for name in [*directories, *names]:
                    yield os.path.normpath(os.path.join(folder, name)), os.stat(
                        name, dir_fd=descriptor, follow_symlinks=False)
            return
        for folder, directories, names in os.walk(self.root, followlinks=False, onerror=self._refuse_unlisted):
            for name in [*directories, *names]:
                path = Path(folder) / name
                yield str(path.relative_to(self.root)), os.lstat(path)

    def _refuse_unlisted(self, error: OSError) -> None:
        if isinstance(error, FileNotFoundError):
            raise error  # removed while it was walked: check_tree says so
        where = Path(error.filename).name if isinstance(error.filename, str) and error.filename else "a subfolder"
        raise _unreadable(f"{where} in bundle {self.path} (its contents cannot be checked)", error)

    def check_tree(self, listed: Collection[str]) -> None:
        """No links or special files anywhere; no unlisted model file anywhere (subfolders too)."""
        try:
            entries = list(self._entries())
        except FileNotFoundError as error:  # removed while it was walked
            raise MissingFileError(f"bundle {self.path} changed while it was read ({error})",
                                   expected="a bundle that stays in place while it is loaded",
                                   fix="load it again") from error
        expected = {*listed, MANIFEST_NAME, SIGNATURE_NAME}
        for relative, status in entries:
            if stat.S_ISLNK(status.st_mode):
                raise _link_error(relative, "a symbolic link")
            if stat.S_ISDIR(status.st_mode):
                continue
            if not stat.S_ISREG(status.st_mode):
                raise _special_file_error(relative, status.st_mode)
            if relative in expected:
                continue
            if relative.lower().endswith(MODEL_SUFFIXES):
                raise UnlistedModelFileError(
                    f"{relative} is in the bundle but not listed in the manifest",
                    expected="only the model files the manifest lists and hashes, none in subfolders",
                    fix=f"remove {relative} from the bundle folder",
                )
            logger.warning("ignoring unlisted file %s in bundle %s", relative, self.path)
