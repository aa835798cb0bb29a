"""What a job's run came to: done, failed (which way) or stopped, from what its pipeline did.

Kept apart from the loop in ``worker/runner.py``: this is the one place that decides which
errors count an attempt, which fail the job at once and which are the infrastructure's fault.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from vidjobs.db.errors import DatabaseUnavailable
from vidjobs.worker.pipelines.contract import JobContext, JobFailure, JobStopped

__all__ = ["Outcome", "Result", "classify"]

log = logging.getLogger(__name__)


class Outcome(enum.Enum):
    """How a job's run ended: what the worker then writes."""

    DONE = "done"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True)
class Result:
    """A job's run as the worker writes it (``infrastructure``: handed back, not counted)."""

    outcome: Outcome
    output_key: str | None = None
    error_kind: str = ""
    error_message: str = ""
    permanent: bool = False
    infrastructure: bool = False


def classify(ctx: JobContext, exc: Exception) -> Result:
    """Map what a pipeline raised to the job's outcome: stop, or which kind of failure."""
    if isinstance(exc, JobStopped):
        return Result(Outcome.STOPPED)
    if isinstance(exc, JobFailure):
        return Result(
            Outcome.FAILED,
            error_kind=exc.kind,
            error_message=exc.message,
            permanent=exc.permanent,
            infrastructure=exc.infrastructure,
        )
    if isinstance(exc, DatabaseUnavailable):
        return Result(
            Outcome.FAILED,
            error_kind="database_unavailable",
            error_message=f"the database was unreachable: {exc}",
            infrastructure=True,
        )
    if ctx.should_stop():
        # Cancelled or shutting down: whatever broke while stopping is not the job's fault.
        return Result(Outcome.STOPPED)
    job = ctx.job
    log.error("job %s (%s) raised", job.job_id, job.pipeline, exc_info=exc)
    return Result(
        Outcome.FAILED, error_kind="unexpected_error", error_message=f"{type(exc).__name__}: {exc}"
    )
