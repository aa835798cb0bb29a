"""Object tracks, text events and shots from the real pipeline, scored against exact truth.

The tracking scene (``vidjobs.devstack.synth.tracking``) has six objects: one crossing the frame
edge to edge at about its own width per second, one passing behind scenery for ~1.5 s, one
entering from the right and leaving through the top, and a cut at 12 s with a new object of the
same kind at the place where another ended; three captions, one on screen across the cut.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vidjobs.devstack.synth.tracking import TrackingTruth, make_tracking_video, score
from vidjobs.schema.results import ResultsDocument, decode_results
from vidjobs.worker.pipelines.yolo_ocr.analyzer import VideoAnalyzer
from vidjobs.worker.pipelines.yolo_ocr.settings import PipelineSettings

pytestmark = pytest.mark.ml


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TrackingTruth]:
    path = tmp_path_factory.mktemp("tracking") / "scene.mp4"
    return path, make_tracking_video(path)


@pytest.fixture(scope="module")
def analyzer() -> VideoAnalyzer:
    return VideoAnalyzer(PipelineSettings.fixture())


def _analyse(analyzer: VideoAnalyzer, path: Path, **params: float | bool) -> ResultsDocument:
    return decode_results(analyzer.analyze(path, dict(params), lambda d, t: None, lambda: False))


@pytest.mark.parametrize("sample_fps", [1.0, 2.0])
def test_each_object_is_one_track_with_no_identity_switch_and_no_track_crosses_the_cut(
    analyzer: VideoAnalyzer, scene: tuple[Path, TrackingTruth], sample_fps: float
) -> None:
    path, truth = scene
    doc = _analyse(analyzer, path, sample_fps=sample_fps)
    result = score(truth, doc)
    print(f"{sample_fps} frame/s: {result}")  # the figures the issue asks to report
    assert result.matched == result.expected  # every visible object detected and tracked
    assert result.tracks == result.true_objects  # unique objects per label: exact
    assert result.unique_count_error <= 0.10
    assert result.id_switches == 0
    assert result.tracks_spanning_cut == 0
    assert doc.summary.objects == result.true_objects
    assert all(d.track_id is not None for f in doc.frames for d in f.detections)
    by_id = {t.track_id: t for t in doc.tracks}
    for frame in doc.frames:
        for d in frame.detections:
            track = by_id[d.track_id or 0]
            assert track.shot == frame.shot
            assert track.first_ms <= frame.t_ms <= track.last_ms


def test_the_occluded_object_keeps_its_id_and_a_track_reports_its_span(
    analyzer: VideoAnalyzer, scene: tuple[Path, TrackingTruth]
) -> None:
    path, _ = scene
    doc = _analyse(analyzer, path, sample_fps=1.0)
    stars = [t for t in doc.tracks if t.label == "star"]
    assert len(stars) == 1
    star = stars[0]
    hidden = [f.t_ms for f in doc.frames if star.first_ms < f.t_ms < star.last_ms]
    seen = {f.t_ms for f in doc.frames for d in f.detections if d.track_id == star.track_id}
    assert set(hidden) - seen, "the star is hidden in some sampled frame inside its track"
    assert (star.first_ms, star.last_ms) == (2000, 9000)
    assert star.frames == len(seen)
    assert star.max_confidence >= star.mean_confidence
    assert star.first_box[0] < star.last_box[0]  # it moved right
    assert star.best_ms in seen


def test_shots_are_split_at_the_cut(
    analyzer: VideoAnalyzer, scene: tuple[Path, TrackingTruth]
) -> None:
    path, truth = scene
    doc = _analyse(analyzer, path, sample_fps=1.0)
    assert [(s.shot, s.start_ms, s.end_ms) for s in doc.shots] == [
        (0, 0, truth.cut_ms),
        (1, truth.cut_ms, truth.duration_ms),
    ]
    assert sum(s.frames for s in doc.shots) == len(doc.frames) == doc.summary.frames_analysed
    assert doc.summary.shots == 2


@pytest.mark.parametrize("sample_fps", [1.0, 2.0])
def test_each_caption_is_one_text_event_within_one_sampled_frame_and_no_junk(
    analyzer: VideoAnalyzer, scene: tuple[Path, TrackingTruth], sample_fps: float
) -> None:
    path, truth = scene
    doc = _analyse(analyzer, path, sample_fps=sample_fps)
    result = score(truth, doc)
    step = 1000 / sample_fps
    assert result.junk_events == []
    for caption in truth.captions:
        events = result.caption_events[caption.text]
        assert len(events) == 1, (caption, events)  # "ZONE 7" stays one event across the cut
        first, last = events[0]
        assert abs(first - caption.start_ms) <= step
        assert abs(last - (caption.end_ms - step)) <= step
    assert len(doc.summary.texts) == len(truth.captions)
    assert [t.event_id for t in doc.summary.texts] == [e.event_id for e in doc.text_events]
    kept = {line.event_id for f in doc.frames for line in f.text if line.event_id is not None}
    assert kept == {e.event_id for e in doc.text_events}
