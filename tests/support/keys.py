"""API keys for tests, made and revoked through the db API (the CLI's own tests use the CLI)."""

from __future__ import annotations

import uuid

from tests.support.db import run_db
from vidjobs.db.api_keys import api_key_create, api_key_revoke

__all__ = ["Keys", "auth", "create_key", "revoke_key"]


def create_key(url: str, tenant: str, name: str = "test") -> tuple[uuid.UUID, str]:
    """A fresh API key for ``tenant``: ``(key_id, plaintext)``."""
    return run_db(url, lambda conn: api_key_create(conn, tenant, name))


def revoke_key(url: str, key_id: uuid.UUID) -> None:
    """Revoke a key (it is refused from the next request on)."""
    run_db(url, lambda conn: api_key_revoke(conn, key_id))


def auth(key: str) -> dict[str, str]:
    """The header that presents ``key``."""
    return {"Authorization": f"Bearer {key}"}


class Keys:
    """API keys of two tenants on one database; ``acme`` is who most tests act as."""

    def __init__(self, url: str) -> None:
        self._url = url
        self.acme_id, self.acme = self.create("acme")
        self.other_id, self.other = self.create("globex")

    def create(self, tenant: str) -> tuple[uuid.UUID, str]:
        """A fresh key for ``tenant``."""
        return create_key(self._url, tenant)

    def revoke(self, key_id: uuid.UUID) -> None:
        """Revoke a key."""
        revoke_key(self._url, key_id)

    auth = staticmethod(auth)
