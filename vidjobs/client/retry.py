"""When a call sends its request again, and how long it waits first; for both clients.

A 503 (Postgres or the blob store down) and a 429 (a tenant limit) both mean that nothing was
stored and that the same request may succeed later; the API says when in ``Retry-After``, and
the client waits that long and up to a tenth more (never less; the jitter keeps the clients one
outage refused from all coming back at the same instant). A connection that could not be made
never reached the API, so any request may be sent again (after a growing, jittered pause). A
connection that broke after the request went out may have lost an answer to a request that was
carried out: only a request that is safe to repeat is sent again then (reads, cancel, and a
submit with its ``Idempotency-Key``, which the API answers as a replay of the first). Every call
has a bound on its attempts and on the time it may spend; past either, the last error is
raised, saying so.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from vidjobs.client.errors import ApiUnreachable, error_for, retry_after_s

__all__ = ["NO_RETRY", "RETRY_STATUSES", "Attempts", "RetryPolicy"]

RETRY_STATUSES = frozenset({429, 503})
"""Answers that say "nothing was done, send it again later"."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard a call tries.

    Attributes:
        attempts: requests per call at most, the first included (1: never retry).
        budget_s: seconds a call may spend from its first request to the start of its last;
            a wait that would end past it is not waited, the error is raised at once.
        backoff_s: the first pause after a failed connection (or a 429/503 without
            ``Retry-After``), doubled after each further failure, with jitter.
        backoff_max_s: the longest such pause.
    """

    attempts: int = 4
    budget_s: float = 60.0
    backoff_s: float = 0.25
    backoff_max_s: float = 8.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")
        if min(self.budget_s, self.backoff_s, self.backoff_max_s) < 0:
            raise ValueError("budget_s, backoff_s and backoff_max_s must not be negative")

    def backoff(self, failures: int) -> float:
        """The pause after ``failures`` failures in a row: exponential, between half and all."""
        ceiling = min(self.backoff_max_s, self.backoff_s * 2.0 ** (failures - 1))
        return ceiling * (0.5 + random.random() / 2)


NO_RETRY = RetryPolicy(attempts=1)

_CONNECT_FAILED = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
"""The request never left: repeating it cannot do anything twice."""
_ANSWER_LOST = (httpx.ReadError, httpx.ReadTimeout, httpx.WriteError, httpx.RemoteProtocolError)
"""The request (or part of it) left and no answer came: repeating it may do it twice."""


@dataclass(slots=True)
class Attempts:
    """The attempts of one call: after each, whether to send again and after how long.

    Args:
        policy: the bounds.
        replay_safe: a repeat of this request after a lost answer does nothing twice.
        api_url: named in the error when the API cannot be reached.
        can_resend: whether the request body can be sent again (a pipe read half-way cannot).
    """

    policy: RetryPolicy
    replay_safe: bool
    api_url: str
    can_resend: Callable[[], bool] = lambda: True
    clock: Callable[[], float] = time.monotonic
    sent: int = 0
    _started: float = field(default=0.0, init=False)

    def starting(self) -> None:
        """Count a request about to be sent."""
        if self.sent == 0:
            self._started = self.clock()
        self.sent += 1

    def _wait(self, asked: float | None) -> tuple[float | None, str]:
        """(seconds to wait before the next attempt, or None to give up; why it gives up)."""
        elapsed = self.clock() - self._started
        spent = f" (gave up after {self.sent} attempts in {elapsed:.1f} s)"
        if self.sent >= self.policy.attempts:
            return None, spent if self.sent > 1 else ""
        if not self.can_resend():
            return None, " (not retried: the upload cannot be read again)"
        wait = (
            asked * (1 + random.random() / 10)
            if asked is not None
            else self.policy.backoff(self.sent)
        )
        if elapsed + wait > self.policy.budget_s:
            return None, (
                f" (gave up after {self.sent} attempts in {elapsed:.1f} s: retrying in"
                f" {wait:.1f} s would pass the {self.policy.budget_s:g} s budget)"
            )
        return wait, ""

    def after_answer(self, response: httpx.Response) -> float | None:
        """Seconds to wait before sending again, or None: the answer is the call's.

        Raises:
            ApiError: a 429 or 503 that the policy does not retry any more (the message says
                why it gave up).
        """
        if response.status_code not in RETRY_STATUSES:
            return None
        wait, why = self._wait(retry_after_s(response))
        if wait is None:
            raise error_for(response, attempts=self.sent, note=why)
        return wait

    def after_failure(self, exc: httpx.TransportError) -> float:
        """Seconds to wait before sending again after a failed or broken connection.

        Raises:
            ApiUnreachable: not retried (any more), or not safe to retry.
        """
        message = f"cannot reach the API at {self.api_url}: {str(exc) or type(exc).__name__}"
        if isinstance(exc, _CONNECT_FAILED) or (self.replay_safe and isinstance(exc, _ANSWER_LOST)):
            wait, why = self._wait(None)
            if wait is not None:
                return wait
        else:
            why = " (not retried: the request may have been carried out)"
        raise ApiUnreachable(message + why, attempts=self.sent) from exc
