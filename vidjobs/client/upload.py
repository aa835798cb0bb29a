"""The video of a submit as httpx reads it: from where it starts, counted, sent again on retry.

A submit takes a path, bytes or an open binary file. :class:`Upload` wraps each as one readable
object whose position 0 is where the video starts (httpx seeks a file to 0 before each send,
which for a file opened mid-way would send the bytes before it), that knows its length (so the
request has a ``Content-Length`` and the API can check the tenant's storage quota before
reading a byte), that reports the bytes read (a progress bar), and that says whether it can be
read again for a retry: a seekable file can, a pipe can only while nothing of it was read.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, BinaryIO

__all__ = ["Upload", "Video"]

Video = str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes]
"""What ``submit`` accepts: a path (``str`` or ``Path``), the bytes, or a file open for reading
bytes (read from its current position)."""


class Upload:
    """One video being sent; close it to close a file it opened itself.

    Args:
        video: the path, the bytes or the open file.
        on_progress: called with the bytes of the video read so far in this attempt.
    """

    def __init__(self, video: Video, on_progress: Callable[[int], None] | None = None) -> None:
        self._owned = False
        if isinstance(video, str | os.PathLike):
            path = Path(video)
            self.filename = path.name
            self._file: BinaryIO | IO[bytes] = path.open("rb")
            self._owned = True
        elif isinstance(video, bytes | bytearray | memoryview):
            self.filename = "video.mp4"
            self._file = io.BytesIO(bytes(video))
        else:
            name = getattr(video, "name", None)  # a pipe's is its descriptor, an int
            self.filename = Path(name).name if isinstance(name, str) and name else "video.mp4"
            self._file = video
        self._on_progress = on_progress
        self._sent = 0
        try:
            self._start: int | None = self._file.tell() if self._file.seekable() else None
        except (OSError, AttributeError):
            self._start = None

    def read(self, size: int = -1) -> bytes:
        """Read for httpx, counting what was read."""
        data = self._file.read(size)
        self._sent += len(data)
        if self._on_progress is not None and data:
            self._on_progress(self._sent)
        return data

    def tell(self) -> int:
        """The position from the video's start (httpx measures the length with it)."""
        if self._start is None:
            raise io.UnsupportedOperation("the video is not seekable")
        return self._file.tell() - self._start

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Seek within the video, 0 being where it started; resets the count at the start."""
        if self._start is None:
            raise io.UnsupportedOperation("the video is not seekable")
        base = self._start if whence == os.SEEK_SET else 0
        position = self._file.seek(base + offset, whence) - self._start
        if position == 0:
            self._sent = 0
        return position

    def can_resend(self) -> bool:
        """True if the whole video can be sent again: seekable, or not a byte of it read yet."""
        return self._start is not None or self._sent == 0

    def rewind(self) -> None:
        """Back to the video's start before a retry (httpx seeks too; a pipe stays where it is)."""
        if self._start is not None:
            self.seek(0)

    def close(self) -> None:
        """Close the file if :class:`Upload` opened it (a caller's file stays open)."""
        if self._owned:
            self._file.close()
