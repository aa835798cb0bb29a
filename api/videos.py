"""``/video``: submit a video, poll its status, read its results."""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import QueryParameter
from psycopg import AsyncConnection

from vidjobs.api.auth import INVALID_KEY, authenticate, bearer_key
from vidjobs.api.openapi import (
    ProblemOperation,
    SubmitOperation,
    location_header,
    problem_responses,
    submit_replay_response,
)
from vidjobs.api.presenters import (
    JobIdPath,
    describe_state,
    job_status,
    parse_job_id,
    tenant_job,
)
from vidjobs.api.problems import ApiError, InvalidInput, JobNotFound, Unauthorized
from vidjobs.api.runtime import ApiRuntime, runtime
from vidjobs.api.submit import submit_video
from vidjobs.db.api_keys import hash_key
from vidjobs.db.jobs import job_children
from vidjobs.db.pool import run_read
from vidjobs.schema import JobState
from vidjobs.schema.api import JobResults, JobStatus, SubmitAccepted
from vidjobs.schema.results_schema import published_results_schema

__all__ = ["MAX_WAIT_S", "RESULTS_SCHEMA_MEDIA_TYPE", "VideoController"]

#: Longest long-poll of ``GET /video/status/{id}?wait=S``, in seconds.
MAX_WAIT_S = 60.0

#: Media type of a JSON Schema document (JSON Schema 2020-12, section 14.2).
RESULTS_SCHEMA_MEDIA_TYPE = "application/schema+json"


class VideoController(Controller):
    """Submit, status and results of one job."""

    path = "/video"
    tags = ["videos"]  # noqa: RUF012 - Litestar's declared class attribute
    security = [{"bearer": []}]  # noqa: RUF012

    @post(
        "/submit",
        operation_id="submitVideo",
        operation_class=SubmitOperation,
        summary="Upload an MP4 video and queue a job",
        description=(
            "Streams the file to the blob store (never buffered whole), then queues the job. "
            "Answers 202 with Location: /video/status/{job_id}. With an Idempotency-Key header a "
            "repeat with the same file and parameters returns the original job (200, "
            "Idempotent-Replayed: true); the same key with another file or other parameters "
            "is 409."
        ),
        status_code=202,
        response_description="A new job was queued; poll the Location",
        response_headers=[location_header()],
        request_max_body_size=None,
        responses={
            **submit_replay_response(),
            **problem_responses(400, 401, 408, 409, 413, 415, 422, 429, 503),
        },
    )
    async def submit(
        self, request: Request[Any, Any, Any], rt: NamedDependency[ApiRuntime]
    ) -> Response[SubmitAccepted]:
        """Upload and queue."""
        return await submit_video(request, rt)

    @get(
        "/status/{job_id:str}",
        operation_id="getJobStatus",
        summary="A job's state and real progress",
        operation_class=ProblemOperation,
        responses=problem_responses(401, 404, 422, 503),
    )
    async def status(
        self,
        request: Request[Any, Any, Any],
        job_id: JobIdPath,
        state: State,
        wait: Annotated[
            float,
            QueryParameter(
                ge=0,
                le=MAX_WAIT_S,
                # Litestar leaves a falsy bound (ge=0) out of the document; say it there.
                schema_extra={"minimum": 0},
                description="Long-poll: answer as soon as the job's state changes (or it is "
                "finished already), else after this many seconds (at most 60) with the state "
                "as it is. 0 (the default): answer at once.",
            ),
        ] = 0.0,
    ) -> JobStatus:
        """The job's status; 404 for unknown ids and other tenants' jobs.

        The hot polling path: the key is checked and the job read in one statement, shared
        with the other polls that arrived at the same time (``StatusReads``), on a connection
        borrowed directly (no dependency resolution per request). It skips the auth cache: the
        key check rides in the job's read, so a cached tenant would save no round trip. With
        ``wait``, an unfinished job is re-read each tick until its state changes
        (``LongPoll``), holding no connection in between.
        """
        rt = runtime(state)
        key_hash = hash_key(bearer_key(request))
        try:
            jid = parse_job_id(job_id)
        except InvalidInput:
            await run_read(rt.pool, lambda conn: authenticate(request, conn, rt.auth_cache))
            raise  # 401 before 422
        tenant, job = await rt.status_reads.get(key_hash, jid)
        if tenant is not None and job is not None and wait and not job.is_terminal:
            tenant, job = await rt.long_poll.until_changed(key_hash, jid, job.state, wait)
        if tenant is None:
            raise Unauthorized(INVALID_KEY)
        if job is None:
            raise JobNotFound(jid)
        if job.segments is None:
            return job_status(job)
        # A long video analysed as segment jobs: their progress is its progress.
        children = await run_read(rt.pool, lambda conn: job_children(conn, jid, tenant=tenant))
        return job_status(job, children)

    @get(
        "/results-schema",
        operation_id="getResultsSchema",
        summary="The JSON Schema (draft 2020-12) of every results document, versions 1 and 2",
        media_type=RESULTS_SCHEMA_MEDIA_TYPE,
        operation_class=ProblemOperation,
        responses={
            200: ResponseSpec(
                data_container=dict[str, Any],
                generate_examples=False,
                description="A JSON Schema document (an object)",
                media_type=RESULTS_SCHEMA_MEDIA_TYPE,
            ),
            **problem_responses(401, 503),
        },
    )
    async def results_schema(self, tenant: NamedDependency[str]) -> bytes:
        """The checked-in ``schema/results.schema.json`` as it is, so clients validate with it.

        A path of its own, not under ``/results/{job_id}``: no job id can be read as it.
        """
        del tenant  # the key is checked as for every /video route; the schema names no tenant
        return published_results_schema()

    @get(
        "/results/{job_id:str}",
        operation_id="getJobResults",
        summary="The results document of a completed job",
        operation_class=ProblemOperation,
        responses=problem_responses(401, 404, 422, 503),
    )
    async def results(
        self,
        job_id: JobIdPath,
        db_conn: NamedDependency[AsyncConnection[Any]],
        tenant: NamedDependency[str],
        rt: NamedDependency[ApiRuntime],
    ) -> JobResults:
        """200 only for a completed job; 404 says which state the job is in otherwise.

        A job whose pipeline stored no document (``noop``: it analyses nothing) completed with
        no ``output_key``; its results are the empty document, not a missing blob. A document
        over ``VIDJOBS_API_RESULTS_INLINE_MAX_BYTES`` is a 422 ``results-too-large`` naming the
        paged reads (``api/results.py``), which never read it whole.
        """
        job = await tenant_job(db_conn, job_id, tenant)
        if job.state is not JobState.COMPLETED:
            raise ApiError(404, "results-not-ready", describe_state(job), job_status=job.state)
        document: dict[str, Any] = {}
        if job.output_key is not None:
            size = await anyio.to_thread.run_sync(rt.store.size, job.output_key)
            if size > rt.settings.results_inline_max_bytes:
                raise ApiError(
                    422,
                    "results-too-large",
                    f"the results document is {size} bytes, more than this route returns whole "
                    f"({rt.settings.results_inline_max_bytes}); read it by pages: "
                    f"/video/results/{job.job_id}/frames, /tracks, /text-events, or export it: "
                    "/text.vtt, /detections.csv, /tracks.mot.txt",
                    job_status=job.state,
                )
            data = await anyio.to_thread.run_sync(rt.store.get_bytes, job.output_key)
            document = msgspec.json.decode(data, type=dict[str, Any])
        return JobResults(
            job_id=job.job_id,
            results=document,
            created_at=job.created_at,
            updated_at=job.updated_at,
        )
