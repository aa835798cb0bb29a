"""Text events: OCR reads merged across sampled frames (no video: frames built by hand)."""

from __future__ import annotations

from vidjobs.schema.results import FrameResult, TextLine
from vidjobs.worker.pipelines.yolo_ocr.text_events import merge_text


def _line(text: str, conf: float = 0.95, x: float = 40.0, y: float = 300.0) -> TextLine:
    w = 20.0 * max(1, len(text))
    return TextLine(
        text=text, confidence=conf, polygon=((x, y), (x + w, y), (x + w, y + 30), (x, y + 30))
    )


def _frames(*reads: list[TextLine]) -> list[FrameResult]:
    return [
        FrameResult(frame_index=i * 25, t_ms=i * 1000, detections=(), text=tuple(lines))
        for i, lines in enumerate(reads)
    ]


def _merge(frames: list[FrameResult], keep_brief: bool = False):  # type: ignore[no-untyped-def]
    return merge_text(
        frames, sample_fps=1.0, gap_seconds=1.0, brief_min_confidence=0.9, keep_brief=keep_brief
    )


def test_spacing_punctuation_and_partial_reads_of_one_caption_are_one_event() -> None:
    frames = _frames(
        [_line("ORDER TODAY", 0.97), _line("FREE SHIPPING", 0.96, y=100)],
        [_line("ORDER TODA", 0.90), _line("FREE'SHIPPING", 0.91, y=100)],
        [_line("ORDERTOD", 0.85), _line("FREE SHIPPING", 0.97, y=100)],
        [_line("ORDER TODAY", 0.96), _line("ZONE 4", 0.95, x=400)],
        [_line("ZONE4", 0.97, x=400)],
    )
    out, events = _merge(frames)
    assert [(e.text, e.first_ms, e.last_ms, e.frames) for e in events] == [
        ("FREE SHIPPING", 0, 2000, 3),
        ("ORDER TODAY", 0, 3000, 4),
        ("ZONE4", 3000, 4000, 2),  # the surer read wins
    ]
    assert events[1].variants == ("ORDER TODA", "ORDER TODAY", "ORDERTOD")
    assert events[1].confidence == 0.97
    assert {line.event_id for f in out for line in f.text} == {1, 2, 3}


def test_one_frame_junk_is_dropped_unless_asked_for() -> None:
    frames = _frames([_line("C", 0.99, x=500)], [_line("●", 0.95, x=200)], [_line("EXIT", 0.6)])
    out, events = _merge(frames)
    assert events == []
    assert all(line.event_id is None for f in out for line in f.text)
    _, kept = _merge(frames, keep_brief=True)
    assert [e.text for e in kept] == ["C", "●", "EXIT"]


def test_a_confident_one_frame_read_is_kept() -> None:
    _, events = _merge(_frames([_line("EXIT 4", 0.95)]))
    assert [e.text for e in events] == ["EXIT 4"]


def test_the_same_caption_shown_twice_apart_is_two_events_and_a_new_caption_is_another() -> None:
    frames = _frames([_line("SALE")], [_line("SALE")], [], [], [_line("SALE")], [_line("SALE")])
    frames += _frames([_line("METRO")], [_line("METRO")])[0:0]  # (no more frames)
    _, events = _merge(frames)
    assert [(e.text, e.first_ms, e.last_ms) for e in events] == [
        ("SALE", 0, 1000),
        ("SALE", 4000, 5000),
    ]
    swap = _frames([_line("HELLO 10")], [_line("HELLO 10")], [_line("TAXI 12")], [_line("TAXI 12")])
    _, events = _merge(swap)
    assert [(e.text, e.first_ms, e.last_ms) for e in events] == [
        ("HELLO 10", 0, 1000),
        ("TAXI 12", 2000, 3000),
    ]


def test_one_missed_read_does_not_split_an_event_and_other_regions_stay_apart() -> None:
    frames = _frames(
        [_line("NORTH", y=50), _line("NORTH", y=300)],
        [_line("NORTH", y=50)],
        [_line("NORTH", y=50), _line("NORTH", y=300)],
    )
    _, events = _merge(frames)
    assert [(e.first_ms, e.last_ms, e.frames) for e in events] == [(0, 2000, 3), (0, 2000, 2)]
