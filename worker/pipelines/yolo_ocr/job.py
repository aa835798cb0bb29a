"""The ``yolo_ocr`` job: download the video, analyse it in a thread, upload the results document.

The analysis (``analyzer.VideoAnalyzer``) is synchronous and CPU bound; it runs in a thread
pool sized to the worker's concurrency, so the event loop stays free for heartbeats. One
analyzer (detector + OCR engine, loaded once) serves every thread; its stages hold their own
locks, so two jobs overlap detection of one with OCR of the other. OpenCV, PyTorch and ONNX
Runtime release the GIL in their kernels and each already spreads one frame over the cores,
so threads cost no parallelism here; the measurement is in docs/architecture.md ("Threads,
not processes, for the analysis").

A video longer than ``segment_above_seconds`` is not analysed by the job that claims it: that
run only reads the video's header (through ``BlobStore.readable_location``: a presigned URL
FFmpeg reads by range requests, or the local file) and returns ``SplitInto`` with the
segments' ranges; each segment job then decodes its own range (seeking to the keyframe
before it, no download), and the job's last run merges the segments' documents
(``results.merge_segments``). docs/architecture.md, "Long videos as segments".

Errors are not translated here: the stages raise ``worker.outcome`` errors, blob-store errors
pass through, and ``worker.outcome.classify`` decides what each means for the job (the
message names the step, ``ctx.step``). The temporary directory holding the video is removed
whatever happens.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from vidjobs import tracing
from vidjobs.blobs import (
    BlobNotFound,
    BlobStore,
    BlobStoreError,
    results_index_key,
    results_key,
    video_key,
)
from vidjobs.schema import decode_results
from vidjobs.schema.results import validate_params
from vidjobs.schema.results_index import build_index
from vidjobs.schema.segments import plan_segments, segment_job_id, segment_samples
from vidjobs.worker.outcome import InvalidParams, InvalidVideo, JobStopped
from vidjobs.worker.pipelines.contract import JobContext, SplitInto

if TYPE_CHECKING:
    from vidjobs.schema.results import VideoInfo
    from vidjobs.worker.pipelines.yolo_ocr.analyzer import VideoAnalyzer

log = logging.getLogger(__name__)

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

    async def run(self, ctx: JobContext) -> str | SplitInto | None:
        """Download → analyse → upload; returns the results key (or the split of a long
        video, or a segment's partial results, or the merge of them)."""
        job = ctx.job
        if job.segments is not None:
            return await self._merge(ctx)
        if job.parent_id is not None:
            return await self._segment(ctx)
        if self.analyzer.settings.segment_above_seconds > 0:
            split = await self._plan(ctx)
            if split is not None:
                return split
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
            return await self._upload(ctx, document)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    async def _upload(self, ctx: JobContext, document: bytes, *, index: bool = True) -> str:
        """Store the job's results document (and its byte index); returns its key."""
        job = ctx.job
        out = results_key(job.job_id)
        await ctx.ensure_held()  # a stale attempt must not replace a newer one's results
        ctx.step = "uploading the results"
        with tracing.span("stage upload results", {"vidjobs.blob_key": out}):
            await asyncio.to_thread(
                self._store.put_bytes, out, document, content_type="application/json"
            )
            if index:
                # Then its byte index: the API pages the document by ranged reads with it.
                await asyncio.to_thread(
                    self._store.put_bytes,
                    results_index_key(job.job_id),
                    msgspec.json.encode(build_index(document)),
                    content_type="application/json",
                )
        return out

    async def _plan(self, ctx: JobContext) -> SplitInto | None:
        """Segments for a video longer than the threshold, from its header alone; else None.

        Bad params and unreadable videos are left to the analysis, which names the problem.
        """
        job = ctx.job
        settings = self.analyzer.settings
        try:
            sample_fps = float(validate_params(dict(job.params))["sample_fps"])
        except ValueError:
            return None
        ctx.step = "reading the video's header"
        try:
            location = await asyncio.to_thread(
                self._store.readable_location, job.input_key or video_key(job.job_id)
            )
            info = await asyncio.to_thread(_probe, location)
        except (BlobStoreError, InvalidVideo):
            return None  # the download path reports it (or works where a URL does not)
        if info.duration_ms <= settings.segment_above_seconds * 1000:
            return None
        from vidjobs.worker.pipelines.yolo_ocr.decode import planned_samples

        samples = planned_samples(info, sample_fps)
        segments = plan_segments(samples, sample_fps, settings.segment_seconds)
        if len(segments) < 2:
            return None
        # A header can claim hours that the file does not hold (a corrupt or edited index):
        # split only a video whose last segment's first frame decodes, else the whole-video
        # analysis reports the truncation, once, instead of hundreds of segment jobs failing.
        last_first = segment_samples(segments[-1][0], segments[-1][1], sample_fps)[0]
        if not await asyncio.to_thread(_decodes, location, sample_fps, last_first):
            return None
        return SplitInto(tuple(segments))

    async def _segment(self, ctx: JobContext) -> str:
        """Analyse one segment's range, read in place; store its partial document."""
        job = ctx.job
        start_ms, end_ms = job.segment_start_ms or 0, job.segment_end_ms or 0
        try:
            sample_fps = float(validate_params(dict(job.params))["sample_fps"])
        except ValueError as exc:
            raise InvalidParams(str(exc)) from exc
        segment = segment_samples(start_ms, end_ms, sample_fps)
        key = job.input_key or video_key(job.job_id)
        ctx.step = "locating the video"
        location = await asyncio.to_thread(self._store.readable_location, key)
        ctx.step = "analysing the video's segment"
        with tracing.span("stage analyse segment", {"vidjobs.segment": job.segment_index or 0}):
            document = await asyncio.get_running_loop().run_in_executor(
                self._pool,
                functools.partial(
                    self.analyzer.analyze,
                    location,
                    dict(job.params),
                    ctx.progress,
                    ctx.should_stop,
                    ctx.stage_time,
                    segment=segment,
                ),
            )
        return await self._upload(ctx, document, index=False)

    async def _merge(self, ctx: JobContext) -> str:
        """The last run of a split job: one document from its segments' documents."""
        job = ctx.job
        ctx.step = "reading the segments' results"
        keys = [results_key(segment_job_id(job.job_id, i)) for i in range(job.segments or 0)]
        try:
            blobs = [await asyncio.to_thread(self._store.get_bytes, k) for k in keys]
        except BlobNotFound:
            # A merge that stored the document and removed the parts, then lost its
            # completion (a crash, the database away): the document is there.
            if await asyncio.to_thread(self._store.exists, results_key(job.job_id)):
                return results_key(job.job_id)
            raise
        ctx.step = "merging the segments' results"
        document = await asyncio.to_thread(self._merged, blobs)
        ctx.progress(job.frames_total or 0, job.frames_total)
        out = await self._upload(ctx, document)
        for k in keys:  # the parts are not needed once the whole is stored
            try:
                await asyncio.to_thread(self._store.delete, k)
            except BlobStoreError as exc:
                log.warning("job %s: segment results %s not removed: %s", job.job_id, k, exc)
        return out

    def _merged(self, blobs: list[bytes]) -> bytes:
        from vidjobs.worker.pipelines.yolo_ocr.results import encode_document, merge_segments

        settings = self.analyzer.settings
        parts = [decode_results(b) for b in blobs]
        merging = settings if settings.track_and_merge else None
        return encode_document(merge_segments(parts, self.analyzer.engines().tracker, merging))

    async def close(self) -> None:
        """Free the threads without waiting, then close the blob store.

        A job still analysing was already handed back: its thread ends at its next frame
        (its stop flag is set), and the process exit does not wait for it
        (``worker.main.exit_now_if_threads_linger``).
        """
        self._pool.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(self._store.close)


def _probe(location: str) -> VideoInfo:
    """The video's description from its header (the decoder reads no frame)."""
    from vidjobs.worker.pipelines.yolo_ocr.decode import VideoSource

    with VideoSource(location) as source:
        return source.info


def _decodes(location: str, sample_fps: float, sample: int) -> bool:
    """True if the grid's ``sample`` decodes (the decoder seeks there, reading little)."""
    from vidjobs.worker.pipelines.yolo_ocr.decode import VideoSource

    try:
        with VideoSource(location) as source:
            return any(
                not f.primer for f in source.sample(sample_fps, first=sample, stop=sample + 1)
            )
    except InvalidVideo:
        return False
