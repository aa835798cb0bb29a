"""Threads or processes for the video analysis? Measures both on this machine.

    .venv/bin/python bench/executors.py [--videos 2] [--seconds 8] [--sample-fps 2]

Analyses the same set of generated videos (640x360 H.264, the fixture detector) three ways,
after the models are loaded (load time is reported apart, as a worker pays it once):
``sequential`` (one analyzer, one at a time), ``threads`` (one analyzer shared by N threads,
what ``worker.pipelines.yolo_ocr.job.VideoPipeline`` does) and ``processes`` (N spawned
processes, each with its own analyzer). Prints one JSON line last: wall seconds and frames/s
of each, peak RSS of the parent and of one child.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from vidjobs.devstack.synth.video import make_sample_video
from vidjobs.worker.pipelines.yolo_ocr.analyzer import VideoAnalyzer
from vidjobs.worker.pipelines.yolo_ocr.settings import PipelineSettings

_ANALYZER: VideoAnalyzer | None = None


def _init_child() -> None:
    global _ANALYZER  # noqa: PLW0603 - one analyzer per child process, like a pool worker
    _ANALYZER = VideoAnalyzer(PipelineSettings.fixture())


def _analyze_in_child(path: str, params: dict[str, Any]) -> tuple[int, int]:
    assert _ANALYZER is not None
    frames: list[int] = []
    _ANALYZER.analyze(Path(path), params, lambda d, t: frames.append(d), lambda: False)
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (frames[-1] if frames else 0), rss_kb


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--sample-fps", type=float, default=2.0)
    args = ap.parse_args()
    params = {"sample_fps": args.sample_fps}
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp) / f"v{i}.mp4" for i in range(args.videos)]
        for i, p in enumerate(paths):
            make_sample_video(p, seconds=args.seconds, seed=10 + i)
        t0 = time.perf_counter()
        analyzer = VideoAnalyzer(PipelineSettings.fixture())
        load_s = time.perf_counter() - t0
        analyzer.analyze(paths[0], params, lambda d, t: None, lambda: False)  # warm-up

        def one(p: Path) -> int:
            done: list[int] = []
            analyzer.analyze(p, params, lambda d, t: done.append(d), lambda: False)
            return done[-1] if done else 0

        res: dict[str, Any] = {
            "videos": args.videos,
            "seconds": args.seconds,
            "sample_fps": args.sample_fps,
            "load_s": round(load_s, 2),
        }
        t0 = time.perf_counter()
        frames = sum(one(p) for p in paths)
        res["sequential"] = {"wall_s": round(time.perf_counter() - t0, 2), "frames": frames}

        with concurrent.futures.ThreadPoolExecutor(args.videos) as pool:
            t0 = time.perf_counter()
            frames = sum(pool.map(one, paths))
            res["threads"] = {"wall_s": round(time.perf_counter() - t0, 2), "frames": frames}

        ctx = mp.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(
            args.videos, mp_context=ctx, initializer=_init_child
        ) as ppool:
            # Load the models in every child first (a worker pays that once), then time.
            list(
                ppool.map(_analyze_in_child, [str(paths[0])] * args.videos, [params] * args.videos)
            )
            t0 = time.perf_counter()
            out = list(ppool.map(_analyze_in_child, [str(p) for p in paths], [params] * len(paths)))
            res["processes"] = {
                "wall_s": round(time.perf_counter() - t0, 2),
                "frames": sum(f for f, _ in out),
                "child_peak_rss_mb": round(max(r for _, r in out) / 1024),
            }
        for k in ("sequential", "threads", "processes"):
            res[k]["frames_per_s"] = round(res[k]["frames"] / res[k]["wall_s"], 2)
        res["parent_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
