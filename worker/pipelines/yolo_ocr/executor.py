"""Where the CPU-bound video analysis runs: threads of the worker process.

One ``VideoAnalyzer`` (detector + OCR engine, loaded once) serves every thread; its stages
hold their own locks, so two jobs overlap detection of one with OCR of the other. OpenCV,
PyTorch and ONNX Runtime release the GIL in their kernels, and each already spreads one
frame over the cores, so threads cost no parallelism here; the measurement is in
docs/architecture.md ("Threads, not processes, for the analysis").
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vidjobs.worker.pipelines.contract import JobContext

if TYPE_CHECKING:
    from vidjobs.worker.pipelines.yolo_ocr import PipelineSettings

__all__ = ["ThreadAnalyze"]


class ThreadAnalyze:
    """Runs ``VideoAnalyzer.analyze`` in a thread pool sized to the worker's concurrency.

    Args:
        settings: the pipeline settings; the models load here, once.
        threads: analyses at once (the worker's ``concurrency``).

    Raises:
        ModelUnavailable: the detector weights or OCR models cannot be loaded.
    """

    def __init__(self, settings: PipelineSettings, threads: int) -> None:
        from vidjobs.worker.pipelines.yolo_ocr import VideoAnalyzer

        self.analyzer = VideoAnalyzer(settings)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="vidjobs-analyze"
        )

    async def __call__(self, path: Path, params: dict[str, Any], ctx: JobContext) -> bytes:
        """Analyse in a pool thread; progress and stop requests cross threads safely."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pool, self.analyzer.analyze, path, params, ctx.progress, ctx.should_stop
        )

    async def close(self) -> None:
        """Free the threads without waiting: a job still analysing was already handed back.

        The thread of such a job ends at its next frame (its stop flag is set); the process
        exit does not wait for it (``worker.main.exit_now_if_threads_linger``).
        """
        self._pool.shutdown(wait=False, cancel_futures=True)
