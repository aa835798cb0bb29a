"""The byte index of a results document: where each frame, track and text event lies in it.

A two-hour video sampled at 1 frame/s gives a document of tens of megabytes; decoded into Python
objects it takes ten times that. The API pages such a document without reading it whole: the
index (a small sidecar blob, ``video_jobs/{job_id}_results.index.json``) lists, for every
element of ``frames``, ``tracks`` and ``text_events``, its byte offset and length in the
stored document and the few fields the filters need, so a page is one ranged read of just
those bytes. The worker writes the index with the document; for a document stored without
one (older jobs, version 1), the API builds it once from the document and stores it.

``build_index`` finds the elements with msgspec itself: decoding into ``msgspec.Raw`` gives
each element's exact bytes without building its objects, and since the elements follow each
other in order, searching for each from the end of the previous one finds its offset in one
pass. It works on any valid document, canonical or not, of either schema version.
"""

from __future__ import annotations

import msgspec

__all__ = ["INDEX_VERSION", "EventEntry", "FrameEntry", "ResultsIndex", "TrackEntry", "build_index"]

INDEX_VERSION = 1


class FrameEntry(msgspec.Struct, array_like=True, frozen=True):
    """One frame: its time, and where its JSON object lies in the document."""

    t_ms: int
    offset: int
    length: int


class TrackEntry(msgspec.Struct, array_like=True, frozen=True):
    """One track: what ``GET .../tracks`` filters on, and where it lies."""

    label: str
    frames: int
    offset: int
    length: int


class EventEntry(msgspec.Struct, array_like=True, frozen=True):
    """One text event: its time span, and where it lies."""

    first_ms: int
    last_ms: int
    offset: int
    length: int


class ResultsIndex(msgspec.Struct, frozen=True, kw_only=True):
    """Where everything is in one stored results document of ``size`` bytes."""

    index_version: int = INDEX_VERSION
    size: int
    schema_version: int
    sample_fps: float
    duration_ms: int
    frames: tuple[FrameEntry, ...]
    tracks: tuple[TrackEntry, ...] = ()
    text_events: tuple[EventEntry, ...] = ()
    summary: tuple[int, int] = (0, 0)  # offset, length of the summary object


class _Params(msgspec.Struct):
    sample_fps: float = 1.0


class _Video(msgspec.Struct):
    duration_ms: int = 0


class _Skeleton(msgspec.Struct):
    schema_version: int = 1
    params: _Params = msgspec.field(default_factory=_Params)
    video: _Video = msgspec.field(default_factory=_Video)
    frames: list[msgspec.Raw] = msgspec.field(default_factory=list)
    tracks: list[msgspec.Raw] = msgspec.field(default_factory=list)
    text_events: list[msgspec.Raw] = msgspec.field(default_factory=list)
    summary: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"{}"))


class _FrameKey(msgspec.Struct):
    t_ms: int


class _TrackKey(msgspec.Struct):
    label: str
    frames: int


class _EventKey(msgspec.Struct):
    first_ms: int
    last_ms: int


def _locate(data: bytes, raws: list[msgspec.Raw], start: int) -> tuple[list[tuple[int, int]], int]:
    """Offsets and lengths of consecutive elements, searched from ``start`` in one pass."""
    out = []
    pos = start
    for raw in raws:
        piece = bytes(raw)
        at = data.find(piece, pos)
        if at < 0:  # cannot happen for bytes msgspec just parsed; refuse rather than guess
            raise ValueError("results document element not found where expected")
        out.append((at, len(piece)))
        pos = at + len(piece)
    return out, pos


def _array_start(data: bytes, key: bytes) -> int:
    at = data.find(b'"' + key + b'"')
    return 0 if at < 0 else at


def build_index(data: bytes) -> ResultsIndex:
    """The index of a stored document (raises ``msgspec.DecodeError`` if it is not JSON)."""
    skeleton = msgspec.json.decode(data, type=_Skeleton)
    placed, _ = _locate(data, skeleton.frames, _array_start(data, b"frames"))
    frames = tuple(
        FrameEntry(msgspec.json.decode(raw, type=_FrameKey).t_ms, at, n)
        for raw, (at, n) in zip(skeleton.frames, placed, strict=True)
    )
    placed, _ = _locate(data, skeleton.tracks, _array_start(data, b"tracks"))
    tracks = []
    for raw, (at, n) in zip(skeleton.tracks, placed, strict=True):
        key = msgspec.json.decode(raw, type=_TrackKey)
        tracks.append(TrackEntry(key.label, key.frames, at, n))
    placed, _ = _locate(data, skeleton.text_events, _array_start(data, b"text_events"))
    events = []
    for raw, (at, n) in zip(skeleton.text_events, placed, strict=True):
        span = msgspec.json.decode(raw, type=_EventKey)
        events.append(EventEntry(span.first_ms, span.last_ms, at, n))
    summary = (0, 0)
    if b'"summary"' in data:
        summary = _locate(data, [skeleton.summary], _array_start(data, b"summary"))[0][0]
    return ResultsIndex(
        size=len(data),
        schema_version=skeleton.schema_version,
        sample_fps=skeleton.params.sample_fps,
        duration_ms=skeleton.video.duration_ms,
        frames=frames,
        tracks=tuple(tracks),
        text_events=tuple(events),
        summary=summary,
    )
