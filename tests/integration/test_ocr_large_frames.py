"""Small text in a 4K frame: a 40 px label is read, not shrunk below what OCR can see.

The label sits on a busy background (upscaled noise) at a random place, as a sign in a wide
shot would; frames above three OCR limits go to the engine that reads them at two
(worker/pipelines/yolo_ocr/ocr.py; the figures are in docs/pipeline.md).
"""

from __future__ import annotations

import random

import cv2
import numpy as np
import pytest

from vidjobs.worker.pipelines.yolo_ocr.ocr import TextReader
from vidjobs.worker.pipelines.yolo_ocr.settings import PipelineSettings

pytestmark = pytest.mark.ml

_LABELS = ("GATE 4", "EXIT 12", "DOCK 3")


def _frame(label: str, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).integers(30, 200, (54, 96, 3), dtype=np.uint8)
    image = cv2.resize(noise, (3840, 2160), interpolation=cv2.INTER_CUBIC)
    rng = random.Random(seed)
    x, y = rng.randint(100, 3300), rng.randint(100, 2000)
    # FONT_HERSHEY_SIMPLEX at 1.4, 4 px strokes: capitals ~30 px, the line ~40 px.
    cv2.putText(image, label, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 1.4, (255, 255, 255), 4)
    return np.asarray(image, dtype=np.uint8)


def test_a_40px_label_in_a_4k_frame_is_read() -> None:
    reader = TextReader(PipelineSettings.fixture())
    for seed, label in enumerate(_LABELS):
        lines = reader.read(_frame(label, seed), 0.5)
        read = {"".join(line.text.upper().split()) for line in lines}
        assert "".join(label.split()) in read, (label, read)
