"""What a job's run came to, decided in one place: done, failed (which way) or stopped.

Pipelines and their stages raise the errors below (or let blob-store and database errors
through); ``classify`` maps every exception to what the worker then writes. It is the one
place that decides which failures count an attempt, which fail the job at once, and which
are the infrastructure's fault (the job is handed back, the attempt not counted):

=========================  ==========================  ==================================
raised                     ``error_kind``              what happens to the job
=========================  ==========================  ==================================
``JobStopped``             (none)                      stopped: cancelled, lost, shut down
``InvalidVideo`` & co.     their ``kind``              failed for good (also
                                                       ``UnknownPipeline``)
``JobFailure(...)``        its ``kind``                as its ``permanent``/``infrastructure``
``BlobNotFound``           ``input_missing``           failed for good
``BlobStoreUnavailable``   ``blob_unavailable``        handed back, attempt not counted
other ``BlobStoreError``   ``blob_error``              attempt counted, retried with backoff
``DatabaseUnavailable``    ``database_unavailable``    handed back, attempt not counted
anything else              ``unexpected_error``        attempt counted (or stopped, if the
                                                       job was asked to stop meanwhile)
=========================  ==========================  ==================================
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vidjobs.blobs import BlobNotFound, BlobStoreError, BlobStoreUnavailable
from vidjobs.db.errors import DatabaseUnavailable

if TYPE_CHECKING:
    from vidjobs.worker.pipelines.contract import JobContext

__all__ = [
    "InvalidParams",
    "InvalidVideo",
    "JobFailure",
    "JobStopped",
    "ModelUnavailable",
    "Outcome",
    "Result",
    "UnknownPipeline",
    "classify",
]

log = logging.getLogger(__name__)


class JobFailure(Exception):
    """Root of the worker's errors: the job cannot go on, and what that means for it.

    Subclasses fix ``kind``, ``permanent`` and ``infrastructure`` as class attributes; a
    pipeline may also raise ``JobFailure`` itself with its own kind.

    Args:
        message: what a person should read in ``error_message``.
        kind: short machine-readable class of error (``error_kind``); default the class's.
        permanent: True fails the job at once; False counts an attempt and retries with backoff.
        infrastructure: the blob store or the database failed, not the job: the job is handed
            back after a growing delay without counting an attempt (``job_retry_later``), so
            an outage cannot use up ``max_attempts``. Implies not permanent.
    """

    kind: str = "job_failure"
    permanent: bool = False
    infrastructure: bool = False

    def __init__(
        self,
        message: str,
        *,
        kind: str | None = None,
        permanent: bool | None = None,
        infrastructure: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if kind is not None:
            self.kind = kind
        if infrastructure is not None:
            self.infrastructure = infrastructure
        if permanent is not None:
            self.permanent = permanent
        self.permanent = self.permanent and not self.infrastructure


class JobStopped(JobFailure):
    """The work was abandoned because ``ctx.should_stop()`` turned true: nothing is written.

    Raised between two frames of the analysis, by ``ctx.sleep`` and by ``ctx.ensure_held``.
    Not the job's failure: the job was cancelled, taken back, or the worker is shutting down.
    """

    kind = "stopped"


class InvalidVideo(JobFailure):
    """The input cannot be analysed: not a video, no video stream, or no frames. Not retried."""

    kind = "invalid_video"
    permanent = True


class InvalidParams(JobFailure):
    """The job's params are out of range or unknown (the API normally rejects them first)."""

    kind = "invalid_params"
    permanent = True


class ModelUnavailable(JobFailure):
    """The detector weights (or OCR models) cannot be loaded; the message names the setting."""

    kind = "model_unavailable"
    permanent = True


class UnknownPipeline(JobFailure):
    """This worker has no such pipeline; the claim filters by pipeline, so the registry changed."""

    kind = "unknown_pipeline"
    permanent = True


class Outcome(enum.Enum):
    """How a job's run ended: what the worker then writes."""

    DONE = "done"
    FAILED = "failed"
    STOPPED = "stopped"
    SPLIT = "split"  # handed on as segment jobs (``job_split``); it runs again to merge them


@dataclass(frozen=True)
class Result:
    """A job's run as the worker writes it (``infrastructure``: handed back, not counted)."""

    outcome: Outcome
    output_key: str | None = None
    segments: tuple[tuple[int, int, int], ...] = ()  # SPLIT: (start_ms, end_ms, samples)
    error_kind: str = ""
    error_message: str = ""
    permanent: bool = False
    infrastructure: bool = False


def _failed(kind: str, message: str, *, permanent: bool = False, infra: bool = False) -> Result:
    return Result(
        Outcome.FAILED,
        error_kind=kind,
        error_message=message,
        permanent=permanent,
        infrastructure=infra,
    )


def classify(ctx: JobContext, exc: Exception) -> Result:  # noqa: PLR0911 - the decision table
    """Map whatever a pipeline (or its registry) raised to the job's outcome.

    Blob-store messages start with the step the job was in (``ctx.step``), e.g.
    ``downloading the video: blob store unavailable: ...``.
    """
    step = f"{ctx.step}: " if ctx.step else ""
    if isinstance(exc, JobStopped):
        return Result(Outcome.STOPPED)
    if isinstance(exc, JobFailure):
        return _failed(exc.kind, exc.message, permanent=exc.permanent, infra=exc.infrastructure)
    if isinstance(exc, BlobNotFound):
        return _failed("input_missing", f"{step}no blob at {exc.key}", permanent=True)
    if isinstance(exc, BlobStoreUnavailable):
        return _failed("blob_unavailable", f"{step}blob store unavailable: {exc}", infra=True)
    if isinstance(exc, BlobStoreError):
        # Bad credentials, a missing bucket: a misconfiguration still counts its attempts.
        return _failed("blob_error", f"{step}{exc}")
    if isinstance(exc, DatabaseUnavailable):
        return _failed("database_unavailable", f"the database was unreachable: {exc}", infra=True)
    if ctx.should_stop():
        # Cancelled or shutting down: whatever broke while stopping is not the job's fault.
        return Result(Outcome.STOPPED)
    job = ctx.job
    log.error("job %s (%s) raised", job.job_id, job.pipeline, exc_info=exc)
    return _failed("unexpected_error", f"{type(exc).__name__}: {exc}")
