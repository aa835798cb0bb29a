"""Results stage: tracks, text events and shots from the analysed frames, then the document.

The document's shape lives in ``schema.results`` (clients and the API read it too); this stage
puts the pieces together, so the same frames always give the same bytes. Tracking
(``track.py``), text merging (``text_events.py``) and the shot list (``shots.py``) work on
the frames alone, after the video is read: a pass over a few thousand small records, cheap next
to the models (``bench/pipeline.py`` reports ``fps_tracking`` against ``fps_no_tracking``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from vidjobs.schema.results import (
    SCHEMA_VERSION,
    EngineInfo,
    FrameResult,
    ResultsDocument,
    ResultsParams,
    VideoInfo,
    canonical_json,
    summarize,
)
from vidjobs.worker.pipelines.yolo_ocr.settings import PipelineSettings
from vidjobs.worker.pipelines.yolo_ocr.shots import list_shots
from vidjobs.worker.pipelines.yolo_ocr.text_events import merge_text
from vidjobs.worker.pipelines.yolo_ocr.track import track_objects

__all__ = ["Engines", "build_document", "encode_document", "merge_segments"]


@dataclass(frozen=True)
class Engines:
    """Who produced the results: the detector, the OCR engine and the tracker (None: off)."""

    detector: EngineInfo
    ocr: EngineInfo
    tracker: EngineInfo | None


def build_document(
    video: VideoInfo,
    engines: Engines,
    params: ResultsParams,
    frames: Sequence[FrameResult],
    merging: PipelineSettings | None = None,
) -> ResultsDocument:
    """The results document for analysed frames; ``merging`` None leaves out tracks and events."""
    ordered = list(sorted(frames, key=lambda f: (f.t_ms, f.frame_index)))
    if merging is None:
        return ResultsDocument(
            schema_version=SCHEMA_VERSION,
            video=video,
            detector=engines.detector,
            ocr=engines.ocr,
            params=params,
            frames=tuple(ordered),
            summary=summarize(ordered),
        )
    shots = list_shots(ordered, video.duration_ms)
    ordered, tracks = track_objects(
        ordered,
        sample_fps=params.sample_fps,
        lost_seconds=merging.track_lost_seconds,
        buffer_per_second=merging.track_buffer_per_second,
        tracker=merging.tracker,
    )
    ordered, events = merge_text(
        ordered,
        sample_fps=params.sample_fps,
        gap_seconds=merging.text_gap_seconds,
        brief_min_confidence=merging.text_brief_min_confidence,
        keep_brief=params.keep_brief_text,
    )
    return ResultsDocument(
        schema_version=SCHEMA_VERSION,
        video=video,
        detector=engines.detector,
        ocr=engines.ocr,
        tracker=engines.tracker,
        params=params,
        frames=tuple(ordered),
        summary=summarize(ordered, tracks, events, shots),
        tracks=tuple(tracks),
        text_events=tuple(events),
        shots=tuple(shots),
    )


def encode_document(doc: ResultsDocument) -> bytes:
    """Canonical JSON bytes (sorted keys, rounded floats, stable order)."""
    return canonical_json(doc)


def merge_segments(
    parts: Sequence[ResultsDocument],
    tracker: EngineInfo | None,
    merging: PipelineSettings | None,
) -> ResultsDocument:
    """One document for a video analysed as segment jobs, from their documents in order.

    The frames are concatenated and their shots numbered for the whole video: a segment's
    frame ``shot`` counts the cuts since the frame before its range (segment 0: since the
    start), so segment i's shot 0 continues segment i-1's last shot. Tracks, text events and
    shots are then built over all the frames exactly as for a video analysed whole, so an
    object or a caption crossing a segment boundary is one track or one event, and the
    document equals the unsplit one (docs/architecture.md, "Long videos as segments").
    """
    frames: list[FrameResult] = []
    offset = 0
    for part in parts:
        base = offset
        frames.extend(msgspec.structs.replace(f, shot=base + f.shot) for f in part.frames)
        if part.frames:
            offset = base + part.frames[-1].shot
    first = parts[0]
    engines = Engines(detector=first.detector, ocr=first.ocr, tracker=tracker)
    return build_document(first.video, engines, first.params, frames, merging)
