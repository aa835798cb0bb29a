"""The SSRF guard: which URLs a webhook may go to, checked at submit and at every connection.

A webhook URL comes from a tenant, and the dispatcher runs inside the deployment: without a
guard, ``callback_url=http://169.254.169.254/...`` would make our worker fetch the cloud's
instance credentials, or probe the database's port. So a target must be ``https://`` (or
``http://`` where the operator allows it), carry no credentials, and every address its host
resolves to must be public (:func:`address_refusal`), unless it lies in a network the operator
allows (``VIDJOBS_WEBHOOK_ALLOW_NETWORKS``; ``vidjobs dev`` allows loopback).

The check at submit (:func:`check_target`) gives the client a clear 422; the one that counts is
at connect time: :class:`GuardedBackend` resolves the host itself, refuses if any address is not
allowed, and connects to the address it checked, so a DNS answer that changes between the
check and the connection (DNS rebinding) cannot reach an internal address. TLS still verifies
the certificate against the URL's host name. Redirects are never followed (the dispatcher's
client), so a public receiver cannot bounce a delivery inward either.

Why not a library: ``advocate`` wraps ``requests`` only and has had no release since 2020; the
newer ``ssrfguard`` is months old with few users. The rule is twenty lines of ``ipaddress``, and
the connect-time hook is httpcore's documented network-backend interface.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from vidjobs.webhooks.settings import TargetPolicy

__all__ = [
    "MAX_URL_LENGTH",
    "GuardedBackend",
    "GuardedTransport",
    "TargetRefused",
    "address_refusal",
    "check_target",
    "check_url",
    "parse_networks",
]

MAX_URL_LENGTH = 2048

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TargetRefused(ValueError):
    """A webhook URL the policy refuses; the message says why, for the client."""


@lru_cache(maxsize=64)
def parse_networks(text: str) -> tuple[Network, ...]:
    """The networks of ``VIDJOBS_WEBHOOK_ALLOW_NETWORKS`` (comma-separated CIDR)."""
    networks: list[Network] = []
    for item in text.split(","):
        if not item.strip():
            continue
        try:
            networks.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"not a network (CIDR like 10.0.0.0/8): {item.strip()!r}") from exc
    return tuple(networks)


_REFUSED: tuple[tuple[str, str], ...] = (
    ("is_loopback", "a loopback address"),
    ("is_link_local", "a link-local address (where cloud metadata services live)"),
    ("is_unspecified", "the unspecified address"),
    ("is_multicast", "a multicast address"),
    ("is_private", "a private address"),
)


def address_refusal(ip: IPAddress, allowed: Iterable[Network] = ()) -> str | None:
    """Why a webhook may not reach ``ip`` (None: it may)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if any(ip.version == net.version and ip in net for net in allowed):
        return None
    for attribute, reason in _REFUSED:
        if getattr(ip, attribute):
            return reason
    if not ip.is_global:
        return "a reserved or shared address, not a public one"
    return None


def check_url(url: str, policy: TargetPolicy) -> tuple[str, int]:
    """The host and port of a well-formed webhook URL (where it points is checked apart).

    Raises:
        TargetRefused: not http(s), http where only https is allowed, credentials in the URL,
            no host, a bad port, a fragment, too long.
    """
    if len(url) > MAX_URL_LENGTH:
        raise TargetRefused(f"longer than {MAX_URL_LENGTH} characters")
    if not url.isascii() or any(c.isspace() for c in url):
        raise TargetRefused("must be ASCII without spaces (punycode an international host name)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"not a URL: {exc}") from None
    schemes = ("https", "http") if policy.allow_http else ("https",)
    if parts.scheme not in schemes:
        only = "http:// or https://" if policy.allow_http else "https://"
        raise TargetRefused(f"must start with {only}, got {url[:16]!r}")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("must not carry credentials (user:password@); put a token in the path")
    host = parts.hostname
    if not host:
        raise TargetRefused("has no host")
    if parts.fragment:
        raise TargetRefused("must not have a #fragment")
    return host, port or (443 if parts.scheme == "https" else 80)


async def _resolve(host: str, port: int, timeout_s: float) -> list[IPAddress]:
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout_s
        )
    except (OSError, TimeoutError) as exc:
        raise TargetRefused(f"its host {host} does not resolve ({exc or 'timed out'})") from None
    addresses: list[IPAddress] = []
    for *_, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise TargetRefused(f"its host {host} has no address")
    return addresses


async def allowed_addresses(
    host: str, port: int, policy: TargetPolicy, *, timeout_s: float = 3.0
) -> Sequence[IPAddress]:
    """Every address ``host`` resolves to, if the policy allows each of them.

    Raises:
        TargetRefused: it does not resolve, or one of its addresses is refused (one refused
            address is enough: which one a connection would use is not ours to choose).
    """
    allowed = parse_networks(policy.allow_networks)
    addresses = await _resolve(host, port, timeout_s)
    for ip in addresses:
        why = address_refusal(ip, allowed)
        if why:
            shown = host if host == str(ip) else f"{host} resolves to {ip}, which"
            raise TargetRefused(f"its host {shown} is {why}")
    return addresses


async def check_target(url: str, policy: TargetPolicy, *, timeout_s: float = 3.0) -> None:
    """Refuse a webhook URL the policy would refuse at delivery (syntax, then every address).

    Raises:
        TargetRefused: with the reason, for the client's 422.
    """
    host, port = check_url(url, policy)
    await allowed_addresses(host, port, policy, timeout_s=timeout_s)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to addresses the policy allows.

    It resolves the host itself and connects to the checked address (never resolving twice),
    so the address used is the address checked.
    """

    def __init__(self, policy: TargetPolicy, *, resolve_timeout: float = 3.0) -> None:
        self._policy = policy
        self._resolve_timeout = resolve_timeout
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await allowed_addresses(
                host, port, self._policy, timeout_s=timeout or self._resolve_timeout
            )
        except TargetRefused as exc:
            raise httpcore.ConnectError(f"refused by the webhook target policy: {exc}") from exc
        error: Exception | None = None
        for ip in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(ip), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks never go to a unix socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """An httpx transport whose every connection goes through :class:`GuardedBackend`.

    httpx has no public hook for httpcore's network backend, so the pool it builds is replaced
    by the same pool with ours (``_pool`` is what every httpx transport sends through). No
    proxies: one would connect for us, past the guard.
    """

    def __init__(self, policy: TargetPolicy, *, max_connections: int = 100) -> None:
        super().__init__(trust_env=False)
        context: ssl.SSLContext = httpx.create_ssl_context()
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=context,
            max_connections=max_connections,
            max_keepalive_connections=min(20, max_connections),
            keepalive_expiry=5.0,
            network_backend=GuardedBackend(policy),
        )
