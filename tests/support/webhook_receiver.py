"""A webhook receiver on loopback, as a tenant would run one: it verifies every delivery.

A threaded ``http.server`` on 127.0.0.1 (its own thread, stopped by the test): each POST is
recorded with its headers, body and arrival time, verified with the ``standardwebhooks``
package against the secrets it was given, and answered with the status ``respond`` picks (200
unless the test says otherwise). :meth:`WebhookReceiver.stop` closes the socket for real
(connections refused: a receiver that is down), :meth:`WebhookReceiver.start` opens it again
on the same port.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from vidjobs.devstack.embedded import free_port

__all__ = ["Received", "WebhookReceiver", "webhook_receiver"]


@dataclass(frozen=True)
class Received:
    """One request as it arrived, and what verifying it gave."""

    at: float
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    """What the receiver answered."""
    payload: Any
    """The verified event (None if verification failed)."""
    error: str | None
    """Why verification failed (None: verified)."""

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")


@dataclass(eq=False)
class WebhookReceiver:
    """See the module docstring. ``secrets``: verify with any of them."""

    secrets: list[str]
    respond: Callable[[int], int] = lambda n: 200
    """The status of the n-th request (0-based)."""
    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    _server: http.server.ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> None:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                payload, error = receiver._verify(body, headers)
                with receiver._lock:
                    status = receiver.respond(len(receiver.received))
                    receiver.received.append(
                        Received(time.time(), self.path, headers, body, status, payload, error)
                    )
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                return None

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def _verify(self, body: bytes, headers: dict[str, str]) -> tuple[Any, str | None]:
        errors = []
        for secret in self.secrets:
            try:
                return Webhook(secret).verify(body, headers), None
            except WebhookVerificationError as exc:
                errors.append(str(exc))
        return None, "; ".join(errors) or "no secret to verify with"

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def verified(self) -> list[Received]:
        return [r for r in self.snapshot() if r.error is None]

    def unique_events(self) -> dict[str, Any]:
        """The verified events that were answered 2xx, deduplicated by ``webhook-id``."""
        events: dict[str, Any] = {}
        for r in self.verified():
            if 200 <= r.status < 300:
                events.setdefault(r.webhook_id, r.payload)
        return events


@contextmanager
def webhook_receiver(
    secrets: Sequence[str], respond: Callable[[int], int] | None = None
) -> Iterator[WebhookReceiver]:
    """A started receiver, stopped at the end of the block."""
    receiver = WebhookReceiver(list(secrets), **({"respond": respond} if respond else {}))
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()
