"""A 20-minute video split into segment jobs across 3 worker processes, one SIGKILLed mid-segment.

Everything as in production: ``vidjobs api`` and three ``vidjobs worker`` processes on a real
Postgres and S3 (segments read the video by range requests through presigned URLs), the
project's fixture detector, a generated video whose scenes outlast the segment boundaries (so
objects and captions cross them). The result must equal, byte for byte, the document the
same analyzer makes of the whole video in one run; the killed worker's segment alone runs
twice; the job's progress never goes back before the kill.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from tests.support.db import sql
from tests.support.processes import Processes, Services, worker_args
from vidjobs.blobs import BlobSettings
from vidjobs.devstack.synth.video import make_sample_video
from vidjobs.schema import decode_results
from vidjobs.schema.results import canonical_json
from vidjobs.worker.pipelines.yolo_ocr.settings import (
    FIXTURE_IMGSZ,
    FIXTURE_WEIGHTS,
    PipelineSettings,
)

pytestmark = [pytest.mark.acceptance, pytest.mark.ml, pytest.mark.timeout(900)]

SECONDS = 1200
SAMPLE_FPS = 0.2  # 240 frames: the models' cost stays a few minutes on two cores
SEGMENT_S = 240  # 5 segments, boundaries at 4, 8, 12, 16 min: inside 70 s scenes
LEASE_S = 4.0


def _whole_video_document(video: Path, tmp_path: Path) -> bytes:
    """What one worker makes of the whole video (the analyzer the workers run, in process)."""
    import os

    os.environ.setdefault("YOLO_CONFIG_DIR", str(tmp_path / "ultralytics"))
    from vidjobs.worker.pipelines.yolo_ocr.analyzer import VideoAnalyzer

    # The workers' segment length: what a frame reuses restarts at the same grid points.
    analyzer = VideoAnalyzer(PipelineSettings.fixture(segment_seconds=SEGMENT_S))
    return analyzer.analyze(video, {"sample_fps": SAMPLE_FPS}, lambda d, t: None, lambda: False)


def test_a_long_video_split_across_workers_equals_the_whole_video_run(
    processes: Processes, database_url: str, s3_settings: BlobSettings, tmp_path: Path
) -> None:
    video = tmp_path / "long.mp4"
    make_sample_video(video, seconds=SECONDS, fps=5, segment_s=70, seed=16)
    whole = _whole_video_document(video, tmp_path)
    services = Services(
        processes,
        database_url,
        s3_settings,
        {
            "VIDJOBS_DETECTOR_WEIGHTS": str(FIXTURE_WEIGHTS),
            "VIDJOBS_DETECTOR_IMGSZ": str(FIXTURE_IMGSZ),
            "YOLO_CONFIG_DIR": str(tmp_path / "ultralytics"),
            "VIDJOBS_SEGMENT_ABOVE_SECONDS": "300",
            "VIDJOBS_SEGMENT_SECONDS": str(SEGMENT_S),
            "VIDJOBS_WORKER_PROGRESS_INTERVAL": "0.2",
            # One segment per worker at a time and none claimed ahead: a killed worker strands
            # exactly the segment it was analysing.
            "VIDJOBS_WORKER_BATCH_SIZE": "1",
            "VIDJOBS_WORKER_PREFETCH": "0",
        },
    )
    services.start_api()
    workers = {
        f"seg-w{i}": services.start_worker(
            *worker_args(LEASE_S, worker_id=f"seg-w{i}", concurrency=1), name=f"seg-w{i}"
        )
        for i in range(3)
    }
    made = services.cli("keys", "create", "--tenant", "long", "--name", "ci")
    assert made.returncode == 0, made.stderr
    headers = {"Authorization": f"Bearer {made.stdout.strip()}"}

    with httpx.Client(base_url=services.base_url, headers=headers, timeout=30) as http:
        with video.open("rb") as f:
            r = http.post(
                "/video/submit",
                data={"pipeline": "yolo_ocr", "sample_fps": str(SAMPLE_FPS)},
                files={"file": ("long.mp4", f, "video/mp4")},
            )
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]

        progress: list[float] = []
        status: dict[str, Any] = {}
        killed: str | None = None
        killed_segment: int | None = None
        deadline = time.monotonic() + 780
        while True:
            assert time.monotonic() < deadline, status
            status = http.get(f"/video/status/{job_id}").json()
            if status["status"] in ("completed", "failed", "cancelled"):
                break
            children = status.get("children") or []
            if killed is None:
                progress.append(status["progress"])
                # SIGKILL a worker a few frames into a segment that is not the first one done.
                for child in children:
                    if child["status"] == "running" and child["frames_done"] >= 5:
                        holder = sql(
                            database_url,
                            "SELECT worker_id FROM vidjobs.jobs WHERE job_id = %s",
                            child["job_id"],
                        )[0][0]
                        workers[holder].kill()
                        killed, killed_segment = holder, child["index"]
                        break
            time.sleep(0.3)
        assert status["status"] == "completed", status
        assert killed is not None, "no segment was seen running"
        results = http.get(f"/video/results/{job_id}")
        assert results.status_code == 200, results.text

    # The split: 5 segments on the grid, each analysed once except the killed worker's one.
    children = status["children"]
    assert [c["index"] for c in children] == [0, 1, 2, 3, 4]
    assert [c["start_ms"] for c in children] == [0, 240_000, 480_000, 720_000, 960_000]
    assert {c["index"]: c["attempts"] for c in children} == {
        i: 2 if i == killed_segment else 1 for i in range(5)
    }
    assert status["frames_done"] == status["frames_total"] == 240
    assert progress == sorted(progress), progress
    # The result: byte for byte the whole-video run's (frames, tracks, text events, shots).
    split = decode_results(msgspec.json.encode(results.json()["results"]))
    expected = decode_results(whole)
    assert [msgspec.to_builtins(f) for f in split.frames] == [
        msgspec.to_builtins(f) for f in expected.frames
    ]
    assert split.text_events == expected.text_events
    assert split.tracks == expected.tracks
    assert canonical_json(split) == whole
    # Stitched across boundaries: a track and a text event span a segment boundary.
    boundaries = [240_000, 480_000, 720_000, 960_000]
    assert any(t.first_ms < b < t.last_ms for t in split.tracks for b in boundaries)
    assert any(e.first_ms < b < e.last_ms for e in split.text_events for b in boundaries)
    # The segments' partial results are gone once merged.
    keys = services.stored_keys()
    assert not [k for k in keys if k.endswith("_results.json") and job_id not in k], keys
