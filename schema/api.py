"""Bodies of the HTTP API: what every client sees, so each field is a contract.

Problem details follow RFC 9457 (``application/problem+json``); every error the API answers
has this shape, including the framework's own 404/405/validation errors.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec

from vidjobs.schema.job import Job, JobState

PIPELINES: tuple[str, ...] = ("yolo_ocr", "noop")
"""Pipelines a client may name; ``noop`` only exercises the queue (smoke tests, benchmarks).
Their parameters and bounds live with the results document (``schema.results``)."""

DEFAULT_PIPELINE = "yolo_ocr"

PRIORITY_MIN = -100
PRIORITY_MAX = 100
"""Bounds of a submit's ``priority`` (higher runs first); beyond them one client could starve
every other."""

MAX_IDEMPOTENCY_KEY = 255
"""Longest ``Idempotency-Key`` header of a submit (1 to this many printable ASCII characters)."""

__all__ = [
    "DEFAULT_PIPELINE",
    "MAX_IDEMPOTENCY_KEY",
    "PIPELINES",
    "PRIORITY_MAX",
    "PRIORITY_MIN",
    "FieldError",
    "Health",
    "JobError",
    "JobList",
    "JobResults",
    "JobStatus",
    "Problem",
    "Readiness",
    "ResultsPage",
    "SegmentStatus",
    "SubmitAccepted",
    "job_status",
]


class SubmitAccepted(msgspec.Struct, frozen=True, kw_only=True):
    """Answer to ``POST /video/submit``: where to poll.

    Attributes:
        job_id: the new (or, for an idempotent repeat, the original) job.
        status: the job's state now (``pending`` for a new job).
        status_url: the same URL as the ``Location`` header.
    """

    job_id: uuid.UUID
    status: JobState
    status_url: str


class JobError(msgspec.Struct, frozen=True, kw_only=True):
    """Why the last attempt failed.

    Attributes:
        kind: a stable machine-readable class (``decode_error``, ``lease_expired``, ...).
        message: what happened, for a person.
    """

    kind: str
    message: str


class JobStatus(msgspec.Struct, frozen=True, kw_only=True):
    """Answer to ``GET /video/status/{job_id}`` and one entry of the job list.

    Attributes:
        job_id: the job.
        status: its state.
        pipeline: the pipeline it runs.
        progress: frames analysed / frames to analyse, 0.0 to 1.0.
        frames_done: frames analysed so far.
        frames_total: frames to analyse, once the worker knows.
        attempts: attempts started so far (retries count).
        created_at: when it was submitted.
        updated_at: its last change.
        started_at: when the latest attempt started.
        finished_at: when it reached a final state.
        error: why the last attempt failed, if it did.
        input_sha256: the SHA-256 of the uploaded video, 64 lowercase hex digits (compare it
            with ``sha256sum`` of the file sent); null for a job submitted without one.
        children: for a long video analysed as segment jobs, each segment in order (its
            progress summed is the job's); null for a job analysed whole. While its segments
            run and while they are merged, the job's status is ``running``.
    """

    job_id: uuid.UUID
    status: JobState
    pipeline: str
    progress: float
    frames_done: int
    frames_total: int | None
    attempts: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: JobError | None
    input_sha256: str | None = None
    children: list[SegmentStatus] | None = None


class SegmentStatus(msgspec.Struct, frozen=True, kw_only=True):
    """One segment job of a long video, in its parent's status.

    Attributes:
        job_id: the segment's own job id (its status route answers for it too).
        index: its place in the video, from 0.
        start_ms: start of its time range in the video (inclusive).
        end_ms: end of its range (exclusive).
        status: its state.
        frames_done: sampled frames analysed.
        frames_total: sampled frames in its range.
        attempts: claims so far (more than 1: a worker died or failed on it).
        error: why its last attempt failed, if it did.
    """

    job_id: uuid.UUID
    index: int
    start_ms: int
    end_ms: int
    status: JobState
    frames_done: int
    frames_total: int | None
    attempts: int
    error: JobError | None


class JobList(msgspec.Struct, frozen=True, kw_only=True):
    """One page of ``GET /video/jobs``, newest first.

    Attributes:
        jobs: this page.
        next_cursor: pass as ``cursor`` for the next page; null on the last page.
    """

    jobs: list[JobStatus]
    next_cursor: str | None


class JobResults(msgspec.Struct, frozen=True, kw_only=True):
    """Answer to ``GET /video/results/{job_id}`` for a completed job.

    Attributes:
        job_id: the job.
        results: the results document the worker wrote, embedded as an object.
        created_at: when the job was submitted.
        updated_at: when it completed.
    """

    job_id: uuid.UUID
    results: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class ResultsPage(msgspec.Struct, frozen=True, kw_only=True):
    """One page of a results document's ``frames``, ``tracks`` or ``text_events``.

    Attributes:
        job_id: the job.
        items: the elements, exactly as the document holds them, in its order.
        next_cursor: pass as ``cursor`` (with the same filters) for the next page; null at
            the end.
    """

    job_id: uuid.UUID
    items: list[dict[str, Any]]
    next_cursor: str | None


class FieldError(msgspec.Struct, frozen=True, kw_only=True):
    """One invalid input of a 422 problem.

    Attributes:
        field: the form field, query or path parameter.
        message: what is wrong with it and what is allowed.
    """

    field: str
    message: str


class Problem(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """RFC 9457 problem details.

    Attributes:
        type: a URI naming the kind of problem (``about:blank`` for plain HTTP errors).
        title: short summary of the kind.
        status: the HTTP status code.
        detail: what went wrong this time, and what to do about it.
        instance: the request path.
        errors: the invalid inputs, for validation problems.
        job_status: the job's state, for problems about one job (404 results, 409 cancel).
        limit: the tenant limit that refused a submit (``submit_rate_per_min``,
            ``max_pending``, ``max_stored_bytes``, ``tenant_upload_slots``).
        limit_value: that limit's value for the tenant.
        usage: the tenant's use of it when refused (tokens left, pending jobs, stored bytes,
            uploads streaming).
        database: for the 503 of ``/ready``: ``ok`` or why the database did not answer.
        blob_store: for the 503 of ``/ready``: ``ok`` or why the blob store did not answer.
    """

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldError] | None = None
    job_status: JobState | None = None
    limit: str | None = None
    limit_value: float | None = None
    usage: float | None = None
    database: str | None = None
    blob_store: str | None = None


class Health(msgspec.Struct, frozen=True, kw_only=True):
    """Answer to ``GET /health``: the process is alive.

    Attributes:
        status: always ``ok``.
    """

    status: str = "ok"


class Readiness(msgspec.Struct, frozen=True, kw_only=True):
    """Answer to ``GET /ready`` when both dependencies answered (else a 503 ``not-ready``).

    Attributes:
        status: ``ready``.
        database: ``ok``.
        blob_store: ``ok``.
    """

    status: str = "ready"
    database: str = "ok"
    blob_store: str = "ok"


def _error(job: Job) -> JobError | None:
    if not job.error_kind:
        return None
    return JobError(kind=job.error_kind, message=job.error_message or job.error_kind)


def job_status(job: Job, children: list[Job] | None = None) -> JobStatus:
    """The status body of a job: the status route, the job list, every webhook event's data.

    A split job (``segments`` set) waits as ``pending`` in the table while its segments run
    and until its merge is claimed; clients see it ``running``, with its progress summed
    from ``children`` (its segments, when given).
    """
    error = _error(job)
    state = job.state
    progress, done, total = job.progress, job.frames_done, job.frames_total
    segments: list[SegmentStatus] | None = None
    if job.segments is not None:
        if state is JobState.PENDING:
            state = JobState.RUNNING
        if children:
            # The split's planned total (a segment's own total is unknown again while its
            # claim is fresh); during the merge, the segments' (all done by then).
            done = sum(c.frames_done for c in children)
            total = job.frames_total or sum(c.frames_total or 0 for c in children) or None
            if state is not JobState.COMPLETED:
                progress = min(1.0, done / total) if total else 0.0
            segments = [
                SegmentStatus(
                    job_id=c.job_id,
                    index=c.segment_index or 0,
                    start_ms=c.segment_start_ms or 0,
                    end_ms=c.segment_end_ms or 0,
                    status=c.state,
                    frames_done=c.frames_done,
                    frames_total=c.frames_total,
                    attempts=c.attempts,
                    error=_error(c),
                )
                for c in children
            ]
    progress = 1.0 if state is JobState.COMPLETED else progress
    return JobStatus(
        job_id=job.job_id,
        status=state,
        pipeline=job.pipeline,
        progress=progress,
        frames_done=done,
        frames_total=total,
        attempts=job.attempts,
        created_at=job.created_at,
        updated_at=job.updated_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        error=error,
        input_sha256=job.input_sha256,
        children=segments,
    )
