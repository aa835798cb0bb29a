"""How a job is found and shown to clients: path ids parsed strictly, rows turned into bodies.

The status body itself is ``schema.api.job_status``: the webhooks send it too.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar.params import PathParameter
from psycopg import AsyncConnection

from vidjobs.api.problems import InvalidInput, JobNotFound
from vidjobs.db.jobs import job_get
from vidjobs.schema import Job, JobState
from vidjobs.schema.api import FieldError, job_status

__all__ = ["JobIdPath", "describe_state", "job_status", "parse_job_id", "tenant_job"]

JobIdPath = Annotated[
    str,
    PathParameter(format="uuid", description="the job id returned by POST /video/submit"),
]
"""A ``{job_id}`` path parameter: documented as a UUID (so clients and schemathesis know what
is valid), parsed by :func:`parse_job_id` so a non-UUID gets our 422, not a framework error."""


def parse_job_id(raw: str) -> uuid.UUID:
    """A job id from the path; 422 (never a 500 or a misleading 404) if it is not a UUID."""
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise InvalidInput(
            f"job_id must be a UUID like 0b6f9a1e-3c4d-4e5f-8a9b-0c1d2e3f4a5b, got {raw[:40]!r}"
            + (f"... ({len(raw)} characters)" if len(raw) > 40 else ""),
            [FieldError(field="job_id", message="not a UUID")],
        ) from None


async def tenant_job(conn: AsyncConnection[Any], job_id: str, tenant: str) -> Job:
    """The tenant's job of a ``{job_id}`` path: 422 if not a UUID, 404 if not the tenant's."""
    jid = parse_job_id(job_id)
    job = await job_get(conn, jid, tenant=tenant)
    if job is None:
        raise JobNotFound(jid)
    return job


def describe_state(job: Job) -> str:
    """A sentence for a person: why there are no results (yet)."""
    match job.state:
        case JobState.PENDING:
            retry = f" (retry {job.attempts + 1} of {job.max_attempts})" if job.attempts else ""
            return f"job is pending{retry}; poll /video/status/{job.job_id}"
        case JobState.RUNNING:
            return f"job is running ({job.progress * 100:.0f}%); poll /video/status/{job.job_id}"
        case JobState.FAILED:
            return f"job failed: {job.error_message or job.error_kind or 'unknown error'}"
        case JobState.CANCELLED:
            return "job was cancelled"
        case JobState.COMPLETED:
            return "job completed"
