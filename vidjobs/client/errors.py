"""What the client raises: one root, :class:`VidjobsError`, and a class per answer a caller handles.

An error answer of the API is an :class:`ApiError` carrying the parsed problem document
(``type``, ``title``, ``status``, ``detail`` and the members of that problem); its class is chosen
here, in one place, from the problem's slug first and its status second, so a caller writes
``except NotFound`` or ``except IdempotencyKeyReused`` instead of comparing strings. A body that
is not a problem (a proxy's HTML 502) still gives an :class:`ApiError`, with a problem made up
from the status line and the start of the body.
"""

from __future__ import annotations

import email.utils
import math
import time
from datetime import UTC

import httpx
import msgspec

from vidjobs.schema.api import JobStatus, Problem

__all__ = [
    "ApiError",
    "ApiUnreachable",
    "Conflict",
    "IdempotencyKeyReused",
    "InvalidApiUrl",
    "InvalidInput",
    "JobFinished",
    "JobNotFinished",
    "NotFound",
    "NotReady",
    "RateLimited",
    "ResultsNotReady",
    "Unauthorized",
    "Unavailable",
    "UnexpectedAnswer",
    "VidjobsError",
    "WaitTimeout",
    "error_for",
    "retry_after_s",
]


class VidjobsError(Exception):
    """Root of everything the client raises.

    Attributes:
        problem: the API's problem document, for an error answer; None when there was no answer
            (the API unreachable, a wait that ran out).
        attempts: requests sent for this call, retries included (0 when none was sent).
    """

    problem: Problem | None = None
    attempts: int = 0


class InvalidApiUrl(VidjobsError, ValueError):
    """The base URL is not an ``http://`` or ``https://`` URL with a host (a usage error)."""


class ApiUnreachable(VidjobsError):
    """No answer: the connection failed or broke, on every attempt the retry policy allowed."""

    def __init__(self, message: str, *, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


class UnexpectedAnswer(VidjobsError):
    """A success status whose body is not what the operation answers (not a vidjobs API?)."""


class WaitTimeout(VidjobsError, TimeoutError):
    """``wait()`` ran out of time before the job reached a final state.

    Attributes:
        last: the last status read.
    """

    def __init__(self, message: str, last: JobStatus) -> None:
        super().__init__(message)
        self.last = last


class ApiError(VidjobsError):
    """The API answered with an error status; ``problem`` says what and what to do.

    Attributes:
        problem: the parsed problem document.
        status: the HTTP status code.
        slug: the end of the problem's ``type`` (``job-not-found``; ``about:blank`` for plain
            HTTP errors): stable, what a caller may switch on.
        retry_after: the ``Retry-After`` seconds the API asked for, if it did.
    """

    problem: Problem

    def __init__(
        self,
        problem: Problem,
        *,
        retry_after: float | None = None,
        attempts: int = 1,
        note: str = "",
    ) -> None:
        super().__init__(f"HTTP {problem.status}: {problem.detail or problem.title}{note}")
        self.problem = problem
        self.status = problem.status
        self.slug = problem.type.rsplit("/", 1)[-1]
        self.retry_after = retry_after
        self.attempts = attempts


class Unauthorized(ApiError):
    """401: no key, or an unknown or revoked one."""


class NotFound(ApiError):
    """404: no such job for this tenant (other tenants' jobs look the same), or no such route."""


class ResultsNotReady(NotFound):
    """404 ``results-not-ready``: the job exists but has not completed (``problem.job_status``)."""


class Conflict(ApiError):
    """409: the request contradicts the job's state or an earlier request."""


class IdempotencyKeyReused(Conflict):
    """409 ``idempotency-key-reused``: the key was first used with another file or parameters."""


class JobFinished(Conflict):
    """409 ``job-finished``: cancel of a completed or failed job."""


class JobNotFinished(Conflict):
    """409 ``job-not-finished``: delete of a pending or running job (cancel it first)."""


class InvalidInput(ApiError):
    """422: a bad field, parameter, header or id; ``problem.errors`` lists each."""


class RateLimited(ApiError):
    """429: a limit of the tenant refused the request before anything was stored."""


class Unavailable(ApiError):
    """503: Postgres or the blob store did not answer; nothing was changed."""


class NotReady(Unavailable):
    """503 ``not-ready`` of ``/ready``: ``problem.database`` and ``.blob_store`` say which."""


_BY_SLUG: dict[str, type[ApiError]] = {
    "results-not-ready": ResultsNotReady,
    "idempotency-key-reused": IdempotencyKeyReused,
    "job-finished": JobFinished,
    "job-not-finished": JobNotFinished,
    "not-ready": NotReady,
}
_BY_STATUS: dict[int, type[ApiError]] = {
    401: Unauthorized,
    404: NotFound,
    409: Conflict,
    422: InvalidInput,
    429: RateLimited,
    503: Unavailable,
}


def retry_after_s(response: httpx.Response) -> float | None:
    """The ``Retry-After`` of ``response`` in seconds: delta-seconds or an HTTP date; else None."""
    raw = response.headers.get("retry-after", "").strip()
    if not raw:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - time.time()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _problem(response: httpx.Response) -> Problem:
    """The answer's problem document, or one made up from a body that is not one."""
    try:
        return msgspec.json.decode(response.content, type=Problem)
    except msgspec.DecodeError:  # ValidationError is a DecodeError too
        text = response.text.strip()[:200] or response.reason_phrase
        return Problem(
            type="about:blank",
            title=response.reason_phrase or f"HTTP {response.status_code}",
            status=response.status_code,
            detail=text,
            instance=response.request.url.path,
        )


def error_for(response: httpx.Response, *, attempts: int = 1, note: str = "") -> ApiError:
    """The exception for an error answer: by the problem's slug, else its status.

    Args:
        response: an answer with a 4xx or 5xx status.
        attempts: requests sent for the call, retries included.
        note: appended to the message (why the client gave up retrying).
    """
    problem = _problem(response)
    slug = problem.type.rsplit("/", 1)[-1]
    cls = _BY_SLUG.get(slug) or _BY_STATUS.get(response.status_code, ApiError)
    return cls(problem, retry_after=retry_after_s(response), attempts=attempts, note=note)
