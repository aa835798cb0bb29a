"""The results document: canonical bytes, summary, decoding and parameter validation."""

from __future__ import annotations

import json

import msgspec
import pytest

from vidjobs.schema.results import (
    SCHEMA_VERSION,
    Detection,
    EngineInfo,
    FrameResult,
    ResultsDocument,
    ResultsParams,
    TextEvent,
    TextLine,
    Track,
    VideoInfo,
    canonical_json,
    decode_results,
    summarize,
    validate_params,
)

_ENGINE = EngineInfo(name="e", version="1", weights="w.pt", weights_sha256="ab" * 32)
_VIDEO = VideoInfo(duration_ms=3000, fps=25.0, width=640, height=360, frames=75, codec="h264")


def _det(label: str, cid: int, conf: float, box: tuple[float, float, float, float]) -> Detection:
    return Detection(label=label, class_id=cid, confidence=conf, box=box)


def _text(text: str, conf: float, y: float) -> TextLine:
    return TextLine(
        text=text, confidence=conf, polygon=((1.0, y), (9.0, y), (9.0, y + 5), (1.0, y + 5))
    )


def _frames(reverse: bool = False) -> list[FrameResult]:
    star = _det("star", 3, 0.912345678, (10.0, 50.0, 20.0, 60.0))
    dets = [
        star,
        _det("circle", 0, 0.5, (1.0, 5.0, 4.0, 9.0)),
    ]
    texts = [_text("LOWER", 0.8, 200.0), _text("UPPER", 0.9, 10.0)]
    if reverse:
        dets.reverse()
        texts.reverse()
    frames = [
        FrameResult(frame_index=0, t_ms=0, detections=tuple(dets), text=tuple(texts)),
        FrameResult(frame_index=25, t_ms=1000, detections=(), text=(_text("UPPER", 0.95, 10.0),)),
        FrameResult(frame_index=50, t_ms=2000, detections=(star,), text=()),
    ]
    return list(reversed(frames)) if reverse else frames


def _doc(frames: list[FrameResult]) -> ResultsDocument:
    return ResultsDocument(
        schema_version=SCHEMA_VERSION,
        video=_VIDEO,
        detector=_ENGINE,
        ocr=_ENGINE,
        params=ResultsParams(sample_fps=1.0, min_confidence=0.25),
        frames=tuple(frames),
        summary=summarize(frames),
    )


def test_same_content_in_any_order_encodes_to_identical_bytes() -> None:
    assert canonical_json(_doc(_frames())) == canonical_json(_doc(_frames(reverse=True)))


def test_keys_are_sorted_floats_rounded_and_output_ends_with_newline() -> None:
    data = canonical_json(_doc(_frames()))
    assert data.endswith(b"\n")
    parsed = json.loads(data)
    assert list(parsed) == sorted(parsed)
    assert list(parsed["frames"][0]) == ["detections", "frame_index", "shot", "t_ms", "text"]
    confidences = {d["confidence"] for f in parsed["frames"] for d in f["detections"]}
    assert confidences == {0.5, 0.9123}


def test_detections_and_text_are_ordered_top_to_bottom() -> None:
    parsed = json.loads(canonical_json(_doc(_frames(reverse=True))))
    first = parsed["frames"][0]
    assert [d["label"] for d in first["detections"]] == ["circle", "star"]
    assert [t["text"] for t in first["text"]] == ["UPPER", "LOWER"]
    assert [f["t_ms"] for f in parsed["frames"]] == [0, 1000, 2000]


def test_negative_zero_is_written_as_zero_and_nan_is_refused() -> None:
    frame = FrameResult(
        frame_index=0, t_ms=0, detections=(_det("a", 0, 0.5, (-0.0, 0.0, 1.0, 1.0)),), text=()
    )
    assert b"-0.0" not in canonical_json(_doc([frame]))
    bad = FrameResult(
        frame_index=0, t_ms=0, detections=(_det("a", 0, float("nan"), (0, 0, 1, 1)),), text=()
    )
    with pytest.raises(ValueError, match="nan"):
        canonical_json(_doc([bad]))


def _event(event_id: int, text: str, first: int, last: int, frames: int) -> TextEvent:
    return TextEvent(
        event_id=event_id,
        text=text,
        confidence=0.9,
        first_ms=first,
        last_ms=last,
        frames=frames,
        box=(0.0, 0.0, 1.0, 1.0),
        variants=(text,),
    )


def _track(track_id: int, label: str) -> Track:
    box = (0.0, 0.0, 1.0, 1.0)
    return Track(
        track_id=track_id,
        label=label,
        class_id=0,
        shot=0,
        first_ms=0,
        last_ms=0,
        frames=1,
        mean_confidence=0.5,
        max_confidence=0.5,
        first_box=box,
        last_box=box,
        best_box=box,
        best_ms=0,
    )


def test_summary_counts_detections_unique_objects_and_lists_each_text_event_once() -> None:
    events = [_event(1, "UPPER", 0, 1000, 2), _event(2, "LOWER", 0, 0, 1)]
    events.append(_event(3, "UPPER", 5000, 6000, 2))  # the same caption again, later
    tracks = [_track(1, "star"), _track(2, "circle"), _track(3, "star")]
    summary = summarize(_frames(), tracks, events)
    assert summary.frames_analysed == 3
    assert summary.label_counts == {"star": 2, "circle": 1}
    assert summary.objects == {"star": 2, "circle": 1}
    seen = [(t.text, t.first_seen_ms, t.last_seen_ms, t.frames, t.event_id) for t in summary.texts]
    assert seen == [
        ("LOWER", 0, 0, 1, 2),
        ("UPPER", 0, 1000, 2, 1),
        ("UPPER", 5000, 6000, 2, 3),
    ]


def test_a_version_1_document_decodes_with_empty_tracks_events_and_shots() -> None:
    v1 = json.loads(canonical_json(_doc(_frames())))
    v1["schema_version"] = 1
    for key in ("tracks", "text_events", "shots"):
        v1.pop(key, None)
    v1["summary"] = {"frames_analysed": 3, "label_counts": {"star": 2}, "texts": []}
    for frame in v1["frames"]:
        frame.pop("shot")
    doc = decode_results(json.dumps(v1).encode())
    assert doc.schema_version == 1
    assert (doc.tracks, doc.text_events, doc.shots, doc.tracker) == ((), (), (), None)
    assert doc.frames[0].detections[0].track_id is None
    v1["schema_version"] = 3
    with pytest.raises(msgspec.ValidationError, match="unknown schema_version 3"):
        decode_results(json.dumps(v1).encode())


def test_document_round_trips_through_decode() -> None:
    doc = _doc(_frames())
    data = canonical_json(doc)
    back = decode_results(data)
    assert back.schema_version == SCHEMA_VERSION
    assert back.summary.label_counts == {"circle": 1, "star": 2}
    assert canonical_json(back) == data
    with pytest.raises(msgspec.ValidationError):
        decode_results(b'{"schema_version": 1}')


def test_validate_params_fills_defaults_and_rejects_bad_values() -> None:
    assert validate_params({}) == {
        "sample_fps": 1.0,
        "min_confidence": 0.25,
        "keep_brief_text": False,
    }
    assert validate_params({"sample_fps": 2, "min_confidence": 0.5, "keep_brief_text": True}) == {
        "sample_fps": 2.0,
        "min_confidence": 0.5,
        "keep_brief_text": True,
    }
    with pytest.raises(ValueError, match="keep_brief_text must be true or false"):
        validate_params({"keep_brief_text": "yes"})
    with pytest.raises(ValueError, match="sample_fps must be between"):
        validate_params({"sample_fps": 0})
    with pytest.raises(ValueError, match="min_confidence must be between"):
        validate_params({"min_confidence": 1.5})
    with pytest.raises(ValueError, match="unknown parameter"):
        validate_params({"sample_rate": 1})
    with pytest.raises(ValueError, match="must be a number"):
        validate_params({"sample_fps": "fast"})
    with pytest.raises(ValueError, match="must be a number"):
        validate_params({"sample_fps": True})
