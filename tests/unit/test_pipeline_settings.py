"""Pipeline settings from the environment and the sampling plan (no models, no files)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from vidjobs.schema.results import VideoInfo
from vidjobs.worker.pipelines.yolo_ocr.decode import planned_samples
from vidjobs.worker.pipelines.yolo_ocr.settings import FIXTURE_WEIGHTS, PipelineSettings

FromEnv = Callable[..., Any]


def test_every_variable_is_read(from_env: FromEnv) -> None:
    settings = from_env(
        PipelineSettings,
        {
            "VIDJOBS_DETECTOR_WEIGHTS": "/models/x.onnx",
            "VIDJOBS_DETECTOR_IMGSZ": "416",
            "VIDJOBS_DETECTOR_CONF": "0.4",
            "VIDJOBS_DETECTOR_DEVICE": "cuda:0",
            "VIDJOBS_OCR_LIMIT_SIDE_LEN": "960",
            "VIDJOBS_OCR_USE_CLS": "true",
            "VIDJOBS_OCR_THREADS": "2",
            "VIDJOBS_SKIP_UNCHANGED": "0",
        },
    )
    assert settings == PipelineSettings(
        detector_weights="/models/x.onnx",
        detector_imgsz=416,
        detector_conf=0.4,
        detector_device="cuda:0",
        ocr_limit_side_len=960,
        ocr_use_cls=True,
        ocr_threads=2,
        skip_unchanged=False,
    )


def test_defaults_and_fixture(from_env: FromEnv) -> None:
    assert from_env(PipelineSettings, {}) == PipelineSettings()
    assert PipelineSettings().detector_weights == "yolo11n.pt"
    assert PipelineSettings().detector_imgsz is None
    fixture = PipelineSettings.fixture()
    assert fixture.detector_weights == str(FIXTURE_WEIGHTS)
    assert fixture.detector_imgsz == 320


def test_bad_values_name_the_variable(from_env: FromEnv) -> None:
    with pytest.raises(ValueError, match="VIDJOBS_OCR_USE_CLS"):
        from_env(PipelineSettings, {"VIDJOBS_OCR_USE_CLS": "maybe"})
    with pytest.raises(ValueError, match="VIDJOBS_DETECTOR_IMGSZ"):
        from_env(PipelineSettings, {"VIDJOBS_DETECTOR_IMGSZ": "big"})
    with pytest.raises(ValueError, match="detector_conf"):
        PipelineSettings(detector_conf=2.0)


@pytest.mark.parametrize(
    ("duration_ms", "frames", "sample_fps", "expected"),
    [
        (4000, 100, 1.0, 4),  # t = 0, 1, 2, 3 s
        (4000, 100, 2.5, 10),
        (4040, 101, 1.0, 5),  # a frame past 4 s still gets its sample
        (500, 12, 1.0, 1),  # shorter than one step: the first frame
        (1000, 5, 30.0, 5),  # never more samples than frames
    ],
)
def test_planned_samples(duration_ms: int, frames: int, sample_fps: float, expected: int) -> None:
    info = VideoInfo(
        duration_ms=duration_ms, fps=25.0, width=64, height=64, frames=frames, codec="h264"
    )
    assert planned_samples(info, sample_fps) == expected
