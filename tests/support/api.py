"""Talking to the API as a client does: the tests' upload limit and a tiny noop submit."""

from __future__ import annotations

import httpx

from tests.support.keys import auth
from tests.support.media import mp4_bytes
from vidjobs.api.settings import ApiSettings

__all__ = ["MAX_UPLOAD", "submit_noop", "with_limit"]

MAX_UPLOAD = 256 * 1024
"""The in-process API tests' upload limit: small, so the oversize case is cheap."""


def with_limit(settings: ApiSettings, limit: int) -> ApiSettings:
    """``settings`` with another upload limit."""
    return settings.model_copy(update={"max_upload_bytes": limit})


def submit_noop(
    client: httpx.Client, key: str | None = None, *, filename: str = "v.mp4", size: int = 4096
) -> httpx.Response:
    """``POST /video/submit`` of a small ``noop`` job (an ``ftyp`` header and filler).

    ``key`` adds its ``Authorization`` header; without it the client's own headers apply.
    """
    return client.post(
        "/video/submit",
        headers=auth(key) if key is not None else None,
        data={"pipeline": "noop"},
        files={"file": (filename, mp4_bytes(size), "video/mp4")},
        timeout=30,
    )
