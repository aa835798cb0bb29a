"""Real ``vidjobs`` processes for the robustness tests, started as an operator would.

:class:`LiveStack` runs ``vidjobs api`` and ``vidjobs worker`` as child processes on a test's
database and a local blob directory, and stops each by its PID. Nothing here talks to the code
under test except over HTTP or by reading Postgres and the blob directory directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from vidjobs.blobs import BlobSettings, open_blob_store, results_key
from vidjobs.db.api_keys import api_key_create, api_key_revoke
from vidjobs.db.leases import job_claim, job_complete, job_fail
from vidjobs.devstack.embedded import free_port
from vidjobs.worker.pipelines.yolo_ocr.settings import FIXTURE_IMGSZ, FIXTURE_WEIGHTS

__all__ = [
    "MP4_HEAD",
    "TERMINAL",
    "VIDJOBS",
    "LiveStack",
    "Service",
    "auth",
    "create_key",
    "jobs_in_every_state",
    "revoke_key",
    "run_db",
    "sql",
    "submit_noop",
    "wait_until",
]

VIDJOBS = str(Path(sys.executable).with_name("vidjobs"))
TERMINAL = frozenset({"completed", "failed", "cancelled"})
MP4_HEAD = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
"""An ``ftyp`` box: passes the API's header check (the worker would fail what follows)."""


@dataclass(eq=False)
class Service:
    """One started process and the file its output goes to."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        """The OS process id."""
        return self.popen.pid

    def alive(self) -> bool:
        """True while it has not exited."""
        return self.popen.poll() is None

    def text(self) -> str:
        """Everything it wrote so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def rss_peak_kib(self) -> int:
        """Peak resident memory (``VmHWM``) of the process, from /proc."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM in /proc status")


def wait_until(check: Callable[[], bool], timeout: float, what: str, every: float = 0.1) -> float:
    """Poll ``check`` until true; returns the seconds it took, raises on timeout."""
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting until {what}")
        time.sleep(every)
    return time.monotonic() - t0


def sql(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    """One statement on its own connection (tests may read the tables directly)."""
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def create_key(url: str, tenant: str) -> tuple[uuid.UUID, str]:
    """A fresh API key for ``tenant``: ``(key_id, plaintext)``."""

    async def go() -> tuple[uuid.UUID, str]:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            return await api_key_create(conn, tenant, "robustness")

    return asyncio.run(go())


def revoke_key(url: str, key_id: uuid.UUID) -> None:
    """Revoke a key."""

    async def go() -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await api_key_revoke(conn, key_id)

    asyncio.run(go())


@dataclass(eq=False)
class LiveStack:
    """API and workers as child processes on ``database_url`` and a local blob directory.

    Args:
        tmp: where logs and blobs go.
        database_url: a migrated database.
        max_upload_bytes: the API's upload limit.
    """

    tmp: Path
    database_url: str
    max_upload_bytes: int = 8 * 1024 * 1024
    services: list[Service] = field(default_factory=list)
    base_url: str = ""

    @property
    def blob_dir(self) -> Path:
        """Root of the local blob store."""
        return self.tmp / "blobs"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment every process gets."""
        env = dict(os.environ)
        env.update(
            DATABASE_URL=self.database_url,
            VIDJOBS_BLOB_BACKEND="local",
            VIDJOBS_BLOB_DIR=str(self.blob_dir),
            VIDJOBS_API_MAX_UPLOAD_BYTES=str(self.max_upload_bytes),
            VIDJOBS_DETECTOR_WEIGHTS=str(FIXTURE_WEIGHTS),  # offline: the project's own
            VIDJOBS_DETECTOR_IMGSZ=str(FIXTURE_IMGSZ),
            YOLO_OFFLINE="1",
            YOLO_CONFIG_DIR=str(self.tmp / "ultralytics"),
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env

    def _start(self, name: str, args: list[str], env: dict[str, str]) -> Service:
        log = self.tmp / f"{name}-{len(self.services)}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                args, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        service = Service(name, popen, log)
        self.services.append(service)
        return service

    def start_api(self, **env: str) -> Service:
        """``vidjobs api`` on a free port; returns once ``/health`` answers."""
        port = free_port()
        api = self._start(
            "api",
            [VIDJOBS, "api", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            self.env(**env),
        )
        self.base_url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            assert api.alive(), f"vidjobs api exited:\n{api.text()}"
            try:
                return httpx.get(f"{self.base_url}/health", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(healthy, 60, "vidjobs api answers /health", every=0.2)
        return api

    def start_worker(self, *, concurrency: int = 1, worker_id: str = "") -> Service:
        """``vidjobs worker`` with quick polls and a short lease (both pipelines)."""
        args = [VIDJOBS, "worker", "--concurrency", str(concurrency), "--poll-interval", "0.2"]
        args += ["--idle-backoff-max", "1", "--lease-seconds", "30", "--grace-seconds", "5"]
        if worker_id:
            args += ["--worker-id", worker_id]
        return self._start("worker", args, self.env())

    def stop(self, service: Service, timeout: float = 20) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; always reaped."""
        if service.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(service.pid, signal.SIGTERM)
            try:
                service.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(service.pid, signal.SIGKILL)
        service.popen.wait(30)

    def close(self) -> None:
        """Stop everything still running, each by its PID."""
        for service in reversed(self.services):
            with contextlib.suppress(Exception):
                self.stop(service, timeout=10)

    def logs(self, name: str | None = None) -> str:
        """Concatenated output (of one kind of process, when ``name`` is given)."""
        return "\n".join(
            f"--- {s.log.name} (pid {s.pid})\n{s.text()}"
            for s in self.services
            if name in (None, s.name)
        )

    def stored_keys(self) -> list[str]:
        """Every blob key, read from the directory (not through the code under test)."""
        if not self.blob_dir.exists():
            return []
        return sorted(
            str(p.relative_to(self.blob_dir))
            for p in self.blob_dir.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )


def auth(key: str) -> dict[str, str]:
    """The header that presents ``key``."""
    return {"Authorization": f"Bearer {key}"}


def submit_noop(client: httpx.Client, key: str, filename: str = "v.mp4") -> str:
    """Upload an ``ftyp`` header and 2 KiB of noise as a ``noop`` job; its id."""
    resp = client.post(
        "/video/submit",
        headers=auth(key),
        data={"pipeline": "noop"},
        files={"file": (filename, MP4_HEAD + os.urandom(2048), "video/mp4")},
    )
    assert resp.status_code == 202, resp.text
    return str(resp.json()["job_id"])


def run_db(url: str, coro_fn: Any) -> Any:
    """Await ``coro_fn(conn)`` on a fresh autocommit connection."""

    async def go() -> Any:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            return await coro_fn(conn)

    return asyncio.run(go())


def jobs_in_every_state(live: LiveStack, client: httpx.Client, key: str) -> dict[str, str]:
    """Job ids of ``key``'s tenant in each state, made one at a time (a stand-in worker)."""
    url = live.database_url
    store = open_blob_store(BlobSettings(backend="local", directory=live.blob_dir))
    jobs: dict[str, str] = {}
    for state in ("running", "completed", "failed", "cancelled", "pending"):
        job_id = submit_noop(client, key)
        jobs[state] = job_id
        if state in ("running", "completed", "failed"):
            (job,) = run_db(
                url, lambda c: job_claim(c, worker_id="w", batch_size=1, lease_seconds=600)
            )
            assert str(job.job_id) == job_id
            token = job.lease_token
            if state == "completed":
                out = results_key(job.job_id)
                store.put_bytes(out, b'{"frames": []}', content_type="application/json")
                run_db(
                    url,
                    lambda c, j=job, t=token, o=out: job_complete(c, j.job_id, t, output_key=o),
                )
            elif state == "failed":
                run_db(
                    url,
                    lambda c, j=job, t=token: job_fail(
                        c, j.job_id, t, error_kind="invalid_video", error_message="bad",
                        permanent=True,
                    ),
                )  # fmt: skip
        elif state == "cancelled":
            assert client.post(f"/video/jobs/{job_id}/cancel", headers=auth(key)).is_success
    store.close()
    return jobs
