"""Random labelled scenes: the training data of the fixture detector.

A scene is a varied background with a few non-overlapping shapes and, often, some text as a
distractor (the test videos show text next to objects, so the detector must learn to ignore it).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vidjobs.devstack.synth.shapes import (
    CLASSES,
    Box,
    Image,
    ShapeSpec,
    draw_shape,
    random_background,
)
from vidjobs.devstack.synth.shapes import random_colour as _colour

__all__ = ["LabelledBox", "random_scene"]

_WORDS = ("HELLO", "VIDJOBS", "ALPHA 7", "EXIT", "2026", "SALE 50%", "OPEN", "ZONE B", "TEST")


@dataclass(frozen=True)
class LabelledBox:
    """A ground-truth object: class id, label and pixel box ``(x1, y1, x2, y2)``."""

    class_id: int
    label: str
    box: Box


def _overlaps(a: Box, b: Box, margin: int = 6) -> bool:
    return not (
        a[2] + margin < b[0] or b[2] + margin < a[0] or a[3] + margin < b[1] or b[3] + margin < a[1]
    )


def random_scene(
    rng: np.random.Generator,
    *,
    width: int = 640,
    height: int = 360,
    max_objects: int = 4,
    min_radius: int = 14,
    max_radius: int = 80,
) -> tuple[Image, list[LabelledBox]]:
    """Draw one random scene and return it with its boxes."""
    img, mean = random_background(rng, width, height)
    placed: list[LabelledBox] = []
    taken: list[Box] = []
    if rng.random() < 0.6:
        word = _WORDS[int(rng.integers(0, len(_WORDS)))]
        scale = float(rng.uniform(0.8, 2.0))
        org = (int(rng.integers(0, width // 2)), int(rng.integers(40, height - 10)))
        colour = _colour(rng, mean)
        cv2.putText(img, word, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 2, cv2.LINE_AA)
        (tw, th), _ = cv2.getTextSize(word, cv2.FONT_HERSHEY_SIMPLEX, scale, 2)
        taken.append((org[0], org[1] - th, org[0] + tw, org[1] + 4))
    n = int(rng.integers(0 if rng.random() < 0.05 else 1, max_objects + 1))
    for _ in range(n):
        for _attempt in range(20):
            label_id = int(rng.integers(0, len(CLASSES)))
            r = float(rng.uniform(min_radius, max_radius))
            cx = float(rng.uniform(r, width - r))
            cy = float(rng.uniform(r, height - r))
            est: Box = (int(cx - r), int(cy - r), int(cx + r), int(cy + r))
            if any(_overlaps(est, t) for t in taken):
                continue
            spec = ShapeSpec(
                label=CLASSES[label_id],
                cx=cx,
                cy=cy,
                radius=r,
                colour=_colour(rng, mean),
                angle_deg=float(rng.uniform(-25, 25)),
            )
            box = draw_shape(img, spec)
            taken.append(est)
            placed.append(LabelledBox(label_id, spec.label, box))
            break
    if rng.random() < 0.3:
        img = np.asarray(cv2.GaussianBlur(img, (3, 3), 0), dtype=np.uint8)
    return img, placed
