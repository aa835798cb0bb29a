"""Blobs as files under one directory: the single-machine backend (demo, dev, embedded).

Every write goes to a temp file in the target's directory and is renamed into place with
``os.replace``, so a reader never sees half a blob, even if the writer dies mid-upload.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

from vidjobs.blobs.errors import BlobNotFound, BlobStoreError, BlobStoreUnavailable
from vidjobs.blobs.keys import check_key
from vidjobs.blobs.protocol import BlobStore, SourceStream

__all__ = ["LocalBlobStore"]

_CHUNK = 1024 * 1024
_TMP_PREFIX = ".tmp-"


class LocalBlobStore(BlobStore):
    """A :class:`~vidjobs.blobs.protocol.BlobStore` over a directory.

    Args:
        root: the directory; created by ``ensure_ready``.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        # check_key already rules out '..'; this also catches a symlink pointing outside.
        if not path.is_relative_to(self.root.resolve()):
            raise BlobStoreError(f"blob key {key!r} leaves the store's directory")
        return path

    def _open(self, key: str) -> BinaryIO:
        """The blob's file, open for reading; ``BlobNotFound`` if there is none."""
        try:
            return self._path(key).open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise BlobNotFound(key) from exc
        except OSError as exc:
            raise BlobStoreUnavailable(f"cannot read blob {key!r}: {exc}") from exc

    def ensure_ready(self) -> None:
        """Create the directory if missing."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BlobStoreUnavailable(f"cannot create blob directory {self.root}: {exc}") from exc
        self.ping()

    def ping(self) -> None:
        """Raise unless the directory exists and this process may write to it."""
        if not self.root.is_dir():
            raise BlobStoreUnavailable(f"blob directory {self.root} does not exist")
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise BlobStoreUnavailable(f"blob directory {self.root} is not writable")

    def _write(self, key: str, source: SourceStream, content_type: str) -> None:
        """Copy ``source`` in 1 MiB chunks into a temp file, then rename it onto the key."""
        del content_type  # a directory has nowhere to keep it
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=target.parent)
        except OSError as exc:
            raise BlobStoreUnavailable(f"cannot write under {self.root}: {exc}") from exc
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := source.read(_CHUNK):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            source.check_complete()
            os.replace(tmp, target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise BlobStoreUnavailable(f"cannot write blob {key!r}: {exc}") from exc
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def get_to_tempfile(self, key: str, *, suffix: str = "", directory: Path | None = None) -> Path:
        """Copy the blob to a new temp file (the caller deletes it)."""
        with self._open(key) as src, self._tempfile(key, suffix, directory) as (out, path):
            try:
                shutil.copyfileobj(src, out, _CHUNK)
            except OSError as exc:
                raise BlobStoreError(f"copying {key!r} to {path}: {exc}") from exc
        return path

    def get_bytes(self, key: str) -> bytes:
        """Read the whole blob."""
        with self._open(key) as src:
            try:
                return src.read()
            except OSError as exc:
                raise BlobStoreUnavailable(f"cannot read blob {key!r}: {exc}") from exc

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        """Seek and read: the local backend reads only the range too."""
        if length <= 0:
            return b""
        with self._open(key) as src:
            try:
                src.seek(offset)
                return src.read(length)
            except OSError as exc:
                raise BlobStoreUnavailable(f"cannot read blob {key!r}: {exc}") from exc

    def size(self, key: str) -> int:
        """The file's size."""
        try:
            return self._path(key).stat().st_size
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise BlobNotFound(key) from exc
        except OSError as exc:
            raise BlobStoreUnavailable(f"cannot read blob {key!r}: {exc}") from exc

    def readable_location(self, key: str) -> str:
        """The file's own path: a decoder seeks in it directly, no copy is made."""
        path = self._path(key)
        if not path.is_file():
            raise BlobNotFound(key)
        return str(path)

    def exists(self, key: str) -> bool:
        """True if a file is stored under ``key``."""
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        """Remove the file; a missing one is fine."""
        # Empty key directories stay: removing one would race a concurrent put into it.
        try:
            self._path(key).unlink(missing_ok=True)
        except IsADirectoryError:
            return
        except OSError as exc:
            raise BlobStoreUnavailable(f"cannot delete blob {key!r}: {exc}") from exc

    def close(self) -> None:
        """Nothing to release."""
