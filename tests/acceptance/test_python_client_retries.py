"""The client's retries, over real sockets: a loopback server misbehaves, a real API stands behind.

:func:`~tests.support.flaky_proxy.flaky_proxy` answers the client's first requests with 503s and
429s carrying ``Retry-After``, drops connections or loses the API's answer on the way back, then
forwards to a real ``vidjobs api`` (Postgres and the blob store real). What the client sent is
read off the proxy's record: when each attempt arrived (so the waits are measured, not assumed),
with which ``Idempotency-Key``, with which body. Bounds on time are hang guards with slack for a
loaded machine, except the lower bounds of the waits: the client must never retry before the
``Retry-After`` it was given.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
import uuid

import pytest

from tests.support.flaky_proxy import FlakyProxy, answer, drop, flaky_proxy, forward, lose
from tests.support.keys import create_key
from tests.support.media import mp4_bytes
from tests.support.processes import Services
from vidjobs.client import (
    ApiUnreachable,
    AsyncClient,
    Client,
    RateLimited,
    RetryPolicy,
    Submission,
    Unavailable,
    Video,
)
from vidjobs.devstack.embedded import free_port

pytestmark = [pytest.mark.integration, pytest.mark.acceptance]

HEALTH = {"status": "ok"}


@pytest.fixture
def api(live: Services) -> tuple[str, str]:
    """A real API (no worker: the jobs stay pending) and a key: ``(base_url, key)``."""
    live.start_api()
    _, key = create_key(live.database_url, "retry")
    return live.base_url, key


def _submit(kind: str, url: str, key: str, video: Video, retry: RetryPolicy) -> Submission:
    """One ``submit`` of a noop job through the sync or the async client."""
    if kind == "sync":
        with Client(url, key, retry=retry) as vj:
            return vj.submit(video, pipeline="noop")

    async def submit() -> Submission:
        async with AsyncClient(url, key, retry=retry) as vj:
            return await vj.submit(video, pipeline="noop")

    return asyncio.run(submit())


def _one_key(proxy: FlakyProxy) -> str:
    """The ``Idempotency-Key`` every attempt carried (fails if two differ)."""
    keys = {a.headers.get("idempotency-key") for a in proxy.arrivals}
    assert len(keys) == 1, keys
    (key,) = keys
    assert key is not None
    return key


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_submit_waits_out_503_and_429_as_told_and_keeps_its_key(
    api: tuple[str, str], kind: str
) -> None:
    base, key = api
    video = mp4_bytes(64 * 1024, 1)
    script = (answer(503, retry_after="1"), answer(429, retry_after="2"), forward)
    with flaky_proxy(base, *script) as proxy:
        job = _submit(kind, proxy.url, key, video, RetryPolicy(attempts=4, budget_s=30))

    assert [a.method for a in proxy.arrivals] == ["POST"] * 3
    assert _one_key(proxy) == job.idempotency_key
    assert uuid.UUID(job.idempotency_key).version == 4
    assert all(video in a.body for a in proxy.arrivals), "every attempt sent the whole video"
    assert all(a.headers.get("content-length") for a in proxy.arrivals)
    first_wait, second_wait = proxy.gaps()
    assert 1.0 <= first_wait < 1.0 + 3.0, "waited Retry-After: 1 of the 503"
    assert 2.0 <= second_wait < 2.0 + 3.0, "waited Retry-After: 2 of the 429"
    assert not job.replayed
    with Client(base, key) as vj:  # the API has the job once, with the video sent
        assert [j.job_id for j in vj.iter_jobs()] == [job.job_id]
        assert vj.status(job.job_id).input_sha256 == hashlib.sha256(video).hexdigest()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_lost_answer_is_replayed_not_a_second_job(api: tuple[str, str], kind: str) -> None:
    """The API creates the job, the answer never arrives; the retry gets that job back (200)."""
    base, key = api
    video = mp4_bytes(16 * 1024, 2)
    with flaky_proxy(base, lose, forward) as proxy:
        job = _submit(kind, proxy.url, key, video, RetryPolicy(attempts=3))

    assert len(proxy.arrivals) == 2
    assert _one_key(proxy) == job.idempotency_key
    assert job.replayed
    with Client(base, key) as vj:
        assert [j.job_id for j in vj.iter_jobs()] == [job.job_id]


def test_gives_up_after_its_attempts_with_a_clear_error() -> None:
    job = uuid.uuid4()
    started = time.monotonic()
    with (
        flaky_proxy(None, *[answer(503, retry_after="1")] * 5) as proxy,
        Client(proxy.url, "vj_k", retry=RetryPolicy(attempts=3)) as vj,
        pytest.raises(Unavailable) as refused,
    ):
        vj.status(job)
    took = time.monotonic() - started
    assert len(proxy.arrivals) == refused.value.attempts == 3
    assert 2.0 <= took < 2.0 + 5.0
    assert refused.value.status == 503
    assert refused.value.retry_after == 1.0
    assert refused.value.problem.detail == "a scripted 503 from the flaky proxy"
    assert "HTTP 503: a scripted 503" in str(refused.value)
    assert "gave up after 3 attempts" in str(refused.value)


def test_gives_up_when_the_next_wait_would_pass_the_budget() -> None:
    """A Retry-After past the budget is not waited at all; the budget also ends a run of them."""
    started = time.monotonic()
    with (
        flaky_proxy(None, answer(429, retry_after="120")) as proxy,
        Client(proxy.url, "vj_k", retry=RetryPolicy(budget_s=60)) as vj,
        pytest.raises(RateLimited) as limited,
    ):
        vj.list_jobs()
    took = time.monotonic() - started
    assert (len(proxy.arrivals), limited.value.attempts) == (1, 1)
    assert took < 5.0, "did not sit out a 120 s Retry-After"
    assert limited.value.retry_after == 120.0
    assert "would pass the 60 s budget" in str(limited.value)

    with (
        flaky_proxy(None, *[answer(503, retry_after="1")] * 10) as proxy,
        Client(proxy.url, "vj_k", retry=RetryPolicy(attempts=10, budget_s=2.5)) as vj,
        pytest.raises(Unavailable) as refused,
    ):
        vj.cancel(uuid.uuid4())
    # Sent at about 0 s, 1 s and 2 s; the next would start at 3 s, past the 2.5 s budget.
    assert len(proxy.arrivals) == refused.value.attempts == 3
    assert "gave up after 3 attempts" in str(refused.value)
    assert "budget" in str(refused.value)


def test_readiness_is_asked_once() -> None:
    """``ready()`` is a probe: its 503 is the answer, not something to wait out."""
    with (
        flaky_proxy(None, answer(503, retry_after="1")) as proxy,
        Client(proxy.url) as vj,
        pytest.raises(Unavailable) as down,
    ):
        vj.ready()
    assert (len(proxy.arrivals), down.value.attempts) == (1, 1)


def test_connect_errors_are_retried_until_the_api_listens() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    stop = threading.Event()
    late: list[FlakyProxy] = []

    def listen_late() -> None:
        time.sleep(0.8)
        with flaky_proxy(None, answer(200, body=HEALTH), port=port) as proxy:
            late.append(proxy)
            stop.wait(60)

    thread = threading.Thread(target=listen_late, daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        policy = RetryPolicy(attempts=10, backoff_s=0.2, backoff_max_s=0.4)
        with Client(url, retry=policy) as vj:
            assert vj.health().status == "ok"
        assert time.monotonic() - started >= 0.8
        assert len(late[0].arrivals) == 1  # the refused attempts never reached a server
    finally:
        stop.set()
        thread.join(10)

    nowhere = f"http://127.0.0.1:{free_port()}"
    with (
        Client(nowhere, retry=RetryPolicy(attempts=3, backoff_s=0.1)) as vj,
        pytest.raises(ApiUnreachable) as unreachable,
    ):
        vj.health()
    assert unreachable.value.attempts == 3
    assert unreachable.value.problem is None
    assert str(unreachable.value).startswith(f"cannot reach the API at {nowhere}: ")
    assert "gave up after 3 attempts" in str(unreachable.value)


def test_only_requests_safe_to_repeat_are_sent_again_after_a_lost_answer() -> None:
    """A read is sent again after a dropped connection; a delete is not (its repeat is a 404)."""
    with flaky_proxy(None, drop, answer(200, body=HEALTH)) as proxy, Client(proxy.url) as vj:
        assert vj.health().status == "ok"
    assert len(proxy.arrivals) == 2

    with (
        flaky_proxy(None, drop, answer(204)) as proxy,
        Client(proxy.url, "vj_k") as vj,
        pytest.raises(ApiUnreachable) as lost,
    ):
        vj.delete(uuid.uuid4())
    assert len(proxy.arrivals) == lost.value.attempts == 1
    assert "not retried: the request may have been carried out" in str(lost.value)


def test_an_upload_that_cannot_be_read_again_is_not_retried() -> None:
    """From a pipe: the first attempt consumed it, so a 503 ends the call (saying why)."""
    video = mp4_bytes(16 * 1024, 3)
    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "wb") as w:
        w.write(video)  # fits the pipe's buffer; closed, so the reader sees its end
    with (
        os.fdopen(read_end, "rb") as pipe,
        flaky_proxy(None, answer(503, retry_after="1")) as proxy,
        Client(proxy.url, "vj_k") as vj,
        pytest.raises(Unavailable) as refused,
    ):
        vj.submit(pipe, pipeline="noop")
    assert len(proxy.arrivals) == refused.value.attempts == 1
    assert video in proxy.arrivals[0].body  # sent once, whole (chunked: no length known)
    assert proxy.arrivals[0].headers.get("transfer-encoding") == "chunked"
    assert "the upload cannot be read again" in str(refused.value)
