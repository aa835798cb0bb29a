"""Mixed load against a real API with real workers: submits, status polls, results fetches.

    .venv/bin/python bench/load.py                          # embedded Postgres, 2 workers, 60 s
    .venv/bin/python bench/load.py --kill-worker-at 20      # SIGKILL one worker at 20 s, restart it
    .venv/bin/python bench/load.py --api-url URL --api-key KEY   # an API that is already running

Without ``--api-url`` it starts what an operator would: an embedded durable Postgres (fsync on),
a local blob directory, ``vidjobs api`` and ``--workers`` ``vidjobs worker`` processes running
the real ``yolo_ocr`` pipeline with the project's fixture detector (offline).

``--users`` virtual clients each loop for ``--seconds``: upload a small video (1 s, 320x192,
~8 KB, ``sample_fps=1``), then poll its status every ``--poll-interval`` s until it finished
(at most ``--max-polls`` times) and fetch the results of a completed one; the polls per submit
follow from how fast the workers are (about 10 on this machine). Afterwards the run waits
up to ``--drain-timeout`` s for every submitted job to finish (from Postgres), so "0 lost" is
checked even when the workers are slower than the submits.

Reports requests/s, p50/p99 latency per route, errors by status (target: no 5xx, no transport
errors) and jobs completed; with ``--kill-worker-at`` also when the kill happened and how many
jobs the killed worker held (taken back after the lease). Prints one JSON line LAST.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

VIDJOBS = str(Path(sys.executable).with_name("vidjobs"))
TERMINAL = ("completed", "failed", "cancelled")


def log(msg: str) -> None:
    """Progress on stderr; stdout carries the results."""
    print(f"[load {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- the stack (embedded mode) --------------------------------------------------------------


@dataclass
class Stack:
    """Processes of the embedded mode, each stopped by its PID."""

    tmp: Path
    database_url: str = ""
    api_url: str = ""
    api_key: str = ""
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        from vidjobs.worker.pipelines.yolo_ocr.settings import FIXTURE_IMGSZ, FIXTURE_WEIGHTS

        env = dict(os.environ)
        env.update(
            DATABASE_URL=self.database_url,
            VIDJOBS_BLOB_BACKEND="local",
            VIDJOBS_BLOB_DIR=str(self.tmp / "blobs"),
            VIDJOBS_DETECTOR_WEIGHTS=str(FIXTURE_WEIGHTS),
            VIDJOBS_DETECTOR_IMGSZ=str(FIXTURE_IMGSZ),
            YOLO_OFFLINE="1",
            YOLO_CONFIG_DIR=str(self.tmp / "ultralytics"),
            PYTHONUNBUFFERED="1",
        )
        return env

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        with (self.tmp / f"{name}.log").open("ab") as out:
            proc = subprocess.Popen(
                [VIDJOBS, *args], env=self.env(), stdout=out, stderr=subprocess.STDOUT
            )
        self.procs.append(proc)
        return proc

    def start_worker(self, n: int, args: argparse.Namespace) -> subprocess.Popen[bytes]:
        flags = {
            "--worker-id": f"load-w{n}",
            "--concurrency": str(args.concurrency),
            "--lease-seconds": str(args.lease_seconds),
            "--heartbeat-interval": str(args.lease_seconds / 5),
            "--poll-interval": "0.2",
            "--idle-backoff-max": "1",
            "--grace-seconds": "10",
        }
        return self.spawn(f"worker-{n}", ["worker", *(x for kv in flags.items() for x in kv)])

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)


@contextlib.contextmanager
def embedded_stack(args: argparse.Namespace) -> Iterator[Stack]:
    """Postgres, API and workers on this machine; everything stopped on the way out."""
    from vidjobs.db.api_keys import api_key_create
    from vidjobs.db.migrate import migrate
    from vidjobs.devstack.embedded import EmbeddedPostgres, free_port

    with tempfile.TemporaryDirectory(prefix="vidjobs-load-") as tmp_name:
        stack = Stack(Path(tmp_name))
        pg = EmbeddedPostgres(stack.tmp / "pg", durable=True)
        pg.start()
        try:
            with psycopg.connect(pg.url, autocommit=True) as conn:
                conn.execute("CREATE DATABASE vidjobs")
            stack.database_url = pg.url_for("vidjobs")
            migrate(stack.database_url)

            async def key() -> str:
                async with await psycopg.AsyncConnection.connect(
                    stack.database_url, autocommit=True
                ) as conn:
                    return (await api_key_create(conn, "load", "bench/load.py"))[1]

            stack.api_key = asyncio.run(key())
            port = free_port()
            stack.api_url = f"http://127.0.0.1:{port}"
            api = stack.spawn(
                "api", ["api", "--port", str(port), "--workers", "1", "--log-level", "warning"]
            )
            stack.workers = [stack.start_worker(n, args) for n in range(args.workers)]
            deadline = time.monotonic() + 60
            while True:
                if api.poll() is not None:
                    raise RuntimeError((stack.tmp / "api.log").read_text()[-2000:])
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{stack.api_url}/ready", timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError("vidjobs api did not become ready in 60 s")
                time.sleep(0.2)
            yield stack
        finally:
            for proc in reversed(stack.procs):
                with contextlib.suppress(Exception):
                    stack.stop(proc)
            pg.stop("fast")


# -- the load ----------------------------------------------------------------------------------


@dataclass
class Tally:
    """Every request's route, latency and outcome."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, dict[int, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int))
    )
    transport_errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    submitted: list[str] = field(default_factory=list)
    results_fetched: int = 0

    async def call(
        self, route: str, client: httpx.AsyncClient, method: str, url: str, **kw: Any
    ) -> httpx.Response | None:
        t0 = time.perf_counter()
        try:
            resp = await client.request(method, url, **kw)
        except httpx.TransportError as exc:
            self.transport_errors[route] += 1
            log(f"{route}: {type(exc).__name__}: {exc}")
            return None
        self.latencies[route].append(time.perf_counter() - t0)
        self.statuses[route][resp.status_code] += 1
        if resp.status_code >= 500:
            log(f"{route}: {resp.status_code} {resp.text[:200]}")
        return resp


async def user(
    client: httpx.AsyncClient, tally: Tally, video: bytes, deadline: float, args: argparse.Namespace
) -> None:
    """One client: submit, poll until done (or the poll budget is spent), fetch results."""
    while time.monotonic() < deadline:
        resp = await tally.call(
            "submit",
            client,
            "POST",
            "/video/submit",
            data={"sample_fps": "1"},
            files={"file": ("load.mp4", video, "video/mp4")},
        )
        if resp is None or resp.status_code != 202:
            await asyncio.sleep(args.poll_interval)
            continue
        job_id = resp.json()["job_id"]
        tally.submitted.append(job_id)
        for _ in range(args.max_polls):
            await asyncio.sleep(args.poll_interval)
            if time.monotonic() >= deadline:
                return
            got = await tally.call("status", client, "GET", f"/video/status/{job_id}")
            if got is None or got.status_code != 200:
                continue
            state = got.json()["status"]
            if state == "completed":
                res = await tally.call("results", client, "GET", f"/video/results/{job_id}")
                if res is not None and res.status_code == 200:
                    tally.results_fetched += 1
            if state in TERMINAL:
                break


def _sample_video(tmp: Path) -> bytes:
    from vidjobs.devstack.synth.video import make_sample_video

    path = tmp / "load.mp4"
    make_sample_video(path, seconds=1.0, fps=10, width=320, height=192, seed=3)
    return path.read_bytes()


async def run_load(
    api_url: str, api_key: str, video: bytes, args: argparse.Namespace, stack: Stack | None
) -> tuple[Tally, float, dict[str, Any]]:
    """Drive ``--users`` clients for ``--seconds``; kill a worker on the way if asked."""
    tally = Tally()
    kill: dict[str, Any] = {}
    limits = httpx.Limits(max_connections=args.users, max_keepalive_connections=args.users)
    async with httpx.AsyncClient(
        base_url=api_url,
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=60,
        limits=limits,
    ) as client:
        t0 = time.monotonic()
        deadline = t0 + args.seconds
        users = [
            asyncio.create_task(user(client, tally, video, deadline, args))
            for _ in range(args.users)
        ]
        if args.kill_worker_at is not None and stack is not None:
            await asyncio.sleep(args.kill_worker_at)
            kill = await asyncio.to_thread(kill_and_restart, stack, args)
        await asyncio.gather(*users)
        elapsed = time.monotonic() - t0
    return tally, elapsed, kill


def kill_and_restart(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """SIGKILL worker 0, note the jobs it held, start a new worker 0 at once."""
    victim = stack.workers[0]
    held = _sql(
        stack.database_url,
        "SELECT count(*) FROM vidjobs.jobs WHERE state = 'running' AND worker_id = 'load-w0'",
    )[0][0]
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(30)
    killed_at = time.time()
    log(f"SIGKILLed worker load-w0 (pid {victim.pid}) holding {held} running job(s)")
    stack.workers[0] = stack.start_worker(0, args)
    return {"killed_at_s": args.kill_worker_at, "held_jobs": held, "killed_at": killed_at}


def _sql(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def _drain(url: str, ids: list[str], timeout: float) -> tuple[dict[str, int], float]:
    """Wait until every submitted job is finished (or the timeout); job count per state."""
    t0 = time.monotonic()
    while True:
        rows = _sql(
            url,
            "SELECT state::text, count(*) FROM vidjobs.jobs "
            "WHERE job_id::text = ANY(%s) GROUP BY 1",
            ids,
        )
        states = dict(rows)
        if sum(n for s, n in states.items() if s not in TERMINAL) == 0:
            return states, time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            return states, time.monotonic() - t0
        time.sleep(0.5)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def report(
    tally: Tally, elapsed: float, args: argparse.Namespace, extra: dict[str, Any]
) -> dict[str, Any]:
    """The figures, per route and overall."""
    routes: dict[str, Any] = {}
    for route in ("submit", "status", "results"):
        lat = tally.latencies.get(route, [])
        routes[route] = {
            "requests": len(lat),
            "rps": round(len(lat) / elapsed, 1),
            "p50_ms": round(_pct(lat, 0.50) * 1000, 1),
            "p99_ms": round(_pct(lat, 0.99) * 1000, 1),
            "statuses": {str(k): v for k, v in sorted(tally.statuses.get(route, {}).items())},
        }
    total = sum(len(v) for v in tally.latencies.values())
    five = sum(n for st in tally.statuses.values() for code, n in st.items() if code >= 500)
    return {
        "seconds": round(elapsed, 1),
        "users": args.users,
        "workers": None if args.api_url else args.workers,  # unknown behind --api-url
        "requests": total,
        "rps": round(total / elapsed, 1),
        "errors_5xx": five,
        "transport_errors": sum(tally.transport_errors.values()),
        "submitted": len(tally.submitted),
        "results_fetched": tally.results_fetched,
        "polls_per_submit": round(
            routes["status"]["requests"] / max(1, routes["submit"]["requests"]), 1
        ),
        "routes": routes,
        **extra,
    }


def main() -> None:
    """Parse the flags, run the load, print the report (one JSON line last)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the load")
    parser.add_argument("--users", type=int, default=8, help="concurrent virtual clients")
    parser.add_argument("--max-polls", type=int, default=60, help="polls of one job, at most")
    parser.add_argument("--poll-interval", type=float, default=0.2, help="seconds")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (embedded)")
    parser.add_argument("--concurrency", type=int, default=1, help="jobs per worker")
    parser.add_argument("--lease-seconds", type=float, default=10.0, help="workers' lease")
    parser.add_argument("--kill-worker-at", type=float, default=None, help="SIGKILL at S s")
    parser.add_argument("--drain-timeout", type=float, default=180.0, help="seconds")
    parser.add_argument("--api-url", default=None, help="use a running API (no workers started)")
    parser.add_argument("--api-key", default=os.environ.get("VIDJOBS_API_KEY"))
    args = parser.parse_args()
    if args.api_url and not args.api_key:
        parser.error("--api-url needs --api-key (or VIDJOBS_API_KEY)")
    if args.kill_worker_at is not None and args.api_url:
        parser.error("--kill-worker-at needs the embedded stack (no --api-url)")

    with tempfile.TemporaryDirectory(prefix="vidjobs-load-video-") as tmp:
        video = _sample_video(Path(tmp))
    if args.api_url:
        log(f"load: {args.users} users for {args.seconds:.0f}s against {args.api_url}")
        tally, elapsed, _ = asyncio.run(run_load(args.api_url, args.api_key, video, args, None))
        result = report(tally, elapsed, args, {"mode": "external"})
    else:
        with embedded_stack(args) as stack:
            log(f"stack up: {stack.api_url}, {args.workers} workers; load for {args.seconds:.0f}s")
            tally, elapsed, kill = asyncio.run(
                run_load(stack.api_url, stack.api_key, video, args, stack)
            )
            log(f"load done; waiting up to {args.drain_timeout:.0f}s for the jobs to finish")
            states, drain_s = _drain(stack.database_url, tally.submitted, args.drain_timeout)
            extra: dict[str, Any] = {
                "mode": "embedded",
                "jobs": states,
                "jobs_completed": states.get("completed", 0),
                "jobs_lost": len(tally.submitted) - sum(states.values()),
                "jobs_unfinished": sum(n for s, n in states.items() if s not in TERMINAL),
                "drain_after_load_s": round(drain_s, 1),
                "completed_per_s": round(states.get("completed", 0) / (elapsed + drain_s), 2),
            }
            if kill:
                extra["kill"] = _kill_figures(stack.database_url, kill)
            result = report(tally, elapsed, args, extra)
    for route, r in result["routes"].items():
        log(
            f"{route:8} {r['requests']:6} req {r['rps']:7.1f}/s  p50 {r['p50_ms']:7.1f} ms  "
            f"p99 {r['p99_ms']:7.1f} ms  {r['statuses']}"
        )
    print(json.dumps(result, sort_keys=True))


def _kill_figures(url: str, kill: dict[str, Any]) -> dict[str, Any]:
    """What the kill cost: jobs taken back from the dead worker, and how long that took."""
    rows = _sql(
        url,
        "SELECT count(*), max(extract(epoch FROM at)) FROM vidjobs.job_events "
        "WHERE error_kind = 'lease_expired'",
    )
    taken_back, last_at = rows[0]
    return {
        "killed_at_s": kill["killed_at_s"],
        "held_jobs": kill["held_jobs"],
        "taken_back": int(taken_back),
        "last_take_back_after_kill_s": (
            round(float(last_at) - kill["killed_at"], 1) if last_at is not None else None
        ),
    }


if __name__ == "__main__":
    main()
