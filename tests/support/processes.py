"""The one process harness: the real ``vidjobs`` processes, started as a user or a deployment would.

:class:`Processes` starts ``vidjobs ARGS`` (api, worker, demo, dev, ...) with an environment and
arguments, one log file per process (stdout and stderr), and stops each by its PID: SIGCONT (a
test may have paused it), SIGTERM, then SIGKILL. Every process gets a marker in its environment
that whatever it starts inherits (``vidjobs demo``'s API, worker, ``pg_ctl`` and Postgres), so
:func:`marked_processes` finds everything a command left behind, whatever its session or parent.
A wait that fails names the processes still alive and shows the end of their logs.

:class:`Services` is the usual shape on top of it: ``vidjobs api`` and ``vidjobs worker``
processes on one database and blob store. :func:`run_vidjobs` runs a one-shot command (``keys
create``, ``submit``, ``db prune``) to completion.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.blobs import stored_keys
from tests.support.waiting import wait_for
from vidjobs.blobs import BlobSettings
from vidjobs.devstack.embedded import free_port

__all__ = [
    "VIDJOBS",
    "Process",
    "Processes",
    "Services",
    "blob_env",
    "clean_env",
    "marked_processes",
    "run_vidjobs",
    "service_env",
    "worker_args",
]

VIDJOBS = str(Path(sys.executable).with_name("vidjobs"))
"""The console script, as installed: what a user and the container image run."""

_MARK = "VJTEST_PROCESS_MARK"  # not VIDJOBS_*: clean_env keeps it, settings never read it
_TAIL = 3000


def marked_processes(mark: str) -> list[str]:
    """``"pid cmdline"`` of every live process whose environment carries ``mark``."""
    needle = f"{_MARK}={mark}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if needle not in (proc / "environ").read_bytes().split(b"\0"):
                continue
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or a kernel thread
            continue
        found.append(f"{proc.name} {cmd.strip()}")
    return found


@dataclass(eq=False)
class Process:
    """One started ``vidjobs`` process and the file its output goes to."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    mark: str
    own_session: bool
    started_at: float = field(default_factory=time.time)

    @property
    def pid(self) -> int:
        """The OS process id (what every signal is sent to)."""
        return self.popen.pid

    def alive(self) -> bool:
        """True while the process has not exited."""
        return self.popen.poll() is None

    def describe(self) -> str:
        """``name (pid N): running`` or ``... exited RC``."""
        rc = self.popen.poll()
        return f"{self.name} (pid {self.pid}): " + ("running" if rc is None else f"exited {rc}")

    # Above signal(): its default names the module, which the method's name hides below.
    def interrupt(self, sig: signal.Signals = signal.SIGINT) -> None:
        """Send ``sig`` as a terminal does on Ctrl+C: to the process group of its own session."""
        assert self.own_session, f"{self.name} shares the test's session: use signal()"
        os.killpg(self.pid, sig)

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

    def rss_peak_kib(self) -> int:
        """Peak resident memory (``VmHWM``) of the process, from /proc."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM in /proc status")

    def wait(self, timeout: float) -> int:
        """Its exit code; it must exit within ``timeout`` (else fail naming what still runs)."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            alive = "\n".join(marked_processes(self.mark))
            raise AssertionError(
                f"{self.name} still running after {timeout}s:\n{self.text()[-_TAIL:]}\n"
                f"its processes:\n{alive}"
            ) from None

    def wait_for(
        self, check: Callable[[], bool], within: float, what: str, every: float = 0.1
    ) -> float:
        """:func:`wait_for` while this process runs; fails with its output if it exits."""

        def running_and(check: Callable[[], bool] = check) -> bool:
            assert self.alive(), f"{self.describe()} before {what}:\n{self.text()[-_TAIL:]}"
            return check()

        try:
            return wait_for(running_and, within, what, every)
        except AssertionError as exc:
            if not self.alive():
                raise
            raise AssertionError(f"{exc}\n{self.describe()}:\n{self.text()[-_TAIL:]}") from None

    def wait_for_line(self, pattern: str, within: float) -> re.Match[str]:
        """The first match of ``pattern`` (multiline) in its output, waiting for it."""
        found: list[re.Match[str]] = []

        def seen() -> bool:
            m = re.search(pattern, self.text(), re.MULTILINE)
            if m:
                found.append(m)
            return m is not None

        self.wait_for(seen, within, f"it prints {pattern!r}")
        return found[0]

    def leftovers(self, settle: float = 5.0) -> list[str]:
        """Processes it started that are still alive ``settle`` seconds after it exited."""
        deadline = time.monotonic() + settle
        while (left := marked_processes(self.mark)) and time.monotonic() < deadline:
            time.sleep(0.2)
        return left


class Processes:
    """Starts ``vidjobs`` subcommands for one test; :meth:`close` stops each by its PID."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.all: list[Process] = []

    def start(
        self,
        name: str,
        args: list[str],
        env: dict[str, str] | None = None,
        *,
        cwd: Path | None = None,
        own_session: bool = False,
    ) -> Process:
        """Start ``vidjobs *args``; output goes to ``tmp/{name}-{n}.log``.

        Args:
            name: what failures and :meth:`logs` call it.
            args: the subcommand and its flags.
            env: its whole environment (default: the test's own).
            cwd: its working directory (default: the test's).
            own_session: a session of its own, standing in for a terminal, so that
                :meth:`Process.interrupt` reaches its process group as Ctrl+C would.
        """
        mark = uuid.uuid4().hex
        log = self.tmp / f"{name}-{len(self.all)}.log"
        full_env = dict(os.environ if env is None else env)
        full_env.update({_MARK: mark, "PYTHONUNBUFFERED": "1"})
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [VIDJOBS, *args],
                cwd=cwd,
                env=full_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=own_session,
            )
        proc = Process(name, popen, log, mark, own_session)
        self.all.append(proc)
        return proc

    def stop(self, proc: Process, timeout: float = 20) -> None:
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
        """Stop every process still running, newest first, then what each left behind, by PID."""
        for proc in reversed(self.all):
            with contextlib.suppress(Exception):
                self.stop(proc, timeout=10)
            for line in marked_processes(proc.mark):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(line.split()[0]), signal.SIGKILL)

    def report(self) -> str:
        """Each process's state and the end of its log: what a failure message needs."""
        return "\n".join(
            f"--- {p.describe()}, log {p.log.name}\n{p.text()[-_TAIL:]}" for p in self.all
        )

    def logs(self, name: str | None = None) -> str:
        """Concatenated logs (of the processes called ``name``, when given)."""
        return "\n".join(
            f"--- {p.log.name} (pid {p.pid})\n{p.text()}"
            for p in self.all
            if name in (None, p.name)
        )

    def wait_for(
        self, check: Callable[[], bool], within: float, what: str, every: float = 0.2
    ) -> float:
        """:func:`wait_for`; a timeout names every process, alive or not, with its log's end."""
        try:
            return wait_for(check, within, what, every)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.report()}") from None


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


def service_env(
    database_url: str, blobs: BlobSettings | None = None, **extra: str
) -> dict[str, str]:
    """The test's environment plus a database, a blob store and ``extra`` (offline models)."""
    env = dict(os.environ)
    env.update(DATABASE_URL=database_url, YOLO_OFFLINE="1")
    if blobs is not None:
        env.update(blob_env(blobs))
    env.update(extra)
    return env


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without DATABASE_URL or any VIDJOBS_* setting: a fresh machine."""
    env = {
        k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("VIDJOBS_")
    }
    env.update(extra)
    return env


def worker_args(
    lease_s: float = 30.0, *, worker_id: str | None = None, concurrency: int = 2
) -> list[str]:
    """``vidjobs worker`` flags for short test runs: quick polls, heartbeats every lease / 4."""
    args = ["--concurrency", str(concurrency), "--lease-seconds", str(lease_s)]
    args += ["--heartbeat-interval", str(max(0.2, lease_s / 4)), "--poll-interval", "0.2"]
    args += ["--idle-backoff-max", "1", "--grace-seconds", "5"]
    if worker_id:
        args += ["--worker-id", worker_id]
    return args


def run_vidjobs(
    *args: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a one-shot ``vidjobs *args`` to completion; exit code and output, never raises on rc."""
    return subprocess.run(
        [VIDJOBS, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


@dataclass(eq=False)
class Services:
    """``vidjobs api`` and ``vidjobs worker`` processes on one database and blob store.

    Args:
        processes: the test's harness (stops everything afterwards).
        database_url: a migrated database (or one that will be, for start-order tests).
        blobs: the store the processes share; ``None`` for workers that touch no blob.
        extra_env: settings every process gets (upload limit, intervals, detector).
    """

    processes: Processes
    database_url: str
    blobs: BlobSettings | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    base_url: str = ""

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of every process (``extra`` on top)."""
        return service_env(self.database_url, self.blobs, **{**self.extra_env, **extra})

    def start_api(self, *args: str, within: float = 60, **env: str) -> Process:
        """``vidjobs api`` on a free port; returns once ``/health`` answers (``base_url``)."""
        port = free_port()
        api = self.processes.start(
            "api",
            ["api", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", *args],
            self.env(**env),
        )
        base = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                return httpx.get(f"{base}/health", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        api.wait_for(healthy, within, "vidjobs api answers /health", every=0.2)
        self.base_url = base
        return api

    def start_worker(self, *args: str, name: str = "worker", **env: str) -> Process:
        """``vidjobs worker *args`` (not waited for: a worker has no port to answer on)."""
        return self.processes.start(name, ["worker", *args], self.env(**env))

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """A one-shot ``vidjobs *args`` with the services' environment (``keys create``...)."""
        return run_vidjobs(*args, env=self.env(), timeout=timeout)

    def stored_keys(self) -> list[str]:
        """Every key in the blob store, read around the code under test."""
        assert self.blobs is not None, "these services have no blob store"
        return stored_keys(self.blobs)
