"""Submit over HTTP → a real ``vidjobs worker`` process → results over HTTP.

Everything runs as a user would run it: ``vidjobs keys create``, ``vidjobs api`` (uvicorn) and
``vidjobs worker`` processes against a real Postgres and a real S3 server, the project's own
fixture detector, and a generated video whose ground truth is exact.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.processes import Processes, Services
from tests.support.results_schema import assert_valid_results
from vidjobs.blobs import BlobSettings
from vidjobs.devstack.synth.video import GroundTruth, make_sample_video
from vidjobs.worker.pipelines.yolo_ocr.settings import FIXTURE_WEIGHTS

pytestmark = [pytest.mark.acceptance, pytest.mark.ml]


@pytest.fixture
def services(processes: Processes, database_url: str, s3_settings: BlobSettings) -> Services:
    """API and worker on the test's database and a fresh S3 bucket, configured by environment."""
    return Services(
        processes,
        database_url,
        s3_settings,
        {
            "VIDJOBS_DETECTOR_WEIGHTS": str(FIXTURE_WEIGHTS),
            "VIDJOBS_WORKER_PROGRESS_INTERVAL": "0.1",
            "VIDJOBS_WORKER_HEARTBEAT_INTERVAL": "1",
            "VIDJOBS_WORKER_CONCURRENCY": "1",
        },
    )


def _norm(text: str) -> str:
    return "".join(text.upper().split())


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / union


def test_submit_analyse_and_read_results_over_http(services: Services, tmp_path: Path) -> None:
    video = tmp_path / "sample.mp4"
    truth: GroundTruth = make_sample_video(video, seconds=4.0, seed=3)
    services.start_api()
    base = services.base_url
    worker = services.start_worker()
    made = services.cli("keys", "create", "--tenant", "e2e", "--name", "ci")
    assert made.returncode == 0, made.stderr
    headers = {"Authorization": f"Bearer {made.stdout.strip()}"}

    with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
        with video.open("rb") as f:
            r = http.post(
                "/video/submit",
                data={"pipeline": "yolo_ocr", "sample_fps": "2.5"},
                files={"file": ("sample.mp4", f, "video/mp4")},
            )
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]

        progress: list[float] = []
        deadline = time.monotonic() + 240
        while True:
            assert worker.alive(), worker.text()
            status: dict[str, Any] = http.get(f"/video/status/{job_id}").json()
            progress.append(status["progress"])
            if status["status"] in ("completed", "failed", "cancelled"):
                break
            assert time.monotonic() < deadline, f"job still {status['status']}"
            time.sleep(0.05)
        assert status["status"] == "completed", status
        assert progress == sorted(progress), f"progress went down: {progress}"
        assert progress[-1] == 1.0
        assert any(0 < p < 1 for p in progress), f"no progress seen while it ran: {progress}"

        r = http.get(f"/video/results/{job_id}")
        assert r.status_code == 200, r.text
        doc = r.json()["results"]
        assert_valid_results(doc)

    frames = doc["frames"]
    assert [f["t_ms"] for f in frames] == list(range(0, 4000, 400))
    for frame in frames:
        expected = {_norm(t.text) for t in truth.texts_at(frame["t_ms"])}
        assert {_norm(t["text"]) for t in frame["text"]} == expected, frame["t_ms"]
    pairs = hits = 0
    for frame in frames:
        for obj in truth.objects_at(frame["t_ms"]):
            pairs += 1
            true_box = obj.box_at(frame["t_ms"])
            hits += any(
                d["label"] == obj.label and _iou(tuple(d["box"]), true_box) >= 0.5
                for d in frame["detections"]
            )
    assert pairs >= 8
    assert hits / pairs >= 0.9, f"{hits}/{pairs} objects found"
