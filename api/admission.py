"""Admission at submit: a tenant's limits, its uploads in progress, and the pace of a body.

Three guards, all before a byte of the body is stored:

- :func:`admit` asks Postgres (``vidjobs.db.admission``) whether the tenant's submit rate,
  pending jobs and stored bytes allow one more submit, and turns a refusal into the problem
  that names the limit (429, or 413 for the bytes), with ``Retry-After`` when waiting helps.
- :class:`TenantUploads` caps the uploads one tenant streams at once in this process, so one
  tenant's slow clients cannot take every upload slot (429 at once, before the body is read).
- :class:`UploadPace` cuts off a body that stalls or trickles (408), so a slot is not held for
  hours by a client that sends a byte every few seconds.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator

import anyio

from vidjobs.api.problems import LimitExceeded, UploadTimeout
from vidjobs.db.admission import PENDING, RATE, STORED_BYTES, Admission, tenant_submit_admit
from vidjobs.db.settings import TenantDefaults
from vidjobs.db.statements import Conn

__all__ = [
    "TenantUploads",
    "UploadPace",
    "admit",
    "stored_bytes_exceeded",
]

_SLOTS_RETRY_AFTER_S = 5
"""An upload slot frees when an upload ends, which nobody can foresee: a guess, like the 503s'."""


async def admit(
    conn: Conn, tenant: str, defaults: TenantDefaults, *, incoming_bytes: int | None
) -> Admission:
    """Admit one submit of ``tenant`` or raise the problem naming the limit it is over.

    Args:
        conn: a pool connection.
        tenant: the caller's tenant.
        defaults: the deployment's limits where the tenant's row leaves one NULL.
        incoming_bytes: the request's ``Content-Length``, if sent.
    """
    verdict = await tenant_submit_admit(conn, tenant, defaults, incoming_bytes=incoming_bytes)
    if verdict.refused_by == RATE:
        assert verdict.rate_per_min is not None
        assert verdict.tokens is not None
        wait = verdict.retry_after_s
        raise LimitExceeded(
            429,
            "submit-rate-limited",
            f"tenant {tenant!r} may submit {verdict.rate_per_min:g} videos per minute "
            f"(bursts of {verdict.burst}); retry in {wait} s (Retry-After)",
            limit=(RATE, verdict.rate_per_min, verdict.tokens),
            retry_after_s=wait,
        )
    if verdict.refused_by == PENDING:
        assert verdict.max_pending is not None
        raise LimitExceeded(
            429,
            "too-many-pending-jobs",
            f"tenant {tenant!r} has {verdict.pending} pending jobs, its limit "
            f"(max_pending={verdict.max_pending}); submit again once some have started",
            limit=(PENDING, verdict.max_pending, verdict.pending),
            retry_after_s=_SLOTS_RETRY_AFTER_S,
        )
    if verdict.refused_by == STORED_BYTES:
        what = "" if incoming_bytes is None else f" and this upload is {incoming_bytes} bytes"
        raise stored_bytes_exceeded(verdict, detail_tail=what)
    return verdict


def stored_bytes_exceeded(verdict: Admission, *, detail_tail: str = "") -> LimitExceeded:
    """The 413 of a tenant whose upload does not fit in what it may still store."""
    assert verdict.max_stored_bytes is not None
    return LimitExceeded(
        413,
        "storage-quota-exceeded",
        f"tenant {verdict.tenant!r} stores {verdict.stored_bytes} bytes of video of its "
        f"max_stored_bytes={verdict.max_stored_bytes}{detail_tail}; delete finished jobs "
        "(DELETE /jobs/{id}) to free space; nothing was stored",
        limit=(STORED_BYTES, verdict.max_stored_bytes, verdict.stored_bytes),
    )


class TenantUploads:
    """Uploads in progress per tenant in this process; one over the cap is refused at once.

    The event loop is the only thread that takes or returns a slot, so a dict is enough.

    Args:
        per_tenant: most uploads one tenant may have in progress.
    """

    def __init__(self, per_tenant: int) -> None:
        self._cap = per_tenant
        self._busy: dict[str, int] = {}

    def busy(self, tenant: str) -> int:
        """Uploads of ``tenant`` in progress now."""
        return self._busy.get(tenant, 0)

    @contextlib.contextmanager
    def slot(self, tenant: str) -> Iterator[None]:
        """Hold one of ``tenant``'s slots for the block; 429 ``too-many-uploads`` if none is."""
        busy = self.busy(tenant)
        if busy >= self._cap:
            raise LimitExceeded(
                429,
                "too-many-uploads",
                f"tenant {tenant!r} already has {busy} uploads in progress here, its limit "
                f"(VIDJOBS_API_TENANT_UPLOAD_SLOTS={self._cap}); wait for one to finish",
                limit=("tenant_upload_slots", self._cap, busy),
                retry_after_s=_SLOTS_RETRY_AFTER_S,
            )
        self._busy[tenant] = busy + 1
        try:
            yield
        finally:
            left = self._busy[tenant] - 1
            if left:
                self._busy[tenant] = left
            else:
                del self._busy[tenant]


class UploadPace:
    """The body must keep coming: no pause of ``idle_timeout_s``, at least a minimum rate.

    The rate is averaged over stretches of ``idle_timeout_s`` (measured when a chunk comes):
    a client that sends one byte every two seconds never pauses long enough for the idle
    timeout, but its stretch falls short of ``min_bytes_per_s`` and ends with a 408 too.

    Args:
        idle_timeout_s: longest wait for the next chunk; also the stretch of the rate.
        min_bytes_per_s: slowest average accepted (0: none).
        clock: seconds, monotonic (tests pass their own).
    """

    def __init__(
        self,
        idle_timeout_s: float,
        min_bytes_per_s: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._idle = idle_timeout_s
        self._min = min_bytes_per_s
        self._clock = clock
        self._start = clock()
        self._bytes = 0

    async def receive(self, chunks: AsyncIterator[bytes]) -> bytes:
        """The next chunk of the body; 408 if none comes within the idle timeout."""
        with anyio.move_on_after(self._idle) as waited:
            chunk = await chunks.__anext__()
        if waited.cancelled_caught:
            raise UploadTimeout(
                f"the upload sent nothing for {self._idle:g} s and was cut off; nothing was "
                "stored, send it again"
            )
        self.count(len(chunk))
        return chunk

    def count(self, n: int) -> None:
        """Count ``n`` bytes received now; 408 if the stretch that just ended was too slow."""
        self._bytes += n
        now = self._clock()
        elapsed = now - self._start
        if elapsed < self._idle:
            return
        if self._bytes < self._min * elapsed:
            raise UploadTimeout(
                f"the upload came at {self._bytes / elapsed:.0f} bytes/s over {elapsed:.0f} s, "
                f"below the minimum of {self._min} bytes/s, and was cut off; nothing was stored"
            )
        self._start, self._bytes = now, 0
