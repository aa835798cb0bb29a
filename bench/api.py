"""API benchmark (issue 3): upload memory and speed, status requests/s. Not a timed test.

    .venv/bin/python bench/api.py                       # embedded Postgres + embedded S3
    .venv/bin/python bench/api.py --dsn URL --s3-endpoint HOST:PORT --s3-access-key K ...
    .venv/bin/python bench/api.py --blob-backend local  # the local-directory store

Phases, each against a real ``vidjobs api`` process (uvicorn, one worker):
1. Upload a 100 MB and a 1 GB MP4 (a fresh API process each, so each peak is its own): the API
   process's peak RSS (``VmHWM``) and the upload's MB/s.
2. ``copy_mb_s``: the same 1 GB file put into the same blob store directly
   (``BlobStore.put_stream``, no HTTP) in the same run: the ceiling the upload is judged by.
3. With ~1,000 jobs in the table: ``GET /video/status/{id}`` (auth + one job read) against
   ``GET /health`` (a trivial Litestar route) on the same process, each for ``--duration`` s
   over ``--connections`` keep-alive connections from a minimal asyncio HTTP client (light
   enough not to be the bottleneck that httpx would be).
Prints one JSON line LAST with the keys ``peak_rss_mb_100mb``, ``peak_rss_mb_1gb``,
``upload_mb_s``, ``copy_mb_s``, ``status_rps``, ``trivial_rps`` (plus context).

    .venv/bin/python bench/api.py --compare-metrics --blob-backend local --duration 10

runs only what the request metrics cost: two API processes side by side, one counting and
timing every request (the default) and one with ``VIDJOBS_API_REQUEST_METRICS=false``, the
status route hammered on each in alternating 1 s slices (so both see the same background load);
its JSON line has ``status_rps_metrics``, ``status_rps_no_metrics``, their ``ratio`` and the
median ratio of the adjacent slice pairs (``ratio_median_of_pairs``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql

from vidjobs.blobs import BlobSettings, open_blob_store
from vidjobs.db.api_keys import api_key_create
from vidjobs.db.jobs import NewJob, job_insert_many
from vidjobs.db.migrate import migrate

MB = 1024 * 1024
TENANT = "bench"
VIDJOBS = str(Path(sys.executable).with_name("vidjobs"))
HEAD = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- services ------------------------------------------------------------------------------


@contextlib.contextmanager
def postgres(dsn: str | None, tmp: Path) -> Iterator[str]:
    """URL of a fresh, migrated database on the given server or an embedded one."""
    if dsn:
        admin = dsn
        stack: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    else:
        from vidjobs.devstack.embedded import EmbeddedPostgres

        pg = EmbeddedPostgres(tmp / "pg", durable=True)
        pg.start()
        admin = pg.url
        stack = contextlib.closing(_Stopper(pg.stop))
    with stack:
        name = "vidjobs_bench_api"
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        info = psycopg.conninfo.conninfo_to_dict(admin)
        info["dbname"] = name
        url = psycopg.conninfo.make_conninfo(
            **{k: str(v) for k, v in info.items() if v is not None}
        )
        migrate(url)
        try:
            yield url
        finally:
            with psycopg.connect(admin, autocommit=True) as c:
                c.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


class _Stopper:
    def __init__(self, stop: Any) -> None:
        self.close = stop


@contextlib.contextmanager
def blob_settings(args: argparse.Namespace, tmp: Path) -> Iterator[BlobSettings]:
    """The blob store: local directory, the given S3 endpoint, or an embedded SeaweedFS."""
    bucket = f"vidjobs-bench-{uuid.uuid4().hex[:8]}"
    if args.blob_backend == "local":
        yield BlobSettings(backend="local", directory=tmp / "blobs")
        return
    if args.s3_endpoint:
        yield BlobSettings(
            backend="s3",
            s3_endpoint=args.s3_endpoint,
            s3_access_key=args.s3_access_key,
            s3_secret_key=args.s3_secret_key,
            s3_bucket=bucket,
        )
        return
    from vidjobs.devstack.embedded import EmbeddedS3

    with EmbeddedS3(tmp / "s3") as s3:
        yield BlobSettings(
            backend="s3",
            s3_endpoint=s3.endpoint,
            s3_access_key=s3.access_key,
            s3_secret_key=s3.secret_key,
            s3_bucket=bucket,
        )


def api_env(url: str, blobs: BlobSettings) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "VIDJOBS_BLOB_BACKEND": blobs.backend,
        "VIDJOBS_BLOB_DIR": str(blobs.directory),
        "VIDJOBS_S3_ENDPOINT": blobs.s3_endpoint,
        "VIDJOBS_S3_ACCESS_KEY": blobs.s3_access_key,
        "VIDJOBS_S3_SECRET_KEY": blobs.s3_secret_key,
        "VIDJOBS_S3_BUCKET": blobs.s3_bucket,
        "VIDJOBS_API_MAX_UPLOAD_BYTES": str(4 * 1024 * MB),
    }
    return env


@contextlib.contextmanager
def api_process(
    url: str, blobs: BlobSettings, tmp: Path, **extra_env: str
) -> Iterator[tuple[int, int]]:
    """(pid, port) of a fresh ``vidjobs api`` process; stopped by its PID afterwards."""
    port = free_port()
    out = (tmp / f"api-{port}.log").open("wb")
    proc = subprocess.Popen(
        [VIDJOBS, "api", "--port", str(port), "--workers", "1", "--log-level", "warning"],
        env={**api_env(url, blobs), **extra_env},
        stdout=out,
        stderr=subprocess.STDOUT,
    )
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


def rss_mb(pid: int, field: str) -> float:
    """``VmRSS`` / ``VmHWM`` (peak) of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


# -- phases --------------------------------------------------------------------------------


def make_video(path: Path, size: int) -> Path:
    """An ``ftyp`` header and pseudo-random filler: passes the API's check, cheap to make."""
    block = random.Random(1).randbytes(MB)
    with path.open("wb") as f:
        f.write(HEAD)
        left = size - len(HEAD)
        while left > 0:
            f.write(block[: min(left, MB)])
            left -= min(left, MB)
    return path


def create_key(url: str) -> str:
    async def go() -> str:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as c:
            return (await api_key_create(c, TENANT, "bench"))[1]

    return asyncio.run(go())


def upload(port: int, key: str, video: Path) -> tuple[float, str]:
    """Seconds to upload ``video`` (streamed by httpx from the file) and the job id."""
    start = time.perf_counter()
    with video.open("rb") as f:
        resp = httpx.post(
            f"http://127.0.0.1:{port}/video/submit",
            data={"pipeline": "noop"},
            files={"file": (video.name, f, "video/mp4")},
            headers={"Authorization": f"Bearer {key}"},
            timeout=600,
        )
    elapsed = time.perf_counter() - start
    if resp.status_code != 202:
        raise RuntimeError(f"upload failed: {resp.status_code} {resp.text}")
    return elapsed, str(resp.json()["job_id"])


def phase_upload(
    url: str, blobs: BlobSettings, tmp: Path, key: str, video: Path
) -> dict[str, float]:
    """Upload in a fresh API process; its peak RSS, sampled RSS and the MB/s."""
    with api_process(url, blobs, tmp) as (pid, port):
        idle = rss_mb(pid, "VmRSS")
        samples: list[float] = []
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.05):
                with contextlib.suppress(OSError, RuntimeError):
                    samples.append(rss_mb(pid, "VmRSS"))

        t = threading.Thread(target=sample, daemon=True)
        t.start()
        try:
            seconds, job_id = upload(port, key, video)
        finally:
            done.set()
            t.join()
        peak = rss_mb(pid, "VmHWM")
    store = open_blob_store(blobs)
    try:
        store.delete(f"video_jobs/{job_id}.mp4")
    finally:
        store.close()
    size_mb = video.stat().st_size / MB
    log(
        f"upload {size_mb:.0f} MB: {seconds:.2f} s = {size_mb / seconds:.1f} MB/s; API RSS idle "
        f"{idle:.0f} MB, peak {peak:.0f} MB (sampled max {max(samples, default=idle):.0f} MB)"
    )
    return {"seconds": seconds, "mb_s": size_mb / seconds, "peak_rss_mb": peak, "idle_rss_mb": idle}


def phase_copy(blobs: BlobSettings, video: Path) -> float:
    """MB/s of a plain ``put_stream`` of the file into the same store (no HTTP, no API)."""
    store = open_blob_store(blobs)
    key = f"video_jobs/{uuid.uuid4()}.mp4"
    try:
        store.ensure_ready()
        start = time.perf_counter()
        with video.open("rb") as f:
            store.put_stream(key, f, size=video.stat().st_size)
        seconds = time.perf_counter() - start
        store.delete(key)
    finally:
        store.close()
    mb_s = video.stat().st_size / MB / seconds
    log(f"plain copy into the same store: {seconds:.2f} s = {mb_s:.1f} MB/s")
    return mb_s


async def hammer(port: int, paths: list[str], headers: str, duration: float, conns: int) -> float:
    """Requests/s of GETs over ``conns`` keep-alive connections for ``duration`` seconds."""
    reqs = [f"GET {p} HTTP/1.1\r\nHost: bench\r\n{headers}\r\n".encode() for p in paths]
    end = time.perf_counter() + duration
    errors = 0

    async def one(i: int) -> int:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        n = 0
        rng = random.Random(i)
        try:
            while time.perf_counter() < end:
                writer.write(reqs[rng.randrange(len(reqs))])
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                if not head.startswith(b"HTTP/1.1 200"):
                    errors += 1
                n += 1
        finally:
            writer.close()
        return n

    start = time.perf_counter()
    counts = await asyncio.gather(*(one(i) for i in range(conns)))
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{errors} non-200 answers")
    return sum(counts) / elapsed


def seed_jobs(url: str, n: int) -> list[uuid.UUID]:
    """``n`` pending noop jobs of the bench tenant, then fresh planner statistics."""

    async def seed() -> list[uuid.UUID]:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as c:
            jobs = [NewJob(tenant=TENANT, pipeline="noop", params={}) for _ in range(n)]
            return await job_insert_many(c, jobs)

    ids = asyncio.run(seed())
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("ANALYZE")
    return ids


def phase_status(
    url: str, blobs: BlobSettings, tmp: Path, key: str, args: argparse.Namespace
) -> dict[str, float]:
    """status_rps vs trivial_rps on one API process, with ~1,000 jobs in the table."""
    ids = seed_jobs(url, args.jobs)
    auth = f"Authorization: Bearer {key}\r\n"
    status_paths = [f"/video/status/{i}" for i in ids]
    with api_process(url, blobs, tmp) as (_pid, port):
        asyncio.run(hammer(port, ["/health"], "", 1.0, args.connections))  # warm-up
        asyncio.run(hammer(port, status_paths, auth, 1.0, args.connections))
        # Alternate 1 s slices so both routes see the same background load (shared machines).
        slices = max(1, round(args.duration))
        trivial_rates: list[float] = []
        status_rates: list[float] = []
        conns = args.connections
        for _ in range(slices):
            trivial_rates.append(asyncio.run(hammer(port, ["/health"], "", 1.0, conns)))
            status_rates.append(asyncio.run(hammer(port, status_paths, auth, 1.0, conns)))
        trivial = sum(trivial_rates) / slices
        status = sum(status_rates) / slices
    log(
        f"{len(ids)} jobs: GET /video/status {status:.0f} req/s, GET /health {trivial:.0f} req/s "
        f"(ratio {status / trivial:.2f}; {args.connections} connections, "
        f"{args.duration:.0f} s each)"
    )
    return {"status_rps": status, "trivial_rps": trivial}


def phase_metrics_cost(
    url: str, blobs: BlobSettings, tmp: Path, key: str, args: argparse.Namespace
) -> tuple[float, float, float, int]:
    """Status requests/s with and without the request-metrics middleware, interleaved.

    Returns the two means, the median of the slice pairs' ratios (robust to a neighbour's
    burst, which a shared machine has) and the number of slices of each.
    """
    ids = seed_jobs(url, args.jobs)
    auth = f"Authorization: Bearer {key}\r\n"
    paths = [f"/video/status/{i}" for i in ids]
    conns = args.connections
    with (
        api_process(url, blobs, tmp) as (_, on),
        api_process(url, blobs, tmp, VIDJOBS_API_REQUEST_METRICS="false") as (_, off),
    ):
        for port in (on, off):  # warm-up: connections, caches, the auth path
            asyncio.run(hammer(port, paths, auth, 1.0, conns))
        rates: dict[int, list[float]] = {on: [], off: []}
        for i in range(max(1, round(args.duration))):
            # ABBA order: neither process always gets the slice right after the other's.
            for port in (on, off) if i % 2 == 0 else (off, on):
                rates[port].append(asyncio.run(hammer(port, paths, auth, 1.0, conns)))
        with_m = sum(rates[on]) / len(rates[on])
        without = sum(rates[off]) / len(rates[off])
    log(
        f"{len(ids)} jobs: GET /video/status {with_m:.0f} req/s with request metrics, "
        f"{without:.0f} req/s without (ratio {with_m / without:.3f}; {conns} connections, "
        f"{len(rates[on])} x 1 s slices each, interleaved)\n"
        f"  slices with: {[round(r) for r in rates[on]]}\n"
        f"  slices without: {[round(r) for r in rates[off]]}"
    )
    pairs = sorted(a / b for a, b in zip(rates[on], rates[off], strict=True))
    return with_m, without, pairs[len(pairs) // 2], len(rates[on])


def compare_metrics(args: argparse.Namespace) -> None:
    """Only the request-metrics comparison; one JSON line."""
    with tempfile.TemporaryDirectory(prefix="vidjobs-bench-api-") as d:
        tmp = Path(d)
        with postgres(args.dsn, tmp) as url, blob_settings(args, tmp) as blobs:
            on, off, paired, slices = phase_metrics_cost(url, blobs, tmp, create_key(url), args)
    result = {
        "status_rps_metrics": round(on, 1),
        "status_rps_no_metrics": round(off, 1),
        "ratio": round(on / off, 3),
        "ratio_median_of_pairs": round(paired, 3),
        "jobs_in_table": args.jobs,
        "connections": args.connections,
        "slices": slices,
    }
    print(json.dumps(result), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--dsn", help="admin URL of an existing Postgres (default: embedded)")
    ap.add_argument("--blob-backend", choices=["s3", "local"], default="s3")
    ap.add_argument("--s3-endpoint", help="host:port of an existing S3 (default: embedded)")
    ap.add_argument("--s3-access-key", default="")
    ap.add_argument("--s3-secret-key", default="")
    ap.add_argument("--small-mb", type=int, default=100)
    ap.add_argument("--large-mb", type=int, default=1000)
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--skip-uploads", action="store_true", help="only the requests/s phase")
    ap.add_argument(
        "--compare-metrics",
        action="store_true",
        help="only the status route with and without the request-metrics middleware",
    )
    args = ap.parse_args()
    if args.compare_metrics:
        compare_metrics(args)
        return

    with tempfile.TemporaryDirectory(prefix="vidjobs-bench-api-") as d:
        tmp = Path(d)
        with postgres(args.dsn, tmp) as url, blob_settings(args, tmp) as blobs:
            key = create_key(url)
            none = {"peak_rss_mb": 0.0, "mb_s": 0.0, "idle_rss_mb": 0.0}
            up_small, up_large, copy = none, none, 0.0
            if not args.skip_uploads:
                small = make_video(tmp / "small.mp4", args.small_mb * 1000 * 1000)
                large = make_video(tmp / "large.mp4", args.large_mb * 1000 * 1000)
                up_small = phase_upload(url, blobs, tmp, key, small)
                up_large = phase_upload(url, blobs, tmp, key, large)
                copy = phase_copy(blobs, large)
            rates = phase_status(url, blobs, tmp, key, args)
    result = {
        "peak_rss_mb_100mb": round(up_small["peak_rss_mb"], 1),
        "peak_rss_mb_1gb": round(up_large["peak_rss_mb"], 1),
        "upload_mb_s": round(up_large["mb_s"], 1),
        "copy_mb_s": round(copy, 1),
        "status_rps": round(rates["status_rps"], 1),
        "trivial_rps": round(rates["trivial_rps"], 1),
        "idle_rss_mb": round(up_large["idle_rss_mb"], 1),
        "upload_mb_s_100mb": round(up_small["mb_s"], 1),
        "status_vs_trivial": round(rates["status_rps"] / rates["trivial_rps"], 2),
        "blob_backend": blobs.backend,
        "jobs_in_table": args.jobs,
        "connections": args.connections,
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
