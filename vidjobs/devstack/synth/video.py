"""Test videos with known text and known objects at known times.

Used by the pipeline tests, the benchmark and ``vidjobs demo``: the video is drawn frame by
frame from a seed, so its ground truth (which text and which shapes are where, when) is exact.
H.264, HEVC, VP9 and AV1 (in MP4) go through the ffmpeg binary bundled with ``imageio-ffmpeg``
(raw frames on a pipe);
``mp4v`` goes through OpenCV's ``VideoWriter``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import cv2
import msgspec
import numpy as np

from vidjobs.devstack.synth.shapes import (
    CLASSES,
    Box,
    Image,
    ShapeSpec,
    draw_shape,
    random_background,
    random_colour,
)

__all__ = [
    "GroundTruth",
    "ObjectTruth",
    "TextTruth",
    "ffmpeg_exe",
    "make_audio_only_mp4",
    "make_sample_video",
    "write_ffmpeg",
]

Codec = Literal["h264", "hevc", "vp9", "av1", "mp4v"]

#: The ffmpeg encoder and its options for each codec written through the ffmpeg binary (all in
#: MP4). AV1 through libaom at cpu-used 8 (real-time speed: seconds for a short clip).
_ENCODERS: dict[str, list[str]] = {
    "h264": ["-c:v", "libx264", "-preset", "veryfast", "-crf", "20"],
    "hevc": ["-c:v", "libx265", "-preset", "ultrafast", "-crf", "24", "-tag:v", "hvc1",
             "-x265-params", "log-level=error:pools=1"],
    "vp9": ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8",
            "-crf", "32", "-b:v", "0"],
    "av1": ["-c:v", "libaom-av1", "-usage", "realtime", "-cpu-used", "8",
            "-crf", "32", "-b:v", "0"],
}  # fmt: skip

_WORDS = (
    "HELLO",
    "VIDJOBS",
    "ALPHA",
    "EXIT",
    "OPEN",
    "ZONE",
    "SALE",
    "METRO",
    "DELTA",
    "NORTH",
    "TAXI",
    "PIZZA",
)
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_TEXT_SCALE = 1.6
_TEXT_THICKNESS = 3
# Text is drawn twice, a thick black outline under white letters: readable on any background.
_TEXT_STROKES = (((0, 0, 0), _TEXT_THICKNESS + 5), ((255, 255, 255), _TEXT_THICKNESS))


@dataclass(frozen=True)
class TextTruth:
    """A caption on screen for ``start_ms <= t < end_ms`` inside ``box``."""

    text: str
    start_ms: int
    end_ms: int
    box: Box


@dataclass(frozen=True)
class ObjectTruth:
    """A shape moving linearly from ``box_start`` to ``box_end`` while on screen."""

    label: str
    class_id: int
    start_ms: int
    end_ms: int
    box_start: Box
    box_end: Box

    def box_at(self, t_ms: float) -> tuple[float, float, float, float]:
        """The box at ``t_ms`` (interpolated like the renderer does)."""
        span = max(1, self.end_ms - self.start_ms)
        f = min(1.0, max(0.0, (t_ms - self.start_ms) / span))
        a, b = self.box_start, self.box_end
        x1, y1, x2, y2 = (a[i] + (b[i] - a[i]) * f for i in range(4))
        return (x1, y1, x2, y2)


@dataclass(frozen=True)
class GroundTruth:
    """What a generated video shows, and when."""

    width: int
    height: int
    fps: float
    frames: int
    codec: str
    texts: tuple[TextTruth, ...]
    objects: tuple[ObjectTruth, ...]

    def texts_at(self, t_ms: float) -> list[TextTruth]:
        """Captions visible at ``t_ms``."""
        return [t for t in self.texts if t.start_ms <= t_ms < t.end_ms]

    def objects_at(self, t_ms: float) -> list[ObjectTruth]:
        """Objects visible at ``t_ms``."""
        return [o for o in self.objects if o.start_ms <= t_ms < o.end_ms]

    def to_json(self) -> bytes:
        """Ground truth as JSON (saved next to demo videos)."""
        return msgspec.json.encode(asdict(self))


@dataclass(frozen=True)
class _Segment:
    start_ms: int
    end_ms: int
    background: Image
    text: TextTruth | None
    text_org: tuple[int, int]
    shapes: tuple[tuple[ShapeSpec, ShapeSpec, int], ...]  # start spec, end spec, class id


def _plan(
    rng: np.random.Generator, seconds: float, segment_s: float, width: int, height: int
) -> list[_Segment]:
    """Lay out segments: a background, maybe a caption (bottom band), 0-2 moving shapes (top)."""
    segments: list[_Segment] = []
    total_ms = round(seconds * 1000)
    seg_ms = round(segment_s * 1000)
    for k, start in enumerate(range(0, total_ms, seg_ms)):
        end = min(total_ms, start + seg_ms)
        bg, mean = random_background(rng, width, height)
        text = None
        org = (0, 0)
        if k % 4 != 3:  # every fourth segment has no caption: text must also disappear
            word = f"{_WORDS[k % len(_WORDS)]} {10 + k}"
            (tw, th), base = cv2.getTextSize(word, _FONT, _TEXT_SCALE, _TEXT_THICKNESS)
            x = int(rng.integers(10, max(11, width - tw - 10)))
            y = height - 30
            box = (x - 3, y - th - 3, x + tw + 3, y + base + 3)
            org = (x, y)
            text = TextTruth(word, start, end, box)
        shapes = []
        n = 0 if k % 5 == 4 else 1 + k % 2
        band = width // max(1, n)
        for j in range(n):
            cid = int(rng.integers(0, len(CLASSES)))
            r = float(rng.uniform(26, 48))
            cx0 = float(rng.uniform(j * band + r + 4, (j + 1) * band - r - 4))
            cy0 = float(rng.uniform(r + 4, height - 90 - r))
            dx, dy = (float(v) for v in rng.uniform(-40, 40, size=2))
            cx1 = float(np.clip(cx0 + dx, j * band + r + 4, (j + 1) * band - r - 4))
            cy1 = float(np.clip(cy0 + dy, r + 4, height - 90 - r))
            colour = random_colour(rng, mean)
            a = float(rng.uniform(-15, 15))
            s0 = ShapeSpec(CLASSES[cid], cx0, cy0, r, colour, a)
            s1 = ShapeSpec(CLASSES[cid], cx1, cy1, r, colour, a)
            shapes.append((s0, s1, cid))
        segments.append(_Segment(start, end, bg, text, org, tuple(shapes)))
    return segments


def _lerp(a: ShapeSpec, b: ShapeSpec, f: float) -> ShapeSpec:
    return ShapeSpec(
        a.label, a.cx + (b.cx - a.cx) * f, a.cy + (b.cy - a.cy) * f, a.radius, a.colour, a.angle_deg
    )


def _render(segments: list[_Segment], fps: float, frames: int) -> Iterator[Image]:
    for i in range(frames):
        t = i * 1000.0 / fps
        seg = next(s for s in segments if s.start_ms <= t < s.end_ms)
        img = seg.background.copy()
        f = (t - seg.start_ms) / max(1, seg.end_ms - seg.start_ms)
        for s0, s1, _ in seg.shapes:
            draw_shape(img, _lerp(s0, s1, f))
        if seg.text is not None:
            for colour, thickness in _TEXT_STROKES:
                cv2.putText(
                    img,
                    seg.text.text,
                    seg.text_org,
                    _FONT,
                    _TEXT_SCALE,
                    colour,
                    thickness,
                    cv2.LINE_AA,
                )
        yield img


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg (libx264 included)."""
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def write_ffmpeg(  # noqa: PLR0917 - the frames and their geometry
    path: Path, frames: Iterator[Image], fps: float, width: int, height: int, codec: str
) -> None:
    cmd = [
        ffmpeg_exe(), "-y", "-loglevel", "error",
        "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{width}x{height}", "-r", f"{fps:g}",
        "-i", "-",
        *_ENCODERS[codec], "-pix_fmt", "yuv420p",
        "-threads", "1", "-movflags", "+faststart", str(path),
    ]  # fmt: skip
    with subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdin is not None
        assert proc.stderr is not None
        try:
            for img in frames:
                proc.stdin.write(img.tobytes())
        finally:
            proc.stdin.close()
            err = proc.stderr.read()
            rc = proc.wait()
    if rc != 0:
        raise RuntimeError(f"ffmpeg failed ({rc}): {err.decode(errors='replace')[-500:]}")


def _write_mp4v(path: Path, frames: Iterator[Image], fps: float, width: int, height: int) -> None:
    fourcc = cv2.VideoWriter.fourcc(*"mp4v")
    writer = cv2.VideoWriter(str(path), fourcc, fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write mp4v to {path}")
    try:
        for img in frames:
            writer.write(img)
    finally:
        writer.release()


def make_sample_video(
    path: Path,
    seconds: float = 4.0,
    *,
    fps: float = 25.0,
    width: int = 640,
    height: int = 360,
    codec: Codec = "h264",
    segment_s: float = 2.0,
    seed: int = 0,
    ground_truth_path: Path | None = None,
) -> GroundTruth:
    """Write a video of captions and moving shapes and return (optionally save) its truth.

    The timeline is cut into ``segment_s`` segments, each with its own background; most show a
    distinct caption (``"HELLO 10"``, ``"VIDJOBS 11"``…) in the bottom band and one or two shapes
    gliding in the upper part. Every fourth segment has no caption, every fifth no shapes.
    """
    rng = np.random.default_rng(seed)
    segments = _plan(rng, seconds, segment_s, width, height)
    frames = round(seconds * fps)
    gen = _render(segments, fps, frames)
    path.parent.mkdir(parents=True, exist_ok=True)
    if codec in _ENCODERS:
        write_ffmpeg(path, gen, fps, width, height, codec)
    elif codec == "mp4v":
        _write_mp4v(path, gen, fps, width, height)
    else:
        raise ValueError(f"codec must be one of {sorted([*_ENCODERS, 'mp4v'])}, got {codec!r}")
    texts = tuple(s.text for s in segments if s.text is not None)
    objects = tuple(
        ObjectTruth(
            s0.label, cid, seg.start_ms, seg.end_ms,
            draw_shape(np.zeros((height, width, 3), np.uint8), s0),
            draw_shape(np.zeros((height, width, 3), np.uint8), s1),
        )
        for seg in segments
        for s0, s1, cid in seg.shapes
    )  # fmt: skip
    truth = GroundTruth(width, height, fps, frames, codec, texts, objects)
    if ground_truth_path is not None:
        ground_truth_path.write_bytes(truth.to_json())
    return truth


def make_audio_only_mp4(path: Path, seconds: float = 1.0) -> None:
    """Write an MP4 with a sine-wave audio track and no video stream (a malformed input)."""
    cmd = [
        ffmpeg_exe(), "-y", "-loglevel", "error",
        "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds:g}",
        "-c:a", "aac", "-vn", str(path),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)
