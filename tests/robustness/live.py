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

from db.embedded import free_port
from db.keys import api_key_create, api_key_revoke
from worker.pipeline.settings import FIXTURE_IMGSZ, FIXTURE_WEIGHTS

__all__ = ["LiveStack", "Service", "create_key", "revoke_key", "sql", "wait_until"]

VIDJOBS = str(Path(sys.executable).with_name("vidjobs"))
TERMINAL = frozenset({"completed", "failed", "cancelled"})


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
