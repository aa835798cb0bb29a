"""The results document of the ``yolo_ocr`` pipeline and its canonical JSON encoding.

The document is versioned (``schema_version``) so clients can tell formats apart, and encoded
canonically (sorted keys, rounded floats, stable list order) so the same video and params give
byte-identical JSON: results can be compared, hashed and cached.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import msgspec

__all__ = [
    "KEEP_BRIEF_TEXT_DEFAULT",
    "MIN_CONFIDENCE_DEFAULT",
    "MIN_CONFIDENCE_MAX",
    "MIN_CONFIDENCE_MIN",
    "SAMPLE_FPS_DEFAULT",
    "SAMPLE_FPS_MAX",
    "SAMPLE_FPS_MIN",
    "SCHEMA_VERSION",
    "SCHEMA_VERSIONS",
    "Detection",
    "EngineInfo",
    "FrameResult",
    "ResultsDocument",
    "ResultsParams",
    "Shot",
    "Summary",
    "TextEvent",
    "TextLine",
    "TextSeen",
    "Track",
    "VideoInfo",
    "canonical_json",
    "decode_results",
    "summarize",
    "validate_params",
]

#: Bumped whenever a field changes meaning or disappears (adding optional fields is compatible).
#: 2 added object tracks, text events and shots, and made ``summary.texts`` one entry per text
#: event (version 1 listed each distinct string). Version 1 documents of old jobs decode into the
#: same Structs: every field version 2 added has a default.
SCHEMA_VERSION = 2
SCHEMA_VERSIONS = (1, 2)

#: Decimal places every float keeps in the canonical encoding.
FLOAT_DECIMALS = 4

#: Frames analysed per second of video; 1/s catches on-screen text that stays ≥ 1 s.
SAMPLE_FPS_DEFAULT = 1.0
SAMPLE_FPS_MIN = 0.01
SAMPLE_FPS_MAX = 30.0

#: Detections and text lines below this confidence are left out of the results.
MIN_CONFIDENCE_DEFAULT = 0.25
MIN_CONFIDENCE_MIN = 0.0
MIN_CONFIDENCE_MAX = 1.0

#: Text read in one sampled frame only, below the text-event confidence floor, is left out of
#: ``text_events`` and ``summary.texts`` unless the job asks for it (``keep_brief_text``).
KEEP_BRIEF_TEXT_DEFAULT = False

_BOUNDS: dict[str, tuple[float, float, float]] = {
    "sample_fps": (SAMPLE_FPS_MIN, SAMPLE_FPS_MAX, SAMPLE_FPS_DEFAULT),
    "min_confidence": (MIN_CONFIDENCE_MIN, MIN_CONFIDENCE_MAX, MIN_CONFIDENCE_DEFAULT),
}
_FLAGS: dict[str, bool] = {"keep_brief_text": KEEP_BRIEF_TEXT_DEFAULT}


def validate_params(params: dict[str, Any] | None) -> dict[str, float | bool]:
    """Return the full, normalised parameter dict, or raise ``ValueError`` saying what to fix.

    Unknown keys are rejected (a typo must not silently fall back to a default); missing keys
    take their defaults, so the stored params always say exactly what ran.
    """
    given = dict(params or {})
    allowed = set(_BOUNDS) | set(_FLAGS)
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )
    out: dict[str, float | bool] = {}
    for flag, flag_default in _FLAGS.items():
        chosen = given.get(flag, flag_default)
        if not isinstance(chosen, bool):
            raise ValueError(f"{flag} must be true or false, got {chosen!r}")
        out[flag] = chosen
    for name, (low, high, default) in _BOUNDS.items():
        value = given.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name} must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value) or not low <= value <= high:
            raise ValueError(f"{name} must be between {low:g} and {high:g}, got {value:g}")
        out[name] = value
    return out


class VideoInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What the container says about the video stream."""

    duration_ms: int
    fps: float
    width: int
    height: int
    frames: int
    codec: str


class EngineInfo(msgspec.Struct, frozen=True, kw_only=True):
    """Identity of a model or engine: enough to reproduce or explain a result."""

    name: str
    version: str
    weights: str
    weights_sha256: str


class ResultsParams(msgspec.Struct, frozen=True, kw_only=True):
    """The parameters the analysis ran with, defaults filled in."""

    sample_fps: float
    min_confidence: float
    keep_brief_text: bool = KEEP_BRIEF_TEXT_DEFAULT


Box = tuple[float, float, float, float]


class Detection(msgspec.Struct, frozen=True, kw_only=True):
    """One object found in a frame; ``box`` is ``[x1, y1, x2, y2]`` in video pixels.

    ``track_id`` names the object track (``ResultsDocument.tracks``) the detection belongs to:
    the same physical object in other frames carries the same id (None in version 1).
    """

    label: str
    class_id: int
    confidence: float
    box: Box
    track_id: int | None = None


class TextLine(msgspec.Struct, frozen=True, kw_only=True):
    """One line of text read in a frame; ``polygon`` is its corners in video pixels.

    ``event_id`` names the text event (``ResultsDocument.text_events``) the read was merged
    into; None for a brief read that was dropped as noise (and in version 1).
    """

    text: str
    confidence: float
    polygon: tuple[tuple[float, float], ...]
    event_id: int | None = None


class FrameResult(msgspec.Struct, frozen=True, kw_only=True):
    """Everything found in one sampled frame; ``t_ms`` is the container's timestamp.

    ``shot`` is the index of the shot (``ResultsDocument.shots``) the frame belongs to.
    """

    frame_index: int
    t_ms: int
    detections: tuple[Detection, ...]
    text: tuple[TextLine, ...]
    shot: int = 0


class Track(msgspec.Struct, frozen=True, kw_only=True):
    """One object followed across sampled frames of one shot (tracks never span a cut).

    ``first_ms``/``last_ms`` are the first and last sampled frames that show it, ``frames`` how
    many sampled frames do; the boxes are where it was first, last, and when the detector was
    surest (``best_ms``).
    """

    track_id: int
    label: str
    class_id: int
    shot: int
    first_ms: int
    last_ms: int
    frames: int
    mean_confidence: float
    max_confidence: float
    first_box: Box
    last_box: Box
    best_box: Box
    best_ms: int


class TextEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One piece of on-screen text over time: reads of the same region with similar strings
    across sampled frames, merged (OCR spacing and punctuation variants, partial reads).

    ``text`` is the best reading (the variant with the most confidence summed over frames) and
    ``confidence`` its highest confidence; ``box`` is ``[x1, y1, x2, y2]`` of that read;
    ``variants`` lists every distinct string merged into the event.
    """

    event_id: int
    text: str
    confidence: float
    first_ms: int
    last_ms: int
    frames: int
    box: Box
    variants: tuple[str, ...]


class Shot(msgspec.Struct, frozen=True, kw_only=True):
    """A run of sampled frames between two cuts.

    ``start_ms`` is the first sampled frame of the shot and ``end_ms`` the first of the next
    (the video's duration for the last): the cut lies somewhere between two sampled frames, so
    its time is known to one sampling interval.
    """

    shot: int
    start_ms: int
    end_ms: int
    frames: int


class TextSeen(msgspec.Struct, frozen=True, kw_only=True):
    """A text and when it was on screen (first and last sampled frame showing it).

    Version 2: one entry per text event (``event_id``), so a caption shown twice, apart, is
    listed twice; version 1 listed each distinct string once.
    """

    text: str
    first_seen_ms: int
    last_seen_ms: int
    frames: int
    event_id: int | None = None


class Summary(msgspec.Struct, frozen=True, kw_only=True):
    """Totals over the sampled frames, so clients need not walk every frame.

    ``label_counts`` counts detections per label (one object seen in ten frames counts ten);
    ``objects`` counts unique objects per label (tracks).
    """

    frames_analysed: int
    label_counts: dict[str, int]
    texts: tuple[TextSeen, ...]
    objects: dict[str, int] = msgspec.field(default_factory=dict)
    shots: int = 0


class ResultsDocument(msgspec.Struct, frozen=True, kw_only=True):
    """The whole results document stored as ``video_jobs/{job_id}_results.json``.

    Version 1 documents have no ``tracker``, ``tracks``, ``text_events`` or ``shots``; they
    decode with those empty.
    """

    schema_version: int
    video: VideoInfo
    detector: EngineInfo
    ocr: EngineInfo
    params: ResultsParams
    frames: tuple[FrameResult, ...]
    summary: Summary
    tracker: EngineInfo | None = None
    tracks: tuple[Track, ...] = ()
    text_events: tuple[TextEvent, ...] = ()
    shots: tuple[Shot, ...] = ()


def _detection_key(d: Detection) -> tuple[Any, ...]:
    return (d.box[1], d.box[0], d.class_id, -d.confidence, d.box[3], d.box[2])


def _text_key(t: TextLine) -> tuple[Any, ...]:
    first = t.polygon[0] if t.polygon else (0.0, 0.0)
    return (first[1], first[0], t.text, -t.confidence)


def summarize(
    frames: Sequence[FrameResult],
    tracks: Sequence[Track] = (),
    text_events: Sequence[TextEvent] = (),
    shots: Sequence[Shot] = (),
) -> Summary:
    """Detections per label, unique objects (tracks) per label, and each text event once."""
    counts: dict[str, int] = {}
    for f in frames:
        for d in f.detections:
            counts[d.label] = counts.get(d.label, 0) + 1
    objects: dict[str, int] = {}
    for t in tracks:
        objects[t.label] = objects.get(t.label, 0) + 1
    texts = sorted(
        (
            TextSeen(
                text=e.text,
                first_seen_ms=e.first_ms,
                last_seen_ms=e.last_ms,
                frames=e.frames,
                event_id=e.event_id,
            )
            for e in text_events
        ),
        key=lambda s: (s.first_seen_ms, s.text, s.event_id or 0),
    )
    return Summary(
        frames_analysed=len(frames),
        label_counts=counts,
        texts=tuple(texts),
        objects=objects,
        shots=len(shots),
    )


def _canon(value: Any) -> Any:
    """Round floats (and turn -0.0 into 0.0) all the way down a builtins tree."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"results may not contain {value!r}")
        return round(value, FLOAT_DECIMALS) + 0.0
    if isinstance(value, dict):
        return {k: _canon(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canon(v) for v in value]
    return value


_ENCODER = msgspec.json.Encoder(order="sorted")


def canonical_json(doc: ResultsDocument) -> bytes:
    """Encode a document deterministically: sorted keys, rounded floats, stable list order.

    Detections are ordered top-to-bottom then left-to-right (ties by class and confidence), text
    lines likewise; frames keep their time order. The output ends with a newline.
    """
    frames = tuple(
        msgspec.structs.replace(
            f,
            detections=tuple(sorted(f.detections, key=_detection_key)),
            text=tuple(sorted(f.text, key=_text_key)),
        )
        for f in sorted(doc.frames, key=lambda f: (f.t_ms, f.frame_index))
    )
    ordered = msgspec.structs.replace(
        doc,
        frames=frames,
        tracks=tuple(sorted(doc.tracks, key=lambda t: t.track_id)),
        text_events=tuple(sorted(doc.text_events, key=lambda e: e.event_id)),
        shots=tuple(sorted(doc.shots, key=lambda s: s.shot)),
    )
    return _ENCODER.encode(_canon(msgspec.to_builtins(ordered))) + b"\n"


def decode_results(data: bytes) -> ResultsDocument:
    """Parse and type-check a results document of any version (for clients, tests and the API).

    Raises:
        msgspec.ValidationError: the document does not match, or names a version this code
            does not know.
    """
    doc = msgspec.json.decode(data, type=ResultsDocument)
    if doc.schema_version not in SCHEMA_VERSIONS:
        raise msgspec.ValidationError(
            f"unknown schema_version {doc.schema_version}; this release reads "
            f"{', '.join(map(str, SCHEMA_VERSIONS))}"
        )
    return doc
