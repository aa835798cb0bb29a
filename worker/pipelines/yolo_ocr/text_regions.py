"""Where a frame changed since the OCR last read it, so text is detected and read only there.

Captions, tickers and signs stay put for seconds while objects move: between two sampled frames
of one shot most of the picture is the same. ``RegionMemory`` keeps, for one video, the grey
4x4-block means of the picture *as the OCR last read each part of it* and the text lines it
found. ``changed_rects`` compares a new frame with that reference: blocks whose mean moved by
more than ``_CHANGED_ABOVE`` levels (codec noise on a still area stays under ~5) are grouped
into rectangles, each grown by ``_MARGIN`` pixels and then over every remembered line it
touches (a line of which only a few letters changed is read again whole). Lines outside every
rectangle are kept as they were (box, text and confidence); only the rectangles go through the
text detector and their lines through the recogniser. The reference is updated only where the
OCR ran, so a slow fade that moves each block a little per frame still adds up to a change.
When too much changed (``_FULL_ABOVE`` of the frame, or more than ``_MAX_RECTS`` pieces) the
whole frame is read, exactly as without a memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import numpy.typing as npt

__all__ = ["OcrLine", "Rect", "RegionMemory", "block_means", "changed_rects", "untouched"]

#: ``(x1, y1, x2, y2)`` in frame pixels, end exclusive.
Rect = tuple[int, int, int, int]

#: Side of the square blocks whose grey means are compared.
_BLOCK = 4
#: A block changed when its mean moved by more than this many grey levels (0-255).
_CHANGED_ABOVE = 10.0
#: Pixels added around each changed area: the text detector needs context around a glyph.
_MARGIN = 32
#: Smallest side of a rectangle sent to the text detector (it pads thinner ones anyway).
_MIN_SIDE = 96
#: The text detector's input is a multiple of this; a rectangle of such a size is seen at
#: the frame's own scale (another size would be resized by up to 16 %, and a shape that the
#: whole frame's read leaves alone can then look like a glyph).
_STRIDE = 32
#: Above this share of the frame changed, or this many rectangles, the whole frame is read.
_FULL_ABOVE = 0.5
_MAX_RECTS = 8


@dataclass(frozen=True)
class OcrLine:
    """One line as RapidOCR gave it: four corners in frame pixels, the text, its confidence."""

    box: npt.NDArray[np.float32]
    text: str
    score: float


@dataclass
class RegionMemory:
    """One video's OCR state between sampled frames (never shared by two videos)."""

    reference: npt.NDArray[np.float32] | None = None
    lines: list[OcrLine] = field(default_factory=list)
    #: Frames read whole / through changed rectangles only (for the logs and the benchmark).
    full_reads: int = 0
    partial_reads: int = 0

    def forget(self) -> None:
        """Start over: the next frame is read whole."""
        self.reference = None
        self.lines = []

    def remember(
        self, current: npt.NDArray[np.float32], lines: list[OcrLine], rects: list[Rect] | None
    ) -> None:
        """Record what the OCR read: the whole frame (``rects`` None) or only ``rects``."""
        if rects is None or self.reference is None:
            self.reference = current.copy()
        else:
            for x1, y1, x2, y2 in rects:
                # Only blocks wholly inside the rectangle were read again.
                bx1, by1 = -(-x1 // _BLOCK), -(-y1 // _BLOCK)
                bx2, by2 = x2 // _BLOCK, y2 // _BLOCK
                self.reference[by1:by2, bx1:bx2] = current[by1:by2, bx1:bx2]
        self.lines = lines


def block_means(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """Grey means of ``_BLOCK`` x ``_BLOCK`` blocks (the last partial row/column dropped)."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    h, w = grey.shape[:2]
    size = (max(1, w // _BLOCK), max(1, h // _BLOCK))
    small = cv2.resize(
        grey[: size[1] * _BLOCK, : size[0] * _BLOCK], size, interpolation=cv2.INTER_AREA
    )
    return small.astype(np.float32)


def _box_rect(box: npt.NDArray[np.float32]) -> Rect:
    xs, ys = box[:, 0], box[:, 1]
    return (
        int(np.floor(xs.min())),
        int(np.floor(ys.min())),
        int(np.ceil(xs.max())),
        int(np.ceil(ys.max())),
    )


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _span(lo: int, hi: int, limit: int) -> tuple[int, int]:
    """``lo..hi`` widened around its centre to at least ``_MIN_SIDE`` and to a multiple of
    ``_STRIDE``, then moved inside ``0..limit``."""
    want = max(_MIN_SIDE, -(-(hi - lo) // _STRIDE) * _STRIDE)
    short = want - (hi - lo)
    a, b = (lo - short // 2, hi + short - short // 2) if short > 0 else (lo, hi)
    if a < 0:
        a, b = 0, b - a
    if b > limit:
        a, b = max(0, a - (b - limit)), limit
    return a, b


def _grow(r: Rect, by: int, width: int, height: int) -> Rect:
    x1, x2 = _span(r[0] - by, r[2] + by, width)
    y1, y2 = _span(r[1] - by, r[3] + by, height)
    return x1, y1, x2, y2


def _union(a: Rect, b: Rect) -> Rect:
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def _settle(rects: list[Rect], line_rects: list[Rect], width: int, height: int) -> list[Rect]:
    """Merge overlapping rectangles and let each swallow every line it touches, until stable."""
    out = list(rects)
    changed = True
    while changed:
        changed = False
        for i in range(len(out)):
            for lr in line_rects:
                if _overlaps(out[i], lr) and _union(out[i], lr) != out[i]:
                    out[i] = _grow(_union(out[i], lr), _MARGIN // 2, width, height)
                    changed = True
            for j in range(i + 1, len(out)):
                if _overlaps(out[i], out[j]):
                    out[i] = _union(out[i], out.pop(j))
                    changed = True
                    break
            if changed:
                break
    return out


def changed_rects(
    reference: npt.NDArray[np.float32],
    current: npt.NDArray[np.float32],
    frame_size: tuple[int, int],
    lines: list[OcrLine],
) -> list[Rect] | None:
    """Rectangles (frame pixels) to read again; ``[]`` when nothing changed, None for all of it.

    ``frame_size`` is ``(width, height)``; ``reference`` and ``current`` come from
    ``block_means`` of frames of that size.
    """
    width, height = frame_size
    mask = (np.abs(current - reference) > _CHANGED_ABOVE).astype(np.uint8)
    if not mask.any():
        return []
    count, _labels, stats, _centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
    rects: list[Rect] = []
    for i in range(1, count):
        x, y, w, h = (int(v) * _BLOCK for v in stats[i, :4])
        rects.append(_grow((x, y, x + w, y + h), _MARGIN, width, height))
    rects = _settle(rects, [_box_rect(line.box) for line in lines], width, height)
    if len(rects) > _MAX_RECTS:
        return None
    covered = np.zeros((height, width), dtype=np.bool_)
    for x1, y1, x2, y2 in rects:
        covered[y1:y2, x1:x2] = True
    if covered.mean() > _FULL_ABOVE:
        return None
    return sorted(rects, key=lambda r: (r[1], r[0]))


def untouched(lines: list[OcrLine], rects: list[Rect]) -> list[OcrLine]:
    """The remembered lines that lie outside every rectangle (kept as they were read)."""
    return [line for line in lines if not any(_overlaps(_box_rect(line.box), r) for r in rects)]
