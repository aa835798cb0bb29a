"""deploy/docker-compose.yml for real: the product image, every healthcheck, N workers, restarts.

One stack for the module, in order: up and healthy; a key made in the API container; a real
video submitted from outside it; three workers that all claim; a worker stopped mid-job hands
its job back within its grace; a SIGKILLed worker's job is reclaimed; ``down`` and ``up`` again
on the same volumes keeps the old job and runs a new one (the second ``migrate``).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.deploy.stack import Stack
from tests.support.db import insert_jobs, sql
from tests.support.results_schema import assert_valid_results
from tests.support.waiting import wait_for
from vidjobs.devstack.synth.video import make_sample_video

pytestmark = pytest.mark.deploy

_HEALTHY = ("postgres", "minio", "api", "worker")
_ONE_SHOT = ("migrate", "minio-init")
_KEY: dict[str, str] = {}


def _up(stack: Stack, workers: int) -> None:
    stack.compose(
        "up", "-d", "--wait", "--wait-timeout", "300", "--scale", f"worker={workers}", timeout=420
    )
    stack.open_forwards()
    wait_for(lambda: _ready(stack), 60, "the API answers /ready through the forward")


def _ready(stack: Stack) -> bool:
    try:
        return httpx.get(f"{stack.api_url}/ready", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def _key(stack: Stack) -> str:
    if "key" not in _KEY:
        made = stack.compose(
            "exec", "-T", "api", "vidjobs", "keys", "create", "--tenant", "deploy", "--name", "ci"
        )
        _KEY["key"] = made.stdout.strip().splitlines()[-1]
    return _KEY["key"]


def _submit_video(stack: Stack, video: Path) -> str:
    with (
        httpx.Client(base_url=stack.api_url, headers=_auth(stack), timeout=60) as http,
        video.open("rb") as f,
    ):
        r = http.post(
            "/video/submit",
            data={"pipeline": "yolo_ocr", "sample_fps": "2.5"},
            files={"file": (video.name, f, "video/mp4")},
        )
    assert r.status_code == 202, r.text
    return str(r.json()["job_id"])


def _auth(stack: Stack) -> dict[str, str]:
    return {"Authorization": f"Bearer {_key(stack)}"}


def _wait_completed(stack: Stack, job_id: str, within: float = 300) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def done() -> bool:
        seen.update(
            httpx.get(
                f"{stack.api_url}/video/status/{job_id}", headers=_auth(stack), timeout=10
            ).json()
        )
        return seen["status"] in ("completed", "failed", "cancelled")

    wait_for(done, within, f"job {job_id} finishes", every=0.5)
    assert seen["status"] == "completed", seen
    return seen


def _results(stack: Stack, job_id: str) -> dict[str, Any]:
    r = httpx.get(f"{stack.api_url}/video/results/{job_id}", headers=_auth(stack), timeout=30)
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()["results"]
    assert_valid_results(doc)
    return doc


def _state(stack: Stack, job_id: uuid.UUID) -> tuple[str, int, str | None]:
    [(state, attempts, worker)] = sql(
        stack.database_url,
        "SELECT state::text, attempts, worker_id FROM vidjobs.jobs WHERE job_id = %s",
        job_id,
    )
    return state, attempts, worker


def _worker_containers(stack: Stack) -> dict[str, str]:
    """worker id -> container id, for the running worker replicas."""
    found: dict[str, str] = {}
    for row in stack.containers("worker"):
        if row["State"] != "running":
            continue
        cid = str(row["ID"])
        wid = stack.docker("exec", cid, "cat", "/tmp/vidjobs-worker-id").stdout.strip()
        found[wid] = cid
    return found


def _workers_ready(stack: Stack) -> bool:
    """Every running replica has loaded its models and claims (its log says so).

    The healthcheck cannot tell: with the metrics port off (tests/deploy/compose.test.yml),
    ``vidjobs worker --check`` does not see the "loading models" state.
    """
    return all(
        "ready, models loaded"
        in stack.docker("logs", cid).stderr + stack.docker("logs", cid).stdout
        for cid in _worker_containers(stack).values()
    )


def _running_on(stack: Stack, job_id: uuid.UUID) -> tuple[str, str]:
    """Wait until ``job_id`` runs; (its worker id, that worker's container id)."""
    wait_for(lambda: _state(stack, job_id)[0] == "running", 60, "the job runs", every=0.2)
    worker = _state(stack, job_id)[2]
    assert worker is not None
    return worker, _worker_containers(stack)[worker]


def test_every_service_comes_up_healthy(stack: Stack) -> None:
    _up(stack, workers=1)
    for service in _HEALTHY:
        rows = stack.containers(service)
        assert rows, service
        for row in rows:
            assert (row["State"], row["Health"]) == ("running", "healthy"), row
    for service in _ONE_SHOT:
        [row] = stack.containers(service)
        assert (row["State"], row["ExitCode"]) == ("exited", 0), row


def test_a_real_video_goes_through_s3_and_a_worker(stack: Stack, tmp_path: Path) -> None:
    video = tmp_path / "sample.mp4"
    truth = make_sample_video(video, seconds=4.0, seed=3)
    job_id = _submit_video(stack, video)
    status = _wait_completed(stack, job_id)
    assert status["progress"] == 1.0
    frames = _results(stack, job_id)["frames"]
    assert [f["t_ms"] for f in frames] == list(range(0, 4000, 400))
    labels = {o.label for f in frames for o in truth.objects_at(f["t_ms"])}
    found = {d["label"] for f in frames for d in f["detections"]}
    assert labels <= found, (labels, found)
    # Blobs out: the upload and the results document are in the compose file's bucket.
    from minio import Minio

    s3 = Minio(stack.s3_endpoint, "vidjobs", "vidjobs-secret", secure=False, region="us-east-1")
    names = [o.object_name or "" for o in s3.list_objects("vidjobs", recursive=True)]
    assert any(job_id in n for n in names), names
    assert len([n for n in names if job_id in n]) >= 2, names


def test_three_workers_all_claim_jobs(stack: Stack) -> None:
    _up(stack, workers=3)
    assert len(_worker_containers(stack)) == 3
    wait_for(lambda: _workers_ready(stack), 180, "every replica loaded its models", every=1)
    jobs = insert_jobs(stack.database_url, 12, params={"sleep_s": 1.5}, tenant="deploy")
    wait_for(lambda: all(_state(stack, j)[0] == "completed" for j in jobs), 120, "12 jobs complete")
    by = {_state(stack, j)[2] for j in jobs}
    assert by == set(_worker_containers(stack)), by


def test_a_stopped_worker_hands_its_job_back_within_its_grace(stack: Stack) -> None:
    [job_id] = insert_jobs(stack.database_url, params={"sleep_s": 40}, tenant="deploy")
    worker, container = _running_on(stack, job_id)
    t0 = time.monotonic()
    stack.docker("stop", container)  # SIGTERM (tini forwards it); the container's 70 s stop timeout
    took = time.monotonic() - t0
    exit_code = stack.docker("inspect", "-f", "{{.State.ExitCode}}", container).stdout.strip()
    assert exit_code == "0", "exited by itself, not SIGKILLed at the stop timeout"
    assert took < 5 + 15, f"the 5 s grace plus the hand-back, not the 70 s stop timeout ({took})"
    logs = stack.docker("logs", container).stderr + stack.docker("logs", container).stdout
    assert "handed back" in logs, logs[-3000:]
    events = sql(
        stack.database_url,
        "SELECT actor, from_state::text, to_state::text, attempt FROM vidjobs.job_events"
        " WHERE job_id = %s ORDER BY event_id",
        job_id,
    )
    assert (worker, "running", "pending") in [e[:3] for e in events], events
    # Another replica takes it; the hand-back did not count as an attempt.
    wait_for(
        lambda: _state(stack, job_id)[0] == "running" and _state(stack, job_id)[2] != worker,
        60,
        "another worker runs the job",
    )
    assert _state(stack, job_id)[1] == 1
    stack.docker("start", container)


def test_a_sigkilled_workers_job_is_reclaimed(stack: Stack) -> None:
    # Let the previous test's 40 s job finish first so the queue holds this job alone.
    [job_id] = insert_jobs(stack.database_url, params={"sleep_s": 20}, tenant="deploy")
    worker, container = _running_on(stack, job_id)
    stack.docker("kill", "-s", "KILL", container)
    wait_for(
        lambda: _state(stack, job_id)[2] not in (worker, None), 90, "another worker reclaims it"
    )
    wait_for(lambda: _state(stack, job_id)[0] == "completed", 120, "the reclaimed job completes")
    state, attempts, by = _state(stack, job_id)
    assert (state, attempts) == ("completed", 2), (state, attempts, by)
    assert by != worker


def test_down_and_up_again_keeps_the_old_job_and_runs_a_new_one(
    stack: Stack, tmp_path: Path
) -> None:
    [(old,)] = sql(
        stack.database_url,
        "SELECT job_id::text FROM vidjobs.jobs WHERE pipeline = 'yolo_ocr' AND state = 'completed'",
    )
    before = _results(stack, old)
    stack.close_forwards()
    stack.compose("down", "--timeout", "10")
    _up(stack, workers=1)  # migrate runs again on the kept volume (issue 12, bug 1)
    [row] = stack.containers("migrate")
    assert (row["State"], row["ExitCode"]) == ("exited", 0), row
    assert _results(stack, old) == before
    video = tmp_path / "again.mp4"
    make_sample_video(video, seconds=2.0, seed=5)
    new = _submit_video(stack, video)
    _wait_completed(stack, new)
    assert len(_results(stack, new)["frames"]) == 5
