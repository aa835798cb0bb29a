"""Decode stage: open a video with OpenCV, describe it, and yield frames sampled at a rate.

Timestamps come from the container (``CAP_PROP_POS_MSEC`` of each decoded frame), not from
``frame_index / fps``, which is wrong for variable-frame-rate video and edited containers.
What OpenCV cannot open or decode (an OpenCV build without a software AV1 decoder) goes through
PyAV's bundled FFmpeg (``av_decode.py``), with the same sampling and the same checks.
``video.codec`` is FFmpeg's codec name (``h264``, ``hevc``, ``vp9``, ``av1``, ``mpeg4``) whichever
decoder ran.
"""

from __future__ import annotations

import functools
import math
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt

from vidjobs.schema.results import VideoInfo
from vidjobs.worker.outcome import InvalidVideo
from vidjobs.worker.pipelines.yolo_ocr.av_decode import av_frames, av_probe

__all__ = ["MAX_FRAME_PIXELS", "SampledFrame", "VideoSource", "planned_samples"]

#: A video that ends before this share of the frames its header announces is truncated.
_TRUNCATED_BELOW = 0.9

#: Largest frame decoded (8K UHD). 200 KB of H.264 can declare 8192x8192 frames, which raised
#: a worker's peak memory from 1.1 to 2.0 GB per job (measured); refused before decoding.
MAX_FRAME_PIXELS = 7680 * 4320


@dataclass(frozen=True)
class SampledFrame:
    """A decoded frame chosen for analysis (BGR, as OpenCV returns it).

    ``primer``: the sample just before a segment's range, decoded so that the segment's first
    frame is compared with the frame before it (cut detection), never analysed.
    """

    frame_index: int
    t_ms: int
    image: npt.NDArray[np.uint8]
    primer: bool = False


def planned_samples(info: VideoInfo, sample_fps: float) -> int:
    """How many frames ``sample_fps`` picks from the video: known before decoding.

    One frame at t=0, then one every ``1/sample_fps`` seconds while the video lasts, never more
    than the video's frames.
    """
    step_ms = 1000.0 / sample_fps
    return max(1, min(info.frames, math.ceil(info.duration_ms / step_ms - 1e-9)))


#: FourCC (as OpenCV reports it) → FFmpeg's codec name, so clients need not know FourCCs and get
#: the name PyAV reports for the same stream (``VP90`` is vp9, ``AV01`` av1).
_CODECS = {
    "avc1": "h264", "h264": "h264", "x264": "h264", "avc3": "h264",
    "hev1": "hevc", "hvc1": "hevc", "hevc": "hevc", "h265": "hevc",
    "fmp4": "mpeg4", "mp4v": "mpeg4", "xvid": "mpeg4", "divx": "mpeg4",
    "av01": "av1", "vp09": "vp9", "vp90": "vp9", "vp08": "vp8", "vp80": "vp8", "mjpg": "mjpeg",
}  # fmt: skip


def _codec(value: float) -> str:
    code = int(value)
    chars = "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4)).strip("\x00 ").lower()
    if not chars or not chars.isprintable():
        return "unknown"
    return _CODECS.get(chars, chars)


def _probed_codec(line: str) -> str:
    """The codec ffmpeg names on a ``Stream #0:0: Video: ...`` line; its tag when it knows none.

    ``Video: h264 (High) (avc1 / 0x31637661), ...`` gives ``h264``; ``Video: none (a64m /
    0x6D343661), ...`` (a codec this FFmpeg cannot even name) gives ``a64m``.
    """
    match = re.search(r"Video: ([^\s,]+)(?: \(([^/)]+?) ?/)?", line)
    if match is None:
        return "unknown"
    name, tag = match.group(1), match.group(2)
    return tag.strip() if name == "none" and tag else name


def _explain_unopenable(path: Path | str) -> str:
    """Say why OpenCV could not open a file, from what ffmpeg sees in it (failure path only)."""
    generic = (
        "the file cannot be opened as a video (not a video container, truncated before its "
        "index, or an unsupported codec)"
    )
    try:
        import imageio_ffmpeg

        probe = subprocess.run(
            [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
            capture_output=True,
            timeout=20,
            check=False,
        )
    except (ImportError, OSError, subprocess.SubprocessError):
        return generic
    streams = [
        line for line in probe.stderr.decode(errors="replace").splitlines() if "Stream #" in line
    ]
    video = [_probed_codec(line) for line in streams if "Video:" in line]
    if video:
        return (
            f"the video stream (codec {video[0]}) cannot be decoded: corrupt data, or a codec "
            "with no decoder here (docs/pipeline.md, 'Decoders', lists what is read)"
        )
    if streams:
        return "the file has no video stream (audio only or other non-video streams)"
    if b"Input #0" in probe.stderr:
        return "the file contains no video frames (an empty, zero-frame or corrupt video)"
    return generic


class VideoSource:
    """An opened video: ``info`` describes it, ``sample()`` yields the frames to analyse.

    ``path`` is a local file or a URL FFmpeg reads with range requests (a presigned S3 GET:
    a segment job reads its range without downloading the video). ``decoder="pyav"`` skips
    OpenCV (the fallback's own tests); ``auto`` tries OpenCV first. Raises ``InvalidVideo`` on
    construction when the file cannot be opened, has no video stream or has no frames, and
    from ``sample()`` when the file ends far earlier than its header says (truncated) or no
    frame decodes.
    """

    def __init__(self, path: Path | str, *, decoder: Literal["auto", "pyav"] = "auto") -> None:
        self.path = path
        if isinstance(path, Path) and (not path.is_file() or path.stat().st_size == 0):
            raise InvalidVideo(f"the input file is missing or empty ({path.name})")
        cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        self._cap: cv2.VideoCapture | None = cap
        if cap.isOpened() and decoder == "auto":
            width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
            height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            fps = float(cap.get(cv2.CAP_PROP_FPS))
            codec = _codec(cap.get(cv2.CAP_PROP_FOURCC))
        else:
            cap.release()
            self._cap = None
            probe = av_probe(path)
            if probe is None:
                raise InvalidVideo(_explain_unopenable(path))
            width, height, frames, fps, codec = (
                probe.width, probe.height, probe.frames, probe.fps, probe.codec
            )  # fmt: skip
        if width <= 0 or height <= 0:
            self.close()
            raise InvalidVideo("the file has no video stream (audio only or unknown streams)")
        if width * height > MAX_FRAME_PIXELS:
            self.close()
            raise InvalidVideo(
                f"the video is {width}x{height}: larger than 8K ({MAX_FRAME_PIXELS} pixels "
                "per frame), which is the largest analysed; scale it down first"
            )
        if frames <= 0:
            self.close()
            raise InvalidVideo("the video stream has no frames")
        if not math.isfinite(fps) or fps <= 0:
            self.close()
            raise InvalidVideo("the video stream has no frame rate; cannot place frames in time")
        self.decoder = "opencv" if self._cap is not None else "pyav"
        """Which decoder yields the frames: ``opencv``, or ``pyav`` for what OpenCV cannot."""
        self.info = VideoInfo(
            duration_ms=round(frames * 1000.0 / fps),
            fps=round(fps, 4),
            width=width,
            height=height,
            frames=frames,
            codec=codec,
        )

    def close(self) -> None:
        """Release the decoder (also done when ``sample()`` finishes)."""
        if self._cap is not None:
            self._cap.release()

    def _frames(
        self, from_ms: float = 0.0
    ) -> Iterator[tuple[int, float, Callable[[], npt.NDArray[np.uint8] | None]]]:
        """Every frame's index, time and a way to get its image: OpenCV's, else PyAV's.

        ``from_ms`` > 0 seeks first (a segment job): the decoder starts at the keyframe before
        and decodes forward to that time. Indexes then come from the timestamps (OpenCV's
        frame position, or t x fps), which for a constant frame rate are the frames' ordinals.
        """
        cap = self._cap
        if cap is not None:
            grabbed = 0
            if from_ms > 0:
                cap.set(cv2.CAP_PROP_POS_MSEC, from_ms)
            while cap.grab():
                index = int(cap.get(cv2.CAP_PROP_POS_FRAMES)) - 1 if from_ms > 0 else grabbed
                grabbed += 1
                t = float(cap.get(cv2.CAP_PROP_POS_MSEC))
                yield index, t, functools.partial(_retrieve, cap)
            if grabbed:
                return
            # Opened but decoded nothing (e.g. AV1 without a software decoder in OpenCV's
            # FFmpeg): PyAV's decoder reads it, or says it cannot, naming the codec.
            cap.release()
            self._cap = None
            if av_probe(self.path) is None:
                return
            self.decoder = "pyav"
        for ordinal, (t, image_of) in enumerate(
            av_frames(self.path, self.info.codec, from_ms=from_ms)
        ):
            yield (round(t * self.info.fps / 1000) if from_ms > 0 else ordinal), t, image_of

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def sample(
        self, sample_fps: float, *, first: int = 0, stop: int | None = None
    ) -> Iterator[SampledFrame]:
        """Yield the frames of samples ``first`` to ``stop`` (exclusive; None: all), in order.

        Every frame is grabbed (decoding in order is exact and cheap at these sizes); only the
        chosen ones are converted to BGR images. A frame is chosen when its timestamp reaches
        the next multiple of ``1 / sample_fps`` seconds: the grid is the video's, so a segment
        job (``first`` > 0) picks the very frames the whole video's run picks. It seeks to just
        before sample ``first - 1``, which it yields as the ``primer``.
        """
        total = planned_samples(self.info, sample_fps)
        stop = total if stop is None else min(stop, total)
        step_ms = 1000.0 / sample_fps
        half_frame_ms = 500.0 / self.info.fps
        emitted = max(0, first - 1)
        from_ms = max(0.0, emitted * step_ms - 4 * half_frame_ms) if first > 0 else 0.0
        index = -1
        try:
            for index, t, image_of in self._frames(from_ms):
                if t + half_frame_ms <= emitted * step_ms:
                    continue
                image = image_of()
                if image is None:
                    break
                yield SampledFrame(
                    frame_index=index, t_ms=round(t), image=image, primer=emitted < first
                )
                emitted += 1
                if emitted >= stop:
                    break
        finally:
            self.close()
        if index < 0:
            raise InvalidVideo(
                "no frame of the video could be decoded (the file is truncated or its video "
                "data is corrupt)"
            )
        if emitted < stop and index + 1 < _TRUNCATED_BELOW * self.info.frames:
            raise InvalidVideo(
                f"the video is truncated or corrupt: only {index + 1} of the "
                f"{self.info.frames} frames its header announces could be decoded"
            )


def _retrieve(cap: cv2.VideoCapture) -> npt.NDArray[np.uint8] | None:
    ok, image = cap.retrieve()
    return np.asarray(image, dtype=np.uint8) if ok and image is not None else None
