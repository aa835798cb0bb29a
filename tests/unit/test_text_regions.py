"""Where the OCR reads a frame again: changed rectangles between sampled frames (no models)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from vidjobs.worker.pipelines.yolo_ocr.text_regions import (
    OcrLine,
    RegionMemory,
    block_means,
    changed_rects,
    untouched,
)

W, H = 640, 360


def _frame(value: int = 40) -> npt.NDArray[np.uint8]:
    return np.full((H, W, 3), value, dtype=np.uint8)


def _line(x1: float, y1: float, x2: float, y2: float, text: str = "HELLO") -> OcrLine:
    box = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], dtype=np.float32)
    return OcrLine(box, text, 0.99)


def test_codec_noise_is_no_change() -> None:
    rng = np.random.default_rng(0)
    a = _frame()
    noisy = np.clip(a.astype(int) + rng.integers(-6, 7, a.shape), 0, 255).astype(np.uint8)
    assert changed_rects(block_means(a), block_means(noisy), (W, H), []) == []


def test_a_moving_object_gives_one_rectangle_around_it() -> None:
    a, b = _frame(), _frame()
    b[100:140, 200:250] = 220
    rects = changed_rects(block_means(a), block_means(b), (W, H), [])
    assert rects is not None
    assert len(rects) == 1
    x1, y1, x2, y2 = rects[0]
    assert x1 <= 200 - 16
    assert y1 <= 100 - 16
    assert x2 >= 250 + 16
    assert y2 >= 140 + 16
    # The detector sees it at the frame's own scale: sides are multiples of its stride.
    assert (x2 - x1) % 32 == 0
    assert (y2 - y1) % 32 == 0
    assert (x2 - x1) * (y2 - y1) < W * H / 4


def test_a_change_touching_a_line_takes_the_whole_line() -> None:
    caption = _line(300, 290, 560, 338)
    far = _line(20, 20, 120, 50, "LOGO")
    a, b = _frame(), _frame()
    b[300:330, 540:580] = 230  # the last letters of the caption changed
    rects = changed_rects(block_means(a), block_means(b), (W, H), [caption, far])
    assert rects is not None
    assert len(rects) == 1
    x1, y1, x2, y2 = rects[0]
    assert x1 <= 300
    assert y1 <= 290
    assert x2 >= 560
    assert y2 >= 338
    assert untouched([caption, far], rects) == [far]


def test_a_mostly_new_picture_is_read_whole() -> None:
    a, b = _frame(40), _frame(40)
    b[:, : W * 3 // 4] = 200
    assert changed_rects(block_means(a), block_means(b), (W, H), []) is None


def test_many_scattered_changes_are_read_whole() -> None:
    a, b = _frame(), _frame()
    for i in range(12):
        x, y = 20 + (i % 6) * 100, 40 + (i // 6) * 200
        b[y : y + 8, x : x + 8] = 250
    assert changed_rects(block_means(a), block_means(b), (W, H), []) is None


def test_a_slow_fade_adds_up_to_a_change() -> None:
    """The reference moves only where the OCR looked again, so small steps accumulate."""
    memory = RegionMemory()
    first = _frame(40)
    memory.remember(block_means(first), [], None)
    seen_change = False
    for step in range(1, 6):
        frame = _frame(40)
        frame[200:240, 100:300] = 40 + 4 * step  # +4 grey levels per frame: under the threshold
        assert memory.reference is not None
        rects = changed_rects(memory.reference, block_means(frame), (W, H), [])
        if rects:
            seen_change = True
            break
        memory.remember(block_means(frame), [], rects)
    assert seen_change


def test_remember_updates_only_the_rectangles_read_again() -> None:
    memory = RegionMemory()
    memory.remember(block_means(_frame(40)), [], None)
    moved = _frame(90)
    memory.remember(block_means(moved), [_line(0, 0, 10, 10)], [(0, 0, 64, 64)])
    assert memory.reference is not None
    assert float(memory.reference[:16, :16].mean()) == 90.0
    assert float(memory.reference[20:, 20:].mean()) == 40.0
    memory.forget()
    assert memory.reference is None
    assert memory.lines == []
