"""Streaming multipart parsing: the uploaded video goes to the blob store chunk by chunk.

Neither the body nor the file is ever held whole in memory or spooled to disk: the request
stream is fed to a push parser (``python-multipart``) and the file part is pulled, on demand,
by the blob store's ``put_stream`` running in a worker thread (:class:`BlobFeed`). Memory per
upload is one read (``upload_read_bytes``) plus the store's own part buffer.

Form fields may come before or after the file part (clients and generated SDKs do not promise
an order): fields that come first are checked before a byte of the file is read, the rest once
the body has ended. The file is hashed (SHA-256) as it streams, for idempotent repeats.
The body must keep coming (``vidjobs.api.admission.UploadPace``): one that stalls or trickles
is cut off with a 408, so a slow client cannot hold an upload slot for hours.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import anyio.from_thread
from litestar.exceptions import InternalServerException
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from vidjobs.api.admission import UploadPace
from vidjobs.api.problems import ApiError, InvalidInput

__all__ = [
    "MP4_BRANDS",
    "BlobFeed",
    "FileData",
    "FileEnd",
    "FileStart",
    "FormField",
    "MultipartStream",
    "check_mp4_head",
    "multipart_boundary",
    "read_head",
    "upload_too_large",
]

MP4_BRANDS: frozenset[bytes] = frozenset(
    b.encode("latin-1")
    for b in (
        "isom", "iso2", "iso3", "iso4", "iso5", "iso6", "iso7", "iso8", "iso9", "isoe",
        "mp41", "mp42", "mp71", "avc1", "avc3", "hvc1", "hev1", "av01", "M4V ", "M4VH",
        "M4VP", "qt  ", "MSNV", "dash", "3gp4", "3gp5", "3gp6", "3gp7", "3gp8", "3g2a",
        "3g2b", "3g2c", "f4v ", "mmp4", "XAVC", "NDAS", "NDSC", "NDSH", "NDSM", "NDSP",
        "NDSS", "NDXC", "NDXH", "NDXM", "NDXP", "NDXS", "CAEP", "M4A ",
    )
)  # fmt: skip
"""ISO-BMFF brands of the MP4/QuickTime family (``M4A `` because audio-first MP4s list it)."""

HEAD_BYTES = 64
"""Bytes of the file read before anything is stored, to check the ``ftyp`` box."""

_MAX_FIELD_BYTES = 4096
_MAX_FIELDS = 16


def multipart_boundary(content_type: str | None) -> bytes:
    """The boundary of a ``multipart/form-data`` request; 415 for any other body."""
    ctype, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise ApiError(
            415,
            "multipart-required",
            "send the video as multipart/form-data with a 'file' part, e.g. "
            "curl -F file=@video.mp4 ...; got Content-Type "
            f"{content_type or '(none)'!r}",
        )
    return boundary


def check_mp4_head(head: bytes) -> None:
    """Accept only bodies that start with an MP4/MOV ``ftyp`` box (else 422 / 415).

    Only the header is checked: a valid header followed by garbage passes here and the worker
    fails the job when it cannot decode it. That keeps the API fast and the check honest.
    """
    if not head:
        raise ApiError(422, "empty-file", "the uploaded file is empty; send an MP4 video")
    if len(head) < 12 or head[4:8] != b"ftyp":
        raise ApiError(
            415,
            "not-mp4",
            "the uploaded file is not an MP4/MOV video (no 'ftyp' box at byte 4); "
            "convert it, e.g. ffmpeg -i input -c:v libx264 out.mp4",
        )
    size = int.from_bytes(head[0:4], "big")
    end = min(max(size, 16), len(head))
    brands = [head[8:12]] + [head[i : i + 4] for i in range(16, end - 3, 4)]
    if not any(b in MP4_BRANDS for b in brands):
        shown = ", ".join(repr(b.decode("latin-1")) for b in brands)
        raise ApiError(
            415,
            "not-mp4",
            f"the file is an ISO media file but not an MP4/MOV video (brands {shown}); "
            "send an MP4 or QuickTime video",
        )


@dataclass(frozen=True, slots=True)
class FormField:
    """A complete non-file form field."""

    name: str
    value: str


@dataclass(frozen=True, slots=True)
class FileStart:
    """The headers of a file part are complete; its data follows."""

    name: str
    filename: str


@dataclass(frozen=True, slots=True)
class FileData:
    """Some bytes of the current file part."""

    data: bytes


@dataclass(frozen=True, slots=True)
class FileEnd:
    """The current file part ended."""


Event = FormField | FileStart | FileData | FileEnd


class MultipartStream:
    """Pull events out of a streamed ``multipart/form-data`` body, one chunk at a time.

    Args:
        chunks: the request body as it arrives.
        boundary: from :func:`multipart_boundary`.
        pace: the body's idle timeout and minimum rate (none: wait as long as it takes).
    """

    def __init__(
        self, chunks: AsyncIterator[bytes], boundary: bytes, pace: UploadPace | None = None
    ) -> None:
        self._chunks = chunks
        self._pace = pace
        self._events: deque[Event] = deque()
        self._ended = False
        self._exhausted = False
        self._headers: dict[str, str] = {}
        self._hname = bytearray()
        self._hvalue = bytearray()
        self._field: bytearray | None = None
        self._field_name = ""
        self._fields = 0
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._on_part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
                "on_end": self._on_end,
            },
        )

    async def next(self) -> Event | None:
        """The next event, or ``None`` once the body ended cleanly."""
        while not self._events:
            if self._ended:
                return None
            if self._exhausted:
                raise _malformed("the body ended before the closing multipart boundary")
            try:
                if self._pace is None:
                    chunk = await self._chunks.__anext__()
                else:
                    chunk = await self._pace.receive(self._chunks)
            except StopAsyncIteration:
                self._exhausted = True
                continue
            except InternalServerException as exc:  # Litestar: the client went away
                raise ApiError(
                    400,
                    "upload-interrupted",
                    "the client disconnected before the upload finished; nothing was stored",
                ) from exc
            if not chunk:
                continue
            try:
                self._parser.write(chunk)
            except FormParserError as exc:
                raise _malformed(str(exc)) from exc
        return self._events.popleft()

    def _on_part_begin(self) -> None:
        self._headers = {}

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._hname += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._hvalue += data[start:end]

    def _on_header_end(self) -> None:
        name = self._hname.decode("latin-1").lower()
        self._headers[name] = self._hvalue.decode("latin-1")
        self._hname.clear()
        self._hvalue.clear()

    def _on_headers_finished(self) -> None:
        disposition, options = parse_options_header(self._headers.get("content-disposition"))
        name = options.get(b"name")
        if disposition != b"form-data" or name is None:
            raise _malformed("every part needs 'Content-Disposition: form-data; name=...'")
        self._fields += 1
        if self._fields > _MAX_FIELDS:
            raise _malformed(f"more than {_MAX_FIELDS} form parts")
        filename = options.get(b"filename")
        if filename is not None:
            self._field = None
            # The filename is never used for a key or a path; a client may send any bytes.
            self._events.append(
                FileStart(
                    name=name.decode("utf-8", "replace"),
                    filename=filename.decode("utf-8", "replace"),
                )
            )
        else:
            self._field = bytearray()
            self._field_name = name.decode("utf-8", "replace")

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._field is None:
            self._events.append(FileData(bytes(data[start:end])))
            return
        self._field += data[start:end]
        if len(self._field) > _MAX_FIELD_BYTES:
            raise InvalidInput(
                f"form field {self._field_name!r} is longer than {_MAX_FIELD_BYTES} bytes",
            )

    def _on_part_end(self) -> None:
        if self._field is None:
            self._events.append(FileEnd())
        else:
            try:
                value = self._field.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidInput(f"form field {self._field_name!r} is not UTF-8") from exc
            self._events.append(FormField(name=self._field_name, value=value))
            self._field = None

    def _on_end(self) -> None:
        self._ended = True


async def read_head(parts: MultipartStream) -> tuple[bytes, bool]:
    """The first :data:`HEAD_BYTES` (or fewer) of the file part, and whether it already ended."""
    head = bytearray()
    while len(head) < HEAD_BYTES:
        event = await parts.next()
        if isinstance(event, FileData):
            head += event.data
        elif isinstance(event, FileEnd):
            return bytes(head), True
        else:
            raise _malformed("the file part did not end")
    return bytes(head), False


def _malformed(why: str) -> ApiError:
    return ApiError(400, "malformed-multipart", f"the multipart body is malformed: {why}")


class BlobFeed:
    """A blocking ``read(n)`` over the current file part, for ``BlobStore.put_stream``.

    ``put_stream`` runs in an AnyIO worker thread; each ``read`` hops back to the event loop
    to pull more of the request. The size limit is enforced here, while streaming: the first
    byte over the limit stops the upload with a 413, whatever ``Content-Length`` claimed. Every
    byte is hashed on its way through (:attr:`sha256`), so the hash costs no second pass.

    Args:
        parts: the multipart stream, positioned inside the file part.
        head: file bytes already pulled (the ``ftyp`` check).
        eof: the file part already ended within ``head``.
        max_bytes: the upload limit.
        read_bytes: most bytes returned by one ``read``.
        over_limit: the error past ``max_bytes`` (default: :func:`upload_too_large`), e.g. a
            tenant's stored-bytes quota when that is the smaller limit.
    """

    def __init__(
        self,
        parts: MultipartStream,
        head: bytes,
        *,
        eof: bool,
        max_bytes: int,
        read_bytes: int,
        over_limit: Callable[[], ApiError] | None = None,
    ) -> None:
        self._parts = parts
        self._over_limit = over_limit
        self._buffer = bytearray(head)
        self._max = max_bytes
        self._read_bytes = read_bytes
        self._eof = eof
        self.total = len(head)
        self._hash = hashlib.sha256(head)
        self.error: BaseException | None = None
        """The request-side failure that stopped the upload; wins over the store's error."""
        self._check_size()

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes of the file (``b""`` at its end); blocks the calling thread."""
        if self.error is not None:
            raise self.error
        want = self._read_bytes if n is None or n < 0 else min(n, self._read_bytes)
        try:
            return anyio.from_thread.run(self._read, want)
        except BaseException as exc:
            if self.error is None:
                self.error = exc
            raise

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the file bytes read so far (the whole file once ``read`` gave ``b""``)."""
        return self._hash.hexdigest()

    async def drain(self) -> None:
        """Read the rest of the file part without storing it: size checked, bytes hashed.

        For a repeat of an idempotent submit, whose file is compared with the first one's by
        its hash and never stored.
        """
        while await self._read(self._read_bytes):
            pass

    async def _read(self, want: int) -> bytes:
        while len(self._buffer) < want and not self._eof:
            event = await self._parts.next()
            if isinstance(event, FileData):
                self._buffer += event.data
                self.total += len(event.data)
                self._hash.update(event.data)
                self._check_size()
            elif isinstance(event, FileEnd):
                self._eof = True
            else:
                raise _malformed("the file part did not end")
        out = bytes(self._buffer[:want])
        del self._buffer[:want]
        return out

    def _check_size(self) -> None:
        if self.total > self._max:
            raise upload_too_large(self._max) if self._over_limit is None else self._over_limit()


def upload_too_large(limit: int) -> ApiError:
    """The 413 problem; ``Connection: close`` since the rest of the body is not read."""
    return ApiError(
        413,
        "upload-too-large",
        f"the video is larger than the limit of {limit} bytes ({limit / 1024**2:.0f} MiB); "
        "split or re-encode it",
        headers={"Connection": "close"},
    )
