"""Slow clients against the real ``vidjobs api`` process: one tenant cannot block the others.

Raw sockets play the attacker: 40 chunked uploads of tenant A that trickle a byte every 2 s,
and connections that send one header line at a time. Tenant B's submit and status polls must
keep answering; A's uploads end with 429 (over its upload slots) or 408 (too slow) and leave
no row and no blob; the slow headers are closed after the header timeout.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.support.db import sql
from tests.support.keys import auth, create_key
from tests.support.media import mp4_bytes
from tests.support.processes import Services

pytestmark = pytest.mark.acceptance

SLOTS = 8
ATTACKERS = 40
HEADER_TIMEOUT_S = 2.0
_LIMITS = {
    "VIDJOBS_API_TENANT_UPLOAD_SLOTS": str(SLOTS),
    "VIDJOBS_API_UPLOAD_IDLE_TIMEOUT_S": "3",
    "VIDJOBS_API_UPLOAD_MIN_BYTES_PER_S": "1024",
    "VIDJOBS_API_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
}


def _address(base_url: str) -> tuple[str, int]:
    host, port = base_url.removeprefix("http://").split(":")
    return host, int(port)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _open_slow_upload(address: tuple[str, int], key: str) -> socket.socket:
    """A chunked submit that sent its multipart head and 1 KB of MP4, and will trickle."""
    boundary = "sl0w"
    start = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="pipeline"\r\n\r\nnoop\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="v.mp4"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode() + mp4_bytes(1024)
    head = (
        f"POST /video/submit HTTP/1.1\r\nHost: vidjobs\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    sock = socket.create_connection(address, timeout=5)
    sock.sendall(head + _chunk(start))
    return sock


def _status_of(sock: socket.socket) -> int | None:
    """The response's status code once the server answered (``None``: not yet); 0 if it
    closed without one."""
    if not select.select([sock], [], [], 0)[0]:
        return None
    try:
        data = sock.recv(65536)
    except OSError:
        return 0
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0


class _Trickle(threading.Thread):
    """Sends one byte every 2 s on each open upload, and records each one's answer."""

    def __init__(self, socks: list[socket.socket]) -> None:
        super().__init__(daemon=True)
        self.open = list(socks)
        self.answers: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while self.open and not self.stop.is_set():
            for sock in list(self.open):
                status = _status_of(sock)
                if status is None:
                    try:
                        sock.sendall(_chunk(b"\0"))
                        continue
                    except OSError:
                        status = _status_of(sock) or 0
                self.answers.append(status)
                self.open.remove(sock)
                sock.close()
            self.stop.wait(2.0)


def _every_file(root: Path) -> list[str]:
    """Every file under the blob directory, temp files included."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_slow_uploads_of_one_tenant_do_not_block_another(live: Services) -> None:
    live.start_api(**_LIMITS)
    key_a = create_key(live.database_url, "tenant-a")[1]
    key_b = create_key(live.database_url, "tenant-b")[1]
    address = _address(live.base_url)
    attack = _Trickle([_open_slow_upload(address, key_a) for _ in range(ATTACKERS)])
    attack.start()
    try:
        with httpx.Client(base_url=live.base_url, headers=auth(key_b)) as b:
            # The bound is a hang guard: with the slots shared, B got no answer in 50 s.
            sent = b.post(
                "/video/submit",
                data={"pipeline": "noop"},
                files={"file": ("b.mp4", mp4_bytes(4096), "video/mp4")},
                timeout=1.0,
            )
            assert sent.status_code == 202, sent.text
            polls = [b.get(sent.headers["location"], timeout=1.0) for _ in range(20)]
            assert [p.status_code for p in polls] == [200] * 20
        live.processes.wait_for(lambda: not attack.open, 30, "every slow upload answered")
    finally:
        attack.stop.set()
        attack.join(10)
    # One tenant's uploads in progress never exceed its slots: the rest were refused at once,
    # and those that got a slot were cut off for their trickle.
    assert sorted(set(attack.answers)) == [408, 429], attack.answers
    assert attack.answers.count(408) <= SLOTS
    assert len(attack.answers) == ATTACKERS
    assert sql(live.database_url, "SELECT tenant, count(*) FROM vidjobs.jobs GROUP BY 1") == [
        ("tenant-b", 1)
    ]
    assert live.blobs is not None
    assert _every_file(Path(live.blobs.directory)) == [f"video_jobs/{sent.json()['job_id']}.mp4"]


def test_slow_headers_are_closed_after_the_header_timeout(live: Services) -> None:
    live.start_api(**_LIMITS)
    address = _address(live.base_url)
    slow = [socket.create_connection(address, timeout=5) for _ in range(10)]
    silent = socket.create_connection(address, timeout=5)  # connects and sends nothing
    for sock in slow:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: vidjobs\r\n")
    answers: dict[int, bytes] = {}
    started = time.monotonic()
    line = 0
    # One header line each every 0.5 s, up to 20 s: the server must close them long before.
    while len(answers) < len(slow) and time.monotonic() - started < 20:
        line += 1
        for i, sock in enumerate(slow):
            if i in answers:
                continue
            if select.select([sock], [], [], 0)[0]:
                answers[i] = sock.recv(65536)
                continue
            try:
                sock.sendall(f"X-Slow-{line}: 1\r\n".encode())
            except OSError:
                answers[i] = b""
        time.sleep(0.5)
    assert len(answers) == len(slow), "slow header connections still open after 20 s"
    assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers.values()), answers
    assert line < 20  # they were still sending headers when the server closed them
    assert select.select([silent], [], [], 10)[0], "a silent connection was never closed"
    assert silent.recv(65536).startswith(b"HTTP/1.1 408 ")
    for sock in [*slow, silent]:
        sock.close()
    # Requests that send their head at once are unaffected, keep-alive included.
    with httpx.Client(base_url=live.base_url) as client:
        assert client.get("/health").status_code == 200
        time.sleep(HEADER_TIMEOUT_S + 0.5)  # longer than the header timeout, under keep-alive
        assert client.get("/health").status_code == 200
