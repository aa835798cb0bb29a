"""The uvicorn side of the API: its config, and an HTTP/1.1 protocol with a header timeout.

uvicorn bounds an idle keep-alive connection (``timeout_keep_alive``) but not a request head
that never ends: a client sending one header line every few seconds holds its socket and
buffer for as long as it likes (slowloris), and a connection that opens and sends nothing is
never closed at all. :class:`HeaderTimeoutProtocol` is uvicorn's own h11 protocol plus one
timer: armed when a connection opens and when the first byte of a request head arrives,
cancelled once h11 has parsed the whole head. When it fires the connection gets a bare
``408`` and is closed. Request bodies are bounded by the submit route itself
(``vidjobs.api.admission.UploadPace``), which can answer a problem document.

Why h11 and a subclass: with ``http="auto"`` uvicorn picks httptools when it is installed and
h11 otherwise; naming our class pins one implementation whose states we rely on (h11's
``their_state``), and its only dependency is h11, which uvicorn always installs. The class is
module-level and its settings live on the config, so ``--workers N`` can pickle both.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from vidjobs.api.app import create_app
from vidjobs.api.settings import ApiSettings

__all__ = ["HeaderTimeoutProtocol", "ServerConfig", "server_config"]

_TIMEOUT_BODY = b"the request line and headers took too long; connection closed\n"
_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\n"
    b"content-length: %d\r\n"
    b"\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY)
)


class ServerConfig(uvicorn.Config):
    """uvicorn's config plus the header timeout :class:`HeaderTimeoutProtocol` reads."""

    def __init__(self, app: Any, *, header_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.header_timeout_s = header_timeout_s


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol that closes a connection whose request head does not complete.

    The clock starts when the connection opens, and again with the first byte of each later
    request head on a kept-alive connection (between requests the keep-alive timeout rules).
    """

    _head_timer: asyncio.TimerHandle | None = None

    def _head_timeout_s(self) -> float:
        config = self.config
        return config.header_timeout_s if isinstance(config, ServerConfig) else 10.0

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self._head_timeout_s(), self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the clock: a connection that sends nothing is closed too."""
        super().connection_made(transport)
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        """Feed h11, then run the clock while a head is incomplete, stop it once it is whole."""
        super().data_received(data)
        if self.transport.is_closing():
            self._cancel_head_timer()
        elif self.conn.their_state is h11.IDLE and self.conn.trailing_data[0]:
            self._arm_head_timer()  # part of a head is buffered: it has its time
        elif self.conn.their_state is not h11.IDLE:
            self._cancel_head_timer()  # the head is whole: the route reads the body

    def connection_lost(self, exc: Exception | None) -> None:
        """Nothing left to time."""
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self.conn.our_state is h11.IDLE:  # no response under way: say why
            self.transport.write(_TIMEOUT_RESPONSE)
        self.transport.close()


def server_config(settings: ApiSettings, log_level: str) -> ServerConfig:
    """The uvicorn config of ``vidjobs api``: the app factory, the port, every timeout."""
    return ServerConfig(
        partial(create_app, settings),
        header_timeout_s=settings.header_timeout_s,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=log_level,
        proxy_headers=True,
        http=HeaderTimeoutProtocol,
        timeout_keep_alive=settings.keep_alive_timeout_s,
        timeout_graceful_shutdown=30,
    )
