"""Segments benchmark (issue 16): one long video across 1-8 worker processes. Not a timed test.

    .venv/bin/python bench/segments.py                 # embedded durable Postgres, both parts
    .venv/bin/python bench/segments.py --skip-real     # scheduling only (~1.5 min)

1. **Scheduling** (the ``noop`` pipeline, so the models do not weigh): a video of ``--seconds``
   at 1 frame/s, each frame a ``--frame-sleep`` sleep, split into ``--segment-seconds``
   segments, drained by 1, 2, 4 and 8 ``vidjobs worker --no-video`` processes (concurrency
   1 each, started and idle first; timed from the submit to the parent's completion, the
   split, every segment and the merge included). ``speedup[N]`` = time with 1 / time with N.
2. **Real** (``yolo_ocr``, the fixture detector): a generated ``--real-seconds`` video, analysed
   whole by one worker (``VIDJOBS_SEGMENT_ABOVE_SECONDS=0``) and split (120 s segments) across
   ``--real-workers`` workers; ``results_identical``: the two documents are equal bytes.

Prints one JSON line LAST: ``speedup`` (object keyed by worker count), ``drain_s`` (same keys),
``real_split_s``, ``real_unsplit_s``, ``results_identical``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

from vidjobs.db.migrate import migrate

VIDJOBS = str(Path(sys.executable).with_name("vidjobs"))


@contextlib.contextmanager
def _postgres() -> Iterator[Any]:
    from vidjobs.devstack.embedded import EmbeddedPostgres

    with tempfile.TemporaryDirectory(prefix="vidjobs-bench-seg-") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "data", durable=True)
        pg.start()
        try:
            yield pg
        finally:
            pg.stop()


def _fresh_db(pg: Any, name: str) -> str:
    with psycopg.connect(pg.url, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}"')
        c.execute(f'CREATE DATABASE "{name}"')
    url = str(pg.url_for(name))
    migrate(url)
    return url


def _workers(
    url: str, n: int, args: list[str], env: dict[str, str]
) -> list[subprocess.Popen[bytes]]:
    full = {**os.environ, **env, "DATABASE_URL": url}
    procs = []
    for i in range(n):
        cmd = [VIDJOBS, "worker", *args, "--worker-id", f"bench-w{i}", "--log-level", "warning"]
        procs.append(
            subprocess.Popen(cmd, env=full, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        )
    return procs


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _until_idle_workers(url: str, n: int, within: float = 120) -> None:
    """Every worker claims: rounds of n half-second noop jobs until n distinct workers ran one.

    (A worker's LISTEN session is up seconds before its first claim, so it is no sign.)
    """
    deadline = time.monotonic() + within
    seen: set[str] = set()
    while len(seen) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(seen)} of {n} workers claimed within {within} s")
        ids = [_submit(url, "noop", {"sleep_s": 0.5}, None) for _ in range(n)]
        for job_id in ids:
            _wait_done(url, job_id, within)
        with psycopg.connect(url) as c:
            rows = c.execute(
                "SELECT DISTINCT worker_id FROM vidjobs.jobs WHERE job_id = ANY(%s)", (ids,)
            ).fetchall()
        seen |= {str(r[0]) for r in rows}


def _listeners(url: str) -> int:
    with psycopg.connect(url) as c:
        row = c.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query ILIKE '%%LISTEN vidjobs_jobs%%'"
        ).fetchone()
    return int(row[0]) if row else 0


def _submit(url: str, pipeline: str, params: dict[str, Any], input_key: str | None) -> uuid.UUID:
    job_id = uuid.uuid4()
    with psycopg.connect(url) as c:
        c.execute(
            "INSERT INTO vidjobs.jobs (job_id, tenant, pipeline, params, input_key) "
            "VALUES (%s, 'bench', %s, %s, %s)",
            (job_id, pipeline, json.dumps(params), input_key),
        )
        c.execute("NOTIFY vidjobs_jobs")
    return job_id


def _wait_done(url: str, job_id: uuid.UUID, within: float) -> str:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with psycopg.connect(url) as c:
            row = c.execute(
                "SELECT state::text FROM vidjobs.jobs WHERE job_id = %s", (job_id,)
            ).fetchone()
        if row and row[0] in ("completed", "failed", "cancelled"):
            return str(row[0])
        time.sleep(0.02)
    raise RuntimeError(f"job {job_id} did not finish in {within} s")


def scheduling(pg: Any, args: argparse.Namespace) -> dict[str, float]:
    params = {
        "seconds": args.seconds,
        "segment_seconds": args.segment_seconds,
        "frame_sleep_s": args.frame_sleep,
    }
    times: dict[str, float] = {}
    for n in args.workers:
        url = _fresh_db(pg, f"seg_{n}")
        procs = _workers(
            url,
            n,
            ["--no-video", "--no-webhooks", "--concurrency", "1", "--poll-interval", "0.5"],
            {"VIDJOBS_WORKER_PREFETCH": "0", "VIDJOBS_WORKER_BATCH_SIZE": "1"},
        )
        try:
            _until_idle_workers(url, n)
            started = time.perf_counter()
            job = _submit(url, "noop", params, None)
            state = _wait_done(url, job, 600)
            times[str(n)] = time.perf_counter() - started
            assert state == "completed", state
        finally:
            _stop(procs)
        print(f"scheduling: {n} worker(s) {times[str(n)]:.2f} s", file=sys.stderr)
    return times


def real(pg: Any, args: argparse.Namespace) -> dict[str, Any]:
    from vidjobs.blobs import BlobSettings, open_blob_store, results_key, video_key
    from vidjobs.devstack.synth.video import make_sample_video
    from vidjobs.worker.pipelines.yolo_ocr.settings import FIXTURE_IMGSZ, FIXTURE_WEIGHTS

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="vidjobs-bench-seg-real-") as tmp:
        video = Path(tmp) / "long.mp4"
        make_sample_video(video, seconds=args.real_seconds, fps=10, segment_s=70, seed=5)
        blobs = BlobSettings(backend="local", directory=Path(tmp) / "blobs")
        store = open_blob_store(blobs)
        store.ensure_ready()
        docs: dict[str, bytes] = {}
        for mode, workers, above in (("unsplit", 1, "0"), ("split", args.real_workers, "300")):
            url = _fresh_db(pg, f"seg_real_{mode}")
            env = {
                "VIDJOBS_BLOB_BACKEND": "local",
                "VIDJOBS_BLOB_DIR": str(blobs.directory),
                "VIDJOBS_DETECTOR_WEIGHTS": str(FIXTURE_WEIGHTS),
                "VIDJOBS_DETECTOR_IMGSZ": str(FIXTURE_IMGSZ),
                "VIDJOBS_SEGMENT_ABOVE_SECONDS": above,
                "VIDJOBS_SEGMENT_SECONDS": "120",
                "VIDJOBS_WORKER_PREFETCH": "0",
                "VIDJOBS_WORKER_BATCH_SIZE": "1",
                "YOLO_OFFLINE": "1",
                "YOLO_CONFIG_DIR": str(Path(tmp) / "ultralytics"),
            }
            procs = _workers(url, workers, ["--no-webhooks", "--concurrency", "1"], env)
            try:
                _until_idle_workers(url, workers, within=300)
                job_id = uuid.uuid4()
                with video.open("rb") as f:
                    store.put_stream(video_key(job_id), f, content_type="video/mp4")
                started = time.perf_counter()
                with psycopg.connect(url) as c:
                    c.execute(
                        "INSERT INTO vidjobs.jobs (job_id, tenant, pipeline, params, input_key) "
                        "VALUES (%s, 'bench', 'yolo_ocr', %s, %s)",
                        (job_id, json.dumps({"sample_fps": args.real_sample_fps}),
                         video_key(job_id)),
                    )  # fmt: skip
                    c.execute("NOTIFY vidjobs_jobs")
                state = _wait_done(url, job_id, 1800)
                out[f"real_{mode}_s"] = round(time.perf_counter() - started, 2)
                assert state == "completed", state
                docs[mode] = store.get_bytes(results_key(job_id))
            finally:
                _stop(procs)
            print(f"real {mode}: {out[f'real_{mode}_s']} s", file=sys.stderr)
        store.close()
    out["results_identical"] = docs["split"] == docs["unsplit"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=int, default=960, help="noop video length (1 frame/s)")
    ap.add_argument("--segment-seconds", type=float, default=30)
    ap.add_argument("--frame-sleep", type=float, default=0.05, help="noop seconds per frame")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--skip-real", action="store_true", help="leave out the yolo_ocr run")
    ap.add_argument("--real-seconds", type=float, default=600, help="the real run's video")
    ap.add_argument("--real-sample-fps", type=float, default=0.5)
    ap.add_argument("--real-workers", type=int, default=2)
    args = ap.parse_args()
    result: dict[str, Any] = {}
    with _postgres() as pg:
        drain = scheduling(pg, args)
        base = drain[str(args.workers[0])] * args.workers[0]
        result["drain_s"] = {k: round(v, 3) for k, v in drain.items()}
        result["speedup"] = {k: round(base / v, 2) for k, v in drain.items()}
        result["speedup_per_worker"] = {k: round(base / v / int(k), 2) for k, v in drain.items()}
        if not args.skip_real:
            result.update(real(pg, args))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
