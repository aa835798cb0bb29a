"""Object tracks over hand-made detections: ids, cuts, gaps and one-frame objects."""

from __future__ import annotations

import pytest

from vidjobs.schema.results import Detection, FrameResult
from vidjobs.worker.pipelines.yolo_ocr.track import track_objects

pytestmark = pytest.mark.ml  # Ultralytics' tracker


def _det(x: float, label: str = "circle", conf: float = 0.9, y: float = 100.0) -> Detection:
    return Detection(label=label, class_id=0, confidence=conf, box=(x, y, x + 60, y + 60))


def _frames(*dets: list[Detection], cut_at: int | None = None) -> list[FrameResult]:
    return [
        FrameResult(
            frame_index=i * 25,
            t_ms=i * 1000,
            detections=tuple(d),
            text=(),
            shot=int(cut_at is not None and i >= cut_at),
        )
        for i, d in enumerate(dets)
    ]


def _track(frames: list[FrameResult], lost: float = 2.0):  # type: ignore[no-untyped-def]
    return track_objects(frames, sample_fps=1.0, lost_seconds=lost, buffer_per_second=1.0)


def test_an_object_moving_its_width_per_sample_keeps_one_id() -> None:
    frames = _frames(
        *[[_det(20.0 + 60 * i), _det(500.0 - 10 * i, "star", y=250)] for i in range(6)]
    )
    out, tracks = _track(frames)
    assert [(t.track_id, t.label, t.frames) for t in tracks] == [(1, "circle", 6), (2, "star", 6)]
    assert {d.track_id for f in out for d in f.detections if d.label == "circle"} == {1}
    assert (tracks[0].first_ms, tracks[0].last_ms) == (0, 5000)
    assert tracks[0].first_box[0] == 20.0
    assert tracks[0].last_box[0] == 320.0


def test_a_cut_ends_every_track() -> None:
    frames = _frames(*[[_det(100.0)] for _ in range(4)], cut_at=2)
    out, tracks = _track(frames)
    assert [(t.shot, t.first_ms, t.last_ms) for t in tracks] == [(0, 0, 1000), (1, 2000, 3000)]
    assert [f.detections[0].track_id for f in out] == [1, 1, 2, 2]


def test_a_gap_within_the_lost_time_keeps_the_id_and_a_longer_one_does_not() -> None:
    frames = _frames([_det(100.0)], [_det(110.0)], [], [_det(130.0)], *[[]] * 5, [_det(170.0)])
    out, tracks = _track(frames, lost=2.0)
    ids = [d.track_id for f in out for d in f.detections]
    assert ids == [1, 1, 1, 2]
    assert [t.frames for t in tracks] == [3, 1]


def test_every_detection_gets_a_track_even_a_one_frame_one_and_ids_are_stable() -> None:
    frames = _frames([_det(100.0)], [_det(400.0, conf=0.3)], [])
    out, tracks = _track(frames)
    assert [d.track_id for f in out for d in f.detections] == [1, 2]
    assert [t.frames for t in tracks] == [1, 1]
    assert _track(frames) == (out, tracks)
