"""Tenant isolation benchmark (issue 10): what one tenant can do to another. Not a timed test.

    .venv/bin/python bench/tenants.py                  # embedded Postgres, local blobs
    .venv/bin/python bench/tenants.py --finished 0 --skip-claim   # a quick run

Everything runs on this machine as an operator would run it: an embedded durable Postgres
(fsync on), a local blob directory, one ``vidjobs api`` process (default settings) and, for the
fairness phase, one ``vidjobs worker``. Tenant A is the noisy one, tenant B the victim.

1. ``status_p99_ms_quiet``: B's ``GET /video/status`` polls (``--pollers`` loops) for
   ``--seconds``, with ``--finished`` finished jobs of A in the table (1 M by default, inserted
   with one ``INSERT ... SELECT generate_series``).
2. ``metrics_flood_status_p99_ms``: the same polls while ``--scrapers`` clients loop on
   ``/metrics`` (in a process of their own, so the measuring client is not the one flooded).
3. ``slowloris_submit_p99_ms``: B's submits (``--submits`` of 4 KB, one after another) while A
   holds ``--slow-uploads`` chunked uploads that sent their multipart head and 1 KB, then
   trickle a byte every 2 s; also how A's uploads ended (408/429 counts).
4. ``fair_wait_s``: A has ``--backlog`` due ``noop`` jobs at priority 100 that each sleep
   ``--job-seconds``, and one real worker (``--concurrency``) is busy with them; B submits one
   job at priority 0 (as a tenant with nothing else queued): the seconds from its row's
   ``created_at`` to its ``started_at`` (the claim). Without a fair claim B waits behind the
   whole backlog; capped by ``--fair-timeout`` (then ``fair_capped: true``).
5. ``claim_jobs_per_s_fair`` / ``claim_jobs_per_s_single_tenant``: ``bench/queue_bench.py``'s
   drain (``c8x1``) with ``--tenants 100`` and with 1, as subprocesses on the same server;
   their last JSON line is read.

Targets (issue 10): ``fair_wait_s`` <= 2, ``slowloris_submit_p99_ms`` <= 1,000,
``metrics_flood_status_p99_ms`` <= 3 x ``status_p99_ms_quiet``, ``claim_jobs_per_s_fair`` >=
0.8 x ``claim_jobs_per_s_single_tenant``. Prints one JSON line LAST.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

VIDJOBS = str(Path(sys.executable).with_name("vidjobs"))
HERE = Path(__file__).resolve().parent
MP4_HEAD = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"


def log(msg: str) -> None:
    """Progress on stderr; stdout carries the results."""
    print(f"[tenants {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def mp4(size: int) -> bytes:
    """An ``ftyp`` header and filler: passes the API's check."""
    return MP4_HEAD + bytes(max(0, size - len(MP4_HEAD)))


def pct(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (nearest rank), or None without samples."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 2)


# -- the stack -------------------------------------------------------------------------------


@dataclass
class Stack:
    """Embedded Postgres, the API and workers; every process stopped by its PID."""

    tmp: Path
    admin_url: str = ""
    url: str = ""
    api_url: str = ""
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DATABASE_URL=self.url,
            VIDJOBS_BLOB_BACKEND="local",
            VIDJOBS_BLOB_DIR=str(self.tmp / "blobs"),
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

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            cur = conn.execute(query, params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []


@contextlib.contextmanager
def embedded_stack() -> Iterator[Stack]:
    """Postgres and the API on this machine; everything stopped on the way out."""
    from vidjobs.db.migrate import migrate
    from vidjobs.devstack.embedded import EmbeddedPostgres, free_port

    with tempfile.TemporaryDirectory(prefix="vidjobs-tenants-") as tmp_name:
        stack = Stack(Path(tmp_name))
        pg = EmbeddedPostgres(stack.tmp / "pg", durable=True)
        pg.start()
        try:
            stack.admin_url = pg.url
            with psycopg.connect(pg.url, autocommit=True) as conn:
                conn.execute("CREATE DATABASE vidjobs")
            stack.url = pg.url_for("vidjobs")
            migrate(stack.url)
            port = free_port()
            stack.api_url = f"http://127.0.0.1:{port}"
            api = stack.spawn(
                "api", ["api", "--port", str(port), "--workers", "1", "--log-level", "warning"]
            )
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


def make_key(url: str, tenant: str) -> str:
    from vidjobs.db.api_keys import api_key_create

    async def go() -> str:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            return (await api_key_create(conn, tenant, "bench/tenants.py"))[1]

    return asyncio.run(go())


def insert_jobs(url: str, tenant: str, n: int, **kw: Any) -> list[str]:
    from vidjobs.db.jobs import NewJob, job_insert_many

    async def go() -> list[str]:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            ids = await job_insert_many(conn, [NewJob(tenant=tenant, pipeline="noop", **kw)] * n)
            return [str(i) for i in ids]

    return asyncio.run(go())


def insert_finished(stack: Stack, tenant: str, n: int) -> None:
    """``n`` completed jobs in one statement, then fresh planner statistics."""
    stack.sql(
        "INSERT INTO vidjobs.jobs (job_id, tenant, pipeline, state, attempts, progress,"
        " started_at, finished_at, input_key, output_key)"
        " SELECT gen_random_uuid(), %s, 'noop', 'completed', 1, 1,"
        " now() - interval '1 hour', now() - interval '1 hour' + g * interval '1 ms',"
        " 'video_jobs/' || g || '.mp4', 'video_jobs/' || g || '_results.json'"
        " FROM generate_series(1, %s) AS g",
        tenant,
        n,
    )
    stack.sql("VACUUM ANALYZE vidjobs.jobs")


# -- phases 1 and 2: status polls, quiet and under a /metrics flood --------------------------


async def poll_status(
    base: str, key: str, job_id: str, pollers: int, seconds: float
) -> dict[str, Any]:
    """B's status polls for ``seconds``: latencies of the 200s, and every status seen."""
    latencies: list[float] = []
    codes: dict[str, int] = {}
    deadline = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, timeout=30, headers=headers) as http:

        async def loop() -> None:
            while time.monotonic() < deadline:
                t0 = time.perf_counter()
                try:
                    resp = await http.get(f"/video/status/{job_id}")
                    code = str(resp.status_code)
                except httpx.TransportError as exc:
                    code = type(exc).__name__
                if code == "200":
                    latencies.append(time.perf_counter() - t0)
                codes[code] = codes.get(code, 0) + 1
                await asyncio.sleep(0.01)

        await asyncio.gather(*(loop() for _ in range(pollers)))
    return {"p50": pct(latencies, 0.5), "p99": pct(latencies, 0.99), "codes": codes}


def scrape_metrics(base: str, scrapers: int, seconds: float, out: Any) -> None:
    """``scrapers`` clients looping on ``/metrics`` (a process of its own); puts the codes."""

    async def go() -> dict[str, int]:
        codes: dict[str, int] = {}
        deadline = time.monotonic() + seconds
        limits = httpx.Limits(max_connections=scrapers, max_keepalive_connections=scrapers)
        async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as http:

            async def loop() -> None:
                while time.monotonic() < deadline:
                    try:
                        code = str((await http.get("/metrics")).status_code)
                    except httpx.TransportError as exc:
                        code = type(exc).__name__
                    codes[code] = codes.get(code, 0) + 1

            await asyncio.gather(*(loop() for _ in range(scrapers)))
        return codes

    out.put(asyncio.run(go()))


# -- phase 3: slow uploads of A, submits of B ------------------------------------------------


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def open_slow_upload(address: tuple[str, int], key: str) -> socket.socket:
    """A chunked submit that sent its multipart head and 1 KB of MP4, and will trickle."""
    boundary = "sl0w"
    start = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="pipeline"\r\n\r\nnoop\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="v.mp4"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode() + mp4(1024)
    head = (
        f"POST /video/submit HTTP/1.1\r\nHost: vidjobs\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    sock = socket.create_connection(address, timeout=5)
    sock.sendall(head + _chunk(start))
    return sock


def _answer(sock: socket.socket) -> str | None:
    """The status the server answered (``None``: not yet; ``closed``: no answer, closed)."""
    if not select.select([sock], [], [], 0)[0]:
        return None
    try:
        data = sock.recv(65536)
    except OSError:
        return "closed"
    return data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/1.1 ") else "closed"


class Trickle(threading.Thread):
    """One byte every 2 s on each open upload; records how each one ended."""

    def __init__(self, socks: list[socket.socket]) -> None:
        super().__init__(daemon=True)
        self.open = list(socks)
        self.answers: dict[str, int] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while self.open and not self.stop.is_set():
            for sock in list(self.open):
                status = _answer(sock)
                if status is None:
                    try:
                        sock.sendall(_chunk(b"\0"))
                        continue
                    except OSError:
                        status = _answer(sock) or "closed"
                self.answers[status] = self.answers.get(status, 0) + 1
                self.open.remove(sock)
                sock.close()
            self.stop.wait(2.0)
        for sock in self.open:
            sock.close()


def phase_slowloris(
    stack: Stack, key_a: str, key_b: str, args: argparse.Namespace
) -> dict[str, Any]:
    host, port = stack.api_url.removeprefix("http://").split(":")
    attack = Trickle([open_slow_upload((host, int(port)), key_a) for _ in range(args.slow_uploads)])
    attack.start()
    time.sleep(1.0)  # the uploads are in, holding whatever they can hold
    latencies: list[float] = []
    codes: dict[str, int] = {}
    with httpx.Client(
        base_url=stack.api_url, timeout=60, headers={"Authorization": f"Bearer {key_b}"}
    ) as b:
        for _ in range(args.submits):
            t0 = time.perf_counter()
            try:
                code = str(
                    b.post(
                        "/video/submit",
                        data={"pipeline": "noop"},
                        files={"file": ("b.mp4", mp4(4096), "video/mp4")},
                    ).status_code
                )
            except httpx.TransportError as exc:
                code = type(exc).__name__
            latencies.append(time.perf_counter() - t0)
            codes[code] = codes.get(code, 0) + 1
            time.sleep(0.2)
    deadline = time.monotonic() + args.slow_wait
    while attack.open and time.monotonic() < deadline:
        time.sleep(0.5)
    attack.stop.set()
    attack.join(10)
    return {
        "p50": pct(latencies, 0.5),
        "p99": pct(latencies, 0.99),
        "codes": codes,
        "slow_upload_answers": dict(attack.answers, still_open=len(attack.open)),
    }


# -- phase 4: fairness with a real worker ----------------------------------------------------


def phase_fair(stack: Stack, key_b: str, args: argparse.Namespace) -> dict[str, Any]:
    insert_jobs(
        stack.url, "tenant-a", args.backlog, priority=100, params={"sleep_s": args.job_seconds}
    )
    worker = stack.spawn(
        "worker",
        [
            "worker",
            "--concurrency", str(args.concurrency),
            "--poll-interval", "0.2",
            "--idle-backoff-max", "1",
            "--lease-seconds", "30",
            "--heartbeat-interval", "5",
            "--grace-seconds", "5",
        ],
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        busy = "SELECT 1 FROM vidjobs.jobs WHERE priority = 100 AND state <> 'pending' LIMIT 1"
        while not stack.sql(busy):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((stack.tmp / "worker.log").read_text()[-2000:])
            time.sleep(0.1)
        time.sleep(2 * args.job_seconds)  # the worker is in its stride on A's backlog
        resp = httpx.post(
            f"{stack.api_url}/video/submit",
            data={"pipeline": "noop", "priority": "0"},
            files={"file": ("b.mp4", mp4(4096), "video/mp4")},
            headers={"Authorization": f"Bearer {key_b}"},
            timeout=30,
        )
        resp.raise_for_status()
        job_id = resp.json()["job_id"]
        deadline = time.monotonic() + args.fair_timeout
        wait = None
        while time.monotonic() < deadline:
            ((started, waited),) = stack.sql(
                "SELECT started_at IS NOT NULL, extract(epoch FROM started_at - created_at)"
                " FROM vidjobs.jobs WHERE job_id = %s",
                job_id,
            )
            if started:
                wait = float(waited)
                break
            time.sleep(0.05)
        ((a_done,),) = stack.sql(
            "SELECT count(*) FROM vidjobs.jobs"
            " WHERE tenant = 'tenant-a' AND priority = 100 AND started_at IS NOT NULL"
        )
        return {"wait_s": wait, "capped": wait is None, "a_claimed_by_then": int(a_done)}
    finally:
        stack.stop(worker)


# -- phase 5: the claim's throughput, fair vs one tenant -------------------------------------


def queue_drain(admin_url: str, tenants: int, args: argparse.Namespace) -> dict[str, Any]:
    """``bench/queue_bench.py``'s c8x1 drain over ``tenants`` tenants; its last JSON line."""
    cmd = [
        sys.executable, str(HERE / "queue_bench.py"), "--dsn", admin_url,
        "--phases", "drain", "--drains", "8x1", "--n", str(args.claim_n),
        "--tenants", str(tenants), "--db", f"tenants_bench_{tenants}",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        log(f"queue_bench.py --tenants {tenants} failed: {done.stderr.strip()[-500:]}")
        return {}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


# -- main ------------------------------------------------------------------------------------


def main() -> None:
    """Run the phases; print one JSON line last."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--finished", type=int, default=1_000_000, help="finished jobs of tenant A")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each poll phase")
    ap.add_argument("--pollers", type=int, default=4, help="B's concurrent status pollers")
    ap.add_argument("--scrapers", type=int, default=50, help="concurrent /metrics clients")
    ap.add_argument("--slow-uploads", type=int, default=40, help="A's trickling uploads")
    ap.add_argument("--slow-wait", type=float, default=90.0, help="s to wait for them to end")
    ap.add_argument("--submits", type=int, default=20, help="B's submits during the attack")
    ap.add_argument("--backlog", type=int, default=500, help="A's due jobs at priority 100")
    ap.add_argument("--job-seconds", type=float, default=0.5, help="each noop job's sleep_s")
    ap.add_argument("--concurrency", type=int, default=2, help="the worker's job slots")
    ap.add_argument("--fair-timeout", type=float, default=120.0, help="cap on B's wait, s")
    ap.add_argument("--claim-n", type=int, default=10_000, help="jobs per queue_bench drain")
    ap.add_argument("--skip-claim", action="store_true", help="no queue_bench.py drains")
    args = ap.parse_args()

    res: dict[str, Any] = {"bench": "tenants", "args": vars(args), "t_wall": time.time()}
    with embedded_stack() as stack:
        key_a, key_b = make_key(stack.url, "tenant-a"), make_key(stack.url, "tenant-b")
        if args.finished:
            log(f"inserting {args.finished} finished jobs of tenant A")
            t0 = time.perf_counter()
            insert_finished(stack, "tenant-a", args.finished)
            log(f"  {time.perf_counter() - t0:.1f} s")
        (b_job,) = insert_jobs(stack.url, "tenant-b", 1)

        log("phase 1: B's status polls, quiet")
        quiet = asyncio.run(poll_status(stack.api_url, key_b, b_job, args.pollers, args.seconds))
        log(f"phase 2: the same polls under {args.scrapers} /metrics scrapers")
        ctx = mp.get_context("spawn")
        out = ctx.Queue()
        flood = ctx.Process(
            target=scrape_metrics, args=(stack.api_url, args.scrapers, args.seconds + 2, out)
        )
        flood.start()
        time.sleep(1.0)  # the scrapers are looping
        flooded = asyncio.run(poll_status(stack.api_url, key_b, b_job, args.pollers, args.seconds))
        scrapes = out.get(timeout=120)
        flood.join(30)
        res.update(
            status_p99_ms_quiet=ms(quiet["p99"]),
            status_p50_ms_quiet=ms(quiet["p50"]),
            status_codes_quiet=quiet["codes"],
            metrics_flood_status_p99_ms=ms(flooded["p99"]),
            metrics_flood_status_p50_ms=ms(flooded["p50"]),
            metrics_flood_status_codes=flooded["codes"],
            metrics_flood_scrapes=scrapes,
        )

        log(f"phase 3: B's submits during A's {args.slow_uploads} slow uploads")
        slow = phase_slowloris(stack, key_a, key_b, args)
        res.update(
            slowloris_submit_p99_ms=ms(slow["p99"]),
            slowloris_submit_p50_ms=ms(slow["p50"]),
            slowloris_submit_codes=slow["codes"],
            slowloris_upload_answers=slow["slow_upload_answers"],
        )

        log(f"phase 4: B's one job behind A's {args.backlog} priority-100 jobs")
        # A tenant with nothing queued yet: B's own submits of phases 1-3 are still pending and
        # would sit ahead of its job in its own turn (measuring B's backlog, not A's effect).
        fair = phase_fair(stack, make_key(stack.url, "tenant-b-fair"), args)
        res.update(
            fair_wait_s=None if fair["wait_s"] is None else round(fair["wait_s"], 3),
            fair_capped=fair["capped"],
            fair_a_jobs_claimed_first=fair["a_claimed_by_then"],
        )

        if not args.skip_claim:
            log("phase 5: queue_bench.py drains, 100 tenants and 1")
            many = queue_drain(stack.admin_url, 100, args)
            one = queue_drain(stack.admin_url, 1, args)
            res["claim_jobs_per_s_fair"] = many.get("jobs_per_s_drain", {}).get("c8x1")
            res["claim_jobs_per_s_single_tenant"] = one.get("jobs_per_s_drain", {}).get("c8x1")
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
