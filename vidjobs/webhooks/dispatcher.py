"""The dispatcher: drains the webhook outbox, one signed POST per attempt, at least once.

Each loop claims the due deliveries (``db.webhooks.delivery_claim``: SKIP LOCKED, so any number
of dispatchers share the outbox; the claim leases each row by pushing its ``next_attempt_at``
past the longest an attempt can take), sends each one concurrently (up to ``concurrency``), and
records the attempt (fenced by its number). A dispatcher that dies mid-attempt leaves the row
due again once the lease ends, and another one sends it: receivers see the same ``webhook-id``
and deduplicate. It wakes when poked (a worker pokes its own dispatcher after it finishes
jobs), when a delivery ends (a free slot) or every ``poll_interval_s`` (retries, cancels made by
the API, other workers' completions).

Every request: ``POST`` of the event JSON (``{"type", "timestamp", "data"}``, ``data`` the job's
status body), headers ``webhook-id``, ``webhook-timestamp``, ``webhook-signature`` (Standard
Webhooks), through :class:`GuardedTransport` (the SSRF guard at connect time), no redirects,
short timeouts, at most 256 bytes of the answer read and kept.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import socket
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
from psycopg_pool import AsyncConnectionPool

from vidjobs import __version__
from vidjobs.db.errors import DatabaseUnavailable
from vidjobs.db.pool import connection
from vidjobs.db.webhooks import (
    ClaimedDelivery,
    Outcome,
    RetryPolicy,
    delivery_claim,
    delivery_record,
    snapshot_job,
)
from vidjobs.schema.api import job_status
from vidjobs.webhooks.secrets import Sealer, sign
from vidjobs.webhooks.settings import DispatchSettings
from vidjobs.webhooks.targets import GuardedTransport, TargetRefused, check_url

__all__ = ["RESPONSE_PREFIX_BYTES", "Dispatcher", "event_body"]

log = logging.getLogger(__name__)

RESPONSE_PREFIX_BYTES = 256
"""Most bytes of a receiver's answer read and kept in the attempt log."""

_USER_AGENT = f"vidjobs-webhooks/{__version__}"


def event_body(delivery: ClaimedDelivery) -> bytes:
    """The event as sent: the same bytes on every attempt of a delivery."""
    event = {
        "type": delivery.event_type,
        "timestamp": delivery.occurred_at,
        "data": job_status(snapshot_job(delivery.job)),
    }
    return msgspec.json.encode(event)


class Dispatcher:
    """Delivers the outbox until :meth:`stop`; see the module docstring.

    Args:
        pool: connections for claims and records (one at a time per statement).
        settings: timeouts, retries, concurrency, the target policy.
        sealer: opens the tenants' sealed secrets (``VIDJOBS_WEBHOOK_SECRET_KEYS``).
        dispatcher_id: recorded on every attempt (default: the settings', or hostname-pid).
        client: the HTTP client (default: one on :class:`GuardedTransport`, no redirects).
    """

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        settings: DispatchSettings,
        sealer: Sealer,
        *,
        dispatcher_id: str | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._pool = pool
        self._settings = settings
        self._sealer = sealer
        self.dispatcher_id = (
            dispatcher_id or settings.dispatcher_id or f"{socket.gethostname()}-{os.getpid()}"
        )
        self._retry = RetryPolicy(
            retry_base_s=settings.retry_base_s,
            retry_max_delay_s=settings.retry_max_delay_s,
            retry_for_s=settings.retry_for_s,
        )
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(
            transport=GuardedTransport(settings.targets, max_connections=settings.concurrency),
            timeout=httpx.Timeout(settings.timeout_s, connect=settings.connect_timeout_s),
            follow_redirects=False,
            trust_env=False,
        )
        self._wake = asyncio.Event()
        self._stopping = False
        self._inflight: set[asyncio.Task[None]] = set()
        self._tenant_of: dict[asyncio.Task[None], str] = {}
        self._by_tenant: collections.Counter[str] = collections.Counter()
        self.attempts = 0
        self.delivered = 0

    def poke(self) -> None:
        """Look for due deliveries now (a worker calls it when it has finished jobs)."""
        self._wake.set()

    def stop(self) -> None:
        """Claim nothing more; :meth:`run` returns once the attempts in flight have ended."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """Deliver until :meth:`stop`; attempts still in flight then get the request timeout."""
        failures = 0
        try:
            while not self._stopping:
                free = self._settings.concurrency - len(self._inflight)
                asked = min(free, self._settings.batch_size)
                claimed: list[ClaimedDelivery] = []
                if asked > 0:
                    try:
                        async with connection(self._pool) as conn:
                            claimed = await delivery_claim(
                                conn,
                                limit=asked,
                                lease_s=self._settings.lease_s,
                                tenant_cap=self._settings.tenant_concurrency,
                                in_flight=self._by_tenant,
                            )
                        failures = 0
                    except DatabaseUnavailable as exc:
                        failures += 1
                        log.warning("webhook dispatcher: claim failed (%s); retrying", exc)
                for delivery in claimed:
                    task = asyncio.create_task(self._deliver(delivery))
                    self._inflight.add(task)
                    self._tenant_of[task] = delivery.tenant
                    self._by_tenant[delivery.tenant] += 1
                    task.add_done_callback(self._done)
                if (
                    claimed
                    and len(claimed) == asked
                    and len(self._inflight) < (self._settings.concurrency)
                ):
                    continue  # a full batch: more may be due
                wait = self._settings.poll_interval_s
                if failures:
                    wait = min(wait * 2**failures, 30.0)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
                self._wake.clear()
        finally:
            await self._finish_inflight()

    async def _finish_inflight(self) -> None:
        if self._inflight:
            # Every attempt is cut at attempt_limit_s; what is left is its record.
            limit = self._settings.lease_s
            _, late = await asyncio.wait(set(self._inflight), timeout=limit)
            for task in late:  # its lease runs out; another dispatcher sends it again
                task.cancel()
            if late:
                await asyncio.wait(late)
        if self._own_client:
            await self._client.aclose()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        tenant = self._tenant_of.pop(task)
        self._by_tenant[tenant] -= 1
        if not self._by_tenant[tenant]:
            del self._by_tenant[tenant]
        self._wake.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("webhook delivery task failed", exc_info=task.exception())

    async def _deliver(self, delivery: ClaimedDelivery) -> None:
        started = datetime.now(UTC)
        t0 = time.perf_counter()
        try:
            outcome, status, error, prefix = await self._attempt(delivery)
        except Exception as exc:  # a bug of ours must not leave the row leased in a loop, unlogged
            log.exception("webhook %s: attempt failed inside the dispatcher", delivery.webhook_id)
            outcome, status, prefix = "retry", None, None
            error = f"not sent: dispatcher error {type(exc).__name__}: {exc}"[:500]
        duration_ms = (time.perf_counter() - t0) * 1000.0
        self.attempts += 1
        try:
            async with connection(self._pool) as conn:
                decided = await delivery_record(
                    conn,
                    delivery,
                    outcome=outcome,
                    started_at=started,
                    duration_ms=duration_ms,
                    status=status,
                    error=error,
                    response_prefix=prefix,
                    dispatcher=self.dispatcher_id,
                    retry=self._retry,
                )
        except DatabaseUnavailable as exc:  # the lease runs out and the delivery is sent again
            log.warning(
                "webhook %s to %s: attempt %d not recorded (%s); it will be sent again",
                delivery.webhook_id, delivery.url, delivery.attempts, exc,
            )  # fmt: skip
            return
        if outcome == "delivered":
            self.delivered += 1
        elif decided is not None and decided["state"] == "failed":
            log.warning(
                "webhook %s to %s failed for good after %d attempts: %s",
                delivery.webhook_id, delivery.url, delivery.attempts, error,
            )  # fmt: skip

    async def _attempt(
        self, delivery: ClaimedDelivery
    ) -> tuple[Outcome, int | None, str | None, str | None]:
        """One POST: (outcome, HTTP status, error, the answer's first bytes)."""
        try:
            body, headers = self._signed(delivery)
        except _NotSent as exc:
            return "retry", None, f"not sent: {exc}", None
        limit = self._settings.attempt_limit_s
        try:
            async with (
                asyncio.timeout(limit),
                self._client.stream(
                    "POST", delivery.url, content=body, headers=headers
                ) as response,
            ):
                prefix = await _read_prefix(response)
        except TimeoutError:
            return "retry", None, f"timed out: no whole answer within {limit:g} s", None
        except httpx.TimeoutException as exc:
            return "retry", None, f"timed out ({type(exc).__name__})", None
        except httpx.HTTPError as exc:
            return "retry", None, f"{type(exc).__name__}: {exc}"[:500], None
        status = response.status_code
        if 200 <= status < 300:
            return "delivered", status, None, prefix
        error = f"answered {status} {response.reason_phrase}".rstrip()
        if 300 <= status < 400:
            location = response.headers.get("location", "")[:200]
            error += f"; redirects are not followed (Location: {location})"
        return ("gone" if status == 410 else "retry"), status, error, prefix

    def _signed(self, delivery: ClaimedDelivery) -> tuple[bytes, dict[str, str]]:
        """The body and headers of this attempt, signed with each of the tenant's secrets.

        Raises:
            _NotSent: the target no longer passes the policy, or no secret opens or exists.
        """
        try:
            check_url(delivery.url, self._settings.targets)
        except TargetRefused as exc:
            raise _NotSent(str(exc)) from None
        secrets, unopened = [], []
        for sealed in delivery.sealed_secrets:
            try:
                secrets.append(self._sealer.open(sealed))
            except ValueError as exc:  # sealed under a key no longer given: the others sign
                unopened.append(str(exc))
        if not secrets:
            raise _NotSent(
                unopened[0]
                if unopened
                else f"tenant {delivery.tenant!r} has no signing secret "
                f"(vidjobs webhooks secret --tenant {delivery.tenant})"
            )
        if unopened:
            log.warning(
                "webhook %s: %d of tenant %r's secrets do not open (sealed under a key no longer "
                "in VIDJOBS_WEBHOOK_SECRET_KEYS); signed with the other %d",
                delivery.webhook_id, len(unopened), delivery.tenant, len(secrets),
            )  # fmt: skip
        body = event_body(delivery)
        now = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "user-agent": _USER_AGENT,
            "webhook-id": delivery.webhook_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": sign(secrets, delivery.webhook_id, now, body.decode()),
        }
        return body, headers


class _NotSent(Exception):
    """An attempt that cannot be made (no request is sent); retried like a failed one."""


async def _read_prefix(response: httpx.Response) -> str | None:
    """At most :data:`RESPONSE_PREFIX_BYTES` of the answer, decoded leniently; None if empty."""
    buf = b""
    async for chunk in response.aiter_raw():
        buf += chunk
        if len(buf) >= RESPONSE_PREFIX_BYTES:
            break
    if not buf:
        return None
    return buf[:RESPONSE_PREFIX_BYTES].decode("utf-8", "replace")
