"""OCR region reuse with the real models: only changed parts are looked at, nothing is lost."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from vidjobs.devstack.synth.video import make_sample_video
from vidjobs.schema.results import decode_results
from vidjobs.worker.pipelines.yolo_ocr.analyzer import VideoAnalyzer
from vidjobs.worker.pipelines.yolo_ocr.ocr import TextReader
from vidjobs.worker.pipelines.yolo_ocr.settings import PipelineSettings
from vidjobs.worker.pipelines.yolo_ocr.text_regions import RegionMemory

pytestmark = pytest.mark.ml


def _norm(text: str) -> str:
    return "".join(text.upper().split())


def _scene(caption: str, square_x: int, corner: str | None = None) -> npt.NDArray[np.uint8]:
    ramp = np.linspace(30, 90, 640, dtype=np.uint8)
    image = np.dstack([np.tile(ramp, (360, 1))] * 3).copy()
    cv2.rectangle(image, (square_x, 60), (square_x + 50, 110), (240, 240, 240), -1)
    cv2.putText(image, caption, (200, 320), cv2.FONT_HERSHEY_SIMPLEX, 1.4, (255, 255, 255), 3)
    if corner:
        cv2.putText(image, corner, (20, 200), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 0), 2)
    return image


@pytest.fixture(scope="module")
def reader() -> TextReader:
    return TextReader(PipelineSettings.fixture())


def test_changed_parts_are_read_and_unchanged_text_is_kept(reader: TextReader) -> None:
    memory = RegionMemory()
    frames = [
        (_scene("HELLO 10", 300), {"HELLO10"}),  # first frame: read whole
        (_scene("HELLO 10", 360), {"HELLO10"}),  # only the square moved: caption kept
        (_scene("HELLO 10", 420, corner="ZONE 42"), {"HELLO10", "ZONE42"}),  # new text
        (_scene("BYE 99", 420, corner="ZONE 42"), {"BYE99", "ZONE42"}),  # caption changed
    ]
    for image, expected in frames:
        with_memory = {_norm(t.text) for t in reader.read(image, 0.25, memory)}
        whole = {_norm(t.text) for t in reader.read(image, 0.25)}
        assert with_memory == whole
        assert expected <= whole  # (the square itself is sometimes read as a symbol)
    # The moving square alone (frame 2) needed no whole read.
    assert memory.partial_reads >= 1
    assert memory.full_reads + memory.partial_reads == len(frames)


def test_region_reuse_reads_what_whole_frames_read(tmp_path: Path) -> None:
    video = tmp_path / "sample.mp4"
    make_sample_video(video, seconds=4.0, seed=3)
    texts = {}
    for reuse in (True, False):
        analyzer = VideoAnalyzer(PipelineSettings.fixture(ocr_reuse_regions=reuse))
        data = analyzer.analyze(video, {"sample_fps": 2.5}, lambda d, t: None, lambda: False)
        doc = decode_results(data)
        texts[reuse] = [(f.t_ms, sorted(_norm(t.text) for t in f.text)) for f in doc.frames]
    assert texts[True] == texts[False]
