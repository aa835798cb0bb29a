"""Chaos harness: real ``vidjobs`` processes started and stopped by PID, services that can die.

Every process a test starts goes through :class:`Procs`, which stops whatever is left by PID in
the fixture's ``finally`` (SIGCONT first, in case a test paused it). The figures each scenario
measures are printed as one ``CHAOS {json}`` line (visible with ``pytest -s``) and appended to
``$VIDJOBS_CHAOS_FIGURES`` when that is set, so docs/reliability.md can quote the last run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from vidjobs.blobs import BlobSettings
from vidjobs.db.api_keys import api_key_create
from vidjobs.db.jobs import NewJob, job_insert_many
from vidjobs.devstack.embedded import EmbeddedPostgres, EmbeddedS3, free_port

VIDJOBS = str(Path(sys.executable).with_name("vidjobs"))


# --- processes ---------------------------------------------------------------------------------


@dataclass(eq=False)
class Proc:
    """One started ``vidjobs`` process and its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    started_at: float = field(default_factory=time.time)

    @property
    def pid(self) -> int:
        """The OS process id (what every signal is sent to)."""
        return self.popen.pid

    def alive(self) -> bool:
        """True while the process has not exited."""
        return self.popen.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to this PID (and only this one)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def kill(self) -> float:
        """SIGKILL and reap; returns the wall-clock time of the kill."""
        at = time.time()
        self.signal(signal.SIGKILL)
        self.popen.wait(30)
        return at

    def text(self) -> str:
        """Everything the process wrote so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class Procs:
    """Starts ``vidjobs`` subcommands as a user would; :meth:`close` stops each by its PID."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.all: list[Proc] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> Proc:
        """Start ``vidjobs *args`` with ``env``; output goes to ``tmp/{name}-{n}.log``."""
        log = self.tmp / f"{name}-{len(self.all)}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [VIDJOBS, *args], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        proc = Proc(name, popen, log)
        self.all.append(proc)
        return proc

    def stop(self, proc: Proc, timeout: float = 20) -> None:
        """SIGCONT (it may be paused), SIGTERM, then SIGKILL after ``timeout``; always reaped."""
        if proc.alive():
            proc.signal(signal.SIGCONT)
            proc.signal(signal.SIGTERM)
            try:
                proc.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.signal(signal.SIGKILL)
        proc.popen.wait(30)

    def close(self) -> None:
        """Stop every process still running, each by its PID."""
        for proc in self.all:
            with contextlib.suppress(Exception):
                self.stop(proc, timeout=10)

    def logs(self, name: str | None = None) -> str:
        """Concatenated logs (of one kind of process, when ``name`` is given)."""
        return "\n".join(
            f"--- {p.log.name}\n{p.text()}" for p in self.all if name in (None, p.name)
        )


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    """Process starter for one test; everything it started is stopped afterwards."""
    p = Procs(tmp_path)
    try:
        yield p
    finally:
        p.close()


def blob_env(blobs: BlobSettings) -> dict[str, str]:
    """The environment that points a process at ``blobs``."""
    if blobs.backend == "local":
        return {"VIDJOBS_BLOB_BACKEND": "local", "VIDJOBS_BLOB_DIR": str(blobs.directory)}
    return {
        "VIDJOBS_BLOB_BACKEND": "s3",
        "VIDJOBS_S3_ENDPOINT": blobs.s3_endpoint,
        "VIDJOBS_S3_ACCESS_KEY": blobs.s3_access_key,
        "VIDJOBS_S3_SECRET_KEY": blobs.s3_secret_key,
        "VIDJOBS_S3_BUCKET": blobs.s3_bucket,
        "VIDJOBS_S3_SECURE": "true" if blobs.s3_secure else "false",
    }


def service_env(database_url: str, blobs: BlobSettings, **extra: str) -> dict[str, str]:
    """Environment of a worker or API process on this database and blob store."""
    env = dict(os.environ)
    env.update(DATABASE_URL=database_url, YOLO_OFFLINE="1", PYTHONUNBUFFERED="1")
    env.update(blob_env(blobs))
    env.update(extra)
    return env


def worker_args(lease_s: float, *, worker_id: str, concurrency: int = 2) -> list[str]:
    """``vidjobs worker`` flags for short chaos runs: short lease, quick heartbeats and polls."""
    return [
        "worker",
        "--worker-id",
        worker_id,
        "--concurrency",
        str(concurrency),
        "--lease-seconds",
        str(lease_s),
        "--heartbeat-interval",
        str(max(0.2, lease_s / 4)),
        "--poll-interval",
        "0.2",
        "--idle-backoff-max",
        "1",
        "--grace-seconds",
        "5",
    ]


def start_api(procs: Procs, database_url: str, blobs: BlobSettings) -> str:
    """Start ``vidjobs api`` on a free port; returns its base URL once ``/health`` answers."""
    port = free_port()
    proc = procs.start(
        "api",
        ["api", "--port", str(port), "--log-level", "warning"],
        service_env(database_url, blobs, VIDJOBS_API_MAX_UPLOAD_BYTES=str(1024 * 1024)),
    )
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert proc.alive(), proc.text()
        try:
            return httpx.get(f"{base}/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(healthy, 60, "vidjobs api answers /health")
    return base


#: An ``ftyp`` box and filler: enough for the API's header check; noop jobs never decode it.
MP4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + bytes(range(256)) * 16


def submit(api: httpx.Client, name: str) -> httpx.Response:
    """``POST /video/submit`` of a small noop job, as a client would."""
    return api.post(
        "/video/submit",
        files={"file": (f"{name}.mp4", MP4, "video/mp4")},
        data={"pipeline": "noop"},
        timeout=30,
    )


def stored_keys(blobs: BlobSettings) -> set[str]:
    """Every object key in the bucket, read with a plain SDK client (not the code under test)."""
    from minio import Minio

    client = Minio(
        blobs.s3_endpoint,
        access_key=blobs.s3_access_key,
        secret_key=blobs.s3_secret_key,
        secure=blobs.s3_secure,
        region=blobs.s3_region,
    )
    return {
        o.object_name
        for o in client.list_objects(blobs.s3_bucket, recursive=True)
        if o.object_name is not None
    }


# --- waiting and measuring ---------------------------------------------------------------------


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, every: float = 0.2) -> float:
    """Poll ``predicate`` until true; returns the seconds it took. Fails the test on timeout."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            pytest.fail(f"timed out after {timeout:.0f}s waiting until {what}")
        time.sleep(every)
    return time.monotonic() - started


def sql(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run one statement on its own connection (tests may read the tables directly)."""
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        cur = conn.execute(query, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def states(url: str) -> dict[str, int]:
    """Job count per state."""
    return {s: n for s, n in sql(url, "SELECT state::text, count(*) FROM vidjobs.jobs GROUP BY 1")}


def insert_noop_jobs(
    url: str, n: int, *, sleep_s: float, results: bool = True, max_attempts: int = 10
) -> list[uuid.UUID]:
    """Queue ``n`` noop jobs that sleep ``sleep_s`` and (with ``results``) write a results blob."""
    params: dict[str, Any] = {"sleep_s": sleep_s, "results": results}
    jobs = [
        NewJob(tenant="chaos", pipeline="noop", params=params, max_attempts=max_attempts)
        for _ in range(n)
    ]

    async def go() -> list[uuid.UUID]:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            return await job_insert_many(conn, jobs)

    return asyncio.run(go())


def create_api_key(url: str, tenant: str) -> str:
    """A fresh API key for ``tenant`` (plaintext)."""

    async def go() -> str:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            _, key = await api_key_create(conn, tenant, "chaos")
            return key

    return asyncio.run(go())


def record(scenario: str, figures: dict[str, Any]) -> None:
    """Print one ``CHAOS`` JSON line (and append it to ``$VIDJOBS_CHAOS_FIGURES`` if set)."""
    line = json.dumps({"scenario": scenario, **figures}, sort_keys=True, default=str)
    print(f"\nCHAOS {line}")
    target = os.environ.get("VIDJOBS_CHAOS_FIGURES")
    if target:
        with open(target, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")


# --- services that can be stopped --------------------------------------------------------------


@dataclass
class RestartablePostgres:
    """A durable embedded Postgres of this test alone, with a migrated ``vidjobs`` database."""

    server: EmbeddedPostgres
    url: str

    def stop(self) -> None:
        """Fast shutdown: open transactions abort, connections drop, data stays."""
        self.server.stop("fast")

    def start(self) -> None:
        """Start again on the same data directory and port."""
        self.server.start()


@pytest.fixture
def restartable_pg() -> Iterator[RestartablePostgres]:
    """A Postgres this test may stop and start (``durable=True``: fsync on, like production).

    Its data lives in a directory of its own under the system temp dir, not pytest's
    ``tmp_path``: every pytest session (others may run at once) resets ``pytest-of-<user>``
    to mode 0700, which locks out the unprivileged user the server runs as.
    """
    from vidjobs.db.migrate import migrate

    tmp = tempfile.TemporaryDirectory(prefix="vidjobs-chaos-pg-")
    server = EmbeddedPostgres(Path(tmp.name) / "data", durable=True)
    server.start()
    try:
        sql(server.url, "CREATE DATABASE vidjobs")
        url = server.url_for("vidjobs")
        migrate(url)
        yield RestartablePostgres(server, url)
    finally:
        try:
            server.stop("immediate")
        finally:
            tmp.cleanup()


@pytest.fixture
def restartable_s3(tmp_path: Path) -> Iterator[tuple[EmbeddedS3, BlobSettings]]:
    """An S3 server (SeaweedFS) this test may stop and start on the same port and data."""
    server = EmbeddedS3(tmp_path / "s3")
    server.start()
    try:
        settings = BlobSettings(
            backend="s3",
            s3_endpoint=server.endpoint,
            s3_access_key=server.access_key,
            s3_secret_key=server.secret_key,
            s3_bucket="chaos",
            s3_region="us-east-1",
        )
        yield server, settings
    finally:
        server.stop()


# --- the audit trail ---------------------------------------------------------------------------


@dataclass
class Audit:
    """What ``vidjobs.job_events`` says about a finished run.

    Attributes:
        jobs: rows in ``vidjobs.jobs``.
        states: count per state.
        attempts_total: claims over all jobs (``sum(attempts)``).
        repeated_jobs: jobs that needed more than one attempt.
        takebacks: expired leases taken back (``running → running``, ``lease_expired``).
        completed_by: job id → (worker, attempt, lease token) of the completion.
        takeback_at: worker that lost a job → times its jobs were taken back (epoch seconds).
        violations: every way the trail contradicts the fencing rules (must stay empty).
    """

    jobs: int = 0
    states: dict[str, int] = field(default_factory=dict)
    attempts_total: int = 0
    repeated_jobs: int = 0
    takebacks: int = 0
    completed_by: dict[uuid.UUID, tuple[str, int, uuid.UUID]] = field(default_factory=dict)
    takeback_at: dict[str, list[float]] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)


def audit(url: str) -> Audit:
    """Check the trail: each completion comes from the holder of the job's last attempt.

    For every completed job: exactly one completion event; its attempt is the job's last
    claimed attempt (no later take-back, so the completing worker still held the lease); its
    actor is the worker that claimed that attempt; and the row keeps that attempt's token.
    """
    a = Audit()
    rows = sql(
        url,
        "SELECT job_id, state::text, attempts, worker_id, lease_token FROM vidjobs.jobs",
    )
    events: dict[uuid.UUID, list[tuple[Any, ...]]] = {}
    for ev in sql(
        url,
        "SELECT job_id, at, actor, from_state::text, to_state::text, attempt, error_kind,"
        " error_message FROM vidjobs.job_events ORDER BY job_id, event_id",
    ):
        events.setdefault(ev[0], []).append(ev)
    a.jobs = len(rows)
    for job_id, state, attempts, worker_id, token in rows:
        a.states[state] = a.states.get(state, 0) + 1
        a.attempts_total += attempts
        a.repeated_jobs += attempts > 1
        trail = events.get(job_id, [])
        claims = {ev[5]: ev for ev in trail if ev[4] == "running"}
        for ev in trail:
            if ev[3] == "running" and ev[4] == "running":
                a.takebacks += 1
                lost_by = str(ev[7]).removeprefix("lease of worker ").split(" expired")[0]
                a.takeback_at.setdefault(lost_by, []).append(ev[1].timestamp())
        done = [ev for ev in trail if ev[4] == "completed"]
        if state != "completed":
            continue
        if len(done) != 1:
            a.violations.append(f"{job_id}: {len(done)} completion events")
            continue
        _, _, actor, _, _, attempt, _, _ = done[0]
        if attempt != attempts or attempt != max(claims, default=0):
            a.violations.append(f"{job_id}: completed by attempt {attempt}, last claim {attempts}")
        claim = claims.get(attempt)
        if claim is None or claim[2] != actor:
            a.violations.append(f"{job_id}: completed by {actor}, attempt {attempt} held by other")
        if worker_id != actor:
            a.violations.append(f"{job_id}: row says {worker_id}, completion says {actor}")
        a.completed_by[job_id] = (actor, attempt, token)
    return a


def result_mismatches(url: str, blobs: BlobSettings, a: Audit) -> list[str]:
    """Completed noop jobs whose results blob was not written by the completing attempt."""
    from vidjobs.blobs import open_blob_store, results_key

    wanted = {
        r[0]
        for r in sql(url, "SELECT job_id FROM vidjobs.jobs WHERE (params->>'results')::boolean")
    }
    store = open_blob_store(blobs)
    bad: list[str] = []
    try:
        for job_id, (actor, attempt, token) in a.completed_by.items():
            if job_id not in wanted:
                continue
            doc = json.loads(store.get_bytes(results_key(job_id)))
            got = (doc["worker_id"], doc["attempt"], doc["lease_token"], doc["job_id"])
            if got != (actor, attempt, str(token), str(job_id)):
                bad.append(f"{job_id}: blob {got} but completed by {(actor, attempt, token)}")
    finally:
        store.close()
    return bad
