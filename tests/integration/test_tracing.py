"""Traces: one trace per job from the HTTP submit through the worker's claim, run and completion.

The app runs behind the test client and a real worker loop runs in-process, both on this test's
Postgres and S3; tracing is configured with the SDK's in-memory exporter, then turned off again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import TestClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.support.db import sql
from tests.support.keys import Keys
from tests.support.media import mp4_bytes
from tests.support.worker import fast_settings, running_worker
from vidjobs import tracing
from vidjobs.blobs import BlobSettings
from vidjobs.worker.pipelines.registry import PipelineRegistry

pytestmark = [pytest.mark.integration]


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on, into memory, for this test only."""
    exporter = InMemorySpanExporter()
    assert tracing.configure(tracing.TracingSettings(enabled=True), service="t", exporter=exporter)
    try:
        yield exporter
    finally:
        tracing.shutdown()


def _submit(client: TestClient[Litestar], key: str, pipeline: str, video: bytes) -> str:
    resp = client.post(
        "/video/submit",
        data={"pipeline": pipeline, "sample_fps": "2"},
        files={"file": ("clip.mp4", video, "video/mp4")},
        headers=Keys.auth(key),
    )
    assert resp.status_code == 202, resp.text
    return str(resp.json()["job_id"])


def _drain(database_url: str, registry: PipelineRegistry | None = None) -> None:
    async def drain() -> None:
        async with running_worker(database_url, fast_settings(), registry, drain=True) as rw:
            await asyncio.wait_for(rw.task, 120)

    asyncio.run(drain())


def _by_name(finished: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    named: dict[str, ReadableSpan] = {}
    for s in finished:
        assert s.name not in named, f"two spans named {s.name!r}"
        named[s.name] = s
    return named


def _parent_id(s: ReadableSpan) -> int | None:
    return None if s.parent is None else s.parent.span_id


def _span_id(s: ReadableSpan) -> int:
    assert s.context is not None
    return s.context.span_id


def _assert_job_tree(named: dict[str, ReadableSpan], job_id: str) -> None:
    submit, claim, run = named["job submit"], named["job claim"], named["job run"]
    complete = named["job complete"]
    traces = {s.context.trace_id for s in named.values() if s.context is not None}
    assert len(traces) == 1, "submit, claim, run and completion share one trace"
    assert _parent_id(submit) is None
    assert _parent_id(claim) == _span_id(submit)
    assert _parent_id(run) == _span_id(submit)
    assert _parent_id(complete) == _span_id(run)
    for s in (submit, claim, run):
        assert s.attributes is not None
        assert s.attributes["vidjobs.job_id"] == job_id
        assert s.attributes["vidjobs.tenant"] == "acme"
    states = {n: dict(named[n].attributes or {}).get("vidjobs.state") for n in named}
    assert states["job submit"] == "pending"
    assert states["job run"] == "completed"
    assert states["job complete"] == "completed"


def test_a_noop_job_is_one_trace_from_submit_to_completion(
    client: TestClient[Litestar], keys: Keys, database_url: str, spans: InMemorySpanExporter
) -> None:
    job_id = _submit(client, keys.acme, "noop", mp4_bytes())
    (stored,) = sql(
        database_url, "SELECT trace_context FROM vidjobs.jobs WHERE job_id = %s", job_id
    )
    named = _by_name(spans.get_finished_spans())
    submit = named["job submit"]
    assert submit.context is not None
    # The row holds the submit span's W3C traceparent: 00-<trace id>-<span id>-<flags>.
    c = submit.context
    assert stored[0] == f"00-{c.trace_id:032x}-{c.span_id:016x}-{int(c.trace_flags):02x}"

    _drain(database_url)
    named = _by_name(spans.get_finished_spans())
    _assert_job_tree(named, job_id)
    assert named["job run"].attributes is not None
    assert named["job run"].attributes["vidjobs.pipeline"] == "noop"


def test_with_tracing_off_nothing_is_recorded_and_the_column_stays_null(
    client: TestClient[Litestar], keys: Keys, database_url: str
) -> None:
    exporter = InMemorySpanExporter()
    assert not tracing.configure(tracing.TracingSettings(), service="t", exporter=exporter)
    assert not tracing.enabled()
    job_id = _submit(client, keys.acme, "noop", mp4_bytes())
    _drain(database_url)
    rows = sql(
        database_url, "SELECT state, trace_context FROM vidjobs.jobs WHERE job_id = %s", job_id
    )
    assert rows == [("completed", None)]
    assert exporter.get_finished_spans() == ()


@pytest.mark.ml
@pytest.mark.timeout(600)
def test_a_video_job_has_a_span_per_stage(
    client: TestClient[Litestar],
    keys: Keys,
    database_url: str,
    s3_settings: BlobSettings,
    spans: InMemorySpanExporter,
    tmp_path: Path,
) -> None:
    from vidjobs.devstack.synth.video import make_sample_video
    from vidjobs.worker.pipelines.registry import default_registry
    from vidjobs.worker.pipelines.yolo_ocr.settings import PipelineSettings

    make_sample_video(tmp_path / "clip.mp4", seconds=2.0, seed=5)
    job_id = _submit(client, keys.acme, "yolo_ocr", (tmp_path / "clip.mp4").read_bytes())
    registry = default_registry(s3_settings, PipelineSettings.fixture(), concurrency=1)
    _drain(database_url, registry)

    named = _by_name(spans.get_finished_spans())
    _assert_job_tree(named, job_id)
    run = _span_id(named["job run"])
    for stage in ("stage download", "stage analyse", "stage upload results"):
        assert _parent_id(named[stage]) == run, stage
    analyse = _span_id(named["stage analyse"])
    for stage in ("stage decode", "stage detect", "stage ocr"):
        s = named[stage]
        assert _parent_id(s) == analyse, stage
        assert s.attributes is not None
        assert int(str(s.attributes["vidjobs.stage.calls"])) >= 1, stage
