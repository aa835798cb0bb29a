"""The yolo_ocr job through the real worker loop: blobs in, results out, failures classified."""

from __future__ import annotations

import asyncio
import glob
import random
import tempfile
import time
import uuid
from pathlib import Path

import cv2
import msgspec
import pytest

from tests.support.db import Conn
from tests.support.results_schema import assert_valid_results
from tests.support.waiting import wait_for_async
from tests.support.worker import fast_settings, job_now, running_worker, submit
from vidjobs.blobs import (
    BlobSettings,
    BlobStore,
    open_blob_store,
    results_index_key,
    results_key,
    video_key,
)
from vidjobs.db.jobs import job_cancel
from vidjobs.devstack.embedded import free_port
from vidjobs.devstack.synth.video import make_audio_only_mp4, make_sample_video
from vidjobs.schema import JobState
from vidjobs.schema.results import decode_results
from vidjobs.schema.results_index import ResultsIndex, build_index
from vidjobs.worker.pipelines.registry import default_registry
from vidjobs.worker.pipelines.yolo_ocr.settings import PipelineSettings

pytestmark = [pytest.mark.integration, pytest.mark.ml, pytest.mark.anyio]


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """A good 2 s video and the malformed inputs of issue 4, as bytes."""
    d = tmp_path_factory.mktemp("videos")
    make_sample_video(d / "good.mp4", seconds=2.0, seed=5)
    good = (d / "good.mp4").read_bytes()
    writer = cv2.VideoWriter(str(d / "zero.mp4"), cv2.VideoWriter.fourcc(*"mp4v"), 25.0, (64, 64))
    writer.release()
    make_audio_only_mp4(d / "audio.mp4")
    return {
        "good": good,
        "truncated": good[: len(good) // 2],
        "header_garbage": good[:64] + random.Random(0).randbytes(32_000),
        "zero_frames": (d / "zero.mp4").read_bytes(),
        "audio_only": (d / "audio.mp4").read_bytes(),
    }


@pytest.fixture
def store(local_blob_settings: BlobSettings) -> BlobStore:
    s = open_blob_store(local_blob_settings)
    s.ensure_ready()
    return s


async def _submit_video(conn: Conn, store: BlobStore, data: bytes, **params: float) -> uuid.UUID:
    job = await submit(conn, pipeline="yolo_ocr", params=dict(params))
    store.put_bytes(video_key(job.job_id), data, content_type="video/mp4")
    await conn.execute(
        "UPDATE vidjobs.jobs SET input_key = %s WHERE job_id = %s",
        (video_key(job.job_id), job.job_id),
    )
    return job.job_id


def _leftover_temp_dirs(job_ids: list[uuid.UUID]) -> list[str]:
    tmp = Path(tempfile.gettempdir())
    return [d for job_id in job_ids for d in glob.glob(str(tmp / f"vidjobs-{job_id}-*"))]


async def test_malformed_videos_fail_readably_and_the_worker_goes_on(
    conn: Conn,
    database_url: str,
    local_blob_settings: BlobSettings,
    store: BlobStore,
    videos: dict[str, bytes],
) -> None:
    ids = {kind: await _submit_video(conn, store, data) for kind, data in videos.items()}
    registry = default_registry(local_blob_settings, PipelineSettings.fixture(), concurrency=2)
    async with running_worker(database_url, fast_settings(), registry, drain=True) as rw:
        stats = await asyncio.wait_for(rw.task, 240)
    assert (stats.completed, stats.failed) == (1, 4)
    for kind, job_id in ids.items():
        job = await job_now(conn, job_id)
        if kind == "good":
            assert job.state is JobState.COMPLETED
            assert job.output_key == results_key(job.job_id)
            assert job.progress == 1.0
            doc = decode_results(store.get_bytes(results_key(job.job_id)))
            assert_valid_results(store.get_bytes(results_key(job.job_id)))
            # Beside it, the byte index the API pages it with (schema.results_index).
            index = store.get_bytes(results_index_key(job.job_id))
            stored = store.get_bytes(results_key(job.job_id))
            assert msgspec.json.decode(index, type=ResultsIndex) == build_index(stored)
            assert doc.video.frames == 50
        else:
            assert (job.state, job.error_kind, job.attempts) == (
                JobState.FAILED,
                "invalid_video",
                1,
            ), kind
            assert job.error_message
            assert "Traceback" not in job.error_message
    assert _leftover_temp_dirs(list(ids.values())) == [], "temporary files must be removed"


async def test_missing_input_and_missing_model_fail_for_good(
    conn: Conn, database_url: str, local_blob_settings: BlobSettings, store: BlobStore
) -> None:
    no_blob = await submit(conn, pipeline="yolo_ocr")
    registry = default_registry(local_blob_settings, PipelineSettings.fixture(), concurrency=1)
    async with running_worker(database_url, fast_settings(), registry, drain=True) as rw:
        await asyncio.wait_for(rw.task, 120)
    job = await job_now(conn, no_blob.job_id)
    assert (job.state, job.error_kind) == (JobState.FAILED, "input_missing")

    no_model = await _submit_video(conn, store, b"not even looked at")
    bad = PipelineSettings(detector_weights="/nonexistent/weights.pt")
    registry = default_registry(local_blob_settings, bad, concurrency=1)
    async with running_worker(database_url, fast_settings(), registry, drain=True) as rw:
        await asyncio.wait_for(rw.task, 120)
    job = await job_now(conn, no_model)
    assert (job.state, job.error_kind) == (JobState.FAILED, "model_unavailable")
    assert "VIDJOBS_DETECTOR_WEIGHTS" in (job.error_message or "")


async def test_blob_store_outage_is_transient(
    conn: Conn, database_url: str, videos: dict[str, bytes], tmp_path: Path
) -> None:
    job = await submit(conn, pipeline="yolo_ocr")
    down = BlobSettings(
        backend="s3", s3_endpoint=f"127.0.0.1:{free_port()}", s3_bucket="vidjobs-down"
    )
    registry = default_registry(down, PipelineSettings.fixture(), concurrency=1)
    async with running_worker(database_url, fast_settings(), registry, drain=True) as rw:
        stats = await asyncio.wait_for(rw.task, 120)
    now = await job_now(conn, job.job_id)
    # The store's fault, not the job's: handed back for later, the attempt not counted.
    assert (now.state, now.error_kind, now.attempts) == (JobState.PENDING, "blob_unavailable", 0)
    assert now.run_after > now.updated_at, "retried later, with backoff"
    assert (stats.retried_later, stats.failed) == (1, 0)


async def test_cancel_stops_a_running_analysis_within_a_heartbeat(
    conn: Conn,
    database_url: str,
    local_blob_settings: BlobSettings,
    store: BlobStore,
    tmp_path: Path,
) -> None:
    long = tmp_path / "long.mp4"
    make_sample_video(long, seconds=30.0, fps=10.0, seed=1)
    job_id = await _submit_video(conn, store, long.read_bytes(), sample_fps=10.0)
    settings = fast_settings(heartbeat_interval_s=0.5, progress_interval_s=0.2)
    registry = default_registry(local_blob_settings, PipelineSettings.fixture(), concurrency=1)
    async with running_worker(database_url, settings, registry) as rw:

        async def analysing() -> bool:
            return (await job_now(conn, job_id)).frames_done > 0

        await wait_for_async(analysing, within=120)  # models loaded, frames being analysed
        await job_cancel(conn, job_id)
        t0 = time.monotonic()

        async def stopped() -> bool:
            return rw.worker.stats.stopped == 1

        await wait_for_async(stopped, within=10, every=0.02)
        took = time.monotonic() - t0
    # one heartbeat interval plus the frame in flight (seconds on a loaded 2-core box)
    assert took < 0.5 + 3.0, f"analysis stopped {took:.2f}s after the cancel"
    assert (await job_now(conn, job_id)).state is JobState.CANCELLED


async def test_stop_hands_back_a_running_analysis_after_the_grace(
    conn: Conn,
    database_url: str,
    local_blob_settings: BlobSettings,
    store: BlobStore,
    tmp_path: Path,
) -> None:
    long = tmp_path / "long.mp4"
    make_sample_video(long, seconds=30.0, fps=10.0, seed=2)
    job_id = await _submit_video(conn, store, long.read_bytes(), sample_fps=10.0)
    settings = fast_settings(grace_seconds=0.5, progress_interval_s=0.2)
    registry = default_registry(local_blob_settings, PipelineSettings.fixture(), concurrency=1)
    async with running_worker(database_url, settings, registry) as rw:

        async def analysing() -> bool:
            return (await job_now(conn, job_id)).frames_done > 0

        await wait_for_async(analysing, within=120)
        t0 = time.monotonic()
        stats = await rw.stop()
        took = time.monotonic() - t0
    assert stats.released == 1
    # the grace, plus the frame in flight and the hand-back write
    assert took < 0.5 + 4.0, f"stop took {took:.2f}s"
    back = await job_now(conn, job_id)
    assert (back.state, back.attempts) == (JobState.PENDING, 0)
