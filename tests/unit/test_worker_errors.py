"""How the worker classifies what a job raised: permanent, transient or stopped."""

from __future__ import annotations

import pytest

from db.blobs import BlobNotFound, BlobStoreError, BlobStoreUnavailable
from worker.pipeline.errors import Cancelled, InvalidParams, InvalidVideo, ModelUnavailable
from worker.pipelines import JobFailure, JobStopped
from worker.video import blob_failure, pipeline_failure


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
    down = blob_failure("uploading the results", BlobStoreUnavailable("refused"))
    assert (down.kind, down.permanent) == ("blob_unavailable", False)
    other = blob_failure("uploading the results", BlobStoreError("bad credentials"))
    assert (other.kind, other.permanent) == ("blob_error", False)
    assert other.message.startswith("uploading the results: ")
