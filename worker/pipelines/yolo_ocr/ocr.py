"""OCR stage: RapidOCR 3.x on ONNX Runtime, with the PP-OCR models shipped in its wheel.

Tuned for video frames: the text detector limits the *longer* side to ``ocr_limit_side_len``
(RapidOCR's default scales the shorter side up to 736 px, ~3x the work on 640x360 frames) and
the 180-degree angle classifier is off (captions are upright). Frames whose longer side is more
than ``_LARGE_ABOVE`` times that limit (4K at the default 640) go to a second engine whose
detector sees them at ``_LARGE_SCALE`` times the limit: at 640 a 40 px label in a 3840 px frame
shrinks to 7 px and is sometimes missed; at 1280 it is 13 px and read. 1920 read none of the
same labels (measured, docs/pipeline.md "Small text in large frames").
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from vidjobs.schema.results import EngineInfo, TextLine
from vidjobs.worker.outcome import ModelUnavailable
from vidjobs.worker.pipelines.yolo_ocr.detect import file_sha256
from vidjobs.worker.pipelines.yolo_ocr.settings import PipelineSettings

__all__ = ["TextReader", "rapidocr_params"]


#: A frame longer than this many OCR limits is read at ``_LARGE_SCALE`` limits (module doc).
_LARGE_ABOVE = 3
_LARGE_SCALE = 2


def rapidocr_params(settings: PipelineSettings, scale: int = 1) -> dict[str, Any]:
    """The RapidOCR ``params`` overrides these settings stand for (``scale`` x the limit)."""
    params: dict[str, Any] = {
        "Global.log_level": "error",
        "Global.use_cls": settings.ocr_use_cls,
        "Det.limit_side_len": settings.ocr_limit_side_len * scale,
        "Det.limit_type": "max",
    }
    if settings.ocr_threads:
        params["EngineConfig.onnxruntime.intra_op_num_threads"] = settings.ocr_threads
    return params


def _model_files(engine: Any) -> list[Path]:
    """The ONNX files the engine loaded (det, rec and, when used, cls), for the identity."""
    files = []
    for part in ("text_det", "text_cls", "text_rec"):
        # TextDetector.session is rapidocr's OrtInferSession; its .session is ONNX Runtime's
        # InferenceSession, which remembers the file it loaded.
        ort_session = getattr(
            getattr(getattr(engine, part, None), "session", None), "session", None
        )
        model_path = getattr(ort_session, "_model_path", None)
        if model_path:
            files.append(Path(str(model_path)))
    return files


class TextReader:
    """A loaded RapidOCR engine and its identity for the results document."""

    def __init__(self, settings: PipelineSettings) -> None:
        try:
            from rapidocr import RapidOCR

            self._engine = RapidOCR(params=rapidocr_params(settings))
            # Loaded now, not on the first 4K frame: the worker warms every model before claiming.
            self._large_engine = RapidOCR(params=rapidocr_params(settings, _LARGE_SCALE))
            self._large_above = settings.ocr_limit_side_len * _LARGE_ABOVE
            # Warm up on a frame with text so the detector *and* recogniser load now.
            probe = np.full((96, 320, 3), 255, dtype=np.uint8)
            cv2.putText(probe, "VIDJOBS", (10, 64), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (0, 0, 0), 3)
            self._engine(probe)
            self._large_engine(probe)
        except Exception as exc:
            raise ModelUnavailable(
                f"the OCR engine (rapidocr) cannot load its models: {type(exc).__name__}: {exc}"
            ) from exc
        files = _model_files(self._engine)
        digest = "+".join(file_sha256(f) for f in files if f.is_file())
        self.identity = EngineInfo(
            name="rapidocr",
            version=importlib.metadata.version("rapidocr"),
            weights="+".join(f.name for f in files),
            weights_sha256=digest,
        )

    def read(self, image: npt.NDArray[np.uint8], min_confidence: float) -> list[TextLine]:
        """Text lines in one BGR frame with confidence at or above ``min_confidence``."""
        large = max(image.shape[:2]) > self._large_above
        out: Any = (self._large_engine if large else self._engine)(image)
        if out.txts is None or out.boxes is None or out.scores is None:
            return []
        lines = []
        for poly, raw, score in zip(out.boxes.tolist(), out.txts, out.scores, strict=True):
            text = str(raw).strip()
            if not text or float(score) < min_confidence:
                continue
            lines.append(
                TextLine(
                    text=text,
                    confidence=round(float(score), 4),
                    polygon=tuple((round(float(x), 1), round(float(y), 1)) for x, y in poly),
                )
            )
        return lines
