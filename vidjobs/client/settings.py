"""Where the client finds the API and its key: the two settings the library and the CLI share.

Declared once (``vidjobs.settings``), so ``Client()`` in a script, ``vidjobs submit`` and the
docs table agree on the variables (``VIDJOBS_API_URL``, ``VIDJOBS_API_KEY``), the default and
the rule that an empty variable is unset.
"""

from __future__ import annotations

import httpx

from vidjobs import __version__
from vidjobs.client.errors import InvalidApiUrl
from vidjobs.settings import Settings, setting

__all__ = ["DEFAULT_API_URL", "ClientSettings", "connection"]

DEFAULT_API_URL = "http://127.0.0.1:8000"
"""``vidjobs api``'s own default address, so a local API needs no setting at all."""


class ClientSettings(Settings):
    """The API a client talks to, and as whom."""

    api_url: str = setting(
        DEFAULT_API_URL, env="VIDJOBS_API_URL", help="Base URL of the vidjobs API."
    )
    api_key: str | None = setting(
        None,
        env="VIDJOBS_API_KEY",
        help="API key (Bearer); create one with ``vidjobs keys create``.",
        repr=False,
    )


def connection(api_url: str | None, api_key: str | None) -> tuple[str, dict[str, str]]:
    """The base URL and the headers of a client: the arguments, else the variables, else defaults.

    Raises:
        InvalidApiUrl: the URL is not ``http(s)://host...``; said now rather than as a failed
            connection at the first request.
    """
    given = {"api_url": api_url, "api_key": api_key}
    settings = ClientSettings(**{name: value for name, value in given.items() if value is not None})
    try:
        url = httpx.URL(settings.api_url.strip())
    except httpx.InvalidURL as exc:
        raise InvalidApiUrl(f"invalid API URL {settings.api_url!r}: {exc}") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise InvalidApiUrl(
            f"invalid API URL {settings.api_url!r}: give http:// or https:// and a host"
        )
    headers = {"User-Agent": f"vidjobs-client/{__version__}"}
    if settings.api_key:
        headers["Authorization"] = f"Bearer {settings.api_key}"
    return str(url).rstrip("/"), headers
