"""A corpus of malformed "videos", derived from good sample videos, for the bad-input tests.

Every entry is built deterministically (fixed seeds) from two small good videos made by
:func:`worker.synth.video.make_sample_video` (an H.264 one with ``moov`` first, an ``mp4v`` one
with ``moov`` last), so a failure names an exact, reproducible input. The MP4 boxes are parsed,
not guessed at: flips and truncations land inside the box they claim to hit.

``scripts/make_bad_corpus.py`` writes the corpus to a folder; the tests call
:func:`build_corpus` directly.
"""

from __future__ import annotations

import random
import struct
import subprocess
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vidjobs.devstack.synth.video import ffmpeg_exe, make_audio_only_mp4, make_sample_video

__all__ = ["BadInput", "Box", "build_corpus", "top_level_boxes", "walk_boxes"]

_CONTAINERS = frozenset({b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf", b"udta"})


@dataclass(frozen=True)
class BadInput:
    """One malformed file.

    Attributes:
        name: a stable file-name-safe id (``trunc_h264_0960``).
        description: what was done to the good file, for a person reading a failure.
        data: the bytes to upload.
        may_complete: the damage may land where a tolerant reader recovers (compressed frame
            data a decoder conceals, a field it ignores, a size it clamps to the file): such a
            job may also complete. Every other entry must be refused at submit or fail as a job.
    """

    name: str
    description: str
    data: bytes
    may_complete: bool = False


@dataclass(frozen=True)
class Box:
    """An ISO-BMFF box: where it starts, its declared size (header included) and its type."""

    offset: int
    size: int
    type: bytes

    @property
    def payload(self) -> int:
        """Offset of the first byte after the 8-byte header."""
        return self.offset + 8


def top_level_boxes(data: bytes) -> list[Box]:
    """The top-level boxes of a well-formed file (``size`` 0 means "to the end")."""
    return list(_boxes(data, 0, len(data)))


def walk_boxes(data: bytes) -> list[Box]:
    """Every box, descending into the container boxes (``moov``, ``trak``, ``stbl``...)."""
    out: list[Box] = []

    def go(start: int, end: int) -> None:
        for box in _boxes(data, start, end):
            out.append(box)
            if box.type in _CONTAINERS:
                go(box.payload, box.offset + box.size)

    go(0, len(data))
    return out


def _boxes(data: bytes, start: int, end: int) -> Iterator[Box]:
    i = start
    while i + 8 <= end:
        size, kind = struct.unpack(">I4s", data[i : i + 8])
        size = end - i if size == 0 else size
        if size < 8:
            return
        yield Box(i, size, kind)
        i += size


def _find(data: bytes, kind: bytes) -> Box:
    return next(b for b in walk_boxes(data) if b.type == kind)


def _set(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


def _flip(data: bytes, start: int, end: int, count: int, seed: int) -> bytes:
    """XOR ``count`` distinct bytes in ``[start, end)`` with 0xFF (deterministic)."""
    rng = random.Random(seed)
    out = bytearray(data)
    for pos in rng.sample(range(start, end), min(count, end - start)):
        out[pos] ^= 0xFF
    return bytes(out)


def _ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = major + b"\x00\x00\x02\x00" + b"".join(compatible)
    return struct.pack(">I4s", 8 + len(body), b"ftyp") + body


def _png() -> bytes:
    img = np.zeros((48, 64, 3), np.uint8)
    img[:, :32] = (0, 128, 255)
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return bytes(buf)


def _jpeg() -> bytes:
    img = np.full((48, 64, 3), 200, np.uint8)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return bytes(buf)


def _gif() -> bytes:
    # A 1x1 GIF89a, spelled out: OpenCV does not write GIFs.
    return (
        b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00"
        b"\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
    )


def _mov(path: Path, source: Path) -> bytes:
    """The good H.264 video remuxed into a QuickTime container (brand ``qt  ``)."""
    cmd = [ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(source)]
    subprocess.run(
        [*cmd, "-c", "copy", "-f", "mov", str(path)],
        check=True,
        capture_output=True,
    )
    return path.read_bytes()


def _resolution_bomb(path: Path) -> bytes:
    """Two black 8192x8192 frames: ~200 KB of H.264 that decode to 200 MB per frame."""
    cmd = [ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi", "-i"]
    cmd += ["color=black:s=8192x8192:r=1", "-frames:v", "2", "-c:v", "libx264"]
    cmd += ["-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)]
    subprocess.run(cmd, check=True, capture_output=True)
    return path.read_bytes()


def _good_videos(workdir: Path) -> tuple[bytes, bytes, bytes, bytes]:
    h264, mp4v, audio = workdir / "good.mp4", workdir / "good_mp4v.mp4", workdir / "audio.mp4"
    make_sample_video(h264, seconds=1.0, fps=10, width=320, height=192, seed=1)
    make_sample_video(mp4v, seconds=1.0, fps=10, width=320, height=192, seed=2, codec="mp4v")
    make_audio_only_mp4(audio, seconds=0.5)
    mov = _mov(workdir / "good.mov", h264)
    return h264.read_bytes(), mp4v.read_bytes(), audio.read_bytes(), mov


def _truncations(h264: bytes, mp4v: bytes) -> Iterator[BadInput]:
    boxes = {b.type: b for b in top_level_boxes(h264)}
    mdat = boxes[b"mdat"]
    cuts = {
        4: "inside the first box header",
        8: "right after the ftyp header",
        11: "in the middle of the major brand",
        16: "inside the ftyp box",
        boxes[b"moov"].offset: "ftyp only, before moov",
        boxes[b"moov"].payload + 40: "just inside moov",
        boxes[b"moov"].offset + boxes[b"moov"].size // 2: "in the middle of moov",
        boxes[b"moov"].offset + boxes[b"moov"].size - 4: "4 bytes before the end of moov",
        mdat.offset: "ftyp + moov, no mdat",
        mdat.payload + 16: "16 bytes into mdat",
        mdat.offset + mdat.size // 4: "a quarter into mdat",
        mdat.offset + mdat.size // 2: "half-way through mdat",
    }
    for cut, where in sorted(cuts.items()):
        yield BadInput(
            f"trunc_h264_{cut:05d}",
            f"H.264 sample (moov first) truncated at byte {cut} of {len(h264)}: {where}",
            h264[:cut],
        )
    for box in top_level_boxes(mp4v):
        for cut, where in ((box.payload, "after its header"), (box.offset + box.size // 2, "half")):
            if 12 <= cut < len(mp4v):
                yield BadInput(
                    f"trunc_mp4v_{cut:05d}",
                    f"mp4v sample (moov last) truncated at byte {cut} of {len(mp4v)}: "
                    f"{box.type.decode()} box, {where}",
                    mp4v[:cut],
                )


def _flips(h264: bytes, mp4v: bytes) -> Iterator[BadInput]:
    for label, data in (("h264", h264), ("mp4v", mp4v)):
        moov = next(b for b in top_level_boxes(data) if b.type == b"moov")
        for seed, count in ((1, 8), (2, 32), (3, 128)):
            yield BadInput(
                f"flip_moov_{label}_{count}",
                f"{count} bytes of the {label} sample's moov box inverted (seed {seed})",
                _flip(data, moov.payload, moov.offset + moov.size, count, seed),
                may_complete=count < 32,  # a few flips may hit fields a reader ignores
            )
        for kind in (b"stsz", b"stco", b"stsc", b"stts"):
            box = _find(data, kind)
            yield BadInput(
                f"flip_{kind.decode()}_{label}",
                f"every byte of the {label} sample's {kind.decode()} table inverted",
                _flip(data, box.payload + 8, box.offset + box.size, box.size, 7),
            )
        mdat = next(b for b in top_level_boxes(data) if b.type == b"mdat")
        yield BadInput(
            f"zero_mdat_{label}",
            f"the {label} sample's mdat payload zeroed (no decodable frame data)",
            _set(data, mdat.payload, bytes(mdat.size - 8)),
        )
        for seed, count in ((4, 16), (5, 256)):
            yield BadInput(
                f"flip_mdat_{label}_{count}",
                f"{count} bytes of the {label} sample's mdat inverted (seed {seed})",
                _flip(data, mdat.payload, mdat.offset + mdat.size, count, seed),
                may_complete=True,
            )


def _declared_sizes(h264: bytes) -> Iterator[BadInput]:
    boxes = {b.type: b for b in top_level_boxes(h264)}
    huge = struct.pack(">I", 0xFFFFFFF0)
    for kind in (b"ftyp", b"moov"):
        yield BadInput(
            f"huge_size_{kind.decode()}",
            f"the {kind.decode()} box declares 0xFFFFFFF0 bytes (4 GiB) in a small file",
            _set(h264, boxes[kind].offset, huge),
            may_complete=kind == b"moov",  # readers clamp a box to the end of the file
        )
    yield BadInput(
        "huge_size_mdat",
        "the mdat box declares 0xFFFFFFF0 bytes (4 GiB) in a small file",
        _set(h264, boxes[b"mdat"].offset, huge),
        may_complete=True,  # the last box: a reader may just stop at the end of the file
    )
    largesize = struct.pack(">I4sQ", 1, b"moov", 2**63 - 1)
    yield BadInput(
        "huge_largesize_moov",
        "moov uses a 64-bit largesize of 2**63-1 bytes",
        _set(h264, boxes[b"moov"].offset, largesize),
    )
    yield BadInput(
        "tiny_size_moov",
        "the moov box declares a size of 7 (smaller than its own header)",
        _set(h264, boxes[b"moov"].offset, struct.pack(">I", 7)),
    )
    for kind in (b"stsz", b"stco"):
        box = _find(h264, kind)
        count_at = box.payload + (8 if kind == b"stsz" else 4)
        yield BadInput(
            f"huge_count_{kind.decode()}",
            f"the {kind.decode()} table claims 0x7FFFFFFF entries but holds a few",
            _set(h264, count_at, struct.pack(">I", 0x7FFFFFFF)),
            may_complete=kind == b"stco",  # readers clamp the count to the box
        )
    stco = _find(h264, b"stco")
    yield BadInput(
        "chunk_offsets_past_eof",
        "every chunk offset (stco) points 1 GiB past the end of the file",
        _set(h264, stco.payload + 8, struct.pack(">I", 2**30) * ((stco.size - 16) // 4)),
    )
    tkhd = _find(h264, b"tkhd")
    yield BadInput(
        "huge_dimensions",
        "the track header (tkhd) declares a 65535x65535 picture",
        _set(h264, tkhd.offset + tkhd.size - 8, struct.pack(">II", 0xFFFF0000, 0xFFFF0000)),
        may_complete=True,  # decoders take the size from the codec config, not tkhd
    )


def _headers(h264: bytes, mov: bytes) -> Iterator[BadInput]:
    ftyp = top_level_boxes(h264)[0]
    rest = h264[ftyp.size :]
    for brand in (b"heic", b"avif", b"jp2 ", b"crx "):
        yield BadInput(
            f"brand_{brand.decode().strip()}",
            f"the video's ftyp replaced by an {brand.decode().strip()} (non-video) brand",
            _ftyp(brand, brand) + rest,
        )
    yield BadInput(
        "brand_m4a",
        "an ftyp of the same size claiming M4A (audio) in front of the H.264 video",
        _ftyp(b"M4A ", b"M4A ", b"mp42", b"isom", b"mp41") + rest,
        may_complete=True,  # a brand is a hint: the video inside is intact
    )
    yield BadInput(
        "no_ftyp_moov_first",
        "the ftyp box removed: the file starts with moov (legacy QuickTime layout)",
        rest,
    )
    yield BadInput(
        "mov_without_ftyp",
        "a QuickTime .mov whose ftyp box was removed (starts with a 'wide'/'moov' atom)",
        mov[top_level_boxes(mov)[0].size :],
    )
    yield BadInput(
        "mov_truncated",
        "a QuickTime .mov (brand 'qt  ') cut at half its length",
        mov[: len(mov) // 2],
    )
    moov = next(b for b in top_level_boxes(h264) if b.type == b"moov")
    yield BadInput(
        "moov_renamed",
        "the moov box renamed 'xxxx': the file has no index",
        _set(h264, moov.offset + 4, b"xxxx"),
    )
    yield BadInput(
        "moov_zeroed",
        "the moov payload zeroed",
        _set(h264, moov.payload, bytes(moov.size - 8)),
    )
    yield BadInput(
        "ftyp_size_0", "ftyp declares size 0 ('to end of file')", _set(h264, 0, bytes(4))
    )
    yield BadInput("ftyp_only", "nothing but a valid ftyp box", h264[: ftyp.size])
    yield BadInput(
        "ftyp_twice", "the ftyp box, then ftyp again, nothing else", h264[: ftyp.size] * 2
    )


def _foreign(h264: bytes, audio: bytes) -> Iterator[BadInput]:
    ftyp = h264[: top_level_boxes(h264)[0].size]
    rng = random.Random(11)
    for n in (16, 1024, 65536):
        yield BadInput(
            f"ftyp_then_random_{n}",
            f"a valid ftyp followed by {n} random bytes",
            ftyp + rng.randbytes(n),
        )
    yield BadInput(
        "ftyp_then_text",
        "a valid ftyp followed by a text document",
        ftyp + b"Lorem ipsum dolor sit amet\n" * 40,
    )
    yield BadInput("audio_only", "an AAC-only MP4 (no video stream)", audio)
    yield BadInput("empty", "zero bytes", b"")
    yield BadInput("one_byte", "a single byte", b"\x00")
    yield BadInput("png_renamed", "a PNG image uploaded as .mp4", _png())
    yield BadInput("jpeg_renamed", "a JPEG image uploaded as .mp4", _jpeg())
    yield BadInput("gif_renamed", "a GIF image uploaded as .mp4", _gif())
    yield BadInput("text_renamed", "an HTML page uploaded as .mp4", b"<!doctype html><p>hi</p>\n")
    yield BadInput("pdf_renamed", "a PDF header uploaded as .mp4", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    yield BadInput(
        "zlib_renamed", "zlib-compressed video bytes uploaded as .mp4", zlib.compress(h264)
    )
    yield BadInput("random_4k", "4 KiB of random bytes", rng.randbytes(4096))
    yield BadInput("zeros_4k", "4 KiB of zero bytes", bytes(4096))


def build_corpus(workdir: Path | None = None) -> list[BadInput]:
    """Generate the corpus (about a second of CPU); entry names are unique and stable.

    Args:
        workdir: where the good source videos are written; a temporary folder by default.
    """
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="vidjobs-corpus-") as tmp:
            return build_corpus(Path(tmp))
    workdir.mkdir(parents=True, exist_ok=True)
    h264, mp4v, audio, mov = _good_videos(workdir)
    makers: list[Callable[[], Iterator[BadInput]]] = [
        lambda: _truncations(h264, mp4v),
        lambda: _flips(h264, mp4v),
        lambda: _declared_sizes(h264),
        lambda: _headers(h264, mov),
        lambda: _foreign(h264, audio),
    ]
    corpus = [entry for make in makers for entry in make()]
    corpus.append(
        BadInput(
            "resolution_bomb_8192",
            "a valid H.264 MP4 of two 8192x8192 frames (~200 KB, 200 MB per decoded frame)",
            _resolution_bomb(workdir / "bomb.mp4"),
        )
    )
    names = [e.name for e in corpus]
    assert len(names) == len(set(names)), "corpus names must be unique"
    return corpus
