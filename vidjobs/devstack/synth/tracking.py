"""A test video for object tracks, text events and shots, with exact ground truth, and its scorer.

The scene (``make_tracking_video``) is built to exercise what trackers get wrong: objects that
enter and leave through the frame's edges, one that passes behind an occluder for a moment,
two shots with a cut between them (an object of the same kind at the same place on both sides
must still be two objects), and captions with known windows, one of them staying on screen
across the cut. ``score`` compares a results document with the truth: unique objects per
label, identity switches, and each caption's text events.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vidjobs.devstack.synth.shapes import CLASSES, Image, ShapeSpec, draw_shape, random_background
from vidjobs.devstack.synth.video import write_ffmpeg
from vidjobs.schema.results import ResultsDocument

__all__ = [
    "CaptionTruth",
    "MovingObject",
    "TrackingScore",
    "TrackingTruth",
    "make_tracking_video",
    "score",
]

FloatBox = tuple[float, float, float, float]


@dataclass(frozen=True)
class MovingObject:
    """One physical object: on screen for ``start_ms <= t < end_ms``, moving linearly."""

    object_id: int
    label: str
    start_ms: int
    end_ms: int
    start: tuple[float, float]  # centre at start_ms
    end: tuple[float, float]  # centre at end_ms
    radius: float
    colour: tuple[int, int, int]

    def centre_at(self, t_ms: float) -> tuple[float, float]:
        """Where the object's centre is at ``t_ms``."""
        f = (t_ms - self.start_ms) / max(1, self.end_ms - self.start_ms)
        return (
            self.start[0] + (self.end[0] - self.start[0]) * f,
            self.start[1] + (self.end[1] - self.start[1]) * f,
        )

    def spec_at(self, t_ms: float) -> ShapeSpec:
        """The shape to draw at ``t_ms``."""
        cx, cy = self.centre_at(t_ms)
        return ShapeSpec(self.label, cx, cy, self.radius, self.colour, 0.0)


@dataclass(frozen=True)
class CaptionTruth:
    """A caption at a fixed place for ``start_ms <= t < end_ms``."""

    text: str
    start_ms: int
    end_ms: int
    org: tuple[int, int]


@dataclass(frozen=True)
class TrackingTruth:
    """What ``make_tracking_video`` drew: objects, captions, the occluder and the cut."""

    width: int
    height: int
    fps: float
    duration_ms: int
    cut_ms: int
    objects: tuple[MovingObject, ...]
    captions: tuple[CaptionTruth, ...]
    occluder: tuple[int, int, int, int]

    def visible(self, t_ms: float) -> list[tuple[MovingObject, FloatBox]]:
        """Objects visible at ``t_ms`` (on screen, mostly inside the frame, not occluded)."""
        out = []
        for obj in self.objects:
            if not obj.start_ms <= t_ms < obj.end_ms:
                continue
            spec = obj.spec_at(t_ms)
            box = draw_shape(np.zeros((self.height, self.width, 3), np.uint8), spec)
            full = (2 * spec.radius) ** 2
            area = max(0, box[2] - box[0]) * max(0, box[3] - box[1])
            if area < 0.6 * full or _overlap(box, self.occluder) > 0.4 * area:
                continue  # mostly outside the frame or behind the occluder: not expected
            out.append((obj, (float(box[0]), float(box[1]), float(box[2]), float(box[3]))))
        return out

    def captions_at(self, t_ms: float) -> list[CaptionTruth]:
        """Captions on screen at ``t_ms``."""
        return [c for c in self.captions if c.start_ms <= t_ms < c.end_ms]


def _overlap(a: Sequence[float], b: Sequence[float]) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    return float(max(0.0, iw) * max(0.0, ih))


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    inter = _overlap(a, b)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _scene(width: int, height: int) -> TrackingTruth:
    circle, square, triangle, star = CLASSES
    red, blue, green, yellow = (40, 40, 220), (220, 80, 40), (60, 200, 60), (40, 220, 230)
    objects = (
        # Shot 1 (0-12 s): a circle crosses from the left edge to the right edge.
        MovingObject(1, circle, 1000, 11000, (-20.0, 90.0), (width + 20.0, 110.0), 32, red),
        # A square drifts slowly all through shot 1.
        MovingObject(2, square, 0, 12000, (120.0, 200.0), (220.0, 190.0), 36, blue),
        # A star passes behind the occluder (x 400-470) around 5-6 s.
        MovingObject(3, star, 2000, 10000, (300.0, 210.0), (560.0, 210.0), 34, yellow),
        # Shot 2 (12-24 s): a square at the same place the shot-1 square ended: a new object.
        MovingObject(4, square, 12000, 24000, (220.0, 190.0), (330.0, 170.0), 36, green),
        # A triangle enters from the right edge and leaves through the top.
        MovingObject(5, triangle, 14000, 23000, (width + 20.0, 120.0), (420.0, -30.0), 34, red),
        # A circle for part of shot 2.
        MovingObject(6, circle, 15000, 22000, (80.0, 120.0), (200.0, 100.0), 32, yellow),
    )
    captions = (
        CaptionTruth("EXIT 4", 2000, 8000, (40, height - 30)),
        # On screen across the cut at 12 s: one text event, not two.
        CaptionTruth("ZONE 7", 9000, 15000, (360, height - 30)),
        CaptionTruth("ORDER TODAY", 16000, 22000, (40, height - 30)),
    )
    return TrackingTruth(
        width=width,
        height=height,
        fps=25.0,
        duration_ms=24000,
        cut_ms=12000,
        objects=objects,
        captions=captions,
        occluder=(400, 150, 470, 270),
    )


def _render(truth: TrackingTruth) -> Iterator[Image]:
    rng = np.random.default_rng(7)
    backgrounds = [random_background(rng, truth.width, truth.height)[0] for _ in range(2)]
    frames = round(truth.duration_ms * truth.fps / 1000)
    for i in range(frames):
        t = i * 1000.0 / truth.fps
        img = backgrounds[0 if t < truth.cut_ms else 1].copy()
        for obj in truth.objects:
            if obj.start_ms <= t < obj.end_ms:
                draw_shape(img, obj.spec_at(t))
        # The occluder is part of the scenery (the background's own pixels drawn over the
        # objects), so an object behind it vanishes and nothing else is there to detect.
        x1, y1, x2, y2 = truth.occluder
        background = backgrounds[0 if t < truth.cut_ms else 1]
        img[y1:y2, x1:x2] = background[y1:y2, x1:x2]
        for cap in truth.captions_at(t):
            for colour, thickness in (((0, 0, 0), 8), ((255, 255, 255), 3)):
                cv2.putText(img, cap.text, cap.org, _FONT, 1.6, colour, thickness, cv2.LINE_AA)
        yield img


def make_tracking_video(path: Path, *, width: int = 640, height: int = 360) -> TrackingTruth:
    """Write the tracking scene as H.264 MP4 (24 s, 25 fps) and return its truth."""
    truth = _scene(width, height)
    write_ffmpeg(path, _render(truth), truth.fps, width, height, "h264")
    return truth


@dataclass(frozen=True)
class TrackingScore:
    """How a results document's tracks and text events compare with the truth.

    ``unique_count_error`` is |tracks - objects| / objects over the labels the truth holds
    (tracks of objects matched in at least one frame, plus unmatched tracks: false objects);
    ``id_switches`` counts, per true object, each change of the track id matched to it
    (CLEAR-MOT's IDSW); ``caption_events`` maps each caption to the events that read it.
    """

    true_objects: dict[str, int]
    tracks: dict[str, int]
    unique_count_error: float
    id_switches: int
    tracks_spanning_cut: int
    caption_events: dict[str, list[tuple[int, int]]]  # caption -> [(first_ms, last_ms)]
    junk_events: list[str]
    matched: int
    expected: int


def _norm(text: str) -> str:
    return "".join(ch for ch in text.casefold() if ch.isalnum())


def score(truth: TrackingTruth, doc: ResultsDocument) -> TrackingScore:
    """Score tracks (IoU >= 0.5 matches per sampled frame) and text events against the truth."""
    last_id: dict[int, int] = {}
    switches = matched = expected = 0
    for frame in doc.frames:
        for obj, box in truth.visible(frame.t_ms):
            expected += 1
            best = max(
                (d for d in frame.detections if d.label == obj.label),
                key=lambda d: _iou(d.box, box),
                default=None,
            )
            if best is None or _iou(best.box, box) < 0.5 or best.track_id is None:
                continue
            matched += 1
            if obj.object_id in last_id and last_id[obj.object_id] != best.track_id:
                switches += 1
            last_id[obj.object_id] = best.track_id
    true_objects: dict[str, int] = {}
    for obj in truth.objects:
        true_objects[obj.label] = true_objects.get(obj.label, 0) + 1
    tracks: dict[str, int] = {}
    for t in doc.tracks:
        tracks[t.label] = tracks.get(t.label, 0) + 1
    total = sum(true_objects.values())
    error = abs(sum(tracks.values()) - total) / total
    spanning = sum(1 for t in doc.tracks if t.first_ms < truth.cut_ms <= t.last_ms)
    caption_events: dict[str, list[tuple[int, int]]] = {c.text: [] for c in truth.captions}
    junk = []
    for event in doc.text_events:
        owner = next(
            (c.text for c in truth.captions if _norm(c.text) in _norm(event.text)), None
        ) or next((c.text for c in truth.captions if _norm(event.text) in _norm(c.text)), None)
        if owner is None:
            junk.append(event.text)
        else:
            caption_events[owner].append((event.first_ms, event.last_ms))
    return TrackingScore(
        true_objects=true_objects,
        tracks=tracks,
        unique_count_error=round(error, 4),
        id_switches=switches,
        tracks_spanning_cut=spanning,
        caption_events=caption_events,
        junk_events=junk,
        matched=matched,
        expected=expected,
    )
