"""The Python client of the vidjobs HTTP API: ``Client`` (blocking) and ``AsyncClient`` (asyncio).

::

    from vidjobs.client import Client

    with Client() as vj:  # VIDJOBS_API_URL, VIDJOBS_API_KEY
        job = vj.submit("clip.mp4", sample_fps=2)
        done = vj.wait(job.job_id, timeout=300)
        print(done.status, vj.results(job.job_id).results["summary"])

Answers are the Structs of :mod:`vidjobs.schema.api` (``JobStatus``, ``JobList``,
``JobResults``); errors are :class:`VidjobsError`, an API error answer an :class:`ApiError`
carrying its parsed ``Problem``. A call retries 503, 429 (after ``Retry-After``) and failed
connections within a bounded :class:`RetryPolicy`; every submit carries an ``Idempotency-Key``,
so a retry after a lost answer is a replay, never a second job. The client imports nothing of
the server (an import-linter contract): only :mod:`vidjobs.schema`, :mod:`vidjobs.settings` and
httpx.
"""

from __future__ import annotations

from vidjobs.client.async_client import AsyncClient
from vidjobs.client.errors import (
    ApiError,
    ApiUnreachable,
    Conflict,
    IdempotencyKeyReused,
    InvalidApiUrl,
    InvalidInput,
    JobFinished,
    JobNotFinished,
    NotFound,
    NotReady,
    RateLimited,
    ResultsNotReady,
    Unauthorized,
    Unavailable,
    UnexpectedAnswer,
    VidjobsError,
    WaitTimeout,
)
from vidjobs.client.operations import Submission
from vidjobs.client.retry import RetryPolicy
from vidjobs.client.settings import ClientSettings
from vidjobs.client.sync_client import Client
from vidjobs.client.upload import Video

__all__ = [
    "ApiError",
    "ApiUnreachable",
    "AsyncClient",
    "Client",
    "ClientSettings",
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
    "RetryPolicy",
    "Submission",
    "Unauthorized",
    "Unavailable",
    "UnexpectedAnswer",
    "Video",
    "VidjobsError",
    "WaitTimeout",
]
