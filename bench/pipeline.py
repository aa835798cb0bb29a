"""Pipeline benchmark: frames analysed per second and recall, ``VideoAnalyzer`` vs a naive baseline.

Generates a 640x360 video with known captions and moving shapes (``worker.synth``), then, in
this one process, runs

* the naive baseline: OpenCV decode, Ultralytics ``predict`` with the same weights and
  RapidOCR with its defaults, one sampled frame at a time, sequentially;
* ``VideoAnalyzer`` with the given settings (the tuned pipeline the worker runs, ``--variant
  v2``), and the analyzer as main ran it before issue 15 (``v1``: every analysed frame read
  whole by the OCR, ONNX Runtime's threads spin-waiting), whose frames/s is ``fps_main``, so a
  speed-up is measured side by side in one run;

and scores both against the ground truth: OCR recall is the share of (sampled frame, visible
caption) pairs whose caption was read (case and spaces ignored); detection recall the share of
(sampled frame, visible shape) pairs matched by a detection of the same label with IoU >= 0.5.
Model loading is excluded from both timings; the two sides alternate (A B B A) so load from
other processes on a shared CPU falls on both. The last line printed is one JSON object.

A child process then analyses a longer 640x360 video (``--realtime-seconds``, 600 by default)
with only the chosen variant loaded: ``x_realtime`` is the video's length over the time the
analysis took, and ``worker_rss_mb`` that process's peak resident memory (models, decoder and
the document: what one worker needs).

Usage::

    .venv/bin/python bench/pipeline.py            # 60 s video, a few minutes on 2 cores
    .venv/bin/python bench/pipeline.py --seconds 10 --realtime-seconds 60
    .venv/bin/python bench/pipeline.py --device cuda:0   # detector and OCR on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2

from vidjobs.devstack.synth.video import GroundTruth, make_sample_video
from vidjobs.schema.results import decode_results
from vidjobs.worker.pipelines.yolo_ocr.analyzer import VideoAnalyzer
from vidjobs.worker.pipelines.yolo_ocr.settings import (
    FIXTURE_IMGSZ,
    FIXTURE_WEIGHTS,
    PipelineSettings,
)

Box = tuple[float, float, float, float]
Frame = dict[str, Any]  # {"t_ms", "texts": [str], "detections": [(label, box)]}


def _norm(text: str) -> str:
    return "".join(text.upper().split())


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def recall(truth: GroundTruth, frames: list[Frame]) -> tuple[float, float]:
    """(OCR recall, detection recall) of analysed frames against the ground truth."""
    text_hits = text_total = det_hits = det_total = 0
    for f in frames:
        read = {_norm(t) for t in f["texts"]}
        for caption in truth.texts_at(f["t_ms"]):
            text_total += 1
            text_hits += any(_norm(caption.text) in r for r in read)
        for obj in truth.objects_at(f["t_ms"]):
            det_total += 1
            true_box = obj.box_at(f["t_ms"])
            det_hits += any(
                label == obj.label and iou(box, true_box) >= 0.5 for label, box in f["detections"]
            )
    return text_hits / max(1, text_total), det_hits / max(1, det_total)


class Baseline:
    """The naive pipeline: Ultralytics ``predict`` + RapidOCR defaults, frame by frame."""

    def __init__(self, weights: str) -> None:
        from rapidocr import RapidOCR
        from ultralytics.models import YOLO

        self.model = YOLO(weights, task="detect")
        self.ocr = RapidOCR(params={"Global.log_level": "error"})  # defaults, minus the chatter

    def run(self, video: Path, sample_fps: float) -> tuple[list[Frame], float]:
        """Analyse the video; return its frames and the seconds it took."""
        frames: list[Frame] = []
        step_ms = 1000.0 / sample_fps
        start = time.perf_counter()
        cap = cv2.VideoCapture(str(video))
        fps = cap.get(cv2.CAP_PROP_FPS)
        while True:
            ok, image = cap.read()
            if not ok:
                break
            t = cap.get(cv2.CAP_PROP_POS_MSEC)
            if t + 500.0 / fps <= len(frames) * step_ms:
                continue
            result: Any = self.model.predict(image, verbose=False)[0]  # type: ignore[index]
            dets = [
                (result.names[int(c)], tuple(float(v) for v in box))
                for box, c in zip(
                    result.boxes.xyxy.tolist(), result.boxes.cls.tolist(), strict=True
                )
            ]
            out: Any = self.ocr(image)
            frames.append({"t_ms": round(t), "texts": list(out.txts or ()), "detections": dets})
        cap.release()
        return frames, time.perf_counter() - start


def run_analyzer(
    analyzer: VideoAnalyzer, video: Path, sample_fps: float
) -> tuple[list[Frame], float]:
    """``VideoAnalyzer`` as the worker runs it; returns its frames and the seconds it took."""
    start = time.perf_counter()
    data = analyzer.analyze(video, {"sample_fps": sample_fps}, lambda _d, _t: None, lambda: False)
    elapsed = time.perf_counter() - start
    doc = decode_results(data)
    frames = [
        {
            "t_ms": f.t_ms,
            "texts": [t.text for t in f.text],
            "detections": [(d.label, d.box) for d in f.detections],
        }
        for f in doc.frames
    ]
    return frames, elapsed


def unchanged_frames(video: Path, sample_fps: float) -> int:
    """How many sampled frames the analyzer's unchanged-frame check lets it skip."""
    from vidjobs.worker.pipelines.yolo_ocr.analyzer import _UNCHANGED_BELOW, _thumbnail
    from vidjobs.worker.pipelines.yolo_ocr.decode import VideoSource

    count = 0
    previous = None
    with VideoSource(video) as source:
        for sampled in source.sample(sample_fps):
            thumb = _thumbnail(sampled.image)
            if previous is not None and float(abs(thumb - previous).max()) < _UNCHANGED_BELOW:
                count += 1
            previous = thumb
    return count


#: The analyzer's variants: ``v1`` is main before issue 15 (every analysed frame read whole by
#: the OCR, ONNX Runtime's threads spinning as it ships, its float text detector), ``v2`` the
#: current defaults.
VARIANTS: dict[str, dict[str, Any]] = {
    "v1": {
        "ocr_reuse_regions": False,
        "ocr_spin_wait": True,
        "detector_threads": 0,
        "overlap_stages": False,
        "ocr_det_int8": False,
    },
    "v2": {},
}


def variant_settings(args: argparse.Namespace, variant: str) -> PipelineSettings:
    """The analyzer's settings for one variant, with the command line's weights and device."""
    device = (
        {} if args.device is None else {"detector_device": args.device, "ocr_device": args.device}
    )
    return PipelineSettings(
        detector_weights=args.tuned_weights or args.weights,
        detector_imgsz=args.imgsz,
        skip_unchanged=not args.no_skip_unchanged,
        **device,
        **VARIANTS[variant],
    )


def realtime_child(args: argparse.Namespace) -> int:
    """In a fresh process: analyse ``--realtime-video`` once; print seconds and peak RSS."""
    analyzer = VideoAnalyzer(variant_settings(args, args.variant))
    loaded_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    data = analyzer.analyze(
        Path(args.realtime_video), {"sample_fps": args.sample_fps}, lambda d, t: None, lambda: False
    )
    elapsed = time.perf_counter() - started
    doc = decode_results(data)
    line = {
        "wall_s": round(elapsed, 2),
        "duration_s": doc.video.duration_ms / 1000,
        "frames": len(doc.frames),
        "loaded_rss_mb": round(loaded_mb, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(json.dumps(line), flush=True)
    return 0


def realtime_bench(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """``x_realtime`` and ``worker_rss_mb`` of the chosen variant on a long video (module doc)."""
    video = tmp / "realtime.mp4"
    make_sample_video(video, args.realtime_seconds, codec=args.codec, seed=11)
    cmd = [sys.executable, __file__, "--realtime-video", str(video), "--variant", args.variant]
    cmd += ["--weights", args.weights, "--imgsz", str(args.imgsz)]
    cmd += ["--sample-fps", str(args.sample_fps)]
    if args.tuned_weights:
        cmd += ["--tuned-weights", args.tuned_weights]
    if args.device:
        cmd += ["--device", args.device]
    if args.no_skip_unchanged:
        cmd.append("--no-skip-unchanged")
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    child = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "x_realtime": round(child["duration_s"] / child["wall_s"], 2),
        "realtime_seconds": child["duration_s"],
        "realtime_frames": child["frames"],
        "realtime_wall_s": child["wall_s"],
        "worker_rss_mb": child["peak_rss_mb"],
        "worker_rss_loaded_mb": child["loaded_rss_mb"],
    }


def tracking_bench(settings: PipelineSettings, sample_fps: float, rounds: int) -> dict[str, Any]:
    """Tracking's cost and quality on the tracking scene: with and without tracks and events.

    The same video through two analyzers that differ only in ``track_and_merge``, alternated;
    the quality figures (``vidjobs.devstack.synth.tracking.score``) come from the tracked run.
    """
    from vidjobs.devstack.synth.tracking import make_tracking_video, score

    with tempfile.TemporaryDirectory(prefix="vidjobs-bench-tracking-") as tmp:
        video = Path(tmp) / "tracking.mp4"
        truth = make_tracking_video(video)
        sides = {
            True: VideoAnalyzer(settings.model_copy(update={"track_and_merge": True})),
            False: VideoAnalyzer(settings.model_copy(update={"track_and_merge": False})),
        }
        secs = {True: 0.0, False: 0.0}
        frames = 0
        doc = None
        for i in range(rounds):
            for side in (True, False) if i % 2 == 0 else (False, True):
                started = time.perf_counter()
                data = sides[side].analyze(
                    video, {"sample_fps": sample_fps}, lambda d, t: None, lambda: False
                )
                secs[side] += time.perf_counter() - started
                if side:
                    doc = decode_results(data)
                    frames = len(doc.frames)
    assert doc is not None
    result = score(truth, doc)
    duplicates = sum(max(0, len(v) - 1) for v in result.caption_events.values())
    fps_on = rounds * frames / secs[True]
    fps_off = rounds * frames / secs[False]
    return {
        "fps_tracking": round(fps_on, 3),
        "fps_no_tracking": round(fps_off, 3),
        "tracking_cost_ratio": round(fps_on / fps_off, 3),
        "unique_count_error": result.unique_count_error,
        "id_switches": result.id_switches,
        "tracks_spanning_cut": result.tracks_spanning_cut,
        "text_events_duplicates": duplicates,
        "text_events_junk": len(result.junk_events),
        "captions_missed": sum(1 for v in result.caption_events.values() if not v),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="video length")
    ap.add_argument("--sample-fps", type=float, default=1.0)
    ap.add_argument("--weights", default=str(FIXTURE_WEIGHTS), help="detector weights (.pt)")
    ap.add_argument(
        "--tuned-weights",
        default=None,
        help="weights for VideoAnalyzer (e.g. an exported .onnx); default: --weights",
    )
    ap.add_argument("--imgsz", type=int, default=FIXTURE_IMGSZ)
    ap.add_argument("--codec", choices=["h264", "mp4v"], default="h264")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument(
        "--skip-tracking",
        action="store_true",
        help="leave out the tracking scene (fps with and without tracks/text events, ID switches)",
    )
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds (A B, B A, ...)")
    ap.add_argument(
        "--no-skip-unchanged",
        action="store_true",
        help="analyse every sampled frame, even unchanged ones (measures that lever alone)",
    )
    ap.add_argument(
        "--variant",
        choices=sorted(VARIANTS),
        default="v2",
        help="the analyzer whose frames/s is fps (v1: main before region reuse; v2: now)",
    )
    ap.add_argument(
        "--skip-main",
        action="store_true",
        help="leave out v1 (fps_main) when --variant is v2",
    )
    ap.add_argument(
        "--device",
        default=None,
        help="detector and OCR device for the analyzer (cpu, cuda:0); default: the settings'",
    )
    ap.add_argument(
        "--realtime-seconds",
        type=float,
        default=600.0,
        help="length of the x_realtime video (0 leaves x_realtime and worker_rss_mb out)",
    )
    ap.add_argument("--realtime-video", default=None, help=argparse.SUPPRESS)  # the child's
    args = ap.parse_args()

    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="vidjobs-bench-yolo-"))
    if args.realtime_video:
        return realtime_child(args)
    with tempfile.TemporaryDirectory(prefix="vidjobs-bench-") as tmp:
        video = Path(tmp) / "bench.mp4"
        truth = make_sample_video(video, args.seconds, codec=args.codec, seed=7)
        settings = variant_settings(args, args.variant)
        analyzer = VideoAnalyzer(settings)
        main_analyzer = (
            None
            if args.skip_main or args.variant == "v1"
            else VideoAnalyzer(variant_settings(args, "v1"))
        )
        baseline = None if args.skip_baseline else Baseline(args.weights)
        # A B C, C B A: the CPU is shared, so alternate to spread load drift over every side.
        secs = b_secs = m_secs = 0.0
        frames: list[Frame] = []
        b_frames: list[Frame] = []
        m_frames: list[Frame] = []
        for i in range(args.rounds):
            order = ("a", "m", "b") if i % 2 == 0 else ("b", "m", "a")
            for side in order:
                if side == "a":
                    frames, s = run_analyzer(analyzer, video, args.sample_fps)
                    secs += s
                    print(f"analyzer: {len(frames)} frames in {s:.1f}s", file=sys.stderr)
                elif side == "m" and main_analyzer is not None:
                    m_frames, s = run_analyzer(main_analyzer, video, args.sample_fps)
                    m_secs += s
                    print(f"main (v1): {len(m_frames)} frames in {s:.1f}s", file=sys.stderr)
                elif side == "b" and baseline is not None:
                    b_frames, s = baseline.run(video, args.sample_fps)
                    b_secs += s
                    print(f"baseline: {len(b_frames)} frames in {s:.1f}s", file=sys.stderr)
        ocr_r, det_r = recall(truth, frames)
        line: dict[str, Any] = {
            "variant": args.variant,
            "frames": len(frames),
            "fps": round(args.rounds * len(frames) / secs, 3),
            "ocr_recall": round(ocr_r, 4),
            "det_recall": round(det_r, 4),
        }
        if main_analyzer is not None:
            m_ocr, m_det = recall(truth, m_frames)
            line |= {
                "fps_main": round(args.rounds * len(m_frames) / m_secs, 3),
                "main_ocr_recall": round(m_ocr, 4),
                "main_det_recall": round(m_det, 4),
                "speedup_vs_main": round((len(frames) / secs) / (len(m_frames) / m_secs), 2),
            }
        if baseline is not None:
            b_ocr, b_det = recall(truth, b_frames)
            line |= {
                "baseline_fps": round(args.rounds * len(b_frames) / b_secs, 3),
                "baseline_ocr_recall": round(b_ocr, 4),
                "baseline_det_recall": round(b_det, 4),
                "speedup": round((len(frames) / secs) / (len(b_frames) / b_secs), 2),
            }
        if settings.skip_unchanged:
            line["unchanged_frames_reused"] = unchanged_frames(video, args.sample_fps)
        if not args.skip_tracking:
            del analyzer, baseline, main_analyzer  # free their models before loading two more
            line |= tracking_bench(settings, args.sample_fps, args.rounds)
        if args.realtime_seconds > 0:
            line |= realtime_bench(args, Path(tmp))
        line |= {
            "seconds": args.seconds,
            "sample_fps": args.sample_fps,
            "weights": Path(settings.detector_weights).name,
            "imgsz": args.imgsz,
            "codec": args.codec,
            "skip_unchanged": settings.skip_unchanged,
            "rounds": args.rounds,
            "device": args.device or "cpu",
            "load_avg_1m": round(os.getloadavg()[0], 2),
        }
        print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
