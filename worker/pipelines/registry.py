"""The pipelines a ``vidjobs worker`` process offers: ``noop`` and ``yolo_ocr``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from vidjobs.blobs import open_blob_store
from vidjobs.worker.pipelines.contract import NoopPipeline, Pipeline, PipelineRegistry

if TYPE_CHECKING:
    from vidjobs.blobs import BlobSettings
    from vidjobs.worker.pipelines.yolo_ocr import PipelineSettings

__all__ = ["default_registry", "video_pipeline"]


def video_pipeline(blobs: BlobSettings, video: PipelineSettings, concurrency: int) -> Pipeline:
    """Build ``yolo_ocr``: open the blob store and load the models (once per process).

    Raises:
        JobFailure: the models cannot be loaded (``model_unavailable``, permanent), so every
            job that needs them fails with a message naming the setting instead of hanging.
    """
    from vidjobs.worker.pipelines.yolo_ocr.executor import ThreadAnalyze
    from vidjobs.worker.pipelines.yolo_ocr.job import VideoPipeline, pipeline_failure

    try:
        analyze = ThreadAnalyze(video, threads=concurrency)
    except Exception as exc:
        mapped = pipeline_failure(exc)
        if mapped is exc:
            raise
        raise mapped from exc
    return VideoPipeline(open_blob_store(blobs), analyze)


def default_registry(
    blobs: BlobSettings | None = None,
    video: PipelineSettings | None = None,
    concurrency: int = 1,
) -> PipelineRegistry:
    """``noop`` always; ``yolo_ocr`` when blob and pipeline settings are given.

    ``yolo_ocr`` is built on its first job, so a worker that only runs ``noop`` jobs never
    imports the ML stack.
    """
    factories: dict[str, Callable[[], Pipeline]] = {"noop": NoopPipeline}
    if blobs is not None:
        # noop with params {"results": true} writes a results document naming its attempt
        # (the chaos suite checks every stored result belongs to the completing attempt).
        store_settings = blobs
        factories["noop"] = lambda: NoopPipeline(open_blob_store(store_settings))
    if blobs is not None and video is not None:
        b, v = blobs, video
        factories["yolo_ocr"] = lambda: video_pipeline(b, v, concurrency)
    return PipelineRegistry(factories)
