"""The results document of the ``yolo_ocr`` pipeline and its canonical JSON encoding.

The document is versioned (``schema_version``) so clients can tell formats apart, and encoded
canonically (sorted keys, rounded floats, stable list order) so the same video and params give
byte-identical JSON: results can be compared, hashed and cached.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

__all__ = [
    "MIN_CONFIDENCE_DEFAULT",
    "MIN_CONFIDENCE_MAX",
    "MIN_CONFIDENCE_MIN",
    "SAMPLE_FPS_DEFAULT",
    "SAMPLE_FPS_MAX",
    "SAMPLE_FPS_MIN",
    "SCHEMA_VERSION",
    "Detection",
    "EngineInfo",
    "FrameResult",
    "ResultsDocument",
    "ResultsParams",
    "Summary",
    "TextLine",
    "TextSeen",
    "VideoInfo",
    "canonical_json",
    "decode_results",
    "summarize",
    "validate_params",
]

#: Bumped whenever a field changes meaning or disappears (adding optional fields is compatible).
SCHEMA_VERSION = 1

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

_BOUNDS: dict[str, tuple[float, float, float]] = {
    "sample_fps": (SAMPLE_FPS_MIN, SAMPLE_FPS_MAX, SAMPLE_FPS_DEFAULT),
    "min_confidence": (MIN_CONFIDENCE_MIN, MIN_CONFIDENCE_MAX, MIN_CONFIDENCE_DEFAULT),
}


def validate_params(params: dict[str, Any] | None) -> dict[str, float]:
    """Return the full, normalised parameter dict, or raise ``ValueError`` saying what to fix.

    Unknown keys are rejected (a typo must not silently fall back to a default); missing keys
    take their defaults, so the stored params always say exactly what ran.
    """
    given = dict(params or {})
    unknown = sorted(set(given) - set(_BOUNDS))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_BOUNDS))}"
        )
    out: dict[str, float] = {}
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


class Detection(msgspec.Struct, frozen=True, kw_only=True):
    """One object found in a frame; ``box`` is ``[x1, y1, x2, y2]`` in video pixels."""

    label: str
    class_id: int
    confidence: float
    box: tuple[float, float, float, float]


class TextLine(msgspec.Struct, frozen=True, kw_only=True):
    """One line of text read in a frame; ``polygon`` is its corners in video pixels."""

    text: str
    confidence: float
    polygon: tuple[tuple[float, float], ...]


class FrameResult(msgspec.Struct, frozen=True, kw_only=True):
    """Everything found in one sampled frame; ``t_ms`` is the container's timestamp."""

    frame_index: int
    t_ms: int
    detections: tuple[Detection, ...]
    text: tuple[TextLine, ...]


class TextSeen(msgspec.Struct, frozen=True, kw_only=True):
    """A distinct text and when it was on screen (first and last sampled frame showing it)."""

    text: str
    first_seen_ms: int
    last_seen_ms: int
    frames: int


class Summary(msgspec.Struct, frozen=True, kw_only=True):
    """Totals over the sampled frames, so clients need not walk every frame."""

    frames_analysed: int
    label_counts: dict[str, int]
    texts: tuple[TextSeen, ...]


class ResultsDocument(msgspec.Struct, frozen=True, kw_only=True):
    """The whole results document stored as ``video_jobs/{job_id}_results.json``."""

    schema_version: int
    video: VideoInfo
    detector: EngineInfo
    ocr: EngineInfo
    params: ResultsParams
    frames: tuple[FrameResult, ...]
    summary: Summary


def _detection_key(d: Detection) -> tuple[Any, ...]:
    return (d.box[1], d.box[0], d.class_id, -d.confidence, d.box[3], d.box[2])


def _text_key(t: TextLine) -> tuple[Any, ...]:
    first = t.polygon[0] if t.polygon else (0.0, 0.0)
    return (first[1], first[0], t.text, -t.confidence)


def summarize(frames: tuple[FrameResult, ...] | list[FrameResult]) -> Summary:
    """Count detections per label and list each distinct text with its first/last sighting."""
    counts: dict[str, int] = {}
    seen: dict[str, list[int]] = {}
    for f in frames:
        for d in f.detections:
            counts[d.label] = counts.get(d.label, 0) + 1
        for text in {t.text for t in f.text}:
            entry = seen.setdefault(text, [f.t_ms, f.t_ms, 0])
            entry[0] = min(entry[0], f.t_ms)
            entry[1] = max(entry[1], f.t_ms)
            entry[2] += 1
    texts = sorted(
        (
            TextSeen(text=k, first_seen_ms=v[0], last_seen_ms=v[1], frames=v[2])
            for k, v in seen.items()
        ),
        key=lambda s: (s.first_seen_ms, s.text),
    )
    return Summary(frames_analysed=len(frames), label_counts=counts, texts=tuple(texts))


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
    ordered = msgspec.structs.replace(doc, frames=frames)
    return _ENCODER.encode(_canon(msgspec.to_builtins(ordered))) + b"\n"


def decode_results(data: bytes) -> ResultsDocument:
    """Parse and type-check a results document (for clients, tests and the API)."""
    return msgspec.json.decode(data, type=ResultsDocument)
