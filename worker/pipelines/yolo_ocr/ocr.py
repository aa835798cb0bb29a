"""OCR stage: RapidOCR 3.x on ONNX Runtime, with the PP-OCR models shipped in its wheel.

Tuned for video frames: the text detector limits the *longer* side to ``ocr_limit_side_len``
(RapidOCR's default scales the shorter side up to 736 px, ~3x the work on 640x360 frames) and
the 180-degree angle classifier is off (captions are upright). Frames whose longer side is more
than ``_LARGE_ABOVE`` times that limit (4K at the default 640) go to a second engine whose
detector sees them at ``_LARGE_SCALE`` times the limit: at 640 a 40 px label in a 3840 px frame
shrinks to 7 px and is sometimes missed; at 1280 it is 13 px and read. 1920 read none of the
same labels (measured, docs/pipeline.md "Small text in large frames").

Given a ``RegionMemory`` (one per video), only the parts of a frame that changed since the OCR
last read them go through the text detector and the recogniser (``text_regions``); the lines
elsewhere are kept. ``ocr_device`` picks ONNX Runtime's execution provider (``onnx_device_params``).
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from vidjobs.schema.results import EngineInfo, TextLine
from vidjobs.worker.outcome import ModelUnavailable
from vidjobs.worker.pipelines.yolo_ocr.detect import file_sha256
from vidjobs.worker.pipelines.yolo_ocr.settings import OCR_DET_INT8, PipelineSettings
from vidjobs.worker.pipelines.yolo_ocr.text_regions import (
    OcrLine,
    Rect,
    RegionMemory,
    block_means,
    changed_rects,
    untouched,
)

__all__ = ["TextReader", "onnx_device_params", "rapidocr_params"]


#: A frame longer than this many OCR limits is read at ``_LARGE_SCALE`` limits (module doc).
_LARGE_ABOVE = 3
_LARGE_SCALE = 2
#: A read in a changed rectangle with this many letters or digits makes the frame read again.
_TEXT_MIN_ALNUM = 2
_CUDA = "CUDAExecutionProvider"
_DEVICE = re.compile(r"^(cpu|cuda(?::(\d+))?)$")


def onnx_device_params(device: str, available: Sequence[str]) -> dict[str, Any]:
    """RapidOCR overrides that run its ONNX Runtime sessions on ``device``.

    ``device`` is ``cpu``, ``cuda`` or ``cuda:N``; ``available`` is
    ``onnxruntime.get_available_providers()``. A GPU that was asked for and cannot be had is an
    error, not a silent fall-back to the CPU (RapidOCR alone would only log a warning).

    Raises:
        ValueError: an unknown device, or CUDA asked for and ONNX Runtime has no CUDA provider
            (the ``gpu`` extra installs ``onnxruntime-gpu``).
    """
    match = _DEVICE.match(device.strip().lower())
    if not match:
        raise ValueError(f"unknown OCR device {device!r}: use cpu, cuda or cuda:N")
    if match.group(1) == "cpu":
        return {"EngineConfig.onnxruntime.use_cuda": False}
    if _CUDA not in available:
        raise ValueError(
            f"OCR device {device!r} needs ONNX Runtime's {_CUDA}, which this install lacks "
            f"(it has {', '.join(available) or 'none'}): install the gpu extra (onnxruntime-gpu "
            "instead of onnxruntime) or set VIDJOBS_OCR_DEVICE=cpu"
        )
    return {
        "EngineConfig.onnxruntime.use_cuda": True,
        "EngineConfig.onnxruntime.cuda_ep_cfg.device_id": int(match.group(2) or 0),
    }


def rapidocr_params(
    settings: PipelineSettings, scale: int = 1, available: Sequence[str] = ()
) -> dict[str, Any]:
    """The RapidOCR ``params`` overrides these settings stand for (``scale`` x the limit)."""
    params: dict[str, Any] = {
        "Global.log_level": "error",
        "Global.use_cls": settings.ocr_use_cls,
        "Det.limit_side_len": settings.ocr_limit_side_len * scale,
        "Det.limit_type": "max",
        **onnx_device_params(settings.ocr_device, available),
    }
    if settings.ocr_threads:
        params["EngineConfig.onnxruntime.intra_op_num_threads"] = settings.ocr_threads
    if settings.ocr_det_int8 and not params["EngineConfig.onnxruntime.use_cuda"]:
        params["Det.model_path"] = str(OCR_DET_INT8)
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


def _without_spinning(engine: Any, threads: int) -> None:
    """Rebuild the engine's ONNX Runtime sessions with ``session.intra_op.allow_spinning=0``.

    RapidOCR builds its sessions itself and offers no way to pass session config entries, so
    each session is built again from the same file, providers and provider options.
    """
    import onnxruntime

    for part in ("text_det", "text_cls", "text_rec"):
        wrapper = getattr(getattr(engine, part, None), "session", None)
        old = getattr(wrapper, "session", None)
        if wrapper is None or old is None:
            continue
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 4
        options.enable_cpu_mem_arena = False  # as RapidOCR's own sessions
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        provider_options = old.get_provider_options()
        providers = [(name, provider_options.get(name, {})) for name in old.get_providers()]
        wrapper.session = onnxruntime.InferenceSession(
            old._model_path, options, providers=providers
        )


class TextReader:
    """A loaded RapidOCR engine and its identity for the results document."""

    def __init__(self, settings: PipelineSettings) -> None:
        try:
            import onnxruntime
            from rapidocr import RapidOCR

            available = onnxruntime.get_available_providers()
            self._engine = RapidOCR(params=rapidocr_params(settings, available=available))
            # Loaded now, not on the first 4K frame: the worker warms every model before claiming.
            self._large_engine = RapidOCR(
                params=rapidocr_params(settings, _LARGE_SCALE, available=available)
            )
            self._large_above = settings.ocr_limit_side_len * _LARGE_ABOVE
            # Warm up on a frame with text so the detector *and* recogniser load now.
            probe = np.full((96, 320, 3), 255, dtype=np.uint8)
            cv2.putText(probe, "VIDJOBS", (10, 64), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (0, 0, 0), 3)
            for engine in (self._engine, self._large_engine):
                engine(probe)
                if not settings.ocr_spin_wait:  # its models are loaded now: rebuild, warm again
                    _without_spinning(engine, settings.ocr_threads)
                    engine(probe)
        except ValueError as exc:
            raise ModelUnavailable(f"VIDJOBS_OCR_DEVICE: {exc}") from exc
        except Exception as exc:
            raise ModelUnavailable(
                f"the OCR engine (rapidocr) cannot load its models: {type(exc).__name__}: {exc}"
            ) from exc
        # rapidocr's OrtInferSession wraps ONNX Runtime's InferenceSession (its .session).
        det: Any = self._engine.text_det
        self.providers: list[str] = list(det.session.session.get_providers())
        files = _model_files(self._engine)
        digest = "+".join(file_sha256(f) for f in files if f.is_file())
        self.identity = EngineInfo(
            name="rapidocr",
            version=importlib.metadata.version("rapidocr"),
            weights="+".join(f.name for f in files),
            weights_sha256=digest,
        )

    def read(
        self,
        image: npt.NDArray[np.uint8],
        min_confidence: float,
        memory: RegionMemory | None = None,
    ) -> list[TextLine]:
        """Text lines in one BGR frame with confidence at or above ``min_confidence``.

        With ``memory`` (the same one for every frame of one video, in order) only what changed
        since the memory's frame is read again; without, the whole frame is read.
        """
        large = max(image.shape[:2]) > self._large_above
        if large or memory is None:
            lines = self._read_whole(self._large_engine if large else self._engine, image)
            if memory is not None:
                memory.forget()
        else:
            lines = self._read_changed(image, memory)
        out = []
        for line in lines:
            if line.score < min_confidence:
                continue
            out.append(
                TextLine(
                    text=line.text,
                    confidence=round(line.score, 4),
                    polygon=tuple(
                        (round(float(x), 1), round(float(y), 1)) for x, y in line.box.tolist()
                    ),
                )
            )
        return out

    @staticmethod
    def _read_whole(engine: Any, image: npt.NDArray[np.uint8]) -> list[OcrLine]:
        out: Any = engine(image)
        if out.txts is None or out.boxes is None or out.scores is None:
            return []
        lines = []
        for box, raw, score in zip(out.boxes, out.txts, out.scores, strict=True):
            text = str(raw).strip()
            if text:
                lines.append(OcrLine(np.asarray(box, dtype=np.float32), text, float(score)))
        return lines

    def _read_changed(self, image: npt.NDArray[np.uint8], memory: RegionMemory) -> list[OcrLine]:
        """The frame's lines: the memory's when no text can have changed, else a whole read.

        Text can only have changed where the picture did. When no remembered line lies in a
        changed rectangle, the text detector looks at the rectangles alone; finding nothing
        there, the remembered lines stand and nothing else runs. Anything found, or a line
        touched, and the whole frame is read as without a memory: the detector's verdict on a
        crop is not its verdict on the frame (on a crop around a moving star it saw text; on
        the frame, not), so a crop's lines never reach the results.
        """
        current = block_means(image)
        height, width = image.shape[:2]
        rects: list[Rect] | None = None
        if memory.reference is not None and memory.reference.shape == current.shape:
            rects = changed_rects(memory.reference, current, (width, height), memory.lines)
        if (
            rects is not None
            and len(untouched(memory.lines, rects)) == len(memory.lines)
            and not self._text_in(image, rects)
        ):
            memory.partial_reads += 1
            memory.remember(current, memory.lines, rects)
            return memory.lines
        lines = self._read_whole(self._engine, image)
        memory.full_reads += 1
        memory.remember(current, lines, None)
        return lines

    def _text_in(self, image: npt.NDArray[np.uint8], rects: list[Rect]) -> bool:
        """Whether the rectangles hold a read of two letters or digits or more.

        A shape alone in a crop is often read as one symbol (``★``, ``O``); that does not make
        the frame worth reading again. Real text is.
        """
        from rapidocr.ch_ppocr_rec import TextRecInput
        from rapidocr.utils.process_img import get_rotate_crop_image

        engine: Any = self._engine
        crops = []
        for x1, y1, x2, y2 in rects:
            piece = np.ascontiguousarray(image[y1:y2, x1:x2])
            found: Any = engine.text_det(piece)
            if found.boxes is not None:
                crops += [
                    get_rotate_crop_image(piece, np.asarray(b, np.float32)) for b in found.boxes
                ]
        if not crops:
            return False
        rec: Any = engine.text_rec(TextRecInput(img=crops))
        return any(
            sum(ch.isalnum() for ch in str(text)) >= _TEXT_MIN_ALNUM
            and float(score) >= engine.text_score
            for text, score in zip(rec.txts, rec.scores, strict=True)
        )
