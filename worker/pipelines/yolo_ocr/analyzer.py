"""``VideoAnalyzer``: the stages wired together, loaded once, run once per video."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from vidjobs.schema.results import Detection, FrameResult, ResultsParams, TextLine, validate_params
from vidjobs.worker.outcome import InvalidParams, JobStopped
from vidjobs.worker.pipelines.yolo_ocr.decode import SampledFrame, VideoSource, planned_samples
from vidjobs.worker.pipelines.yolo_ocr.detect import Detector
from vidjobs.worker.pipelines.yolo_ocr.ocr import TextReader
from vidjobs.worker.pipelines.yolo_ocr.prefetch import prefetched
from vidjobs.worker.pipelines.yolo_ocr.results import Engines, build_document, encode_document
from vidjobs.worker.pipelines.yolo_ocr.settings import PipelineSettings
from vidjobs.worker.pipelines.yolo_ocr.shots import ShotDetector
from vidjobs.worker.pipelines.yolo_ocr.text_regions import RegionMemory
from vidjobs.worker.pipelines.yolo_ocr.track import tracker_identity

__all__ = ["ProgressFn", "StageTimeFn", "StopFn", "VideoAnalyzer"]

log = logging.getLogger(__name__)

#: ``progress(frames_done, frames_total)``, called after every analysed frame.
ProgressFn = Callable[[int, int], None]
#: ``should_stop()``, polled before every frame; true cancels the analysis.
StopFn = Callable[[], bool]
#: ``stage_time(stage, seconds)``: one stage's time for one frame (the worker's metrics).
StageTimeFn = Callable[[str, float], None]


def _untimed(stage: str, seconds: float) -> None:
    """No one asked for the stage times."""


#: Largest absolute difference (0-255) between two 128x72 grey thumbnails (each pixel the mean
#: of a ~5x5 block at 640x360) under which a frame counts as unchanged. Codec noise on a still
#: shot averages out to 1-2 levels; any object moving or a caption changing moves some block by
#: tens of levels. The *largest* difference is the test: a mean would hide a small moving
#: object in a large still frame (measured: it did, and cost detection recall).
_UNCHANGED_BELOW = 4.0


def _thumbnail(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    small = cv2.resize(grey, (128, 72), interpolation=cv2.INTER_AREA)
    return small.astype(np.float32)


def _results_params(params: dict[str, Any]) -> ResultsParams:
    try:
        p = validate_params(params)
    except ValueError as exc:
        raise InvalidParams(str(exc)) from exc
    return ResultsParams(
        sample_fps=float(p["sample_fps"]),
        min_confidence=float(p["min_confidence"]),
        keep_brief_text=bool(p["keep_brief_text"]),
    )


class VideoAnalyzer:
    """Loads the detector and the OCR engine once; ``analyze`` turns a video into results JSON.

    Thread-safety: each stage is guarded by its own lock (neither Ultralytics' predictor nor
    RapidOCR may be called from two threads at once), so two threads sharing one analyzer
    overlap detection of one video with OCR of another but never run the same model twice at
    once. For parallel speed use one analyzer per process.
    """

    def __init__(self, settings: PipelineSettings) -> None:
        self.settings = settings
        self._detector = Detector(settings)
        self._reader = TextReader(settings)
        self._detect_lock = threading.Lock()
        self._ocr_lock = threading.Lock()
        # The OCR's region memory (text_regions.RegionMemory) for callers of _analyse_frame that
        # pass none (analyze() passes one per video): one per thread, as a thread analyses one
        # video at a time, frame after frame.
        self._regions = threading.local()

    def engines(self) -> Engines:
        """Who makes this analyzer's results: the models, and the tracker when it is on."""
        settings = self.settings
        tracker = (
            tracker_identity(
                settings.tracker, settings.track_lost_seconds, settings.track_buffer_per_second
            )
            if settings.track_and_merge
            else None
        )
        return Engines(detector=self._detector.identity, ocr=self._reader.identity, tracker=tracker)

    @property
    def detector_classes(self) -> dict[int, str]:
        """Class id → label of the loaded detector."""
        return dict(self._detector.names)

    def analyze(
        self,
        path: Path | str,
        params: dict[str, Any],
        progress: ProgressFn,
        should_stop: StopFn,
        stage_time: StageTimeFn | None = None,
        *,
        segment: tuple[int, int] | None = None,
    ) -> bytes:
        """Analyse one video and return the canonical results document (JSON bytes).

        ``path``: a file, or a URL the decoder reads by range requests. ``segment`` = (first,
        stop) analyses only samples first..stop-1 of the video's grid (a segment job): the
        document then holds those frames alone, with no tracks, text events or shots, and
        each frame's ``shot`` counts the cuts since the frame before the range (the merge,
        ``results.merge_segments``, numbers them for the whole video).

        Raises:
            InvalidParams: ``params`` fail ``schema.results.validate_params``.
            InvalidVideo: the file cannot be opened, has no video stream, has no frames or is
                truncated.
            JobStopped: ``should_stop()`` returned true before a frame.
        """
        used = _results_params(params)
        shots = ShotDetector(self.settings.shot_cut_threshold)
        frames: list[FrameResult] = []
        reused = 0
        started = time.monotonic()
        name = path.name if isinstance(path, Path) else "segment"
        with VideoSource(path) as source, ExitStack() as stack:  # the stages end first
            planned = planned_samples(source.info, used.sample_fps)
            first, stop = segment or (0, planned)
            total = max(0, min(stop, planned) - first)
            previous: tuple[npt.NDArray[np.float32], FrameResult] | None = None
            # What one frame reuses from the one before (its results when unchanged, its OCR
            # regions) starts afresh every `restart` samples of the grid: where a segment of
            # a split video starts (schema.segments.plan_segments), so a segment's frames are
            # the very frames the whole-video run makes (a full read there costs well under
            # 1% of a video). One region memory per video.
            restart = max(1, round(self.settings.segment_seconds * used.sample_fps))
            memory = RegionMemory() if self.settings.ocr_reuse_regions else None
            timed = stage_time or _untimed
            samples, beside = self._stages(stack, source, used.sample_fps, first, stop)
            decoding = time.perf_counter()
            for sampled in samples:
                timed("decode", time.perf_counter() - decoding)  # reaching the next sample
                if should_stop():
                    raise JobStopped("asked to stop while the video was being analysed")
                if sampled.primer:
                    if self.settings.track_and_merge:
                        shots.observe(sampled.image)
                    decoding = time.perf_counter()
                    continue
                if (first + len(frames)) % restart == 0:
                    previous = None
                    if memory is not None:
                        memory.forget()
                thumb = _thumbnail(sampled.image) if self.settings.skip_unchanged else None
                if (
                    thumb is not None
                    and previous is not None
                    and float(np.max(np.abs(thumb - previous[0]))) < _UNCHANGED_BELOW
                ):
                    detections, text = previous[1].detections, previous[1].text
                    reused += 1
                else:
                    detections, text = self._analyse_frame(
                        sampled.image, used.min_confidence, timed, memory, beside
                    )
                result = FrameResult(
                    frame_index=sampled.frame_index,
                    t_ms=sampled.t_ms,
                    detections=detections,
                    text=text,
                    shot=shots.observe(sampled.image) if self.settings.track_and_merge else 0,
                )
                frames.append(result)
                if thumb is not None:
                    previous = (thumb, result)
                progress(len(frames), total)
                decoding = time.perf_counter()
            info = source.info
        if len(frames) < total:
            # The container announced a few more frames than it holds (but not so many that
            # decode called it truncated): finish the progress bar on what there was.
            progress(len(frames), len(frames))
        log.info(
            "analysed %s: %d frames (%d unchanged, results reused) in %.1fs",
            name,
            len(frames),
            reused,
            time.monotonic() - started,
        )
        engines = self.engines()
        if not self.settings.track_and_merge or segment is not None:
            # A segment's frames are merged with the others' before tracks and events exist.
            return encode_document(build_document(info, engines, used, frames))
        started_merge = time.perf_counter()
        doc = build_document(info, engines, used, frames, self.settings)
        log.info(
            "%s: %d tracks, %d text events, %d shots in %.3fs",
            name,
            len(doc.tracks),
            len(doc.text_events),
            len(doc.shots),
            time.perf_counter() - started_merge,
        )
        return encode_document(doc)

    def _stages(
        self, stack: ExitStack, source: VideoSource, sample_fps: float, first: int, stop: int
    ) -> tuple[Iterator[SampledFrame], Executor | None]:
        """The sampled frames, and the detector's thread (None: it runs before the OCR).

        With ``overlap_stages`` the frames are decoded ahead in a thread of their own and the
        detector gets a thread beside the OCR; both end with ``stack``.
        """
        frames = source.sample(sample_fps, first=first, stop=stop)
        if not self.settings.overlap_stages:
            return stack.enter_context(prefetched(frames, depth=0)), None
        beside = stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="vidjobs-detect"))
        return stack.enter_context(prefetched(frames, depth=2)), beside

    def _analyse_frame(
        self,
        image: npt.NDArray[np.uint8],
        min_confidence: float,
        timed: StageTimeFn,
        memory: RegionMemory | None = None,
        beside: Executor | None = None,
    ) -> tuple[tuple[Detection, ...], tuple[TextLine, ...]]:
        """One frame's detections and text; ``memory``: this video's OCR region memory.

        ``beside``: run the detector there while the OCR reads the frame in this thread (both
        runtimes release the GIL; the OCR is the longer stage), else one after the other.
        """
        if memory is None and self.settings.ocr_reuse_regions:
            memory = getattr(self._regions, "memory", None)
            if memory is None:
                memory = self._regions.memory = RegionMemory()

        def detect() -> tuple[Detection, ...]:
            # Timed inside the locks: the stage's own time, not the wait for another thread.
            with self._detect_lock:
                started = time.perf_counter()
                found = tuple(self._detector.detect(image, min_confidence))
                timed("detect", time.perf_counter() - started)
            return found

        detecting = beside.submit(detect) if beside is not None else None
        detections = detect() if detecting is None else ()
        try:
            with self._ocr_lock:
                started = time.perf_counter()
                text = tuple(self._reader.read(image, min_confidence, memory))
                timed("ocr", time.perf_counter() - started)
        finally:
            if detecting is not None:
                # Always wait for it: the frame must not change under a running detector.
                detections = detecting.result()
        return detections, text
