"""The pipelines a worker runs, by the name stored in ``jobs.pipeline``: ``noop`` and ``yolo_ocr``.

A worker builds every pipeline it runs (``load_all``: the models load and warm up) before it
claims its first job, so no job pays for the load and the worker reports ready only once they are
in memory. A ``--no-video`` worker's registry has only ``noop``, so it never imports the ML stack
(``vidjobs worker --check`` stays light too).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from vidjobs.blobs import open_blob_store
from vidjobs.worker.pipelines.contract import Pipeline
from vidjobs.worker.pipelines.noop import NoopPipeline

if TYPE_CHECKING:
    from vidjobs.blobs import BlobSettings
    from vidjobs.worker.pipelines.yolo_ocr.settings import PipelineSettings

__all__ = ["PipelineRegistry", "default_registry", "noop_only", "video_pipeline"]


class PipelineRegistry:
    """Name → pipeline, built lazily so a worker only loads the models it needs.

    Args:
        factories: pipeline name → zero-argument callable that builds the pipeline the first
            time a job of that name is claimed (the video model loads once per process).
    """

    def __init__(self, factories: Mapping[str, Callable[[], Pipeline]]) -> None:
        self._factories = dict(factories)
        self._built: dict[str, Pipeline] = {}
        self._lock = asyncio.Lock()
        self.load_seconds: dict[str, float] = {}
        """Pipeline name -> seconds its build took (loading the models), once built."""

    @property
    def names(self) -> tuple[str, ...]:
        """Every pipeline this worker can run."""
        return tuple(sorted(self._factories))

    async def get(self, name: str) -> Pipeline | None:
        """The pipeline called ``name``, built on first use; None if unknown.

        Raises:
            ModelUnavailable: building it failed (tried again on the next job).
        """
        built = self._built.get(name)
        if built is not None:
            return built
        factory = self._factories.get(name)
        if factory is None:
            return None
        async with self._lock:
            if name not in self._built:
                # Building may load a model for seconds: keep the event loop (heartbeats) free.
                started = time.perf_counter()
                self._built[name] = await asyncio.to_thread(factory)
                self.load_seconds[name] = time.perf_counter() - started
            return self._built[name]

    async def load_all(self) -> dict[str, Exception]:
        """Build every pipeline now (load and warm its models), before the worker claims.

        A pipeline that fails to build is left unbuilt (each of its jobs tries again and fails
        with the loader's message, as before); the failures are returned, by name, to be logged.
        """
        failed: dict[str, Exception] = {}
        for name in self.names:
            try:
                await self.get(name)
            except Exception as exc:  # e.g. ModelUnavailable: reported, jobs fail naming it
                failed[name] = exc
        return failed

    async def close(self) -> None:
        """Close every pipeline that was built."""
        for pipeline in self._built.values():
            await pipeline.close()
        self._built.clear()


def video_pipeline(blobs: BlobSettings, video: PipelineSettings, concurrency: int) -> Pipeline:
    """Build ``yolo_ocr``: load the models (once per process), then open the blob store.

    Raises:
        ModelUnavailable: the models cannot be loaded (permanent), so every job that needs
            them fails with a message naming the setting instead of hanging.
    """
    from vidjobs.worker.pipelines.yolo_ocr.analyzer import VideoAnalyzer
    from vidjobs.worker.pipelines.yolo_ocr.job import VideoPipeline

    analyzer = VideoAnalyzer(video)
    return VideoPipeline(open_blob_store(blobs), analyzer, threads=concurrency)


def default_registry(
    blobs: BlobSettings | None = None,
    video: PipelineSettings | None = None,
    concurrency: int = 1,
) -> PipelineRegistry:
    """``noop`` always; ``yolo_ocr`` when blob and pipeline settings are given."""
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


def noop_only() -> PipelineRegistry:
    """A registry with just the ``noop`` pipeline (benchmarks, queue tests)."""
    return PipelineRegistry({"noop": NoopPipeline})
