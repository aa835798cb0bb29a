"""One frame of a stored video as a JPEG, for the results viewer; decoded in a thread, cached.

OpenCV comes with the ``ml`` extra, which an API image may leave out: :data:`OPENCV_MISSING`
then says so and the viewer shows it instead of frames. The cache is in memory, per process,
bounded by ``VIDJOBS_API_UI_FRAME_CACHE`` JPEGs (least recently used dropped first): a viewer
asks for the same few frames over and over, and a frame is a few tens of kB.
"""

from __future__ import annotations

import importlib.util
import threading
import uuid
from collections import OrderedDict
from pathlib import Path

import anyio.to_thread

from vidjobs.blobs import BlobStore

__all__ = ["OPENCV_MISSING", "FrameCache", "FrameUnavailable"]

OPENCV_MISSING: str | None = (
    None
    if importlib.util.find_spec("cv2") is not None
    else "OpenCV is not installed in this API process (install vidjobs[ml]): frames cannot be "
    "shown, the boxes and texts are drawn on a blank frame."
)


class FrameUnavailable(Exception):
    """The video could not be read at that time (missing blob, no such frame)."""


def _decode(path: Path, t_ms: int) -> bytes:
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise FrameUnavailable("the stored video cannot be opened")
        cap.set(cv2.CAP_PROP_POS_MSEC, float(t_ms))
        ok, frame = cap.read()
        if not ok:
            raise FrameUnavailable(f"no frame at {t_ms} ms")
        ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 80])
        if not ok:
            raise FrameUnavailable("the frame could not be encoded")
        return bytes(jpeg.tobytes())
    finally:
        cap.release()


class FrameCache:
    """JPEG frames by (job, t_ms), at most ``size`` kept."""

    def __init__(self, store: BlobStore, size: int) -> None:
        self._store = store
        self._size = size
        self._frames: OrderedDict[tuple[uuid.UUID, int], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def _grab(self, key: str, t_ms: int) -> bytes:
        try:
            path = self._store.get_to_tempfile(key, suffix=".mp4")
        except Exception as exc:
            raise FrameUnavailable(f"the stored video cannot be read: {exc}") from exc
        try:
            return _decode(path, t_ms)
        finally:
            path.unlink(missing_ok=True)

    async def frame(self, job_id: uuid.UUID, input_key: str, t_ms: int) -> bytes:
        """The JPEG of the frame at ``t_ms`` (raises FrameUnavailable)."""
        with self._lock:
            if (job_id, t_ms) in self._frames:
                self._frames.move_to_end((job_id, t_ms))
                return self._frames[(job_id, t_ms)]
        jpeg = await anyio.to_thread.run_sync(self._grab, input_key, t_ms)
        if self._size:
            with self._lock:
                self._frames[(job_id, t_ms)] = jpeg
                while len(self._frames) > self._size:
                    self._frames.popitem(last=False)
        return jpeg
