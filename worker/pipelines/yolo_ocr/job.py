"""The ``yolo_ocr`` job: download the video, analyse it in a thread, upload the results document.

The analysis (``analyzer.VideoAnalyzer``) is synchronous and CPU bound; it runs in a thread
pool sized to the worker's concurrency, so the event loop stays free for heartbeats. One
analyzer (detector + OCR engine, loaded once) serves every thread; its stages hold their own
locks, so two jobs overlap detection of one with OCR of the other. OpenCV, PyTorch and ONNX
Runtime release the GIL in their kernels and each already spreads one frame over the cores,
so threads cost no parallelism here; the measurement is in docs/architecture.md ("Threads,
not processes, for the analysis").

Errors are not translated here: the stages raise ``worker.outcome`` errors, blob-store errors
pass through, and ``worker.outcome.classify`` decides what each means for the job (the
message names the step, ``ctx.step``). The temporary directory holding the video is removed
whatever happens.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from vidjobs import tracing
from vidjobs.blobs import BlobStore, results_index_key, results_key, video_key
from vidjobs.schema.results_index import build_index
from vidjobs.worker.outcome import JobStopped
from vidjobs.worker.pipelines.contract import JobContext

if TYPE_CHECKING:
    from vidjobs.worker.pipelines.yolo_ocr.analyzer import VideoAnalyzer

__all__ = ["VideoPipeline"]


class VideoPipeline:
    """The ``yolo_ocr`` pipeline as the worker loop sees it.

    Args:
        store: the blob store (one per process; its methods block, so they run in threads).
        analyzer: the loaded models; shared by every analysis thread.
        threads: analyses at once (the worker's ``concurrency``).
        temp_dir: parent of the per-job temporary directories (None: the system's).
    """

    def __init__(
        self,
        store: BlobStore,
        analyzer: VideoAnalyzer,
        *,
        threads: int,
        temp_dir: Path | None = None,
    ) -> None:
        self._store = store
        self.analyzer = analyzer
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="vidjobs-analyze"
        )
        self._temp_dir = temp_dir

    async def run(self, ctx: JobContext) -> str | None:
        """Download → analyse → upload; returns the results key."""
        job = ctx.job
        key = job.input_key or video_key(job.job_id)
        work = Path(tempfile.mkdtemp(prefix=f"vidjobs-{job.job_id}-", dir=self._temp_dir))
        try:
            ctx.step = "downloading the video"
            with tracing.span("stage download", {"vidjobs.blob_key": key}):
                path = await asyncio.to_thread(
                    self._store.get_to_tempfile, key, suffix=".mp4", directory=work
                )
            if ctx.should_stop():
                raise JobStopped(ctx.stop_reason or "stopped")
            ctx.step = "analysing the video"
            # Progress and stop requests cross threads safely (JobContext). Traced, the stages'
            # per-frame times are summed into one span per stage (decode, detect, ocr).
            totals = tracing.StageTotals(ctx.stage_time) if tracing.enabled() else None
            with tracing.span("stage analyse") as analysing:
                started_ns = time.time_ns()
                document = await asyncio.get_running_loop().run_in_executor(
                    self._pool,
                    self.analyzer.analyze,
                    path,
                    dict(job.params),
                    ctx.progress,
                    ctx.should_stop,
                    totals or ctx.stage_time,
                )
                if totals is not None and analysing is not None:
                    analysing.set_attribute("vidjobs.frames", ctx.frames_done)
                    tracing.stage_spans(totals, started_ns)
            out = results_key(job.job_id)
            await ctx.ensure_held()  # a stale attempt must not replace a newer one's results
            ctx.step = "uploading the results"
            with tracing.span("stage upload results", {"vidjobs.blob_key": out}):
                await asyncio.to_thread(
                    self._store.put_bytes, out, document, content_type="application/json"
                )
                # Then its byte index: the API pages the document by ranged reads with it.
                index = msgspec.json.encode(build_index(document))
                await asyncio.to_thread(
                    self._store.put_bytes,
                    results_index_key(job.job_id),
                    index,
                    content_type="application/json",
                )
            return out
        finally:
            shutil.rmtree(work, ignore_errors=True)

    async def close(self) -> None:
        """Free the threads without waiting, then close the blob store.

        A job still analysing was already handed back: its thread ends at its next frame
        (its stop flag is set), and the process exit does not wait for it
        (``worker.main.exit_now_if_threads_linger``).
        """
        self._pool.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(self._store.close)
