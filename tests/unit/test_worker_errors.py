"""How the worker classifies what a job raised: permanent, transient, infrastructure or stopped."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from vidjobs.blobs import BlobNotFound, BlobStoreError, BlobStoreUnavailable
from vidjobs.db.errors import DatabaseUnavailable
from vidjobs.schema import Job, JobState
from vidjobs.worker.outcome import classify
from vidjobs.worker.pipelines.contract import JobContext, JobFailure, JobStopped
from vidjobs.worker.pipelines.yolo_ocr.errors import (
    Cancelled,
    InvalidParams,
    InvalidVideo,
    ModelUnavailable,
)
from vidjobs.worker.pipelines.yolo_ocr.job import blob_failure, pipeline_failure


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (InvalidVideo("no video stream"), "invalid_video"),
        (InvalidParams("sample_fps out of range"), "invalid_params"),
        (ModelUnavailable("set VIDJOBS_DETECTOR_WEIGHTS"), "model_unavailable"),
    ],
)
def test_pipeline_errors_fail_the_job_for_good(exc: Exception, kind: str) -> None:
    mapped = pipeline_failure(exc)
    assert isinstance(mapped, JobFailure)
    assert (mapped.kind, mapped.permanent, mapped.message) == (kind, True, str(exc))


def test_cancelled_stops_and_other_errors_pass_through() -> None:
    assert isinstance(pipeline_failure(Cancelled("stop")), JobStopped)
    other = ZeroDivisionError("x")
    assert pipeline_failure(other) is other


def test_blob_errors() -> None:
    missing = blob_failure("downloading the video", BlobNotFound("video_jobs/x.mp4"))
    assert (missing.kind, missing.permanent) == ("input_missing", True)
    assert missing.infrastructure is False
    down = blob_failure("uploading the results", BlobStoreUnavailable("refused"))
    assert (down.kind, down.permanent) == ("blob_unavailable", False)
    assert down.infrastructure is True, "an outage must not use up the job's attempts"
    other = blob_failure("uploading the results", BlobStoreError("bad credentials"))
    assert (other.kind, other.permanent) == ("blob_error", False)
    assert other.infrastructure is False, "a misconfiguration still counts its attempts"
    assert other.message.startswith("uploading the results: ")


def _ctx() -> JobContext:
    t = datetime(2030, 1, 1, tzinfo=UTC)
    job = Job(
        job_id=uuid.uuid4(), tenant="acme", state=JobState.RUNNING, pipeline="noop", params={},
        priority=0, run_after=t, attempts=1, max_attempts=3, lease_token=uuid.uuid4(),
        lease_expires_at=t, worker_id="w", heartbeat_at=t, progress=0.0, frames_done=0,
        frames_total=None, input_key=None, output_key=None, error_kind=None, error_message=None,
        idempotency_key=None, created_at=t, updated_at=t, started_at=t, finished_at=None,
    )  # fmt: skip
    return JobContext(job)


def test_infrastructure_errors_are_handed_back_not_counted() -> None:
    db = classify(_ctx(), DatabaseUnavailable("connection refused"))
    assert (db.error_kind, db.permanent, db.infrastructure) == ("database_unavailable", False, True)
    blob = classify(_ctx(), blob_failure("uploading", BlobStoreUnavailable("refused")))
    assert (blob.error_kind, blob.infrastructure) == ("blob_unavailable", True)
    # A genuine failure of the job still counts its attempt.
    unexpected = classify(_ctx(), ValueError("bad frame"))
    assert (unexpected.error_kind, unexpected.infrastructure) == ("unexpected_error", False)
    assert unexpected.error_message == "ValueError: bad frame"
    # Infrastructure is never permanent: the job must get its chance once the store is back.
    assert (
        JobFailure("blob_unavailable", "x", permanent=True, infrastructure=True).permanent is False
    )
