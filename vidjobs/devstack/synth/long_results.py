"""A long results document made directly (no video analysed): for paging tests and bench/results.py.

``long_results_document(hours=2)`` is what a 2-hour video at 1 frame/s would give: a frame per
second with two tracked objects and a caption, objects changing every 30 s, captions every
10 s, a shot every 5 minutes; encoded canonically like the worker's documents.
"""

from __future__ import annotations

from vidjobs.schema.results import (
    SCHEMA_VERSION,
    Detection,
    EngineInfo,
    FrameResult,
    ResultsDocument,
    ResultsParams,
    Shot,
    TextEvent,
    TextLine,
    Track,
    VideoInfo,
    canonical_json,
    summarize,
)

__all__ = ["long_results_document"]

_ENGINE = EngineInfo(name="synthetic", version="0", weights="none", weights_sha256="")
_LABELS = ("circle", "square", "triangle", "star")


def long_results_document(hours: float = 2.0) -> bytes:
    """Canonical JSON of a synthetic ``hours``-long document sampled at 1 frame/s."""
    seconds = round(hours * 3600)
    frames: list[FrameResult] = []
    tracks: dict[int, list[tuple[int, Detection]]] = {}
    events: dict[int, list[int]] = {}
    for s in range(seconds):
        shot = s // 300
        dets = []
        for k in range(2):
            track_id = (s // 30) * 2 + k + 1
            x = 40.0 + 300 * k + (s % 30) * 4.0
            det = Detection(
                label=_LABELS[(track_id - 1) % 4],
                class_id=(track_id - 1) % 4,
                confidence=0.9,
                box=(x, 60.0, x + 60.0, 120.0),
                track_id=track_id,
            )
            dets.append(det)
            tracks.setdefault(track_id, []).append((s * 1000, det))
        event_id = s // 10 + 1
        events.setdefault(event_id, []).append(s * 1000)
        line = TextLine(
            text=f"CAPTION {event_id}",
            confidence=0.95,
            polygon=((40.0, 300.0), (260.0, 300.0), (260.0, 340.0), (40.0, 340.0)),
            event_id=event_id,
        )
        frames.append(
            FrameResult(
                frame_index=s * 25, t_ms=s * 1000, detections=tuple(dets), text=(line,), shot=shot
            )
        )
    track_list = [
        Track(
            track_id=tid,
            label=seen[0][1].label,
            class_id=seen[0][1].class_id,
            shot=seen[0][0] // 300_000,
            first_ms=seen[0][0],
            last_ms=seen[-1][0],
            frames=len(seen),
            mean_confidence=0.9,
            max_confidence=0.9,
            first_box=seen[0][1].box,
            last_box=seen[-1][1].box,
            best_box=seen[0][1].box,
            best_ms=seen[0][0],
        )
        for tid, seen in tracks.items()
    ]
    event_list = [
        TextEvent(
            event_id=eid,
            text=f"CAPTION {eid}",
            confidence=0.95,
            first_ms=times[0],
            last_ms=times[-1],
            frames=len(times),
            box=(40.0, 300.0, 260.0, 340.0),
            variants=(f"CAPTION {eid}",),
        )
        for eid, times in events.items()
    ]
    shots = [
        Shot(shot=k, start_ms=k * 300_000, end_ms=min(seconds, (k + 1) * 300) * 1000, frames=300)
        for k in range((seconds + 299) // 300)
    ]
    doc = ResultsDocument(
        schema_version=SCHEMA_VERSION,
        video=VideoInfo(
            duration_ms=seconds * 1000,
            fps=25.0,
            width=640,
            height=360,
            frames=seconds * 25,
            codec="h264",
        ),
        detector=_ENGINE,
        ocr=_ENGINE,
        tracker=_ENGINE,
        params=ResultsParams(sample_fps=1.0, min_confidence=0.25),
        frames=tuple(frames),
        summary=summarize(frames, track_list, event_list, shots),
        tracks=tuple(track_list),
        text_events=tuple(event_list),
        shots=tuple(shots),
    )
    return canonical_json(doc)
