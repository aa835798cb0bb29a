"""A real HTTP server on loopback that misbehaves on cue, in front of a real API or of nothing.

The client's retries are tested against sockets, not mocks: :class:`FlakyProxy` answers each
request with the next step of its script (a 503 or 429 with ``Retry-After``, a dropped
connection, the request forwarded to the real ``vidjobs api`` with or without its answer lost
on the way back) and forwards everything once the script is used up. It records what arrived
(when, which headers, how many body bytes), so a test asserts what the client really sent.
"""

from __future__ import annotations

import contextlib
import http.server
import itertools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx

__all__ = ["Arrival", "FlakyProxy", "Step", "answer", "drop", "flaky_proxy", "forward", "lose"]


@dataclass(frozen=True)
class Step:
    """What the proxy does with one request.

    Attributes:
        kind: ``answer`` (the status, headers and body below), ``drop`` (close without a word),
            ``forward`` (to the upstream API, its answer passed back) or ``lose`` (forwarded,
            then the connection closed: the API acted, the client never hears of it).
    """

    kind: str
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


_SLUGS = {429: "submit-rate-limited", 503: "database-unavailable"}


def answer(status: int, retry_after: str | None = None, body: object | None = None) -> Step:
    """A scripted answer; an error status gets a problem document like the API's."""
    headers = [("Retry-After", retry_after)] if retry_after is not None else []
    if body is None and status >= 400:
        slug = _SLUGS.get(status, "about:blank")
        body = {
            "type": f"https://vidjobs.dev/problems/{slug}",
            "title": "Scripted",
            "status": status,
            "detail": f"a scripted {status} from the flaky proxy",
        }
    content_type = "application/problem+json" if status >= 400 else "application/json"
    payload = json.dumps(body).encode() if body is not None else b""
    return Step("answer", status, (*headers, ("Content-Type", content_type)), payload)


drop = Step("drop")
forward = Step("forward")
lose = Step("lose")


@dataclass(frozen=True)
class Arrival:
    """One request as it arrived: when (monotonic, once its headers were read), what it said."""

    at: float
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FlakyProxy:
    """The server's script and record; ``url`` is where the client under test points."""

    upstream: str | None
    script: list[Step] = field(default_factory=list)
    arrivals: list[Arrival] = field(default_factory=list)
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def next_step(self) -> Step:
        with self._lock:
            return self.script.pop(0) if self.script else forward

    def record(self, arrival: Arrival) -> None:
        with self._lock:
            self.arrivals.append(arrival)

    def gaps(self) -> list[float]:
        """Seconds between one request's arrival and the next's."""
        times = [a.at for a in self.arrivals]
        return [b - a for a, b in itertools.pairwise(times)]


_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}
"""Headers of one hop, not passed on (httpx sets its own, and decodes a compressed answer)."""
_HOP_BACK = _HOP | {"content-encoding"}


def _read_body(handler: http.server.BaseHTTPRequestHandler) -> bytes:
    """The request body, by ``Content-Length`` or chunked (a pipe upload has no length)."""
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))


def _handler(proxy: FlakyProxy) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the test asserts on the record instead."""

        def _serve(self) -> None:
            at = time.monotonic()
            body = _read_body(self)
            proxy.record(
                Arrival(
                    at=at,
                    method=self.command,
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
            )
            step = proxy.next_step()
            self.close_connection = True
            if step.kind == "drop":
                return
            if step.kind in ("forward", "lose"):
                assert proxy.upstream is not None, "this proxy has no API behind it"
                sent = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                reply = httpx.request(
                    self.command, proxy.upstream + self.path, headers=sent, content=body, timeout=30
                )
                if step.kind == "lose":
                    return
                step = Step(
                    "answer",
                    reply.status_code,
                    tuple((k, v) for k, v in reply.headers.items() if k.lower() not in _HOP_BACK),
                    reply.content,
                )
            self.send_response(step.status)
            for name, value in step.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(step.body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(step.body)

        do_GET = do_POST = do_DELETE = _serve  # the stdlib's dispatch names

    return Handler


@contextlib.contextmanager
def flaky_proxy(upstream: str | None, *script: Step, port: int = 0) -> Iterator[FlakyProxy]:
    """A :class:`FlakyProxy` serving on loopback (``port``, or a free one) until the block ends.

    ``upstream`` is the API that ``forward`` and ``lose`` send to (None: a script alone).
    """
    proxy = FlakyProxy(upstream, list(script))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _handler(proxy))
    server.daemon_threads = True
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="flaky-proxy", daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
