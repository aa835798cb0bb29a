"""The compose stack of ``deploy/docker-compose.yml`` under test, driven by the real CLI.

``docker compose`` with the product's compose file plus ``tests/deploy/compose.test.yml``
(images, one loopback-only network namespace). The test process reaches the API, Postgres and
S3 inside that namespace through ``socat`` forwarders on the host's loopback, each connection
entering the namespace with ``nsenter`` (the stack itself publishes no port).
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidjobs.devstack.embedded import free_port

__all__ = ["ROOT", "Stack"]

ROOT = Path(__file__).resolve().parents[2]
_FILES = (ROOT / "deploy" / "docker-compose.yml", ROOT / "tests" / "deploy" / "compose.test.yml")
#: Ports inside the namespace: the compose file's own.
_TARGETS = {"api": 8000, "postgres": 5432, "s3": 9000}


@dataclass
class Stack:
    """One compose project; ``ports`` are the host-side forwards while the stack is up."""

    project: str
    env: dict[str, str]
    ports: dict[str, int] = field(default_factory=dict)
    _forwarders: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def compose(
        self, *args: str, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """Run ``docker compose -p <project> -f ... <args>``; raise with its output on failure."""
        exe = os.environ.get("VIDJOBS_DEPLOY_COMPOSE", "docker-compose")
        files = [a for f in _FILES for a in ("-f", str(f))]
        proc = subprocess.run(
            [exe, "-p", self.project, *files, *args],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"docker compose {' '.join(args)} exited {proc.returncode}:\n"
                f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
            )
        return proc

    def containers(self, service: str) -> list[dict[str, Any]]:
        """``docker compose ps -a`` rows of ``service`` (Name, State, Health, ExitCode...)."""
        out = self.compose("ps", "-a", "--format", "json", service).stdout
        rows = [json.loads(line) for line in out.splitlines() if line.strip()]
        return sorted(rows, key=lambda r: str(r["Name"]))

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the plain ``docker`` client against the harness's engine."""
        proc = subprocess.run(
            ["docker", *args], capture_output=True, text=True, timeout=300, check=False
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
        return proc

    def open_forwards(self) -> None:
        """(Re)start the host-side forwarders into the namespace of the ``netns`` service."""
        self.close_forwards()
        [netns] = self.containers("netns")
        pid = self.docker("inspect", "-f", "{{.State.Pid}}", str(netns["ID"])).stdout.strip()
        for name, target in _TARGETS.items():
            port = self.ports.get(name) or free_port()
            self.ports[name] = port
            inner = f"nsenter -t {pid} -n socat STDIO TCP:127.0.0.1:{target}"
            self._forwarders.append(
                subprocess.Popen(
                    [
                        "socat",
                        f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr",
                        f"EXEC:{inner.replace(':', chr(92) + ':')}",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )

    def close_forwards(self) -> None:
        """Stop the forwarders by PID."""
        for proc in self._forwarders:
            proc.terminate()
            proc.wait(10)
        self._forwarders.clear()

    @property
    def api_url(self) -> str:
        """The API, as the test process reaches it."""
        return f"http://127.0.0.1:{self.ports['api']}"

    @property
    def database_url(self) -> str:
        """The compose file's database as its owner role, as the test process reaches it."""
        return f"postgresql://vidjobs:vidjobs@127.0.0.1:{self.ports['postgres']}/vidjobs"

    @property
    def s3_endpoint(self) -> str:
        """host:port of the S3 stand-in, as the test process reaches it."""
        return f"127.0.0.1:{self.ports['s3']}"
