"""Shot stage: cut detection between consecutive sampled frames, and the shot list.

A cut changes the whole picture at once; motion inside a shot changes a part of it. The rule
compares colour histograms (hue x saturation, on a 160x90 thumbnail) of consecutive sampled
frames by Bhattacharyya distance, which ignores where things are: objects moving or a caption
changing barely move it, a new scene does. A distance over the threshold is a cut when the
picture changed too (mean grey difference of 128x72 thumbnails over ``_MIN_GREY_CHANGE``), so a
colour shift with the same picture (a lighting change) is not; a distance over
``_SURE_CUT`` is a cut on its own. Cost ~0.5 ms per sampled frame. The thresholds and how they
were measured: docs/pipeline.md ("Shots").

Only sampled frames are seen, so a cut is known to lie between two sampled frames; a shot
starts at its first sampled frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt

from vidjobs.schema.results import FrameResult, Shot

__all__ = ["ShotDetector", "list_shots"]

_THUMB = (160, 90)
_BINS = [16, 8]  # hue, saturation
_RANGES = [0, 180, 0, 256]
_MIN_GREY_CHANGE = 8.0  # grey levels (0-255); within a shot the mean difference stayed <= 3
_SURE_CUT = 0.5


def _signature(
    image: npt.NDArray[np.uint8],
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    small = cv2.resize(image, _THUMB, interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, _BINS, _RANGES)
    cv2.normalize(hist, hist, alpha=1.0, norm_type=cv2.NORM_L1)
    grey = cv2.resize(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), (128, 72))
    return np.asarray(hist, dtype=np.float32), grey.astype(np.float32)


class ShotDetector:
    """Feed it the sampled frames in order; it says which shot each belongs to."""

    def __init__(self, threshold: float) -> None:
        self._threshold = threshold
        self._previous: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]] | None = None
        self.shot = 0

    def observe(self, image: npt.NDArray[np.uint8]) -> int:
        """The shot index of this frame (a new one when it differs enough from the last)."""
        current = _signature(image)
        if self._previous is not None:
            distance = float(
                cv2.compareHist(self._previous[0], current[0], cv2.HISTCMP_BHATTACHARYYA)
            )
            if distance > self._threshold and (
                distance > _SURE_CUT
                or float(np.mean(np.abs(current[1] - self._previous[1]))) > _MIN_GREY_CHANGE
            ):
                self.shot += 1
        self._previous = current
        return self.shot


def list_shots(frames: Sequence[FrameResult], duration_ms: int) -> list[Shot]:
    """The shots of time-ordered frames: each from its first sampled frame to the next shot's."""
    starts: list[tuple[int, int, int]] = []  # shot, start_ms, frames
    for frame in frames:
        if starts and starts[-1][0] == frame.shot:
            shot, start, count = starts[-1]
            starts[-1] = (shot, start, count + 1)
        else:
            starts.append((frame.shot, frame.t_ms, 1))
    shots = []
    for i, (shot, start, count) in enumerate(starts):
        end = starts[i + 1][1] if i + 1 < len(starts) else max(duration_ms, start)
        shots.append(Shot(shot=shot, start_ms=start, end_ms=end, frames=count))
    return shots
