"""Text events: OCR reads of the same text across sampled frames, merged into one event each.

OCR reads a caption afresh in every frame, and on a busy background it reads it a little
differently each time ("ORDER TODAY", "ORDER TODA", "ORDERTOD"; "ZONE 4" and "ZONE4"). A read
joins an open event when it lies in the same region (IoU, or one box mostly inside the other:
a partial read has a shorter box) and its string is similar: equal once case, spacing and
punctuation are ignored, or within a normalised Levenshtein distance (rapidfuzz). An event
stays open while its text was seen within the last ``gap_seconds``, so one missed read does not
split it. The event's text is the variant with the most confidence summed over its reads.

A read seen in one sampled frame only is usually noise (a texture read as "C" or "●"); such
events are dropped when their best confidence is under a floor or their text has fewer than two
letters or digits, unless the job asks to keep them (``keep_brief_text``). Event ids count from
1 in order of first appearance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec
from rapidfuzz.distance import Levenshtein

from vidjobs.schema.results import Box, FrameResult, TextEvent, TextLine

__all__ = ["merge_text", "normalise_text", "similar_text"]

#: Largest normalised edit distance between two (normalised) reads of one text: about one edit
#: in three characters, so "ORDERTOD" joins "ORDERTODAY" (0.2). Short strings that differ in one
#: character ("ZONE4"/"ZONE5", 0.2) are also similar: what keeps them apart is region and time
#: (an event only takes reads in its own region while it is on screen).
_MAX_DISTANCE = 0.34
#: Region rules: boxes overlapping by this IoU, or the smaller box this much inside the larger.
_MIN_IOU = 0.3
_MIN_INSIDE = 0.6


def normalise_text(text: str) -> str:
    """Case-folded letters and digits only: what two reads of one text must share."""
    return "".join(ch for ch in text.casefold() if ch.isalnum())


def similar_text(a: str, b: str) -> bool:
    """True when two (normalised) strings can be reads of the same text."""
    if not a or not b:
        return False
    if a == b:
        return True
    return Levenshtein.normalized_distance(a, b) <= _MAX_DISTANCE


def _box(line: TextLine) -> Box:
    xs = [p[0] for p in line.polygon] or [0.0]
    ys = [p[1] for p in line.polygon] or [0.0]
    return (min(xs), min(ys), max(xs), max(ys))


def _same_region(a: Box, b: Box) -> bool:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return False
    inter = iw * ih
    area_a = max(1e-6, (a[2] - a[0]) * (a[3] - a[1]))
    area_b = max(1e-6, (b[2] - b[0]) * (b[3] - b[1]))
    return inter / (area_a + area_b - inter) >= _MIN_IOU or inter / min(area_a, area_b) >= (
        _MIN_INSIDE
    )


@dataclass
class _Variant:
    total: float = 0.0
    best: float = 0.0
    box: Box = (0.0, 0.0, 0.0, 0.0)


@dataclass
class _Open:
    last_frame: int
    norm: str  # the normalised text of the most confident read so far
    box: Box  # the latest read's box (captions move little; tickers move)
    first_ms: int
    last_ms: int
    reads: list[tuple[int, int]] = field(default_factory=list)  # (frame, line) positions
    frames: set[int] = field(default_factory=set)
    variants: dict[str, _Variant] = field(default_factory=dict)
    best_confidence: float = 0.0

    def add(self, fi: int, li: int, t_ms: int, line: TextLine, box: Box) -> None:
        self.reads.append((fi, li))
        self.frames.add(fi)
        self.last_frame, self.last_ms, self.box = fi, t_ms, box
        v = self.variants.setdefault(line.text, _Variant())
        v.total += line.confidence
        if line.confidence > v.best:
            v.best, v.box = line.confidence, box
        if line.confidence > self.best_confidence:
            self.best_confidence, self.norm = line.confidence, normalise_text(line.text)


def merge_text(
    frames: Sequence[FrameResult],
    *,
    sample_fps: float,
    gap_seconds: float,
    brief_min_confidence: float,
    keep_brief: bool,
) -> tuple[list[FrameResult], list[TextEvent]]:
    """Give every kept read an ``event_id`` and list the events; frames must be in time order."""
    gap_frames = max(1, math.ceil(gap_seconds * sample_fps))
    events: list[_Open] = []
    for fi, frame in enumerate(frames):
        taken: set[int] = set()
        order = sorted(range(len(frame.text)), key=lambda i: -frame.text[i].confidence)
        for li in order:
            line = frame.text[li]
            box, norm = _box(line), normalise_text(line.text)
            match = None
            for ei in range(len(events) - 1, -1, -1):
                ev = events[ei]
                if fi - ev.last_frame > gap_frames + 1:
                    continue  # unread for longer than the gap: a new event
                if ei in taken or ev.last_frame == fi:
                    continue
                if _same_region(ev.box, box) and similar_text(ev.norm, norm):
                    match = ei
                    break
            if match is None:
                events.append(_Open(fi, norm, box, frame.t_ms, frame.t_ms))
                match = len(events) - 1
            events[match].add(fi, li, frame.t_ms, line, box)
            taken.add(match)
    kept = [
        ev
        for ev in events
        if keep_brief
        or len(ev.frames) > 1
        or (ev.best_confidence >= brief_min_confidence and len(ev.norm) >= 2)
    ]
    kept.sort(key=lambda ev: (ev.first_ms, ev.box[1], ev.box[0]))
    ids: dict[tuple[int, int], int] = {}
    out_events: list[TextEvent] = []
    for event_id, ev in enumerate(kept, start=1):
        for read in ev.reads:
            ids[read] = event_id
        text, best = max(ev.variants.items(), key=lambda kv: (kv[1].total, kv[1].best, kv[0]))
        out_events.append(
            TextEvent(
                event_id=event_id,
                text=text,
                confidence=best.best,
                first_ms=ev.first_ms,
                last_ms=ev.last_ms,
                frames=len(ev.frames),
                box=best.box,
                variants=tuple(sorted(ev.variants)),
            )
        )
    out_frames = [
        msgspec.structs.replace(
            frame,
            text=tuple(
                msgspec.structs.replace(line, event_id=ids.get((fi, li)))
                for li, line in enumerate(frame.text)
            ),
        )
        for fi, frame in enumerate(frames)
    ]
    return out_frames, out_events
