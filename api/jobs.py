"""``/video/jobs``: a tenant's job list, cancel, delete."""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from psycopg import AsyncConnection

from vidjobs.api.openapi import ProblemOperation, problem_responses
from vidjobs.api.presenters import (
    JobIdPath,
    describe_state,
    job_status,
    parse_job_id,
    tenant_job,
)
from vidjobs.api.problems import ApiError, InvalidInput, JobNotFound
from vidjobs.api.runtime import ApiRuntime
from vidjobs.blobs import results_index_key, results_key, video_key
from vidjobs.db.jobs import job_cancel, job_delete, job_list
from vidjobs.schema import JobState
from vidjobs.schema.api import FieldError, JobList, JobStatus

__all__ = ["JobsController"]

_LIST_PARAMS = ("status", "limit", "cursor")
_NAME_SHOWN = 32


class JobsController(Controller):
    """Jobs of the caller's tenant."""

    path = "/video/jobs"
    tags = ["jobs"]  # noqa: RUF012 - Litestar's declared class attribute
    security = [{"bearer": []}]  # noqa: RUF012

    @get(
        "/",
        operation_id="listJobs",
        summary="The tenant's jobs, newest first, one page at a time",
        operation_class=ProblemOperation,
        responses=problem_responses(401, 422, 503),
    )
    async def list_jobs(  # noqa: PLR0917 - Litestar injects each parameter by name
        self,
        request: Request[Any, Any, Any],
        db_conn: NamedDependency[AsyncConnection[Any]],
        tenant: NamedDependency[str],
        status: Annotated[
            JobState | None, QueryParameter(description="only jobs in this state")
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200, description="page size")] = 50,
        cursor: Annotated[
            str | None, QueryParameter(description="next_cursor of the previous page")
        ] = None,
    ) -> JobList:
        """One page; follow ``next_cursor`` until it is null.

        An unknown parameter is a 422, not silently ignored: a misspelt ``staus=failed`` would
        otherwise list every job (found by schemathesis).
        """
        # Names clipped: the problem must not echo a huge parameter back whole.
        unknown = sorted({n[:_NAME_SHOWN] for n in set(request.query_params) - set(_LIST_PARAMS)})
        if unknown:
            allowed = ", ".join(_LIST_PARAMS)
            raise InvalidInput(
                f"unknown query parameter {', '.join(map(repr, unknown))}; allowed: {allowed}",
                [FieldError(field=n, message="unknown parameter") for n in unknown],
            )
        page = await job_list(db_conn, tenant=tenant, state=status, limit=limit, cursor=cursor)
        return JobList(jobs=[job_status(j) for j in page.jobs], next_cursor=page.next_cursor)

    @post(
        "/{job_id:str}/cancel",
        operation_id="cancelJob",
        summary="Cancel a pending or running job",
        operation_class=ProblemOperation,
        status_code=200,
        responses=problem_responses(401, 404, 409, 422, 503),
    )
    async def cancel(
        self,
        job_id: JobIdPath,
        db_conn: NamedDependency[AsyncConnection[Any]],
        tenant: NamedDependency[str],
    ) -> JobStatus:
        """Cancel; cancelling twice is fine, a completed or failed job is 409."""
        jid = parse_job_id(job_id)
        job = await job_cancel(db_conn, jid, tenant=tenant)
        if job is None:
            raise JobNotFound(jid)
        if job.state in (JobState.COMPLETED, JobState.FAILED):
            raise ApiError(
                409,
                "job-finished",
                f"cannot cancel: {describe_state(job)}",
                job_status=job.state,
            )
        return job_status(job)

    @delete(
        "/{job_id:str}",
        operation_id="deleteJob",
        summary="Delete a finished job: its row, events and blobs",
        operation_class=ProblemOperation,
        status_code=204,
        responses=problem_responses(401, 404, 409, 422, 503),
    )
    async def delete_job(
        self,
        job_id: JobIdPath,
        db_conn: NamedDependency[AsyncConnection[Any]],
        tenant: NamedDependency[str],
        rt: NamedDependency[ApiRuntime],
    ) -> None:
        """Blobs first, then the row: a failure halfway leaves a row to retry the delete on."""
        job = await tenant_job(db_conn, job_id, tenant)
        if not job.is_terminal:
            raise ApiError(
                409,
                "job-not-finished",
                f"cannot delete: {describe_state(job)}; cancel it first",
                job_status=job.state,
            )
        jid = job.job_id
        keys = {
            video_key(jid),
            results_key(jid),
            results_index_key(jid),
            job.input_key,
            job.output_key,
        } - {None}
        for key in sorted(k for k in keys if k is not None):
            await anyio.to_thread.run_sync(rt.store.delete, key)
        if await job_delete(db_conn, jid, tenant=tenant) is None:
            raise JobNotFound(jid)
