"""How `worker.outcome.classify` maps what a job raised: permanent, transient, infra or stopped."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from vidjobs.blobs import BlobNotFound, BlobStoreError, BlobStoreUnavailable
from vidjobs.db.errors import DatabaseUnavailable
from vidjobs.schema import Job, JobState
from vidjobs.worker.outcome import (
    InvalidParams,
    InvalidVideo,
    JobFailure,
    JobStopped,
    ModelUnavailable,
    Outcome,
    UnknownPipeline,
    classify,
)
from vidjobs.worker.pipelines.contract import JobContext


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (InvalidVideo("no video stream"), "invalid_video"),
        (InvalidParams("sample_fps out of range"), "invalid_params"),
        (ModelUnavailable("set VIDJOBS_DETECTOR_WEIGHTS"), "model_unavailable"),
        (UnknownPipeline("this worker has no pipeline 'x'"), "unknown_pipeline"),
    ],
)
def test_pipeline_errors_fail_the_job_for_good(exc: JobFailure, kind: str) -> None:
    assert exc.kind == kind, "the kind is the class's: stages raise these errors directly"
    result = classify(_ctx(), exc)
    assert result.outcome is Outcome.FAILED
    assert (result.error_kind, result.permanent, result.error_message) == (kind, True, str(exc))
    assert result.infrastructure is False


def test_stopped_stops_and_other_errors_are_unexpected() -> None:
    assert classify(_ctx(), JobStopped("stop")).outcome is Outcome.STOPPED
    other = classify(_ctx(), ZeroDivisionError("x"))
    assert (other.outcome, other.error_kind) == (Outcome.FAILED, "unexpected_error")
    # Whatever broke while the job was being stopped is not the job's fault.
    stopping = _ctx()
    stopping.request_stop("shutdown")
    assert classify(stopping, ZeroDivisionError("x")).outcome is Outcome.STOPPED


def test_a_pipeline_may_fail_with_its_own_kind() -> None:
    transient = classify(_ctx(), JobFailure("try again", kind="noop_failure", permanent=False))
    assert (transient.error_kind, transient.error_message) == ("noop_failure", "try again")
    assert (transient.permanent, transient.infrastructure) == (False, False)
    permanent = classify(_ctx(), JobFailure("never", kind="gated_failure", permanent=True))
    assert permanent.permanent is True


def test_blob_errors() -> None:
    missing = classify(_ctx("downloading the video"), BlobNotFound("video_jobs/x.mp4"))
    assert (missing.error_kind, missing.permanent) == ("input_missing", True)
    assert missing.infrastructure is False
    assert missing.error_message == "downloading the video: no blob at video_jobs/x.mp4"
    down = classify(_ctx("uploading the results"), BlobStoreUnavailable("refused"))
    assert (down.error_kind, down.permanent) == ("blob_unavailable", False)
    assert down.infrastructure is True, "an outage must not use up the job's attempts"
    assert down.error_message == "uploading the results: blob store unavailable: refused"
    other = classify(_ctx("uploading the results"), BlobStoreError("bad credentials"))
    assert (other.error_kind, other.permanent) == ("blob_error", False)
    assert other.infrastructure is False, "a misconfiguration still counts its attempts"
    assert other.error_message == "uploading the results: bad credentials"


def _ctx(step: str = "") -> JobContext:
    t = datetime(2030, 1, 1, tzinfo=UTC)
    job = Job(
        job_id=uuid.uuid4(), tenant="acme", state=JobState.RUNNING, pipeline="noop", params={},
        priority=0, run_after=t, attempts=1, max_attempts=3, lease_token=uuid.uuid4(),
        lease_expires_at=t, worker_id="w", heartbeat_at=t, progress=0.0, frames_done=0,
        frames_total=None, input_key=None, output_key=None, error_kind=None, error_message=None,
        idempotency_key=None, created_at=t, updated_at=t, started_at=t, finished_at=None,
    )  # fmt: skip
    ctx = JobContext(job)
    ctx.step = step
    return ctx


def test_infrastructure_errors_are_handed_back_not_counted() -> None:
    db = classify(_ctx(), DatabaseUnavailable("connection refused"))
    assert (db.error_kind, db.permanent, db.infrastructure) == ("database_unavailable", False, True)
    blob = classify(_ctx("uploading"), BlobStoreUnavailable("refused"))
    assert (blob.error_kind, blob.infrastructure) == ("blob_unavailable", True)
    # A genuine failure of the job still counts its attempt.
    unexpected = classify(_ctx(), ValueError("bad frame"))
    assert (unexpected.error_kind, unexpected.infrastructure) == ("unexpected_error", False)
    assert unexpected.error_message == "ValueError: bad frame"
    # Infrastructure is never permanent: the job must get its chance once the store is back.
    infra = JobFailure("x", kind="blob_unavailable", permanent=True, infrastructure=True)
    assert infra.permanent is False
    assert classify(_ctx(), infra).permanent is False
