"""Queue benchmark: enqueue rates, drain rates of the REAL worker loop, idle wake-up latency.

    .venv/bin/python bench/queue_bench.py                 # own durable embedded Postgres (fsync on)
    .venv/bin/python bench/queue_bench.py --dsn URL       # an existing server (admin URL)

Phases (a fresh migrated scratch database each, ``synchronous_commit`` on unless told):
single enqueue (``job_insert``, one commit each), batch enqueue (``job_insert_many`` x 1000),
drains (N no-op jobs, spread over ``--tenants`` tenants, then P spawned processes each
running ``worker.main.run_worker`` with ``drain=True`` at concurrency C, released together,
timed until all returned) and wake-up latency (50 probes: ``job_insert`` returned -> the
pipeline's ``run`` started, in an idle worker process). Prints one JSON line LAST, with the
keys of the peer benchmark in ``/work/shared/peers`` (it also runs there:
``PEERS_EXTRA="vidjobs=.venv/bin/python bench/queue_bench.py"``; the PEERS_* environment
variables are honoured). ``--observe`` adds where each drain's time went (wait events, WAL and
CPU per job, pg_stat_statements when the server preloads it) under ``observed``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import multiprocessing as mp
import os
import queue as stdlib_queue
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from vidjobs.db.jobs import NewJob, job_insert, job_insert_many
from vidjobs.db.migrate import migrate
from vidjobs.db.settings import DatabaseSettings
from vidjobs.worker.main import run_worker
from vidjobs.worker.pipelines.contract import JobContext
from vidjobs.worker.pipelines.noop import NoopPipeline
from vidjobs.worker.pipelines.registry import PipelineRegistry
from vidjobs.worker.runner import Worker
from vidjobs.worker.settings import WorkerSettings

TENANT = "bench"


# -- databases -----------------------------------------------------------------------------


def _url_for(admin_dsn: str, dbname: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(admin_dsn)
    info["dbname"] = dbname
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items() if v is not None})


def fresh_db(admin_dsn: str, dbname: str, sync_commit: str) -> str:
    """Drop/create the scratch database, migrate it, return its URL."""
    with psycopg.connect(admin_dsn, autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        c.execute(
            sql.SQL("ALTER DATABASE {} SET synchronous_commit = {}").format(
                sql.Identifier(dbname), sql.SQL(sync_commit)
            )
        )
    url = _url_for(admin_dsn, dbname)
    migrate(url)
    return url


def drop_db(admin_dsn: str, dbname: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))


def scalar(url: str, query: str) -> Any:
    with psycopg.connect(url, autocommit=True) as c:
        row = c.execute(query).fetchone()  # type: ignore[arg-type]
        return row[0] if row else None


def settle(url: str, analyze: bool) -> None:
    """ANALYZE (a live queue has planner stats) and CHECKPOINT, like the peer harness."""
    with psycopg.connect(url, autocommit=True) as c:
        if analyze:
            c.execute("ANALYZE")
        with contextlib.suppress(psycopg.Error):
            c.execute("CHECKPOINT")


def server_settings(url: str) -> dict[str, str]:
    keys = ["server_version", "shared_buffers", "synchronous_commit", "fsync", "wal_level",
            "max_connections", "full_page_writes"]  # fmt: skip
    with psycopg.connect(url, autocommit=True) as c:
        return {k: str(c.execute(sql.SQL("SHOW {}").format(sql.Identifier(k))).fetchone()[0])  # type: ignore[index]
                for k in keys}  # fmt: skip


@contextlib.contextmanager
def server(dsn: str | None) -> Iterator[str]:
    """The admin DSN: the given one, or a durable embedded Postgres started for this run."""
    if dsn:
        yield dsn
        return
    from vidjobs.devstack.embedded import EmbeddedPostgres

    with tempfile.TemporaryDirectory(prefix="vidjobs-bench-pg-") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "data", durable=True)
        pg.start()
        try:
            yield pg.url
        finally:
            pg.stop()


# -- enqueue -------------------------------------------------------------------------------


def _tenant(i: int, tenants: int) -> str:
    """The tenant of the ``i``-th job: jobs spread round-robin over ``tenants`` tenants."""
    return TENANT if tenants == 1 else f"{TENANT}{i % tenants}"


async def _enqueue(
    url: str, n: int, batch: int | None, pipeline: str = "noop", tenants: int = 1
) -> float:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        t0 = time.perf_counter()
        if batch is None:
            for i in range(n):
                await job_insert(
                    conn,
                    job_id=uuid.uuid4(),
                    tenant=_tenant(i, tenants),
                    pipeline=pipeline,
                    params={},
                )
        else:
            done = 0
            while done < n:
                k = min(batch, n - done)
                jobs = [
                    NewJob(tenant=_tenant(done + i, tenants), pipeline=pipeline) for i in range(k)
                ]
                await job_insert_many(conn, jobs)
                done += k
        return time.perf_counter() - t0


def phase_enqueue(args: argparse.Namespace, batch: int | None) -> float:
    n = args.n_single if batch is None else args.n
    url = fresh_db(args.dsn, args.db, args.sync_commit)
    elapsed = asyncio.run(_enqueue(url, n, batch))
    got = scalar(url, "SELECT count(*) FROM vidjobs.jobs WHERE state = 'pending'")
    assert got == n, f"enqueued {got} != {n}"
    return n / elapsed


# -- worker processes ----------------------------------------------------------------------


def _worker_settings(args: argparse.Namespace, concurrency: int) -> WorkerSettings:
    return WorkerSettings(
        concurrency=concurrency,
        batch_size=args.batch_size,
        prefetch=args.prefetch if args.prefetch >= 0 else args.batch_size,
        worker_id=f"bench-{os.getpid()}",
        durable_claims=not args.fast_claims,
    )


class _Probe:
    """The latency probe's pipeline: reports when ``run`` starts, then does nothing."""

    def __init__(self, out_q: Any) -> None:
        self.out_q = out_q

    async def run(self, ctx: JobContext) -> str | None:
        self.out_q.put((int(ctx.job.params["seq"]), time.monotonic()))
        return None

    async def close(self) -> None:
        return None


def _child(
    mode: str, url: str, settings: WorkerSettings, ready_q: Any, start: Any, out_q: Any
) -> None:
    logging.basicConfig(level=logging.WARNING)
    db = DatabaseSettings(url=url)

    cpu_at_ready = 0.0

    async def on_ready(_: Worker) -> None:
        nonlocal cpu_at_ready
        cpu_at_ready = time.process_time()  # not the imports and the connecting
        ready_q.put(os.getpid())
        if mode == "drain":
            await asyncio.to_thread(start.wait)

    if mode == "drain":
        registry = PipelineRegistry({"noop": NoopPipeline})
        asyncio.run(run_worker(db, settings, registry, drain=True, install_signals=False,
                               on_ready=on_ready))  # fmt: skip
        out_q.put(("done", time.monotonic(), time.process_time() - cpu_at_ready))
    else:
        registry = PipelineRegistry({"ping": lambda: _Probe(out_q)})
        asyncio.run(run_worker(db, settings, registry, on_ready=on_ready))


def _stop(procs: list[Any]) -> None:
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(10)
        if p.is_alive():
            p.kill()
            p.join(5)


class _Observer:
    """Where a drain's time goes, from the server's side (``--observe``).

    A thread samples ``pg_stat_activity`` every 10 ms (wait event of each active backend of the
    scratch database: ``CPU`` when it waits for nothing) and reads ``pg_stat_wal`` (WAL bytes,
    records and syncs) and, when the extension is there, ``pg_stat_statements`` before and
    after; the report divides by the jobs drained.
    """

    def __init__(self, url: str, dbname: str) -> None:
        self.url, self.dbname = url, dbname
        self.waits: dict[str, int] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._wal0 = self._wal()
        self._stmts = self._statements_reset()
        self._postmaster = self._postmaster_pid()
        self._pg_cpu0 = self._pg_cpu()

    def _wal(self) -> dict[str, float]:
        q = "SELECT wal_records, wal_fpi, wal_bytes, wal_write, wal_sync FROM pg_stat_wal"
        with psycopg.connect(self.url, autocommit=True) as c:
            cur = c.execute(q)
            row = cur.fetchone()
            assert row is not None
            assert cur.description is not None
            return {d.name: float(v) for d, v in zip(cur.description, row, strict=True)}

    def _postmaster_pid(self) -> int | None:
        """The server's pid, when it runs on this machine and its data directory is readable."""
        try:
            with psycopg.connect(self.url, autocommit=True) as c:
                row = c.execute("SHOW data_directory").fetchone()
            assert row is not None
            return int((Path(row[0]) / "postmaster.pid").read_text().split()[0])
        except (psycopg.Error, OSError, ValueError):
            return None

    def _pg_cpu(self) -> float | None:
        """CPU seconds of the server's exited backends (the postmaster's reaped children)."""
        if self._postmaster is None:
            return None
        fields = Path(f"/proc/{self._postmaster}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")  # cutime, cstime

    def _statements_reset(self) -> bool:
        with psycopg.connect(self.url, autocommit=True) as c:
            try:
                c.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                c.execute("SELECT pg_stat_statements_reset()")
            except psycopg.Error:
                return False
        return True

    def _sample(self) -> None:
        q = ("SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU'), "
             "split_part(ltrim(query, '- '), ':', 1) FROM pg_stat_activity "
             "WHERE datname = %s AND state = 'active' AND pid <> pg_backend_pid()")  # fmt: skip
        with psycopg.connect(self.url, autocommit=True) as c:
            while not self._stop.wait(0.01):
                self.samples += 1
                for wait, what in c.execute(q, (self.dbname,)).fetchall():
                    key = f"{wait} {what[:28]}".strip()
                    self.waits[key] = self.waits.get(key, 0) + 1

    def start(self) -> None:
        self._thread.start()

    def report(self, jobs: int, worker_cpu_s: float) -> dict[str, Any]:
        self._stop.set()
        self._thread.join()
        wal = {k: v - self._wal0[k] for k, v in self._wal().items()}
        busy = sum(self.waits.values()) or 1
        time.sleep(0.2)  # the workers' backends have exited; let the postmaster reap them
        pg_cpu = self._pg_cpu()
        out: dict[str, Any] = {
            "worker_cpu_us_per_job": round(1e6 * worker_cpu_s / jobs, 1),
            # The drain's backends (the workers' and the sampler's), exited by now; the
            # walwriter and checkpointer are not in it.
            "server_cpu_us_per_job": (
                round(1e6 * (pg_cpu - self._pg_cpu0) / jobs, 1)
                if pg_cpu is not None and self._pg_cpu0 is not None
                else None
            ),
            "wal_bytes_per_job": round(wal["wal_bytes"] / jobs, 1),
            "wal_records_per_job": round(wal["wal_records"] / jobs, 2),
            "wal_syncs_per_1000_jobs": round(1000 * wal["wal_sync"] / jobs, 2),
            "backends_active_mean": round(sum(self.waits.values()) / max(self.samples, 1), 2),
            "wait_share": {k: round(v / busy, 3)
                           for k, v in sorted(self.waits.items(), key=lambda kv: -kv[1])[:10]},
        }  # fmt: skip
        if self._stmts:
            q = ("SELECT split_part(ltrim(query, '- '), ':', 1), calls, rows, total_exec_time "
                 "FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database "
                 "WHERE datname = %s) ORDER BY total_exec_time DESC LIMIT 4")  # fmt: skip
            with psycopg.connect(self.url, autocommit=True) as c:
                out["statements"] = [
                    {"query": what[:28], "calls": calls, "rows": rows,
                     "exec_us_per_job": round(1000 * ms / jobs, 1)}
                    for what, calls, rows, ms in c.execute(q, (self.dbname,)).fetchall()
                ]  # fmt: skip
        return out


def phase_drain(
    args: argparse.Namespace, conc: int, nprocs: int
) -> tuple[float, bool, dict[str, Any] | None]:
    url = fresh_db(args.dsn, args.db, args.sync_commit)
    asyncio.run(_enqueue(url, args.n, args.batch, tenants=args.tenants))
    settle(url, bool(args.analyze))
    observer = _Observer(url, args.db) if args.observe else None
    ctx = mp.get_context("spawn")
    ready_q, out_q, start = ctx.Queue(), ctx.Queue(), ctx.Event()
    settings = _worker_settings(args, conc)
    procs = [ctx.Process(target=_child, args=("drain", url, settings, ready_q, start, out_q))
             for _ in range(nprocs)]  # fmt: skip
    for p in procs:
        p.start()
    capped = False
    try:
        for _ in procs:
            ready_q.get(timeout=120)
        if observer:
            observer.start()
        t0 = time.monotonic()
        start.set()
        deadline = t0 + args.drain_cap
        ends, cpu = [], 0.0
        for _ in procs:
            try:
                _, end, cpu_s = out_q.get(timeout=max(0.01, deadline - time.monotonic()))
                ends.append(end)
                cpu += cpu_s
            except stdlib_queue.Empty:
                capped = True
                break
        t1 = time.monotonic() if capped else max(ends)
    finally:
        _stop(procs)
    done = scalar(url, "SELECT count(*) FROM vidjobs.jobs WHERE state = 'completed'")
    if not capped:
        assert done == args.n, f"completed {done} != {args.n}"
    seen = observer.report(done, cpu) if observer and not capped else None
    return done / (t1 - t0), capped, seen


def phase_latency(args: argparse.Namespace) -> tuple[float | None, float | None, int]:
    url = fresh_db(args.dsn, args.db, args.sync_commit)
    ctx = mp.get_context("spawn")
    ready_q, out_q, start = ctx.Queue(), ctx.Queue(), ctx.Event()
    settings = _worker_settings(args, 1)
    proc = ctx.Process(target=_child, args=("listen", url, settings, ready_q, start, out_q))
    proc.start()
    lats: list[float] = []
    lost = 0

    async def probe() -> None:
        nonlocal lost
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            for seq in range(-1, args.lat_n):  # one unmeasured warm-up
                await job_insert(conn, job_id=uuid.uuid4(), tenant=TENANT, pipeline="ping",
                                 params={"seq": seq})  # fmt: skip
                t_commit = time.monotonic()
                try:
                    while True:
                        got_seq, t_start = await asyncio.to_thread(
                            out_q.get, True, args.lat_timeout
                        )
                        if got_seq == seq:
                            break
                except stdlib_queue.Empty:
                    lost += 1
                    continue
                if seq >= 0:
                    lats.append((t_start - t_commit) * 1000.0)
                await asyncio.sleep(args.lat_gap)

    try:
        ready_q.get(timeout=120)
        time.sleep(args.listen_warmup)
        asyncio.run(probe())
    finally:
        _stop([proc])
    if not lats:
        return None, None, lost
    lats.sort()
    p95 = lats[min(len(lats) - 1, round(0.95 * (len(lats) - 1)))]
    return statistics.median(lats), p95, lost


# -- main ----------------------------------------------------------------------------------


def main() -> None:
    env = os.environ
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--dsn", default=env.get("PEERS_DSN"),
                    help="admin DSN; a scratch database is created next to it "
                         "(default: start a durable embedded Postgres)")  # fmt: skip
    ap.add_argument("--n", type=int, default=int(env.get("PEERS_N", 10000)))
    ap.add_argument("--n-single", type=int, default=int(env.get("PEERS_N_SINGLE", 3000)),
                    help="jobs for the one-at-a-time enqueue (the peer harness's "
                         "default, whatever --n)")  # fmt: skip
    ap.add_argument("--batch", type=int, default=1000, help="jobs per job_insert_many")
    ap.add_argument("--drains", default=env.get("PEERS_DRAINS", "1x1,8x1,8x2"),
                    help="comma list of CONCURRENCYxPROCESSES")  # fmt: skip
    ap.add_argument("--batch-size", type=int, default=200,
                    help="worker claim/completion batch size (no-op jobs: large)")  # fmt: skip
    ap.add_argument(
        "--prefetch",
        type=int,
        default=-1,
        help="worker prefetch (default: the batch size; no-op jobs are short)",
    )
    ap.add_argument("--fast-claims", action="store_true",
                    help="claims skip the WAL flush (the worker's --fast-claims)")  # fmt: skip
    ap.add_argument("--lat-n", type=int, default=50)
    ap.add_argument("--lat-gap", type=float, default=0.1)
    ap.add_argument("--lat-timeout", type=float, default=15.0)
    ap.add_argument("--listen-warmup", type=float, default=2.0)
    ap.add_argument("--drain-cap", type=float, default=float(env.get("PEERS_DRAIN_CAP", 60)))
    ap.add_argument("--sync-commit", default=env.get("PEERS_SYNC_COMMIT", "on"),
                    choices=["on", "off"])  # fmt: skip
    ap.add_argument("--analyze", type=int, default=int(env.get("PEERS_ANALYZE", 1)))
    ap.add_argument("--tenants", type=int, default=1,
                    help="spread the drains' jobs round-robin over this many tenants "
                         "(the fair claim's cost; 1: one tenant)")  # fmt: skip
    ap.add_argument("--phases", default="single,batch,drain,latency")
    ap.add_argument("--observe", action="store_true",
                    help="report where each drain's time goes: wait events sampled from "
                         "pg_stat_activity, WAL per job, pg_stat_statements (when the server "
                         "preloads it), worker CPU per job")  # fmt: skip
    ap.add_argument("--db", default="peers_vidjobs", help="scratch database name")
    args = ap.parse_args()
    phases = set(args.phases.split(","))
    with server(args.dsn) as admin_dsn:
        args.dsn = admin_dsn
        res: dict[str, Any] = {
            "system": "vidjobs", "versions": {"psycopg": psycopg.__version__}, "n": args.n,
            "tenants": args.tenants, "n_single": args.n_single, "analyze": args.analyze,
            "sync_commit": args.sync_commit,
            "worker": {"batch_size": args.batch_size,
                       "prefetch": _worker_settings(args, 1).prefetch,
                       "durable_claims": not args.fast_claims},
            "t_wall": time.time(),
        }  # fmt: skip
        if "single" in phases:
            res["jobs_per_s_enqueue"] = round(phase_enqueue(args, None), 1)
        if "batch" in phases:
            res["jobs_per_s_enqueue_batch"] = round(phase_enqueue(args, args.batch), 1)
        if "drain" in phases:
            res["jobs_per_s_drain"], res["drain_capped"] = {}, []
            for spec in args.drains.split(","):
                c, p = (int(x) for x in spec.split("x"))
                rate, capped, seen = phase_drain(args, c, p)
                res["jobs_per_s_drain"][f"c{c}x{p}"] = round(rate, 1)
                if capped:
                    res["drain_capped"].append(f"c{c}x{p}")
                if seen:
                    res.setdefault("observed", {})[f"c{c}x{p}"] = seen
        if "latency" in phases:
            p50, p95, lost = phase_latency(args)
            res["latency_ms_p50"] = round(p50, 2) if p50 is not None else None
            res["latency_ms_p95"] = round(p95, 2) if p95 is not None else None
            res["latency_lost"] = lost
        res["settings"] = server_settings(_url_for(admin_dsn, args.db))
        drop_db(admin_dsn, args.db)
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
