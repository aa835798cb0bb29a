"""Helpers for running ``vidjobs demo`` / ``vidjobs dev`` as a user would, and finding leftovers.

Each run gets a unique marker in its environment. Every process the command starts (the API,
the worker and its helpers, ``pg_ctl`` and the whole Postgres server) inherits the environment,
so scanning ``/proc/*/environ`` for the marker finds everything it left behind, whatever its
session or parent.
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

__all__ = ["StackRun", "marked_processes"]

_MARK = "VIDJOBS_TEST_RUN_MARK"


def _service_setting(name: str) -> bool:
    """A setting that would point the stack at services; a fresh machine has none."""
    return name == "DATABASE_URL" or name.startswith("VIDJOBS_")


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
class StackRun:
    """One ``python -m vidjobs ARGS`` process in its own session, output to a file.

    Its own session stands in for a terminal: a signal sent with :meth:`interrupt` reaches its
    process group, as Ctrl+C reaches the foreground job.
    """

    args: list[str]
    cwd: Path
    log: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    mark: str = field(default_factory=lambda: uuid.uuid4().hex)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> StackRun:
        """Start it with a clean environment: no DATABASE_URL, no VIDJOBS_* settings."""
        env = {
            k: v
            for k, v in os.environ.items()
            if k != "DATABASE_URL" and not k.startswith("VIDJOBS_")
        }
        env.update(self.extra_env)
        env[_MARK] = self.mark
        env["PYTHONUNBUFFERED"] = "1"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "vidjobs", *self.args],
                cwd=self.cwd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    def output(self) -> str:
        """Everything it printed so far."""
        return self.log.read_text(errors="replace")

    def wait_for(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll ``check`` while the process runs; fail with its output otherwise."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while not check():
            assert self.proc.poll() is None, f"exited ({self.proc.returncode}):\n{self.output()}"
            assert time.monotonic() < deadline, f"no {what} after {timeout}s:\n{self.output()}"
            time.sleep(0.1)

    def wait_for_line(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first match of ``pattern`` (multiline) in the output, waiting for it."""
        found: list[re.Match[str]] = []

        def seen() -> bool:
            m = re.search(pattern, self.output(), re.MULTILINE)
            if m:
                found.append(m)
            return m is not None

        self.wait_for(seen, timeout, repr(pattern))
        return found[0]

    def interrupt(self, sig: signal.Signals = signal.SIGINT) -> None:
        """Send ``sig`` to its process group, as a terminal does on Ctrl+C."""
        assert self.proc is not None
        os.killpg(self.proc.pid, sig)

    def wait(self, timeout: float) -> int:
        """Its exit code; it must exit within ``timeout``."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            alive = "\n".join(marked_processes(self.mark))
            raise AssertionError(
                f"still running after {timeout}s:\n{self.output()}\nits processes:\n{alive}"
            ) from None

    def leftovers(self, settle: float = 5.0) -> list[str]:
        """Processes it started that are still alive ``settle`` seconds after it exited."""
        deadline = time.monotonic() + settle
        while (left := marked_processes(self.mark)) and time.monotonic() < deadline:
            time.sleep(0.2)
        return left

    def kill_leftovers(self) -> None:
        """Last resort after a failed test: SIGKILL what is left, by PID."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for line in marked_processes(self.mark):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(line.split()[0]), signal.SIGKILL)
