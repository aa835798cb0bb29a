"""The decode stage's fallback: PyAV's bundled FFmpeg (dav1d for AV1) for what OpenCV cannot read.

OpenCV stays first: it decoded the 4 s test clips 4-12x faster than PyAV (docs/pipeline.md,
"Decoders"). PyAV takes over when OpenCV cannot open a file or decodes none of its frames, e.g.
an OpenCV build whose FFmpeg has no software AV1 decoder. Timestamps are the frames' pts in the
stream's time base, counted from the stream's start as OpenCV's ``CAP_PROP_POS_MSEC`` is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vidjobs.worker.outcome import InvalidVideo

__all__ = ["AvStream", "av_frames", "av_probe"]

#: ``(t_ms, image())``: a decoded frame's time and the conversion to BGR, done only if chosen.
Frame = tuple[float, Callable[[], npt.NDArray[np.uint8]]]


@dataclass(frozen=True)
class AvStream:
    """What PyAV reads from the container's header about its first video stream."""

    codec: str
    width: int
    height: int
    frames: int
    fps: float


def av_probe(path: Path | str) -> AvStream | None:
    """The first video stream's description, or None (PyAV missing, no video stream, or no
    decoder for its codec: the caller's ffmpeg probe then names the codec)."""
    try:
        import av
    except ImportError:
        return None
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return None
            stream = container.streams.video[0]
            if stream.codec_context is None:  # no decoder in PyAV's FFmpeg either
                return None
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            frames = int(stream.frames or 0)
            if frames <= 0 and stream.duration and stream.time_base and fps > 0:
                frames = round(float(stream.duration * stream.time_base) * fps)
            return AvStream(
                codec=_codec_name(stream),
                width=int(stream.codec_context.width),
                height=int(stream.codec_context.height),
                frames=frames,
                fps=fps,
            )
    except (av.FFmpegError, ValueError, OSError):
        return None


def _codec_name(stream: Any) -> str:
    """FFmpeg's codec name (``av1``, not the decoder's ``libdav1d``)."""
    try:
        return str(stream.codec_context.codec.canonical_name)
    except Exception:  # no decoder for it: the name from the stream's parameters
        return str(getattr(stream.codec_context, "name", "unknown"))


def av_frames(path: Path | str, codec: str, *, from_ms: float = 0.0) -> Iterator[Frame]:
    """Every frame of the first video stream, in decode order, with its time.

    ``from_ms`` > 0 seeks to the keyframe at or before that time first (a segment job), so
    the frames come from there on; their times are still counted from the stream's start.

    Raises:
        InvalidVideo: PyAV has no decoder for ``codec`` (the message names it), or the data
            cannot be decoded from the start.
    """
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        base = stream.time_base
        start = stream.start_time or 0
        if from_ms > 0 and base is not None:
            container.seek(
                start + int(from_ms / 1000 / base), stream=stream, backward=True, any_frame=False
            )
        decoded = 0
        try:
            for frame in container.decode(stream):
                pts = frame.pts if frame.pts is not None else start
                t_ms = float((pts - start) * base * 1000) if base is not None else 0.0
                decoded += 1
                yield t_ms, _bgr(frame)
        except av.FFmpegError as exc:
            if decoded == 0:
                raise InvalidVideo(
                    f"the video's codec ({codec}) cannot be decoded here: {exc}"
                ) from exc
            return  # the data ends or breaks mid-way: the caller's truncation check decides


def _bgr(frame: Any) -> Callable[[], npt.NDArray[np.uint8]]:
    def convert() -> npt.NDArray[np.uint8]:
        return np.asarray(frame.to_ndarray(format="bgr24"), dtype=np.uint8)

    return convert
