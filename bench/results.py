"""Results benchmark (issue 13): paged reads of a two-hour results document. Not a timed test.

    .venv/bin/python bench/results.py            # embedded Postgres + embedded S3

Stores a synthetic two-hour result (``vidjobs.devstack.synth.long_results``: 7,200 frames at
1 frame/s, 480 tracks, 720 text events) as a worker would (document + byte index) for one
completed job, starts a real ``vidjobs api`` process, then

1. pages every frame by cursor (100 a page), jumps by time (``from_ms``) to random places,
   pages tracks by label and text events by time, and fetches each export, timing each request;
2. reads the process's RSS (``VmRSS`` during, ``VmHWM`` peak) while paging;
3. for comparison, in a fresh API process, ``GET /video/results/{id}`` (the whole document,
   decoded and re-encoded by the API) and that process's peak RSS.

Prints one JSON line LAST: ``page_ms_p50``, ``page_ms_p99``, ``results_api_rss_mb`` (peak while
paging), ``whole_document_rss_mb`` and ``whole_document_ms`` (the comparison), export times.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import psycopg

from vidjobs.blobs import BlobSettings, open_blob_store, results_index_key, results_key
from vidjobs.db.api_keys import api_key_create
from vidjobs.db.jobs import NewJob, job_insert_many
from vidjobs.db.leases import job_claim, job_complete
from vidjobs.db.migrate import migrate
from vidjobs.devstack.embedded import EmbeddedPostgres, EmbeddedS3
from vidjobs.devstack.synth.long_results import long_results_document
from vidjobs.schema.results_index import build_index

TENANT = "bench"
VIDJOBS = str(Path(sys.executable).with_name("vidjobs"))


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int, field: str) -> float:
    """``VmRSS`` / ``VmHWM`` (peak) of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def seed(url: str, blobs: BlobSettings, data: bytes) -> tuple[str, str]:
    """(API key, job id) of one completed job whose results are ``data``, with its index."""

    async def go() -> tuple[str, uuid.UUID, uuid.UUID]:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as c:
            key = (await api_key_create(c, TENANT, "bench"))[1]
            await job_insert_many(c, [NewJob(tenant=TENANT, pipeline="noop", params={})])
            (job,) = await job_claim(c, worker_id="bench", batch_size=1, lease_seconds=600)
            assert job.lease_token is not None
            return key, job.job_id, job.lease_token

    key, job_id, token = asyncio.run(go())
    store = open_blob_store(blobs)
    try:
        store.ensure_ready()
        store.put_bytes(results_key(job_id), data, content_type="application/json")
        store.put_bytes(results_index_key(job_id), msgspec.json.encode(build_index(data)))
    finally:
        store.close()

    async def done() -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as c:
            await job_complete(c, job_id, token, output_key=results_key(job_id))

    asyncio.run(done())
    return key, str(job_id)


@contextlib.contextmanager
def api_process(url: str, blobs: BlobSettings, tmp: Path) -> Iterator[tuple[int, int]]:
    """(pid, port) of a fresh ``vidjobs api`` process; stopped by its PID afterwards."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "VIDJOBS_BLOB_BACKEND": "s3",
        "VIDJOBS_S3_ENDPOINT": blobs.s3_endpoint,
        "VIDJOBS_S3_ACCESS_KEY": blobs.s3_access_key,
        "VIDJOBS_S3_SECRET_KEY": blobs.s3_secret_key,
        "VIDJOBS_S3_BUCKET": blobs.s3_bucket,
    }
    out = (tmp / f"api-{port}.log").open("wb")
    cmd = [VIDJOBS, "api", "--port", str(port), "--workers", "1", "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError((tmp / f"api-{port}.log").read_text())
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("vidjobs api did not start")
            time.sleep(0.2)
        yield proc.pid, port
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()


def timed_get(
    http: httpx.Client, path: str, **params: str | int | None
) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    resp = http.get(path, params={k: v for k, v in params.items() if v is not None})
    elapsed = (time.perf_counter() - started) * 1000
    if resp.status_code != 200:
        raise RuntimeError(f"{path}: {resp.status_code} {resp.text[:300]}")
    return elapsed, resp


def paging(port: int, pid: int, key: str, job: str) -> dict[str, float]:
    base = f"/video/results/{job}"
    rng = random.Random(1)
    times: list[float] = []
    rss: list[float] = []
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60) as http:
        cursor = None
        frames = 0
        while True:
            ms, resp = timed_get(http, f"{base}/frames", limit=100, cursor=cursor)
            times.append(ms)
            body = resp.json()
            frames += len(body["items"])
            cursor = body["next_cursor"]
            rss.append(rss_mb(pid, "VmRSS"))
            if cursor is None:
                break
        assert frames == 7200, frames
        for _ in range(100):
            ms, _resp = timed_get(
                http, f"{base}/frames", from_ms=rng.randrange(0, 7_200_000, 1000), limit=100
            )
            times.append(ms)
        for label in ("circle", "square", "triangle", "star"):
            ms, _resp = timed_get(http, f"{base}/tracks", label=label, limit=100)
            times.append(ms)
        for _ in range(50):
            start = rng.randrange(0, 7_000_000, 1000)
            ms, _resp = timed_get(http, f"{base}/text-events", from_ms=start, to_ms=start + 60_000)
            times.append(ms)
        exports = {}
        for name in ("text.vtt", "detections.csv", "tracks.mot.txt"):
            ms, resp = timed_get(http, f"{base}/{name}")
            exports[f"export_ms_{name.split('.')[0]}"] = round(ms, 1)
            rss.append(rss_mb(pid, "VmRSS"))
    times.sort()
    return {
        "pages": len(times),
        "page_ms_p50": round(statistics.median(times), 2),
        "page_ms_p99": round(times[min(len(times) - 1, round(0.99 * len(times)))], 2),
        "results_api_rss_mb": round(rss_mb(pid, "VmHWM"), 1),
        "results_api_rss_mb_max_sampled": round(max(rss), 1),
        **exports,
    }


def whole(port: int, pid: int, key: str, job: str) -> dict[str, float]:
    with httpx.Client(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=120,
    ) as http:
        idle = rss_mb(pid, "VmRSS")
        ms, _resp = timed_get(http, f"/video/results/{job}")
    return {
        "whole_document_ms": round(ms, 1),
        "whole_document_rss_mb": round(rss_mb(pid, "VmHWM"), 1),
        "api_idle_rss_mb": round(idle, 1),
    }


def main() -> None:
    os.environ.setdefault("YOLO_OFFLINE", "1")
    data = long_results_document(hours=2.0)
    log(f"document: {len(data) / 1e6:.1f} MB")
    with tempfile.TemporaryDirectory(prefix="vidjobs-bench-results-") as d:
        tmp = Path(d)
        pg = EmbeddedPostgres(tmp / "pg", durable=False)
        pg.start()
        try:
            with EmbeddedS3(tmp / "s3") as s3:
                migrate(pg.url)
                blobs = BlobSettings(
                    backend="s3",
                    s3_endpoint=s3.endpoint,
                    s3_access_key=s3.access_key,
                    s3_secret_key=s3.secret_key,
                    s3_bucket="vidjobs-bench-results",
                )
                key, job = seed(pg.url, blobs, data)
                with api_process(pg.url, blobs, tmp) as (pid, port):
                    line = paging(port, pid, key, job)
                with api_process(pg.url, blobs, tmp) as (pid, port):
                    line |= whole(port, pid, key, job)
        finally:
            pg.stop()
    line |= {"document_mb": round(len(data) / 1e6, 2), "load_avg_1m": round(os.getloadavg()[0], 2)}
    print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
