"""The streaming multipart parser and the MP4 header check, without any I/O."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from tests.support.media import mp4_bytes
from vidjobs.api.admission import UploadPace
from vidjobs.api.problems import ApiError
from vidjobs.api.uploads import (
    FileData,
    FileEnd,
    FileStart,
    FormField,
    MultipartStream,
    check_mp4_head,
    multipart_boundary,
)

pytestmark = pytest.mark.anyio

BOUNDARY = b"XyZ"


def _body(*parts: tuple[str, str | None, bytes]) -> bytes:
    out = b""
    for name, filename, data in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += b"--XyZ\r\nContent-Disposition: " + disp.encode() + b"\r\n\r\n" + data + b"\r\n"
    return out + b"--XyZ--\r\n"


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def _events(data: bytes, size: int) -> list[object]:
    stream = MultipartStream(_chunks(data, size), BOUNDARY)
    out: list[object] = []
    while (event := await stream.next()) is not None:
        out.append(event)
    return out


@pytest.mark.parametrize("size", [1, 7, 64, 100_000])
async def test_fields_then_file_in_any_chunking(size: int) -> None:
    video = mp4_bytes(10 * 1024)
    events = await _events(_body(("pipeline", None, b"noop"), ("file", "a.mp4", video)), size)
    assert events[0] == FormField(name="pipeline", value="noop")
    assert events[1] == FileStart(name="file", filename="a.mp4")
    assert b"".join(e.data for e in events if isinstance(e, FileData)) == video
    assert events[-1] == FileEnd()


async def test_truncated_body_is_a_400() -> None:
    data = _body(("file", "a.mp4", b"abc"))[:-10]
    with pytest.raises(ApiError) as info:
        await _events(data, 5)
    assert info.value.status_code == 400


async def test_part_without_a_name_is_a_400() -> None:
    data = b"--XyZ\r\nContent-Disposition: form-data\r\n\r\nx\r\n--XyZ--\r\n"
    with pytest.raises(ApiError) as info:
        await _events(data, 100)
    assert info.value.status_code == 400


async def test_oversized_field_is_a_422() -> None:
    with pytest.raises(ApiError) as info:
        await _events(_body(("pipeline", None, b"x" * 10_000)), 1000)
    assert info.value.status_code == 422


def test_boundary_required() -> None:
    assert multipart_boundary("multipart/form-data; boundary=abc") == b"abc"
    for bad in (None, "application/json", "multipart/form-data", "multipart/mixed; boundary=a"):
        with pytest.raises(ApiError) as info:
            multipart_boundary(bad)
        assert info.value.status_code == 415


@pytest.mark.parametrize(
    "head",
    [
        b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2",
        b"\x00\x00\x00\x14ftypqt  \x00\x00\x02\x00qt  ",
        b"\x00\x00\x00\x1cftypXXXX\x00\x00\x00\x00abcdmp42efgh",  # compatible brand counts
        b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\xff" * 1000,
    ],
)
def test_mp4_and_mov_heads_pass(head: bytes) -> None:
    check_mp4_head(head)


@pytest.mark.parametrize(
    ("head", "status", "slug"),
    [
        (b"", 422, "empty-file"),
        (b"hello world, this is text", 415, "not-mp4"),
        (b"\x00\x00\x00\x18ftyp", 415, "not-mp4"),  # too short to hold a brand
        (b"\x1aE\xdf\xa3" + b"\x00" * 40, 415, "not-mp4"),  # Matroska/WebM
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", 415, "not-mp4"),  # an image
    ],
)
def test_other_heads_fail(head: bytes, status: int, slug: str) -> None:
    with pytest.raises(ApiError) as info:
        check_mp4_head(head)
    assert (info.value.status_code, info.value.slug) == (status, slug)


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_pace_accepts_a_steady_body_and_cuts_a_trickle_at_the_end_of_its_stretch() -> None:
    clock = _Clock()
    pace = UploadPace(idle_timeout_s=3, min_bytes_per_s=1024, clock=clock)
    for _ in range(6):  # 2 KiB/s: every 3 s stretch is well over 1 KiB/s
        clock.now += 1
        pace.count(2048)
    trickle = UploadPace(idle_timeout_s=3, min_bytes_per_s=1024, clock=clock)
    trickle.count(1024)  # the head and 1 KB of MP4, then a byte every 2 s
    clock.now += 2
    trickle.count(1)  # 2 s in: the stretch is not over, not judged yet
    clock.now += 2
    with pytest.raises(ApiError) as caught:
        trickle.count(1)  # 4 s, 1026 bytes: 256 bytes/s
    assert caught.value.status_code == 408
    assert caught.value.slug == "upload-timeout"
    assert "256 bytes/s" in caught.value.detail
    assert "below the minimum of 1024 bytes/s" in caught.value.detail


def test_pace_without_a_minimum_rate_only_times_out_on_silence() -> None:
    clock = _Clock()
    pace = UploadPace(idle_timeout_s=3, min_bytes_per_s=0, clock=clock)
    for _ in range(10):
        clock.now += 2
        pace.count(1)


async def test_a_body_that_stalls_is_cut_off_with_408() -> None:
    async def stalls() -> AsyncIterator[bytes]:
        yield b"--XyZ\r\n"
        await anyio.sleep(30)
        yield b"never"

    stream = MultipartStream(stalls(), BOUNDARY, UploadPace(idle_timeout_s=0.2, min_bytes_per_s=0))
    with anyio.fail_after(5), pytest.raises(ApiError) as caught:
        await stream.next()  # the boundary alone completes no event: it waits for more
    assert caught.value.status_code == 408
    assert "sent nothing for 0.2 s" in caught.value.detail
