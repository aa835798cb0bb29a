"""The ``yolo_ocr`` pipeline: decode → detect → OCR → results document.

``VideoAnalyzer`` is built once per worker process (it loads the detector and the OCR engine)
and then analyses one video per ``analyze`` call, reporting progress after every sampled frame
and stopping between frames when asked.
"""

from __future__ import annotations

from vidjobs.worker.pipelines.yolo_ocr.analyzer import ProgressFn, StopFn, VideoAnalyzer
from vidjobs.worker.pipelines.yolo_ocr.errors import (
    Cancelled,
    InvalidParams,
    InvalidVideo,
    ModelUnavailable,
    PipelineError,
)
from vidjobs.worker.pipelines.yolo_ocr.settings import FIXTURE_WEIGHTS, PipelineSettings

__all__ = [
    "FIXTURE_WEIGHTS",
    "Cancelled",
    "InvalidParams",
    "InvalidVideo",
    "ModelUnavailable",
    "PipelineError",
    "PipelineSettings",
    "ProgressFn",
    "StopFn",
    "VideoAnalyzer",
]
