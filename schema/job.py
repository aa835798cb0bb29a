"""The job as the rest of the code sees it."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

import msgspec

__all__ = ["TERMINAL_STATES", "Job", "JobState"]


class JobState(enum.StrEnum):
    """Where a job is in its life; mirrors the Postgres enum ``vidjobs.job_state``."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATES: frozenset[JobState] = frozenset(
    {JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED}
)


class Job(msgspec.Struct, frozen=True, kw_only=True):
    """One row of ``vidjobs.jobs``.

    The lease fields are set only while the job is running; ``lease_token`` is the fencing
    token every write by the worker holding the job must present.
    """

    job_id: uuid.UUID
    tenant: str
    state: JobState
    pipeline: str
    params: dict[str, Any]
    priority: int
    run_after: datetime
    attempts: int
    max_attempts: int
    lease_token: uuid.UUID | None
    lease_expires_at: datetime | None
    worker_id: str | None
    heartbeat_at: datetime | None
    progress: float
    frames_done: int
    frames_total: int | None
    input_key: str | None
    output_key: str | None
    input_sha256: str | None = None
    """Hex SHA-256 of the uploaded video (None: no upload, or submitted before it was kept)."""
    callback_url: str | None = None
    """Where the job's terminal event is POSTed as a signed webhook (None: the tenant's
    registered endpoints only)."""
    trace_context: str | None = None
    """W3C ``traceparent`` of the submit span (None: tracing was off); ``vidjobs.tracing``."""
    parent_id: uuid.UUID | None = None
    """Set on a segment job: the long video's job whose time range it analyses."""
    segment_index: int | None = None
    """A segment's place in its parent, from 0."""
    segment_start_ms: int | None = None
    """Start of a segment's range in the video (inclusive, on the global sampling grid)."""
    segment_end_ms: int | None = None
    """End of a segment's range (exclusive)."""
    segments: int | None = None
    """Set on a job split into segments: how many (None: analysed as one job)."""
    error_kind: str | None
    error_message: str | None
    idempotency_key: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def is_terminal(self) -> bool:
        """True once the job will never run again."""
        return self.state in TERMINAL_STATES

    @property
    def waiting_for_segments(self) -> bool:
        """True while a split job's segments run (pending, not due before its last one ends)."""
        return (
            self.segments is not None
            and self.state is JobState.PENDING
            and self.run_after.year >= 9999  # job_split's 9999-01-01: never due
        )
