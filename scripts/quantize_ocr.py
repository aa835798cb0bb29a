"""Quantise RapidOCR's text detector to int8 (ONNX Runtime static QDQ) for CPU workers.

Writes ``worker/pipelines/yolo_ocr/assets/ocr-det-int8.onnx`` and ``ocr-det-int8.json`` (the
source model's name and SHA-256, the calibration frames, the versions, the date). The text
*detector* only: the recogniser quantised the same way dropped the space between words on 16
of 60 bench frames (``HELLO 10`` read ``HELLO10``), the detector changed 3 of 60 reads, all
by where a box ends (docs/pipeline.md, "int8 text detector").

Calibration (MinMax over the activations) uses the inputs the detector really gets in the
pipeline, recorded from RapidOCR with the pipeline's own settings, over frames of videos and
scenes the benchmarks and tests do not use: synthetic videos of seeds 3 and 5 at 640x360 and
1280x720, 1920x1080 frames with small captions, and random shape scenes (no text).

Usage::

    .venv/bin/pip install onnx   # in the dev extra; the worker needs only onnxruntime
    .venv/bin/python scripts/quantize_ocr.py
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vidjobs.devstack.synth.scenes import random_scene
from vidjobs.devstack.synth.video import make_sample_video
from vidjobs.worker.pipelines.yolo_ocr.detect import file_sha256
from vidjobs.worker.pipelines.yolo_ocr.ocr import rapidocr_params
from vidjobs.worker.pipelines.yolo_ocr.settings import OCR_DET_INT8, PipelineSettings

#: ONNX opset the model is converted to first: per-channel QDQ needs DequantizeLinear's axis (13).
_OPSET = 13


class _Recorder:
    """Stands in for the detector's InferenceSession: keeps each input, then runs it."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.feeds: list[dict[str, np.ndarray]] = []

    def run(self, names: Any, feeds: dict[str, np.ndarray], *args: Any, **kwargs: Any) -> Any:
        self.feeds.append({k: v.copy() for k, v in feeds.items()})
        return self.session.run(names, feeds, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)


def _video_frames(path: Path, every: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames, i = [], 0
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                return frames
            if i % every == every // 2:
                frames.append(frame)
            i += 1
    finally:
        cap.release()


def calibration_frames(tmp: Path) -> list[np.ndarray]:
    """Frames of videos and scenes that neither the benchmark (seed 7, 11) nor the tests use."""
    frames: list[np.ndarray] = []
    for seed, (w, h), seconds in ((3, (640, 360), 30), (5, (640, 360), 30), (9, (1280, 720), 16)):
        video = tmp / f"calib-{seed}.mp4"
        make_sample_video(video, seconds, width=w, height=h, seed=seed)
        frames += _video_frames(video, 25)
    big = tmp / "calib-1080.mp4"
    make_sample_video(big, 8, width=1920, height=1080, seed=13)
    frames += _video_frames(big, 25)
    rng = np.random.default_rng(17)
    frames += [random_scene(rng)[0] for _ in range(8)]
    return frames


def record_inputs(frames: list[np.ndarray]) -> tuple[Path, list[dict[str, np.ndarray]]]:
    """The detector's model file and the inputs it got while RapidOCR read ``frames``."""
    from rapidocr import RapidOCR

    settings = PipelineSettings(ocr_det_int8=False)
    engine = RapidOCR(params=rapidocr_params(settings))
    engine(np.full((96, 320, 3), 255, dtype=np.uint8))  # builds the sessions
    wrapper = engine.text_det.session
    recorder = _Recorder(wrapper.session)
    wrapper.session = recorder
    for frame in frames:
        engine(frame)
    return Path(str(recorder.session._model_path)), recorder.feeds


def quantize(source: Path, feeds: list[dict[str, np.ndarray]], out: Path, tmp: Path) -> None:
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    model = onnx.load(str(source))
    if model.opset_import[0].version < _OPSET:
        model = version_converter.convert_version(model, _OPSET)
    converted, prepared = tmp / "det-opset.onnx", tmp / "det-prepared.onnx"
    onnx.save(model, str(converted))
    quant_pre_process(str(converted), str(prepared), skip_symbolic_shape=True)
    quantize_static(
        str(prepared),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OCR_DET_INT8)
    args = parser.parse_args(argv)
    import onnxruntime

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        frames = calibration_frames(tmp)
        source, feeds = record_inputs(frames)
        print(f"calibrating {source.name} on {len(feeds)} inputs", file=sys.stderr)
        quantize(source, feeds, args.out, tmp)
    meta = {
        "source": source.name,
        "source_sha256": file_sha256(source),
        "sha256": file_sha256(args.out),
        "calibration": f"{len(feeds)} detector inputs: synthetic videos seeds 3, 5 (640x360), "
        "9 (1280x720), 13 (1920x1080), 8 random shape scenes",
        "quantization": "static QDQ, per-channel int8 weights, uint8 activations, MinMax",
        "rapidocr": importlib.metadata.version("rapidocr"),
        "onnxruntime": onnxruntime.__version__,
        "command": "python scripts/quantize_ocr.py",
        "date": dt.date.today().isoformat(),
    }
    args.out.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
