"""The Python client (``vidjobs.client``), sync and async, runs the whole lifecycle for real.

A real ``vidjobs api`` and ``vidjobs worker`` on the test's Postgres database and a fresh bucket
of the real S3 server; the client is used as its users would: submit a path, bytes and an open
file (with and without the optional fields), the automatic ``Idempotency-Key`` and its replay,
status, wait, results, the job list page by page and as one iterator, cancel, delete, and every
error as its typed exception carrying the parsed problem (401, 404, 409, 422). The retries are
``test_python_client_retries.py``.
"""

from __future__ import annotations

import hashlib
import io
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from tests.support.flaky_proxy import answer, flaky_proxy
from tests.support.keys import create_key
from tests.support.media import mp4_bytes
from tests.support.processes import Services, worker_args
from vidjobs.client import (
    ApiError,
    AsyncClient,
    Client,
    IdempotencyKeyReused,
    InvalidApiUrl,
    InvalidInput,
    JobFinished,
    JobNotFinished,
    NotFound,
    ResultsNotReady,
    Unauthorized,
    VidjobsError,
    WaitTimeout,
)
from vidjobs.schema.api import JobList, JobResults, JobStatus
from vidjobs.schema.job import JobState

pytestmark = [pytest.mark.integration, pytest.mark.acceptance]


@pytest.fixture
def services(noop_services: Services) -> Services:
    """The API and worker of ``noop_services`` (tests/acceptance/conftest.py)."""
    return noop_services


@pytest.fixture
def api_key(services: Services) -> str:
    """The API started, and a key of a fresh tenant (made outside any event loop)."""
    services.start_api()
    _, key = create_key(services.database_url, "aio")
    return key


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_sync_client_runs_the_whole_lifecycle(services: Services, tmp_path: Path) -> None:
    services.start_api()
    _, key = create_key(services.database_url, "py")
    with Client(services.base_url, key) as vj:
        assert vj.health().status == "ok"
        assert vj.ready().status == "ready"

        # Bytes, every optional field: a fresh Idempotency-Key of its own.
        video_a = mp4_bytes(8192, 1)
        a = vj.submit(video_a, pipeline="noop", sample_fps=2.0, min_confidence=0.5, priority=5)
        assert (a.status, a.replayed) == (JobState.PENDING, False)
        assert uuid.UUID(a.idempotency_key).version == 4
        assert a.status_url == f"/video/status/{a.job_id}"
        a_status = vj.status(a.job_id)
        assert isinstance(a_status, JobStatus)
        assert (a_status.pipeline, a_status.input_sha256) == ("noop", _sha(video_a))

        # The same submit with its key again: a replay of job a, not a second job.
        key_a = a.idempotency_key
        again = vj.submit(
            video_a,
            pipeline="noop",
            sample_fps=2.0,
            min_confidence=0.5,
            priority=5,
            idempotency_key=key_a,
        )
        assert (again.job_id, again.replayed) == (a.job_id, True)
        with pytest.raises(IdempotencyKeyReused) as reused:
            vj.submit(
                mp4_bytes(8192, 2),
                pipeline="noop",
                sample_fps=2.0,
                min_confidence=0.5,
                priority=5,
                idempotency_key=key_a,
            )
        assert reused.value.status == 409
        assert reused.value.slug == "idempotency-key-reused"
        assert "file content" in reused.value.problem.detail

        # A path, no optional field: the deployment's default pipeline.
        path = tmp_path / "clip.mp4"
        path.write_bytes(mp4_bytes(8192, 3))
        b = vj.submit(path)
        assert b.idempotency_key != a.idempotency_key
        assert vj.status(b.job_id).pipeline == "noop"

        # An open file, read from where it stands (the bytes before it are not sent).
        video_c = mp4_bytes(8192, 4)
        with io.BytesIO(b"not part of the video" + video_c) as fh:
            fh.seek(len(b"not part of the video"))
            c = vj.submit(fh, priority=-3)
        assert vj.status(c.job_id).input_sha256 == _sha(video_c)

        # A pending job cannot be deleted; cancelling it works, and again.
        with pytest.raises(JobNotFinished) as not_finished:
            vj.delete(c.job_id)
        assert not_finished.value.problem.job_status == JobState.PENDING
        cancelled = vj.cancel(c.job_id)
        assert cancelled.status == JobState.CANCELLED
        assert vj.cancel(c.job_id).status == JobState.CANCELLED

        # A job that never finishes within the wait: WaitTimeout with the last status.
        with pytest.raises(WaitTimeout) as slow:
            vj.wait(a.job_id, timeout=0.5, poll_interval=0.1)
        assert slow.value.last.status == JobState.PENDING

        # The list, one job per page, following next_cursor; the iterator reads the same.
        seen: list[uuid.UUID] = []
        page = vj.list_jobs(limit=1)
        while True:
            assert isinstance(page, JobList)
            assert len(page.jobs) == 1
            seen += [j.job_id for j in page.jobs]
            if page.next_cursor is None:
                break
            page = vj.list_jobs(limit=1, cursor=page.next_cursor)
        assert seen == [c.job_id, b.job_id, a.job_id]  # newest first
        assert [j.job_id for j in vj.iter_jobs(page_size=1)] == seen
        assert [j.job_id for j in vj.iter_jobs(status="cancelled")] == [c.job_id]
        assert [j.job_id for j in vj.iter_jobs(status=JobState.PENDING)] == [b.job_id, a.job_id]

        # A worker runs them: wait follows each to its end, reporting every status read. Its
        # reads are the API's long poll: the end is seen at once, not a poll_interval later.
        services.start_worker(*worker_args(concurrency=2))
        reads: list[JobStatus] = []
        done = vj.wait(a.job_id, timeout=120, poll_interval=30, on_status=reads.append)
        seen_after = time.time() - (done.finished_at or done.updated_at).timestamp()
        assert done.status == JobState.COMPLETED
        assert reads[0].status == JobState.PENDING  # the wait began before the worker ran it
        assert reads[-1] == done
        assert seen_after < 10, f"the end was seen {seen_after:.1f} s late (poll_interval 30)"
        assert vj.wait(b.job_id, timeout=60, poll_interval=0.1).status == JobState.COMPLETED
        res = vj.results(a.job_id)
        assert isinstance(res, JobResults)
        assert (res.job_id, res.results) == (a.job_id, {})  # noop stores no document
        with pytest.raises(ResultsNotReady) as not_ready:
            vj.results(c.job_id)
        assert not_ready.value.problem.job_status == JobState.CANCELLED
        with pytest.raises(JobFinished):
            vj.cancel(a.job_id)

        # Delete: then the job is gone (404, like an unknown one).
        assert vj.delete(a.job_id) is None
        with pytest.raises(NotFound) as gone:
            vj.status(a.job_id)
        assert (gone.value.status, gone.value.slug) == (404, "job-not-found")
        assert str(a.job_id) in str(gone.value)

        # Bad input: 422 with the field named, before anything is stored.
        with pytest.raises(InvalidInput) as bad_id:
            vj.status("not-a-job-id")
        assert [e.field for e in bad_id.value.problem.errors or []] == ["job_id"]
        with pytest.raises(InvalidInput) as bad_fps:
            vj.submit(mp4_bytes(4096, 5), sample_fps=1000)
        assert [e.field for e in bad_fps.value.problem.errors or []] == ["sample_fps"]
        assert [j.job_id for j in vj.iter_jobs()] == [c.job_id, b.job_id]

    # 401: a wrong key, and none at all; both still ApiError and VidjobsError.
    for wrong in ("vj_not-a-real-key", ""):
        with Client(services.base_url, wrong) as stranger, pytest.raises(Unauthorized) as denied:
            stranger.list_jobs()
        assert isinstance(denied.value, ApiError)
        assert isinstance(denied.value, VidjobsError)
        assert (denied.value.status, denied.value.slug) == (401, "unauthorized")


def test_client_reads_url_and_key_from_the_environment(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Client()`` with no arguments: VIDJOBS_API_URL and VIDJOBS_API_KEY, as the CLI reads."""
    services.start_api()
    _, key = create_key(services.database_url, "env")
    monkeypatch.setenv("VIDJOBS_API_URL", services.base_url + "/")
    monkeypatch.setenv("VIDJOBS_API_KEY", key)
    with Client() as vj:
        assert vj.api_url == services.base_url
        job = vj.submit(mp4_bytes(4096, 9))
        assert [j.job_id for j in vj.iter_jobs()] == [job.job_id]
    monkeypatch.setenv("VIDJOBS_API_KEY", key + "x")
    with Client() as vj, pytest.raises(Unauthorized):
        vj.status(job.job_id)
    with Client(api_key=key) as vj:  # an argument beats the variable
        assert vj.status(job.job_id).job_id == job.job_id
    for bad in ("http://256.1.1.1:80", "127.0.0.1:8000", "ftp://example.com", ""):
        with pytest.raises(InvalidApiUrl, match="invalid API URL"):
            Client(bad, key)


@pytest.mark.anyio
async def test_async_client_runs_the_whole_lifecycle(services: Services, api_key: str) -> None:
    key = api_key
    async with AsyncClient(services.base_url, key) as vj:
        assert (await vj.health()).status == "ok"
        assert (await vj.ready()).status == "ready"
        video = mp4_bytes(8192, 11)
        a = await vj.submit(video, pipeline="noop", sample_fps=2.0, min_confidence=0.4)
        assert not a.replayed
        replay = await vj.submit(
            video,
            pipeline="noop",
            sample_fps=2.0,
            min_confidence=0.4,
            idempotency_key=a.idempotency_key,
        )
        assert (replay.job_id, replay.replayed) == (a.job_id, True)
        with pytest.raises(IdempotencyKeyReused):
            await vj.submit(video, pipeline="noop", idempotency_key=a.idempotency_key)
        b = await vj.submit(io.BytesIO(mp4_bytes(8192, 12)))
        doomed = await vj.submit(mp4_bytes(8192, 13), priority=7)
        assert (await vj.cancel(doomed.job_id)).status == JobState.CANCELLED
        assert (await vj.status(a.job_id)).input_sha256 == _sha(video)

        page = await vj.list_jobs(limit=2)
        assert [j.job_id for j in page.jobs] == [doomed.job_id, b.job_id]
        assert page.next_cursor is not None
        rest = await vj.list_jobs(limit=2, cursor=page.next_cursor)
        assert ([j.job_id for j in rest.jobs], rest.next_cursor) == ([a.job_id], None)
        every = [j.job_id async for j in vj.iter_jobs(page_size=1)]
        assert every == [doomed.job_id, b.job_id, a.job_id]

        services.start_worker(*worker_args(concurrency=2))
        for job in (a, b):
            done = await vj.wait(job.job_id, timeout=120, poll_interval=30)
            assert done.status == JobState.COMPLETED
            assert time.time() - (done.finished_at or done.updated_at).timestamp() < 10
        assert (await vj.results(b.job_id)).results == {}
        with pytest.raises(ResultsNotReady):
            await vj.results(doomed.job_id)
        with pytest.raises(JobFinished):
            await vj.cancel(a.job_id)
        await vj.delete(a.job_id)
        with pytest.raises(NotFound):
            await vj.delete(a.job_id)
        with pytest.raises(InvalidInput) as bad:
            await vj.submit(mp4_bytes(4096, 14), priority=1000)
        assert [e.field for e in bad.value.problem.errors or []] == ["priority"]
    async with AsyncClient(services.base_url, "vj_nope") as stranger:
        with pytest.raises(Unauthorized):
            await stranger.status(a.job_id)


def test_wait_never_spins_on_an_api_without_long_poll() -> None:
    """An API that answers ``?wait=`` at once: the client sleeps the rest of each interval."""
    job = uuid.uuid4()
    now = datetime.now(UTC)
    pending = JobStatus(
        job_id=job,
        status=JobState.PENDING,
        pipeline="noop",
        progress=0.0,
        frames_done=0,
        frames_total=None,
        attempts=0,
        created_at=now,
        updated_at=now,
        started_at=None,
        finished_at=None,
        error=None,
    )
    body = msgspec.to_builtins(pending)
    with (
        flaky_proxy(None, *[answer(200, body=body)] * 50) as proxy,
        Client(proxy.url, "vj_k") as vj,
        pytest.raises(WaitTimeout) as timed_out,
    ):
        vj.wait(job, timeout=1.5, poll_interval=0.5)
    assert timed_out.value.last == pending
    paths = [a.path for a in proxy.arrivals]
    assert 3 <= len(paths) <= 5, paths  # one read, then one per 0.5 s interval
    assert paths[0] == f"/video/status/{job}"
    assert all(p == f"/video/status/{job}?wait=0.500" for p in paths[1:-1]), paths
