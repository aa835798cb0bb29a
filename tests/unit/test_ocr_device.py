"""Which ONNX Runtime execution provider the OCR asks for (no GPU needed: the choice only)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from vidjobs.worker.pipelines.yolo_ocr.detect import file_sha256
from vidjobs.worker.pipelines.yolo_ocr.ocr import onnx_device_params, rapidocr_params
from vidjobs.worker.pipelines.yolo_ocr.settings import OCR_DET_INT8, PipelineSettings

CPU_ONLY = ["CPUExecutionProvider"]
WITH_CUDA = ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_cpu_never_asks_for_cuda_even_where_it_exists() -> None:
    assert onnx_device_params("cpu", WITH_CUDA) == {"EngineConfig.onnxruntime.use_cuda": False}
    assert onnx_device_params(" CPU ", CPU_ONLY) == {"EngineConfig.onnxruntime.use_cuda": False}


@pytest.mark.parametrize(("device", "device_id"), [("cuda", 0), ("cuda:0", 0), ("cuda:3", 3)])
def test_cuda_selects_the_cuda_provider_on_the_named_gpu(device: str, device_id: int) -> None:
    assert onnx_device_params(device, WITH_CUDA) == {
        "EngineConfig.onnxruntime.use_cuda": True,
        "EngineConfig.onnxruntime.cuda_ep_cfg.device_id": device_id,
    }


def test_cuda_without_the_provider_is_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="gpu extra") as err:
        onnx_device_params("cuda:0", CPU_ONLY)
    assert "CPUExecutionProvider" in str(err.value)
    assert "VIDJOBS_OCR_DEVICE=cpu" in str(err.value)


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "mps", ""])
def test_an_unknown_device_is_refused(device: str) -> None:
    with pytest.raises(ValueError, match="unknown OCR device"):
        onnx_device_params(device, WITH_CUDA)


def test_the_setting_reaches_both_engines_params() -> None:
    settings = PipelineSettings.fixture(ocr_device="cuda:1")
    for scale in (1, 2):
        params = rapidocr_params(settings, scale, available=WITH_CUDA)
        assert params["EngineConfig.onnxruntime.use_cuda"] is True
        assert params["EngineConfig.onnxruntime.cuda_ep_cfg.device_id"] == 1
        assert params["Det.limit_side_len"] == settings.ocr_limit_side_len * scale
    assert (
        rapidocr_params(PipelineSettings.fixture(), available=WITH_CUDA)[
            "EngineConfig.onnxruntime.use_cuda"
        ]
        is False
    )


def test_the_int8_text_detector_runs_on_the_cpu_only() -> None:
    cpu = rapidocr_params(PipelineSettings.fixture(), available=WITH_CUDA)
    assert cpu["Det.model_path"] == str(OCR_DET_INT8)
    off = rapidocr_params(PipelineSettings.fixture(ocr_det_int8=False), available=WITH_CUDA)
    assert "Det.model_path" not in off  # RapidOCR's own float model
    gpu = rapidocr_params(PipelineSettings.fixture(ocr_device="cuda"), available=WITH_CUDA)
    assert "Det.model_path" not in gpu  # int8 QDQ is a CPU speed-up; CUDA keeps float


def test_the_int8_text_detector_is_the_one_its_record_names() -> None:
    """The shipped model is the file scripts/quantize_ocr.py wrote, from this RapidOCR's model."""
    meta = json.loads(OCR_DET_INT8.with_suffix(".json").read_text())
    assert file_sha256(OCR_DET_INT8) == meta["sha256"]
    source = Path(importlib.util.find_spec("rapidocr").origin).parent / "models" / meta["source"]
    assert file_sha256(source) == meta["source_sha256"], (
        "RapidOCR's text detector changed: run scripts/quantize_ocr.py again"
    )
