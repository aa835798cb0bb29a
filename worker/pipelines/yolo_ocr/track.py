"""Track stage: follow each object across the sampled frames of a shot (Ultralytics' trackers).

Tracking runs after detection, over the detections alone (no pixels): Ultralytics' ByteTrack
associates each frame's boxes with the tracks' Kalman-predicted boxes by IoU, first the
confident ones, then the rest, and keeps a lost track for ``lost_seconds`` so an object hidden
for a moment keeps its id. Because it sees only the sampled frames, everything is expressed in
sampled frames: the lost-track buffer is ``ceil(lost_seconds * sample_fps)`` frames, not the 30
frames Ultralytics assumes for 30 fps video. A shot cut restarts the tracker, so no track spans
a cut. Why ByteTrack and these numbers: docs/pipeline.md ("Object tracks").

Every detection gets a track: a track the tracker would drop as unconfirmed (seen in one frame)
is still one object seen once. Track ids count from 1 in order of first appearance, so the same
detections always give the same ids.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from vidjobs.schema.results import Box, Detection, EngineInfo, FrameResult, Track
from vidjobs.worker.pipelines.yolo_ocr.settings import TrackerName

__all__ = ["track_objects", "tracker_identity"]

#: Ultralytics' defaults (cfg/trackers/*.yaml) except the buffer, which is set per job.
_ARGS: dict[str, Any] = {
    "track_high_thresh": 0.25,
    "track_low_thresh": 0.1,
    "new_track_thresh": 0.25,
    "match_thresh": 0.8,
    "fuse_score": False,
    # BoT-SORT only: no camera-motion compensation (it needs pixels; we track boxes) and no
    # re-identification model (one more network per frame).
    "gmc_method": "none",
    "proximity_thresh": 0.5,
    "appearance_thresh": 0.8,
    "with_reid": False,
    "model": "auto",
}


class _Boxes:
    """The Results-like view of one frame's detections that Ultralytics' trackers read."""

    def __init__(self, xywh: npt.NDArray[np.float32], conf: npt.NDArray[np.float32], cls: Any):
        self.xywh = xywh
        self.conf = conf
        self.cls = cls

    @classmethod
    def of(cls, detections: Sequence[Detection], buffer: float) -> _Boxes:
        xyxy = np.asarray([d.box for d in detections], dtype=np.float32).reshape(-1, 4)
        centre = (xyxy[:, :2] + xyxy[:, 2:]) / 2
        size = (xyxy[:, 2:] - xyxy[:, :2]) * (1.0 + 2.0 * buffer)
        xywh = np.hstack((centre, size)).astype(np.float32)
        conf = np.asarray([d.confidence for d in detections], dtype=np.float32)
        classes = np.asarray([d.class_id for d in detections], dtype=np.float32)
        return cls(xywh.reshape(-1, 4), conf, classes)

    def __len__(self) -> int:
        return len(self.conf)

    def __getitem__(self, index: Any) -> _Boxes:
        return _Boxes(self.xywh[index], self.conf[index], self.cls[index])


def _new_tracker(name: TrackerName, buffer_frames: int) -> Any:
    args = SimpleNamespace(**_ARGS, track_buffer=buffer_frames, tracker_type=name)
    if name == "botsort":
        from ultralytics.trackers.bot_sort import BOTSORT

        return BOTSORT(args)
    from ultralytics.trackers.byte_tracker import BYTETracker

    return BYTETracker(args)  # type: ignore[no-untyped-call]


def tracker_identity(
    name: TrackerName, lost_seconds: float, buffer_per_second: float
) -> EngineInfo:
    """The tracker's identity for the results document (its settings in ``weights``)."""
    import ultralytics

    return EngineInfo(
        name=f"ultralytics-{name}",
        version=str(ultralytics.__version__),
        weights=f"lost_seconds={lost_seconds:g},buffer_per_second={buffer_per_second:g}",
        weights_sha256="",
    )


@dataclass
class _Sighting:
    frame: int  # position in the frame list
    det: int  # position in that frame's detections


@dataclass
class _Builder:
    shot: int
    sightings: list[_Sighting] = field(default_factory=list)


def track_objects(
    frames: Sequence[FrameResult],
    *,
    sample_fps: float,
    lost_seconds: float,
    buffer_per_second: float,
    tracker: TrackerName = "bytetrack",
) -> tuple[list[FrameResult], list[Track]]:
    """Give every detection a ``track_id`` and list the tracks; frames must be in time order.

    Args:
        frames: the analysed frames, each with its ``shot``.
        sample_fps: frames sampled per second of video (the tracker's time step).
        lost_seconds: how long a track that lost its object waits for it to come back.
        tracker: ``bytetrack`` or ``botsort`` (Ultralytics' implementations).
    """
    buffer_frames = max(1, math.ceil(lost_seconds * sample_fps))
    buffer = buffer_per_second / sample_fps
    builders: dict[tuple[int, int], _Builder] = {}  # (tracker generation, its id) -> track
    current: Any = None
    current_shot: int | None = None
    generation = 0
    for fi, frame in enumerate(frames):
        if current is None or frame.shot != current_shot:
            current = _new_tracker(tracker, buffer_frames)  # a cut: no track crosses it
            current_shot = frame.shot
            generation += 1
        current.update(_Boxes.of(frame.detections, buffer), None)
        matched: set[int] = set()
        for strack in current.tracked_stracks:
            if strack.frame_id != current.frame_id:
                continue  # not seen in this frame
            key = (generation, int(strack.track_id))
            builder = builders.setdefault(key, _Builder(shot=frame.shot))
            builder.sightings.append(_Sighting(fi, int(strack.idx)))
            matched.add(int(strack.idx))
        for di in range(len(frame.detections)):
            if di not in matched:  # too unsure to start a track, and matched none: seen once
                builders[(-1, len(builders))] = _Builder(frame.shot, [_Sighting(fi, di)])
    # Ids in order of first appearance: first frame, then top-to-bottom, left-to-right.
    assigned: dict[tuple[int, int], int] = {}
    order = sorted(
        builders.values(),
        key=lambda b: (
            b.sightings[0].frame,
            frames[b.sightings[0].frame].detections[b.sightings[0].det].box[1],
            frames[b.sightings[0].frame].detections[b.sightings[0].det].box[0],
        ),
    )
    tracks: list[Track] = []
    for track_id, builder in enumerate(order, start=1):
        for s in builder.sightings:
            assigned[(s.frame, s.det)] = track_id
        tracks.append(_summarise(track_id, builder, frames))
    out: list[FrameResult] = []
    for fi, frame in enumerate(frames):
        dets = tuple(
            msgspec.structs.replace(d, track_id=assigned.get((fi, di)))
            for di, d in enumerate(frame.detections)
        )
        out.append(msgspec.structs.replace(frame, detections=dets))
    return out, tracks


def _summarise(track_id: int, builder: _Builder, frames: Sequence[FrameResult]) -> Track:
    seen = [(frames[s.frame], frames[s.frame].detections[s.det]) for s in builder.sightings]
    votes: dict[tuple[int, str], float] = {}
    for _, d in seen:
        votes[(d.class_id, d.label)] = votes.get((d.class_id, d.label), 0.0) + d.confidence
    (class_id, label), _ = max(votes.items(), key=lambda kv: (kv[1], -kv[0][0]))
    best_frame, best = max(seen, key=lambda fd: (fd[1].confidence, -fd[0].t_ms))
    confidences = [d.confidence for _, d in seen]
    first_box: Box = seen[0][1].box
    last_box: Box = seen[-1][1].box
    return Track(
        track_id=track_id,
        label=label,
        class_id=class_id,
        shot=builder.shot,
        first_ms=seen[0][0].t_ms,
        last_ms=seen[-1][0].t_ms,
        frames=len(seen),
        mean_confidence=round(sum(confidences) / len(confidences), 4),
        max_confidence=max(confidences),
        first_box=first_box,
        last_box=last_box,
        best_box=best.box,
        best_ms=best_frame.t_ms,
    )
