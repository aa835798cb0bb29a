"""Signed webhooks on a real Postgres and a real loopback receiver, the dispatcher in-process.

The outbox row commits with the state change (and not without it); the receiver verifies
every delivery with the ``standardwebhooks`` package; a receiver that is down gets the event
once it is back, with the retry schedule in the attempt log; 410 disables an endpoint; a
rotation signs with both secrets; retries end after ``retry_for``; a wrong secret fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import msgspec
import psycopg
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.support.queue import submit
from tests.support.webhook_receiver import WebhookReceiver, webhook_receiver
from vidjobs.db.jobs import job_cancel, job_get
from vidjobs.db.leases import job_claim, job_complete, job_fail
from vidjobs.db.pool import open_pool
from vidjobs.db.settings import DatabaseSettings
from vidjobs.db.webhooks import (
    attempt_list,
    delivery_list,
    endpoint_add,
    endpoint_list,
    secret_create,
    secret_rotate,
)
from vidjobs.schema import Job
from vidjobs.schema.api import job_status
from vidjobs.webhooks.dispatcher import Dispatcher
from vidjobs.webhooks.secrets import Sealer, generate_key, new_secret
from vidjobs.webhooks.settings import DispatchSettings, TargetPolicy

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

Conn = psycopg.AsyncConnection[Any]
KEYS = generate_key()
_IDS = itertools.count(1)
LOOPBACK = TargetPolicy(allow_http=True, allow_networks="127.0.0.0/8")


def _settings(**kw: Any) -> DispatchSettings:
    base: dict[str, Any] = {
        "secret_keys": KEYS, "targets": LOOPBACK, "retry_base_s": 0.2, "retry_max_delay_s": 1.0,
        "poll_interval_s": 0.05, "connect_timeout_s": 1.0, "timeout_s": 2.0,
    }  # fmt: skip
    return DispatchSettings(**{**base, **kw})


async def _secret(conn: Conn, tenant: str = "acme") -> str:
    secret = new_secret()
    assert await secret_create(conn, tenant, Sealer(KEYS).seal(secret)) is not None
    return secret


async def _finish(conn: Conn, tenant: str = "acme", *, how: str = "complete") -> Job:
    """A job of ``tenant`` taken to a terminal state; returns it as it ended."""
    job = await submit(conn, tenant)
    if how == "cancel":
        await job_cancel(conn, job.job_id, tenant=None)
    else:
        (held,) = await job_claim(
            conn, worker_id="w1", batch_size=1, lease_seconds=30, now=job.created_at
        )
        assert held.lease_token is not None
        if how == "complete":
            await job_complete(conn, held.job_id, held.lease_token, output_key="out")
        else:
            await job_fail(
                conn, held.job_id, held.lease_token, error_kind="decode_error",
                error_message="not a video", permanent=True,
            )  # fmt: skip
    ended = await job_get(conn, job.job_id)
    assert ended is not None
    assert ended.is_terminal
    return ended


@contextlib.asynccontextmanager
async def _dispatching(database_url: str, settings: DispatchSettings) -> AsyncIterator[Dispatcher]:
    pool = await open_pool(DatabaseSettings(url=database_url, pool_max_size=4))
    dispatcher = Dispatcher(
        pool, settings, Sealer(settings.secret_keys), dispatcher_id=f"d{next(_IDS)}"
    )
    task = asyncio.create_task(dispatcher.run())
    try:
        yield dispatcher
    finally:
        dispatcher.stop()
        await task
        await pool.close()


async def _until(check: Callable[[], Any], within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if value := await check() if asyncio.iscoroutinefunction(check) else check():
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {within}s: {what}")


async def test_outbox_row_commits_with_the_state_change_and_not_without(
    conn: Conn, database_url: str
) -> None:
    await endpoint_add(conn, "acme", "http://127.0.0.1:9/hooks")
    job = await submit(conn, "acme")
    (held,) = await job_claim(
        conn, worker_id="w", batch_size=1, lease_seconds=30, now=job.created_at
    )
    assert held.lease_token is not None
    assert await delivery_list(conn, job_id=job.job_id) == []  # a claim is no event
    # A completion that rolls back leaves no outbox row ...
    async with await psycopg.AsyncConnection.connect(database_url) as tx:
        await job_complete(tx, held.job_id, held.lease_token, output_key="out")
        await tx.rollback()
    assert await delivery_list(conn, job_id=job.job_id) == []
    # ... and one that commits leaves exactly one, due now, with the job as it ended.
    await job_complete(conn, held.job_id, held.lease_token, output_key="out")
    (row,) = await delivery_list(conn, job_id=job.job_id)
    assert (row.event_type, row.state, row.attempts, row.url) == (
        "job.completed", "pending", 0, "http://127.0.0.1:9/hooks",
    )  # fmt: skip
    assert row.webhook_id == "msg_" + job.job_id.hex
    ((snapshot,),) = await (
        await conn.execute(
            "SELECT job FROM vidjobs.webhook_deliveries WHERE job_id = %s", (job.job_id,)
        )
    ).fetchall()
    assert snapshot["job_id"] == str(job.job_id)
    assert snapshot["state"] == "completed"
    assert "idempotency_key" not in snapshot, "the read-only role may not see it"
    assert "lease_token" not in snapshot


async def test_no_endpoint_and_no_callback_writes_nothing(conn: Conn) -> None:
    job = await _finish(conn, "quiet")
    assert await delivery_list(conn, job_id=job.job_id) == []


async def test_each_terminal_state_is_delivered_once_verified_with_the_status_body(
    conn: Conn, database_url: str
) -> None:
    secret = await _secret(conn)
    with webhook_receiver([secret]) as rx:
        await endpoint_add(conn, "acme", rx.url)
        ended = {how: await _finish(conn, how=how) for how in ("complete", "fail", "cancel")}
        async with _dispatching(database_url, _settings()):
            await _until(lambda: len(rx.unique_events()) == 3, 10, "three events delivered")
            await asyncio.sleep(0.3)  # nothing more arrives
    assert len(rx.snapshot()) == 3, "exactly one request per event"
    events = rx.unique_events()
    for how, job in ended.items():
        event = events["msg_" + job.job_id.hex]
        kind = {"complete": "job.completed", "fail": "job.failed", "cancel": "job.cancelled"}[how]
        assert event["type"] == kind
        status = msgspec.json.decode(msgspec.json.encode(job_status(job)))
        assert event["data"] == status, "data is the status body as the job ended"
    failed = events["msg_" + ended["fail"].job_id.hex]["data"]
    assert failed["error"] == {"kind": "decode_error", "message": "not a video"}
    (r, *_) = rx.snapshot()
    assert r.headers["content-type"] == "application/json"
    assert r.headers["webhook-signature"].startswith("v1,")
    log = await delivery_list(conn, tenant="acme")
    assert {(d.state, d.attempts, d.last_status) for d in log} == {("delivered", 1, 200)}


async def test_receiver_down_then_back_gets_it_with_the_schedule_in_the_log(
    conn: Conn, database_url: str
) -> None:
    secret = await _secret(conn)
    rx = WebhookReceiver([secret])
    await endpoint_add(conn, "acme", rx.url)  # registered, but nothing listens yet
    job = await _finish(conn)
    async with _dispatching(database_url, _settings()):

        async def attempts() -> int:
            (d,) = await delivery_list(conn, job_id=job.job_id)
            return d.attempts if d.attempts >= 4 else 0

        await _until(attempts, 15, "four refused attempts")
        rx.start()
        try:
            await _until(rx.unique_events, 10, "delivered once the receiver is back")
        finally:
            rx.stop()
    (d,) = await delivery_list(conn, job_id=job.job_id)
    assert d.state == "delivered"
    assert d.last_status == 200
    tries = await attempt_list(conn, [d.delivery_id])
    assert [t.attempt for t in tries] == list(range(1, d.attempts + 1))
    assert all("ConnectError" in (t.error or "") for t in tries[:-1])
    assert tries[-1].status == 200
    assert tries[-1].response_prefix == "ok"
    # Exponential backoff with equal jitter: gap n lies in [b/2, b], b = min(1.0, 0.2 * 2^(n-1)).
    starts = [t.started_at for t in tries]
    for n, (a, b) in enumerate(itertools.pairwise(starts), 1):
        if n == len(starts) - 1:
            break  # the last gap ended early: the dispatcher was not waiting for it
        gap = (b - a).total_seconds()
        bound = min(1.0, 0.2 * 2 ** (n - 1))
        assert bound / 2 - 0.05 <= gap <= bound + 0.5, (n, gap)


async def test_a_flaky_receiver_gets_each_event_exactly_once_after_dedup(
    conn: Conn, database_url: str
) -> None:
    secret = await _secret(conn)
    with webhook_receiver([secret], respond=lambda n: 500 if n % 2 == 0 else 200) as rx:
        await endpoint_add(conn, "acme", rx.url)
        jobs = [await _finish(conn) for _ in range(10)]
        async with _dispatching(database_url, _settings(retry_base_s=0.05)):
            await _until(lambda: len(rx.unique_events()) == 10, 20, "every event delivered")
    assert set(rx.unique_events()) == {"msg_" + j.job_id.hex for j in jobs}
    assert len(rx.snapshot()) > 10, "some were retried"
    assert all(r.error is None for r in rx.snapshot()), "every retry was signed"


async def test_two_dispatchers_share_the_outbox_without_sending_twice(
    conn: Conn, database_url: str
) -> None:
    secret = await _secret(conn)
    with webhook_receiver([secret]) as rx:
        await endpoint_add(conn, "acme", rx.url)
        jobs = [await _finish(conn) for _ in range(40)]
        settings = _settings(batch_size=3, concurrency=4)
        async with _dispatching(database_url, settings), _dispatching(database_url, settings):
            await _until(lambda: len(rx.unique_events()) == 40, 20, "every event delivered")
            await asyncio.sleep(0.3)
    assert len(rx.snapshot()) == 40, "SKIP LOCKED: no event was sent by both"
    assert set(rx.unique_events()) == {"msg_" + j.job_id.hex for j in jobs}


async def test_410_disables_the_endpoint_and_fails_its_other_deliveries(
    conn: Conn, database_url: str
) -> None:
    secret = await _secret(conn)
    with webhook_receiver([secret], respond=lambda n: 410) as rx:
        endpoint, _ = await endpoint_add(conn, "acme", rx.url)
        jobs = [await _finish(conn) for _ in range(3)]
        async with _dispatching(database_url, _settings(concurrency=1, batch_size=1)):

            async def settled() -> bool:
                log = await delivery_list(conn, tenant="acme")
                return all(d.state == "failed" for d in log)

            await _until(settled, 10, "every delivery failed")
    (gone,) = await endpoint_list(conn, "acme", include_disabled=True)
    assert gone.disabled_at is not None
    assert "410" in (gone.disabled_reason or "")
    assert await endpoint_list(conn, "acme") == []
    assert len(rx.snapshot()) == 1, "one 410 is enough"
    log = await delivery_list(conn, tenant="acme")
    assert len(log) == len(jobs)
    assert sum(d.attempts for d in log) == 1
    (sent,) = [d for d in log if d.attempts == 1]
    assert sent.last_status == 410
    assert {d.last_error for d in log if d.attempts == 0} == {
        f"endpoint disabled: answered 410 Gone to delivery {sent.delivery_id}"
    }
    # A job finishing now writes nothing for the disabled endpoint.
    later = await _finish(conn)
    assert await delivery_list(conn, job_id=later.job_id) == []
    assert endpoint.endpoint_id == gone.endpoint_id


async def test_rotation_signs_with_both_secrets_until_the_grace_ends(
    conn: Conn, database_url: str
) -> None:
    old = await _secret(conn)
    new = new_secret()
    await secret_rotate(conn, "acme", Sealer(KEYS).seal(new), grace=timedelta(hours=1))
    with webhook_receiver([old]) as rx_old, webhook_receiver([new]) as rx_new:
        await endpoint_add(conn, "acme", rx_old.url)
        await endpoint_add(conn, "acme", rx_new.url)
        await _finish(conn)
        async with _dispatching(database_url, _settings()):
            await _until(
                lambda: rx_old.unique_events() and rx_new.unique_events(), 10, "both verified"
            )
    (signed,) = rx_new.snapshot()
    assert len(signed.headers["webhook-signature"].split(" ")) == 2
    # Once the grace period is over, only the new secret signs.
    await conn.execute(
        "UPDATE vidjobs.webhook_secrets SET expires_at = now() WHERE expires_at IS NOT NULL"
    )
    with webhook_receiver([old]) as rx_old2, webhook_receiver([new]) as rx_new2:
        await endpoint_add(conn, "acme", rx_old2.url)
        await endpoint_add(conn, "acme", rx_new2.url)
        await _finish(conn)
        async with _dispatching(database_url, _settings()):
            await _until(rx_new2.unique_events, 10, "verified with the new secret")
            await _until(rx_old2.snapshot, 10, "the old secret's receiver asked too")
    assert rx_old2.unique_events() == {}
    (refused,) = rx_old2.snapshot()
    assert refused.error == "No matching signature found"
    assert len(rx_new2.snapshot()[0].headers["webhook-signature"].split(" ")) == 1


async def test_a_wrong_secret_fails_verification(conn: Conn, database_url: str) -> None:
    await _secret(conn)
    with webhook_receiver([new_secret()]) as rx:
        await endpoint_add(conn, "acme", rx.url)
        await _finish(conn)
        async with _dispatching(database_url, _settings()):
            await _until(rx.snapshot, 10, "a delivery")
    (r,) = rx.snapshot()[:1]
    assert r.payload is None
    assert r.error == "No matching signature found"
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(r.body, r.headers)


async def test_retries_end_after_retry_for_then_the_delivery_is_failed(
    conn: Conn, database_url: str
) -> None:
    secret = await _secret(conn)
    with webhook_receiver([secret], respond=lambda n: 503) as rx:
        await endpoint_add(conn, "acme", rx.url)
        job = await _finish(conn)
        settings = _settings(retry_base_s=0.2, retry_for_s=1.5)
        async with _dispatching(database_url, settings):

            async def failed() -> bool:
                (d,) = await delivery_list(conn, job_id=job.job_id)
                return d.state == "failed"

            await _until(failed, 10, "failed after retry_for")
    (d,) = await delivery_list(conn, job_id=job.job_id)
    assert d.last_status == 503
    assert d.last_error == "answered 503 Service Unavailable"
    tries = await attempt_list(conn, [d.delivery_id])
    span = (tries[-1].started_at - d.created_at).total_seconds()
    assert span >= 1.5, "the last attempt is made at the end of retry_for, not before"
    assert len(rx.snapshot()) == d.attempts


async def test_a_tenant_without_secret_is_not_sent_and_the_log_says_why(
    conn: Conn, database_url: str
) -> None:
    with webhook_receiver([]) as rx:
        await endpoint_add(conn, "nosecret", rx.url)
        job = await _finish(conn, "nosecret")
        async with _dispatching(database_url, _settings()):

            async def tried() -> Any:
                (d,) = await delivery_list(conn, job_id=job.job_id)
                return d.attempts > 0 and d

            d = await _until(tried, 10, "an attempt")
    assert rx.snapshot() == []
    assert "has no signing secret" in (d.last_error or "")
    assert d.state == "pending", "retried: the operator may still make one"


async def test_the_dispatcher_refuses_a_target_the_policy_refuses(
    conn: Conn, database_url: str
) -> None:
    secret = await _secret(conn)
    with webhook_receiver([secret]) as rx:
        await endpoint_add(conn, "acme", rx.url)  # loopback: the default policy refuses it
        job = await _finish(conn)
        async with _dispatching(database_url, _settings(targets=TargetPolicy(allow_http=True))):

            async def tried() -> Any:
                (d,) = await delivery_list(conn, job_id=job.job_id)
                return d.attempts > 0 and d

            d = await _until(tried, 10, "an attempt")
    assert rx.snapshot() == [], "nothing reached the loopback receiver"
    assert "loopback" in (d.last_error or ""), d.last_error


async def test_an_unsendable_row_is_logged_and_retried_not_lost_in_a_loop(
    conn: Conn, database_url: str
) -> None:
    secret = await _secret(conn)
    with webhook_receiver([secret]) as rx:
        await endpoint_add(conn, "acme", rx.url)
        job = await _finish(conn)
        await conn.execute(  # a snapshot no status body can be made from (a hand edit)
            "UPDATE vidjobs.webhook_deliveries SET job = '{}' WHERE job_id = %s", (job.job_id,)
        )
        async with _dispatching(database_url, _settings()):

            async def tried() -> Any:
                (d,) = await delivery_list(conn, job_id=job.job_id)
                return d.attempts > 0 and d.last_error and d

            d = await _until(tried, 10, "an attempt recorded")
    assert rx.snapshot() == []
    assert "dispatcher error" in d.last_error
    assert d.state == "pending"


@contextlib.asynccontextmanager
async def _stalling_receiver(drip: bool) -> AsyncIterator[tuple[str, list[float]]]:
    """A receiver on loopback that never finishes an answer: it sends a status line and then a
    byte every 0.3 s (``drip``: no read ever waits long), or reads the request and says
    nothing. Yields its URL and the times requests arrived."""
    arrivals: list[float] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        arrivals.append(time.monotonic())
        # Cancelled when the server closes at the end of the test: that ends the handler.
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            await reader.readuntil(b"\r\n\r\n")
            if drip:
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n")
                for _ in range(400):
                    writer.write(b"x")
                    await writer.drain()
                    await asyncio.sleep(0.3)
            else:
                await asyncio.sleep(120)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/hooks", arrivals
    finally:
        server.close()


async def test_an_answer_that_never_ends_is_cut_at_the_attempt_limit(
    conn: Conn, database_url: str
) -> None:
    await _secret(conn)
    async with _stalling_receiver(drip=True) as (url, arrivals):
        await endpoint_add(conn, "acme", url)
        job = await _finish(conn)
        settings = _settings(
            timeout_s=1.0, connect_timeout_s=0.5, retry_base_s=30.0, retry_max_delay_s=60.0
        )
        assert settings.attempt_limit_s == 2.5
        async with _dispatching(database_url, settings):

            async def recorded() -> Any:
                (d,) = await delivery_list(conn, job_id=job.job_id)
                return d.last_error and d

            d = await _until(recorded, 10, "the attempt recorded")
            await asyncio.sleep(1.0)
    assert d.last_error == "timed out: no whole answer within 2.5 s"
    assert len(arrivals) == 1, "one request: the attempt ended inside its lease, no second copy"
    (attempt,) = await attempt_list(conn, [d.delivery_id])
    assert 2400 <= attempt.duration_ms < settings.lease_s * 1000


async def test_a_tenant_whose_receiver_hangs_does_not_hold_up_the_others(
    conn: Conn, database_url: str
) -> None:
    await _secret(conn, "slow")
    good = await _secret(conn, "quick")
    async with _stalling_receiver(drip=False) as (hang, arrivals):
        with webhook_receiver([good]) as rx:
            await endpoint_add(conn, "slow", hang)
            await endpoint_add(conn, "quick", rx.url)
            for _ in range(20):
                await _finish(conn, "slow")
            await _finish(conn, "quick")
            settings = _settings(concurrency=4, tenant_concurrency=2, timeout_s=5.0)
            started = time.monotonic()
            async with _dispatching(database_url, settings):
                await _until(rx.unique_events, 10, "the quick tenant's event")
                waited = time.monotonic() - started
                await asyncio.sleep(0.5)
    assert waited < 3.0, "not behind the hanging tenant's 20 deliveries of up to 5 s each"
    assert len(arrivals) == 2, "the hanging tenant held at most its 2 slots"


async def test_a_secret_sealed_under_a_dropped_key_does_not_stop_the_others(
    conn: Conn, database_url: str
) -> None:
    old = new_secret()
    await secret_create(conn, "acme", Sealer(generate_key()).seal(old))  # another key
    new = new_secret()
    await secret_rotate(conn, "acme", Sealer(KEYS).seal(new), grace=timedelta(hours=1))
    with webhook_receiver([new]) as rx:
        await endpoint_add(conn, "acme", rx.url)
        await _finish(conn)
        async with _dispatching(database_url, _settings()):
            await _until(rx.unique_events, 10, "signed with the secret that opens")
    (r,) = rx.snapshot()
    assert len(r.headers["webhook-signature"].split(" ")) == 1


async def test_a_job_failed_for_good_by_a_claim_after_its_lease_expired_is_an_event(
    conn: Conn,
) -> None:
    await endpoint_add(conn, "acme", "https://example.com/hooks")
    job = await submit(conn, "acme", max_attempts=1)
    (held,) = await job_claim(
        conn, worker_id="w1", batch_size=1, lease_seconds=30, now=job.created_at
    )
    assert held.lease_token is not None
    # w1 dies; a later claim finds the lease expired on the last attempt and fails the job.
    await job_claim(
        conn, worker_id="w2", batch_size=1, lease_seconds=30,
        now=job.created_at + timedelta(seconds=60),
    )  # fmt: skip
    ended = await job_get(conn, job.job_id)
    assert ended is not None
    assert (ended.state, ended.error_kind) == ("failed", "lease_expired")
    (d,) = await delivery_list(conn, job_id=job.job_id)
    assert d.event_type == "job.failed"
