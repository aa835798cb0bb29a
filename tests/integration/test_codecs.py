"""AV1, HEVC and VP9 in MP4 through the real yolo_ocr pipeline, and the PyAV fallback decoder.

Each clip is the same 4 s scene (seed 3) encoded by the bundled ffmpeg binary (libaom-av1,
libx265, libvpx-vp9): the results name the codec as FFmpeg does and place the sampled frames at
the same times as the H.264 encoding; the PyAV decoder (what runs where OpenCV cannot decode)
yields the same frames at the same times; a codec nothing here decodes is named in the error.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from vidjobs.devstack.synth.video import ffmpeg_exe, make_sample_video
from vidjobs.schema.results import decode_results
from vidjobs.worker.outcome import InvalidVideo
from vidjobs.worker.pipelines.yolo_ocr.analyzer import VideoAnalyzer
from vidjobs.worker.pipelines.yolo_ocr.decode import VideoSource
from vidjobs.worker.pipelines.yolo_ocr.settings import PipelineSettings

pytestmark = pytest.mark.ml

_CODECS = ("av1", "hevc", "vp9")


@pytest.fixture(scope="module")
def analyzer() -> VideoAnalyzer:
    return VideoAnalyzer(PipelineSettings.fixture())


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("codecs")
    out = {}
    for codec in ("h264", *_CODECS):
        out[codec] = folder / f"{codec}.mp4"
        make_sample_video(out[codec], seconds=4.0, codec=codec, seed=3)  # type: ignore[arg-type]
    return out


def _norm(text: str) -> str:
    return "".join(text.upper().split())


@pytest.mark.parametrize("codec", _CODECS)
def test_each_codec_completes_with_its_name_and_the_h264_timestamps(
    analyzer: VideoAnalyzer, clips: dict[str, Path], codec: str
) -> None:
    def run(path: Path) -> bytes:
        return analyzer.analyze(path, {"sample_fps": 2}, lambda d, t: None, lambda: False)

    doc = decode_results(run(clips[codec]))
    reference = decode_results(run(clips["h264"]))
    assert doc.video.codec == codec
    assert (doc.video.frames, doc.video.fps, doc.video.duration_ms) == (100, 25.0, 4000)
    times = [f.t_ms for f in doc.frames]
    assert times == [f.t_ms for f in reference.frames]
    assert times == [0, 520, 1000, 1520, 2000, 2520, 3000, 3520]
    read = {_norm(t.text) for f in doc.frames for t in f.text}
    assert read & {_norm(t.text) for f in reference.frames for t in f.text}, read


@pytest.mark.parametrize("codec", ["h264", *_CODECS])
def test_the_pyav_fallback_yields_the_same_frames_at_the_same_times(
    clips: dict[str, Path], codec: str
) -> None:
    with VideoSource(clips[codec]) as first:
        assert first.decoder == "opencv"
        cv_frames = list(first.sample(2.0))
    with VideoSource(clips[codec], decoder="pyav") as fallback:
        assert fallback.decoder == "pyav"
        assert fallback.info == first.info
        av_frames = list(fallback.sample(2.0))
    assert [(f.frame_index, f.t_ms) for f in av_frames] == [
        (f.frame_index, f.t_ms) for f in cv_frames
    ]
    for a, b in zip(av_frames, cv_frames, strict=True):
        assert a.image.shape == b.image.shape == (360, 640, 3)
        # The same decoded picture, up to the YUV -> BGR conversion's rounding.
        assert abs(float(a.image.mean()) - float(b.image.mean())) < 2.0


def test_pyav_keeps_the_truncation_check(clips: dict[str, Path], tmp_path: Path) -> None:
    whole = clips["av1"].read_bytes()
    cut = tmp_path / "cut.mp4"
    # faststart: the index is at the front, so the first half of the file is half the frames.
    cut.write_bytes(whole[: len(whole) // 2])
    with (
        VideoSource(cut, decoder="pyav") as source,
        pytest.raises(InvalidVideo, match="truncated or corrupt: only"),
    ):
        list(source.sample(25.0))


def test_a_codec_nothing_here_decodes_is_named(tmp_path: Path, analyzer: VideoAnalyzer) -> None:
    # a64multi: an encoder of FFmpeg with no decoder anywhere (OpenCV's FFmpeg nor PyAV's).
    path = tmp_path / "a64.mkv"
    subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
         "-i", "testsrc=size=320x200:rate=10", "-t", "1", "-c:v", "a64multi", str(path)],
        check=True,
    )  # fmt: skip
    with pytest.raises(InvalidVideo, match=r"the video stream \(codec a64m\) cannot be decoded"):
        analyzer.analyze(path, {}, lambda d, t: None, lambda: False)
