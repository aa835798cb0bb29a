"""The yolo_ocr pipeline with its real models on generated videos (the project's own detector)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from tests.support.results_schema import assert_valid_results
from vidjobs.devstack.synth.video import GroundTruth, make_audio_only_mp4, make_sample_video
from vidjobs.schema.results import ResultsDocument, decode_results
from vidjobs.worker.outcome import InvalidParams, InvalidVideo, JobStopped, ModelUnavailable
from vidjobs.worker.pipelines.yolo_ocr.analyzer import VideoAnalyzer
from vidjobs.worker.pipelines.yolo_ocr.settings import FIXTURE_WEIGHTS, PipelineSettings

pytestmark = pytest.mark.ml


@pytest.fixture(scope="module")
def analyzer() -> VideoAnalyzer:
    """One analyzer for the module: models load once, as in a worker process."""
    assert FIXTURE_WEIGHTS.is_file(), "run scripts/train_detector.py to create the fixture"
    return VideoAnalyzer(PipelineSettings.fixture())


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GroundTruth]:
    """A 4 s H.264 video: two captioned segments, three moving shapes."""
    path = tmp_path_factory.mktemp("videos") / "sample.mp4"
    return path, make_sample_video(path, seconds=4.0, seed=3)


def _run(
    analyzer: VideoAnalyzer, path: Path, **params: float
) -> tuple[ResultsDocument, bytes, list[tuple[int, int]]]:
    calls: list[tuple[int, int]] = []
    data = analyzer.analyze(path, dict(params), lambda d, t: calls.append((d, t)), lambda: False)
    assert_valid_results(data)
    return decode_results(data), data, calls


def _norm(text: str) -> str:
    return "".join(text.upper().split())


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / union


def test_text_is_found_at_the_right_timestamps(
    analyzer: VideoAnalyzer, sample: tuple[Path, GroundTruth]
) -> None:
    path, truth = sample
    doc, _, _ = _run(analyzer, path, sample_fps=2.5)
    assert [f.t_ms for f in doc.frames] == list(range(0, 4000, 400))
    for frame in doc.frames:
        expected = {_norm(t.text) for t in truth.texts_at(frame.t_ms)}
        assert {_norm(t.text) for t in frame.text} == expected, frame.t_ms
    seen = {_norm(t.text): (t.first_seen_ms, t.last_seen_ms) for t in doc.summary.texts}
    assert seen == {_norm(t.text): (t.start_ms, t.end_ms - 400) for t in truth.texts}


def test_objects_are_detected_near_their_true_boxes(
    analyzer: VideoAnalyzer, sample: tuple[Path, GroundTruth]
) -> None:
    path, truth = sample
    doc, _, _ = _run(analyzer, path, sample_fps=2.5)
    pairs = hits = 0
    for frame in doc.frames:
        for obj in truth.objects_at(frame.t_ms):
            pairs += 1
            true_box = obj.box_at(frame.t_ms)
            hits += any(
                d.label == obj.label and _iou(d.box, true_box) >= 0.5 for d in frame.detections
            )
    assert pairs >= 8
    assert hits / pairs >= 0.9, f"{hits}/{pairs} objects found"
    assert sum(doc.summary.label_counts.values()) >= hits


def test_progress_rises_to_frames_total_and_metadata_is_right(
    analyzer: VideoAnalyzer, sample: tuple[Path, GroundTruth]
) -> None:
    path, truth = sample
    doc, _, calls = _run(analyzer, path, sample_fps=1.0)
    assert [done for done, _ in calls] == list(range(1, len(doc.frames) + 1))
    assert {total for _, total in calls} == {len(doc.frames)} == {4}
    assert doc.video.frames == truth.frames == 100
    assert (doc.video.width, doc.video.height, doc.video.fps) == (640, 360, 25.0)
    assert doc.video.duration_ms == 4000
    assert doc.video.codec == "h264"
    assert doc.params.sample_fps == 1.0
    assert doc.params.min_confidence == 0.25
    assert doc.detector.weights == FIXTURE_WEIGHTS.name
    assert len(doc.detector.weights_sha256) == 64
    assert doc.ocr.name == "rapidocr"


def test_results_are_byte_identical_across_runs_and_mp4v_decodes(
    analyzer: VideoAnalyzer, tmp_path: Path
) -> None:
    path = tmp_path / "mp4v.mp4"
    truth = make_sample_video(path, seconds=2.0, codec="mp4v", seed=5)
    _, first, _ = _run(analyzer, path, sample_fps=2.0)
    _, second, _ = _run(analyzer, path, sample_fps=2.0)
    assert first == second
    doc = decode_results(first)
    assert doc.video.codec == "mpeg4"
    read = {_norm(t.text) for f in doc.frames for t in f.text}
    assert {_norm(t.text) for t in truth.texts} <= read
    assert list(json.loads(first)) == sorted(json.loads(first))


_ANALYZE_IN_CHILD = """
import sys
from pathlib import Path
from vidjobs.worker.pipelines.yolo_ocr.analyzer import VideoAnalyzer
from vidjobs.worker.pipelines.yolo_ocr.settings import PipelineSettings
analyzer = VideoAnalyzer(PipelineSettings.fixture())
data = analyzer.analyze(Path(sys.argv[1]), {"sample_fps": 2.5}, lambda d, t: None, lambda: False)
sys.stdout.buffer.write(data)
"""


def test_results_are_byte_identical_in_another_process(
    analyzer: VideoAnalyzer, sample: tuple[Path, GroundTruth]
) -> None:
    path, _ = sample
    _, here, _ = _run(analyzer, path, sample_fps=2.5)
    child = subprocess.run(
        [sys.executable, "-c", _ANALYZE_IN_CHILD, str(path)],
        capture_output=True,
        check=True,
        timeout=240,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert child.stdout == here


def test_should_stop_cancels_between_frames(
    analyzer: VideoAnalyzer, sample: tuple[Path, GroundTruth]
) -> None:
    path, _ = sample
    calls: list[tuple[int, int]] = []
    with pytest.raises(JobStopped):
        analyzer.analyze(
            path, {"sample_fps": 2.0}, lambda d, t: calls.append((d, t)), lambda: len(calls) >= 2
        )
    assert calls == [(1, 8), (2, 8)]


def test_a_slightly_short_video_completes_and_progress_closes(
    analyzer: VideoAnalyzer, sample: tuple[Path, GroundTruth], tmp_path: Path
) -> None:
    data = sample[0].read_bytes()
    short = tmp_path / "short.mp4"
    short.write_bytes(data[: int(len(data) * 0.97)])  # loses the last few frames only
    doc, _, calls = _run(analyzer, short, sample_fps=5.0)
    assert 15 <= len(doc.frames) < 20
    assert calls[-1] == (len(doc.frames), len(doc.frames))
    fractions = [done / total for done, total in calls]
    assert fractions == sorted(fractions)


def test_bad_params_are_refused(analyzer: VideoAnalyzer, sample: tuple[Path, GroundTruth]) -> None:
    with pytest.raises(InvalidParams, match="sample_fps"):
        _run(analyzer, sample[0], sample_fps=0.0)


def _zero_frame(path: Path) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 25.0, (64, 64))
    writer.release()


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("truncated", "truncated"),
        ("header_garbage", "no video frames"),
        ("zero_frames", "no video frames"),
        ("audio_only", "no video stream"),
        ("empty", "missing or empty"),
    ],
)
def test_malformed_inputs_raise_invalid_video(
    analyzer: VideoAnalyzer,
    sample: tuple[Path, GroundTruth],
    tmp_path: Path,
    kind: str,
    message: str,
) -> None:
    good = sample[0].read_bytes()
    bad = tmp_path / f"{kind}.mp4"
    if kind == "truncated":
        bad.write_bytes(good[: len(good) // 2])
    elif kind == "header_garbage":
        bad.write_bytes(good[:64] + random.Random(0).randbytes(32_000))
    elif kind == "zero_frames":
        _zero_frame(bad)
    elif kind == "audio_only":
        make_audio_only_mp4(bad)
    else:
        bad.write_bytes(b"")
    with pytest.raises(InvalidVideo, match=message) as info:
        _run(analyzer, bad)
    assert info.value.kind == "invalid_video"
    # The same analyzer still works afterwards.
    doc, _, _ = _run(analyzer, sample[0], sample_fps=0.5)
    assert len(doc.frames) == 2


@pytest.mark.parametrize("weights", ["/nonexistent/weights.pt", "yolo11n.pt"])
def test_missing_weights_fail_fast_naming_the_setting(
    weights: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a bare model name must not be found (or written) here
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(ModelUnavailable, match="VIDJOBS_DETECTOR_WEIGHTS") as info:
        VideoAnalyzer(PipelineSettings(detector_weights=weights))
    assert time.monotonic() - start < 30
    assert info.value.kind == "model_unavailable"
    assert list(tmp_path.iterdir()) == []
