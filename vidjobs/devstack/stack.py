"""The embedded single-machine stack behind ``vidjobs demo`` and ``vidjobs dev``.

It starts an embedded Postgres (or uses ``DATABASE_URL``), a local-directory blob store (or S3 when
``VIDJOBS_BLOB_BACKEND=s3`` is configured), migrates, creates an API key, and runs ``vidjobs api``
and ``vidjobs worker`` as child processes — the same commands an operator runs. Everything it
started is stopped by PID when the stack closes, on exit or Ctrl+C.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import httpx
import psycopg

from vidjobs.db.api_keys import api_key_create
from vidjobs.db.migrate import migrate
from vidjobs.db.webhooks import secret_create
from vidjobs.devstack.embedded import EmbeddedPostgres, free_port
from vidjobs.webhooks.secrets import Sealer, generate_key, new_secret
from vidjobs.worker.pipelines.yolo_ocr.settings import FIXTURE_WEIGHTS

__all__ = ["LocalStack", "StackSettings", "StackStartError", "default_weights"]


class StackStartError(RuntimeError):
    """The stack did not come up (everything it had started is stopped again)."""


def default_weights() -> Path:
    """The project's own fixture detector, shipped in the wheel; works offline."""
    return FIXTURE_WEIGHTS


@dataclass(frozen=True)
class StackSettings:
    """What the local stack runs.

    Attributes:
        data_dir: Postgres data, blobs and logs; kept between runs of ``vidjobs dev``.
        api_port: port of the API on 127.0.0.1 (0 picks a free one).
        weights: detector weights for the worker (our fixture detector by default).
        concurrency: jobs in flight in the one worker.
        tenant: tenant of the API key the stack creates.
        grace_seconds: how long the worker may finish a running job when the stack stops; short,
            because a person pressing Ctrl+C wants the prompt back.
    """

    data_dir: Path
    api_port: int = 0
    weights: str = field(default_factory=lambda: str(default_weights()))
    concurrency: int = 1
    tenant: str = "demo"
    grace_seconds: float = 5.0


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def _signals(
    handler: Callable[[int, FrameType | None], None] | signal.Handlers,
    names: tuple[signal.Signals, ...],
) -> Iterator[None]:
    """Set ``handler`` for ``names`` in the main thread, restoring the old ones afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {sig: signal.signal(sig, handler) for sig in names}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


class LocalStack:
    """Start and stop the whole product on this machine; a context manager."""

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.pg: EmbeddedPostgres | None = None
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.database_url = os.environ.get("DATABASE_URL", "")
        self.api_url = ""
        self.api_key = ""
        self.webhook_secret: str | None = None
        self.logs = settings.data_dir / "logs"
        self._handlers = contextlib.ExitStack()

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["DATABASE_URL"] = self.database_url
        if env.get("VIDJOBS_BLOB_BACKEND", "local") == "local":
            env["VIDJOBS_BLOB_BACKEND"] = "local"
            env.setdefault("VIDJOBS_BLOB_DIR", str(self.settings.data_dir / "blobs"))
        env["VIDJOBS_DETECTOR_WEIGHTS"] = self.settings.weights
        env.setdefault("YOLO_OFFLINE", "1")
        env.setdefault("YOLO_CONFIG_DIR", str(self.settings.data_dir / "ultralytics"))
        env["PYTHONUNBUFFERED"] = "1"
        # Webhooks: receivers on this machine are allowed (loopback, plain http), and the
        # signing secrets are sealed with a key kept in the data directory.
        env.setdefault("VIDJOBS_WEBHOOK_SECRET_KEYS", self._webhook_keys())
        env.setdefault("VIDJOBS_WEBHOOK_ALLOW_HTTP", "true")
        env.setdefault("VIDJOBS_WEBHOOK_ALLOW_NETWORKS", "127.0.0.0/8,::1/128")
        return env

    def _webhook_keys(self) -> str:
        """The dev stack's Fernet key (made once, kept in the data directory, mode 0600)."""
        path = self.settings.data_dir / "webhook-secret-keys"
        if not path.exists():
            self.settings.data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(generate_key() + "\n")
        return path.read_text(encoding="ascii").strip()

    def _spawn(self, name: str, args: list[str]) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = (self.logs / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "vidjobs", *args],
            env=self._env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl+C reaches us only; we stop children in order
        )
        log.close()

    def start(self) -> LocalStack:
        """Bring everything up; returns once the API answers /ready."""
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.database_url:
            # Kept before it starts: an interrupt during start must still stop the server.
            self.pg = EmbeddedPostgres(self.settings.data_dir / "pgdata")
            self.pg.start()
            self.database_url = self.pg.url
        migrate(self.database_url)
        self.api_key = asyncio.run(self._create_key())
        self.webhook_secret = asyncio.run(self._webhook_secret())
        port = self.settings.api_port or free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        self._spawn("api", ["api", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"])
        self._spawn(
            "worker",
            [
                "worker",
                "--concurrency",
                str(self.settings.concurrency),
                "--grace-seconds",
                str(self.settings.grace_seconds),
            ],
        )
        self._wait_ready(timeout=120)
        return self

    async def _webhook_secret(self) -> str | None:
        """A signing secret for the stack's tenant, if it has none yet (shown once)."""
        secret = new_secret()
        sealed = Sealer(self._env()["VIDJOBS_WEBHOOK_SECRET_KEYS"]).seal(secret)
        async with await psycopg.AsyncConnection.connect(self.database_url) as conn:
            made = await secret_create(conn, self.settings.tenant, sealed)
            await conn.commit()
        return secret if made is not None else None

    async def _create_key(self) -> str:
        async with await psycopg.AsyncConnection.connect(self.database_url) as conn:
            _key_id, plaintext = await api_key_create(conn, self.settings.tenant, "local stack")
            await conn.commit()
        return plaintext

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with {proc.returncode}; see {self.logs / (name + '.log')}"
                    )
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.api_url}/ready", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"the API did not become ready in {timeout:.0f}s; see {self.logs}")

    def _stop_children(self) -> None:
        """SIGTERM the worker and the API together, so stopping takes the longer, not the sum."""
        running = [p for p in self.procs.values() if p.poll() is None]
        self.procs.clear()
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.settings.grace_seconds + 15
        for proc in running:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # its own group: helpers it started too
                proc.wait(10)

    def stop(self) -> None:
        """Stop the worker (graceful) and the API, then Postgres; each by its PID.

        Signals are ignored meanwhile: a second Ctrl+C must not leave half of it running. Every
        step is bounded in time, and a failing step does not skip Postgres.
        """
        with _signals(signal.SIG_IGN, _STOP_SIGNALS):
            try:
                self._stop_children()
            finally:
                if self.pg is not None:
                    pg, self.pg = self.pg, None
                    pg.stop()

    def __enter__(self) -> LocalStack:
        # SIGTERM (a supervisor, `kill`) and SIGHUP (the terminal closed) end the stack like Ctrl+C:
        # by default they would kill this process and leave every child running.
        self._handlers.enter_context(_signals(_raise_interrupt, (signal.SIGTERM, signal.SIGHUP)))
        try:
            return self.start()
        except BaseException as exc:
            self.__exit__()
            if isinstance(exc, Exception):
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise StackStartError(f"{first} (logs in {self.logs})") from exc
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            self._handlers.close()
