"""Detect stage: Ultralytics YOLO on one frame, boxes in video pixels.

The model loads once per worker process. Weights that cannot be had (missing file, no internet
for a named model) fail at once with ``ModelUnavailable`` naming ``VIDJOBS_DETECTOR_WEIGHTS``:
with ``YOLO_OFFLINE=1`` Ultralytics gives up on a download immediately instead of retrying.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vidjobs.schema.results import Detection, EngineInfo
from vidjobs.worker.outcome import ModelUnavailable
from vidjobs.worker.pipelines.yolo_ocr.settings import PipelineSettings
from vidjobs.worker.pipelines.yolo_ocr.weights import is_model_name

__all__ = ["Detector", "file_sha256"]


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks (weights are several MB)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _unavailable(weights: str, why: str) -> ModelUnavailable:
    return ModelUnavailable(
        f"detector weights {weights!r} cannot be loaded: {why}. Set VIDJOBS_DETECTOR_WEIGHTS "
        "to a local .pt or .onnx file (the offline fixture is "
        "worker/pipelines/yolo_ocr/assets/shapes-yolo.pt)"
    )


class Detector:
    """A loaded YOLO model and its identity for the results document."""

    def __init__(self, settings: PipelineSettings) -> None:
        weights = settings.detector_weights
        path = Path(weights).expanduser()
        if not is_model_name(weights) and not path.is_file():
            raise _unavailable(weights, "no such file")
        try:
            from ultralytics.models import YOLO

            model = YOLO(str(path), task="detect")
        except Exception as exc:  # any loader error means the same thing to the operator
            raise _unavailable(weights, f"{type(exc).__name__}: {exc}".strip()) from exc
        local = Path(str(getattr(model, "ckpt_path", None) or model.model_name or path))
        if not local.is_file():
            local = path
        self._model = model
        trained = getattr(model, "overrides", {}).get("imgsz") or 640
        self._imgsz = settings.detector_imgsz or int(
            trained if isinstance(trained, int) else max(trained)
        )
        self._conf = settings.detector_conf
        self._device = settings.detector_device if path.suffix != ".onnx" else "cpu"
        self.names: dict[int, str] = {int(k): str(v) for k, v in model.names.items()}
        import ultralytics

        self.identity = EngineInfo(
            name=f"ultralytics-yolo:{path.stem}",
            version=str(ultralytics.__version__),
            weights=local.name,
            weights_sha256=file_sha256(local) if local.is_file() else "",
        )
        # Warm up: the first predict builds the predictor; do it now, not inside a job.
        self.detect(np.zeros((64, 64, 3), dtype=np.uint8), 0.99)
        if settings.detector_threads and path.suffix != ".onnx":
            # After the warm-up: building the predictor sets torch's threads to Ultralytics'
            # NUM_THREADS (cores - 1: one thread on a 2-core worker). Process-wide.
            import torch

            torch.set_num_threads(settings.detector_threads)

    def detect(self, image: npt.NDArray[np.uint8], min_confidence: float) -> list[Detection]:
        """Objects in one BGR frame at or above ``max(min_confidence, detector_conf)``."""
        conf = max(min_confidence, self._conf)
        results: Any = self._model.predict(
            image, imgsz=self._imgsz, conf=conf, device=self._device, verbose=False
        )
        boxes = results[0].boxes
        xyxy = boxes.xyxy.cpu().numpy().tolist()
        confs = boxes.conf.cpu().numpy().tolist()
        classes = boxes.cls.cpu().numpy().astype(int).tolist()
        out = []
        for box, c, k in zip(xyxy, confs, classes, strict=True):
            if c < conf:
                continue
            out.append(
                Detection(
                    label=self.names.get(k, str(k)),
                    class_id=k,
                    confidence=round(float(c), 4),
                    box=(
                        round(box[0], 1),
                        round(box[1], 1),
                        round(box[2], 1),
                        round(box[3], 1),
                    ),
                )
            )
        return out
