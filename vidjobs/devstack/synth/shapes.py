"""Simple synthetic objects and backgrounds for the fixture detector and test videos.

No pretrained weights can be downloaded on our machines, so the project trains its own tiny
detector on shapes it can draw itself; the same drawing code renders the test videos, which
makes the ground truth exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

__all__ = [
    "CLASSES",
    "Box",
    "Image",
    "ShapeSpec",
    "draw_shape",
    "random_background",
    "random_colour",
    "shape_outline",
]

#: The fixture detector's classes, in class-id order.
CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "star")

Image = npt.NDArray[np.uint8]
Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class ShapeSpec:
    """One object to draw: its class, centre, size (half-extent in px), colour and rotation."""

    label: str
    cx: float
    cy: float
    radius: float
    colour: tuple[int, int, int]
    angle_deg: float = 0.0


def shape_outline(spec: ShapeSpec) -> npt.NDArray[np.int32]:
    """Polygon (N x 2, int32) of a shape; circles are drawn as 48-gons so boxes stay exact."""
    r = spec.radius
    a0 = math.radians(spec.angle_deg)
    if spec.label == "circle":
        angles = [2 * math.pi * i / 48 for i in range(48)]
        pts = [(r * math.cos(a), r * math.sin(a)) for a in angles]
    elif spec.label == "square":
        # Half-side r/sqrt(2)*1.25 keeps the square's area close to the circle's.
        h = r * 0.85
        pts = [(-h, -h), (h, -h), (h, h), (-h, h)]
        pts = [_rotate(x, y, a0) for x, y in pts]
    elif spec.label == "triangle":
        pts = [
            (
                r * math.cos(a0 - math.pi / 2 + 2 * math.pi * i / 3),
                r * math.sin(a0 - math.pi / 2 + 2 * math.pi * i / 3),
            )
            for i in range(3)
        ]
    elif spec.label == "star":
        pts = []
        for i in range(10):
            rr = r if i % 2 == 0 else r * 0.42
            a = a0 - math.pi / 2 + math.pi * i / 5
            pts.append((rr * math.cos(a), rr * math.sin(a)))
    else:
        raise ValueError(f"unknown shape {spec.label!r}; expected one of {CLASSES}")
    arr = np.array([(spec.cx + x, spec.cy + y) for x, y in pts], dtype=np.float64)
    return np.round(arr).astype(np.int32)


def _rotate(x: float, y: float, a: float) -> tuple[float, float]:
    c, s = math.cos(a), math.sin(a)
    return (x * c - y * s, x * s + y * c)


def draw_shape(img: Image, spec: ShapeSpec) -> Box:
    """Draw a filled shape in place and return its tight box ``(x1, y1, x2, y2)``, clipped."""
    poly = shape_outline(spec)
    cv2.fillPoly(img, [poly], spec.colour, lineType=cv2.LINE_AA)
    h, w = img.shape[:2]
    x1 = max(0, int(poly[:, 0].min()))
    y1 = max(0, int(poly[:, 1].min()))
    x2 = min(w - 1, int(poly[:, 0].max()))
    y2 = min(h - 1, int(poly[:, 1].max()))
    return (x1, y1, x2, y2)


def random_colour(
    rng: np.random.Generator, avoid: tuple[int, int, int] | None = None
) -> tuple[int, int, int]:
    """A saturated-enough BGR colour, far from ``avoid`` so shapes stand out from backgrounds."""
    for _ in range(50):
        c = tuple(int(v) for v in rng.integers(0, 256, size=3))
        if avoid is None or sum(abs(a - b) for a, b in zip(c, avoid, strict=True)) > 180:
            return (c[0], c[1], c[2])
    return (255 - avoid[0], 255 - avoid[1], 255 - avoid[2]) if avoid else (0, 0, 255)


def random_background(
    rng: np.random.Generator, width: int, height: int
) -> tuple[Image, tuple[int, int, int]]:
    """A varied background (solid, gradient, noise, stripes) and its mean colour."""
    kind = int(rng.integers(0, 4))
    base = np.array(rng.integers(0, 256, size=3), dtype=np.float64)
    if kind == 0:
        img = np.empty((height, width, 3), dtype=np.float64)
        img[:] = base
    elif kind == 1:
        other = np.array(rng.integers(0, 256, size=3), dtype=np.float64)
        t = np.linspace(0.0, 1.0, width)[None, :, None]
        img = np.broadcast_to(base * (1 - t) + other * t, (height, width, 3)).copy()
    elif kind == 2:
        img = np.empty((height, width, 3), dtype=np.float64)
        img[:] = base
        img += rng.normal(0.0, 18.0, size=(height, width, 3))
    else:
        img = np.empty((height, width, 3), dtype=np.float64)
        img[:] = base
        period = int(rng.integers(12, 60))
        stripes = (np.arange(width) // period) % 2 == 0
        img[:, stripes] *= 0.8
    out = np.clip(img, 0, 255).astype(np.uint8)
    mean = tuple(int(v) for v in out.reshape(-1, 3).mean(axis=0))
    return out, (mean[0], mean[1], mean[2])
