"""Settings of the ``yolo_ocr`` pipeline: which detector, how big, how sure, and OCR knobs."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

__all__ = ["FIXTURE_WEIGHTS", "PipelineSettings"]

#: The detector this project trains itself (``scripts/train_detector.py``): circles, squares,
#: triangles and stars. Used by the tests and the offline demo, where no weights can be downloaded.
FIXTURE_WEIGHTS = Path(__file__).resolve().parent / "assets" / "shapes-yolo.pt"
FIXTURE_IMGSZ = 320


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected a boolean (1/0, true/false), got {raw!r}")


@dataclass(frozen=True, kw_only=True)
class PipelineSettings:
    """Settings of the video pipeline, shared by every job of one worker process.

    Attributes:
        detector_weights: Ultralytics weights: a path (``.pt`` or an exported ``.onnx``) or a
            model name such as ``yolo11n.pt`` that Ultralytics downloads where there is internet.
            ``VIDJOBS_DETECTOR_WEIGHTS``.
        detector_imgsz: inference image size (the longer side); smaller is faster, larger finds
            smaller objects. None uses the size the weights were trained at (640 for the
            Ultralytics models, 320 for the fixture). ``VIDJOBS_DETECTOR_IMGSZ``.
        detector_conf: confidence floor of the detector; a job's ``min_confidence`` can only
            raise it. ``VIDJOBS_DETECTOR_CONF``.
        detector_device: torch device for ``.pt`` weights (``cpu``, ``cuda:0``).
            ``VIDJOBS_DETECTOR_DEVICE``.
        ocr_limit_side_len: the OCR text detector scales frames so the longer side is at most
            this; RapidOCR's default scales the *shorter* side up to 736, which costs ~3x on
            640x360 video for no recall we measured. ``VIDJOBS_OCR_LIMIT_SIDE_LEN``.
        ocr_use_cls: run the 180-degree text-angle classifier (upside-down text only).
            ``VIDJOBS_OCR_USE_CLS``.
        ocr_threads: ONNX Runtime intra-op threads for OCR; 0 lets it use every core.
            ``VIDJOBS_OCR_THREADS``.
        skip_unchanged: reuse the previous sampled frame's results when a frame is visually
            unchanged (slides, static shots); the check is a cheap thumbnail difference.
            ``VIDJOBS_SKIP_UNCHANGED``.
    """

    detector_weights: str = "yolo11n.pt"
    detector_imgsz: int | None = None
    detector_conf: float = 0.25
    detector_device: str = "cpu"
    ocr_limit_side_len: int = 640
    ocr_use_cls: bool = False
    ocr_threads: int = 0
    skip_unchanged: bool = True

    def __post_init__(self) -> None:
        if self.detector_imgsz is not None and not 32 <= self.detector_imgsz <= 4096:
            raise ValueError("detector_imgsz must be between 32 and 4096")
        if not 0.0 <= self.detector_conf <= 1.0:
            raise ValueError("detector_conf must be between 0 and 1")
        if not 32 <= self.ocr_limit_side_len <= 8192:
            raise ValueError("ocr_limit_side_len must be between 32 and 8192")
        if self.ocr_threads < 0:
            raise ValueError("ocr_threads must be >= 0")

    @classmethod
    def fixture(cls, **overrides: Any) -> PipelineSettings:
        """Settings for the project's own shapes detector (tests, benchmark, offline demo)."""
        base = cls(detector_weights=str(FIXTURE_WEIGHTS), detector_imgsz=FIXTURE_IMGSZ)
        return replace(base, **overrides)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PipelineSettings:
        """Build from ``VIDJOBS_DETECTOR_*`` / ``VIDJOBS_OCR_*``; unset or empty keep defaults."""
        e = os.environ if env is None else env
        kwargs: dict[str, Any] = {}
        for var, (name, convert) in _ENV.items():
            raw = e.get(var, "")
            if raw.strip():
                try:
                    kwargs[name] = convert(raw.strip())
                except ValueError as exc:
                    raise ValueError(f"{var}: {exc}") from exc
        return cls(**kwargs)


# Environment variable -> (field, parser). The CLI shows the same names in --help.
_ENV: dict[str, tuple[str, Callable[[str], Any]]] = {
    "VIDJOBS_DETECTOR_WEIGHTS": ("detector_weights", str),
    "VIDJOBS_DETECTOR_IMGSZ": ("detector_imgsz", int),
    "VIDJOBS_DETECTOR_CONF": ("detector_conf", float),
    "VIDJOBS_DETECTOR_DEVICE": ("detector_device", str),
    "VIDJOBS_OCR_LIMIT_SIDE_LEN": ("ocr_limit_side_len", int),
    "VIDJOBS_OCR_USE_CLS": ("ocr_use_cls", _bool),
    "VIDJOBS_OCR_THREADS": ("ocr_threads", int),
    "VIDJOBS_SKIP_UNCHANGED": ("skip_unchanged", _bool),
}
