"""The GPU image (``deploy/Dockerfile`` with ``--build-arg GPU=1``), built and run for real.

This engine has no GPU, so the image cannot show GPU speed here (docs/pipeline.md says what was
measured where). What it can show, and what a GPU host then needs only its driver for: the image
carries ONNX Runtime's CUDA provider for the OCR and CUDA torch for the detector, the CUDA and
cuDNN libraries both need load from the image's own nvidia-* wheels, and a worker asked for
``VIDJOBS_OCR_DEVICE=cuda`` where CUDA cannot start refuses to start instead of running its OCR
on the CPU under a GPU label.
"""

from __future__ import annotations

import os
import subprocess

import pytest

pytestmark = pytest.mark.deploy

# Run inside the image (no network, no GPU): what it has, then a CUDA OCR asked for.
_PROBE = """
import onnxruntime, torch
print("providers", onnxruntime.get_available_providers())
print("torch", torch.__version__, "cuda", torch.version.cuda)
from vidjobs.worker.outcome import ModelUnavailable
from vidjobs.worker.pipelines.yolo_ocr.ocr import TextReader
from vidjobs.worker.pipelines.yolo_ocr.settings import PipelineSettings
try:
    TextReader(PipelineSettings(ocr_device="cuda"))
except ModelUnavailable as exc:
    print("refused:", exc)
else:
    print("started")
"""


def _image() -> str:
    image = os.environ.get("VIDJOBS_DEPLOY_GPU_IMAGE")
    if not image:  # never a skip: run through `make deploy-test`, which builds it
        raise AssertionError("VIDJOBS_DEPLOY_GPU_IMAGE is not set: run `make deploy-test`")
    return image


def test_the_gpu_image_has_cuda_ocr_and_refuses_to_run_it_on_the_cpu() -> None:
    proc = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", _image(), "python", "-c", _PROBE],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out, err = proc.stdout, proc.stderr
    assert proc.returncode == 0, f"stdout:\n{out}\nstderr:\n{err}"
    assert "'CUDAExecutionProvider'" in out, out
    assert "cuda None" not in out, f"torch is a CPU build:\n{out}"
    # The worker refuses, naming the setting, the provider and the parts that fell back.
    assert "refused: VIDJOBS_OCR_DEVICE: 'cuda' asked for" in out, f"{out}\n{err}"
    assert "text_det, text_rec on the CPU" in out, out
    # What was missing is the driver alone: CUDA and cuDNN came from the image's own wheels.
    assert "libcuda.so.1" in err, err
    for library in ("libcublasLt.so.13", "libcublas.so.13", "libcudart.so.13", "libcudnn.so.9"):
        assert f"{library}: cannot open" not in err, err
