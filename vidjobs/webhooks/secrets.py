"""Signing secrets: made in Standard Webhooks form, sealed for the database, used to sign.

A tenant's secret is ``whsec_`` + base64 of 32 random bytes (the form every Standard Webhooks
library accepts). The database holds it sealed: a Fernet token (AES-128-CBC + HMAC-SHA256, the
``cryptography`` package) under the operator's keys, ``VIDJOBS_WEBHOOK_SECRET_KEYS``, which live
in the dispatcher's and the operator's environment only. A database dump, a replica or a DBA's
``SELECT`` therefore cannot forge a signature; the keys can be rotated with
``MultiFernet`` (new key first: every old one still opens).

Signing is the ``standardwebhooks`` package's (the spec's reference library), once per secret
not yet expired: during a rotation's grace period a delivery carries both signatures,
space-separated, and a receiver with either secret verifies it.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from standardwebhooks.webhooks import Webhook

__all__ = [
    "Sealer",
    "SecretKeysMissing",
    "generate_key",
    "new_secret",
    "parse_keys",
    "sign",
]

SECRET_PREFIX = "whsec_"  # noqa: S105 (the Standard Webhooks prefix, not a secret)


class SecretKeysMissing(RuntimeError):
    """No ``VIDJOBS_WEBHOOK_SECRET_KEYS``: secrets can be neither sealed nor opened."""

    def __init__(self) -> None:
        super().__init__(
            "VIDJOBS_WEBHOOK_SECRET_KEYS is not set: it seals the tenants' webhook signing "
            "secrets; make one with `vidjobs webhooks keygen` and give the same value to the "
            "workers (or `vidjobs webhooks dispatch`) and to whoever runs `vidjobs webhooks`"
        )


def generate_key() -> str:
    """A new Fernet key for ``VIDJOBS_WEBHOOK_SECRET_KEYS``."""
    return Fernet.generate_key().decode("ascii")


@lru_cache(maxsize=16)
def parse_keys(text: str) -> tuple[Fernet, ...]:
    """The Fernet keys of ``VIDJOBS_WEBHOOK_SECRET_KEYS`` (comma-separated, first seals)."""
    keys: list[Fernet] = []
    for n, item in enumerate(text.split(","), 1):
        if not item.strip():
            continue
        try:
            keys.append(Fernet(item.strip().encode("ascii")))
        except (ValueError, UnicodeEncodeError):
            raise ValueError(
                f"key {n} of VIDJOBS_WEBHOOK_SECRET_KEYS is not a Fernet key (32 url-safe "
                "base64-encoded bytes; `vidjobs webhooks keygen` makes one)"
            ) from None
    return tuple(keys)


def new_secret() -> str:
    """A new signing secret, ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


class Sealer:
    """Seals and opens signing secrets with the operator's keys; opened ones are cached."""

    def __init__(self, keys_text: str) -> None:
        keys = parse_keys(keys_text)
        if not keys:
            raise SecretKeysMissing()
        self._fernet = MultiFernet(list(keys))
        self._opened: dict[str, str] = {}

    def seal(self, secret: str) -> str:
        """The secret as the database keeps it."""
        return self._fernet.encrypt(secret.encode("ascii")).decode("ascii")

    def open(self, sealed: str) -> str:
        """The secret of a sealed one.

        Raises:
            ValueError: none of the keys opens it (sealed under another deployment's keys).
        """
        secret = self._opened.get(sealed)
        if secret is None:
            try:
                secret = self._fernet.decrypt(sealed.encode("ascii")).decode("ascii")
            except InvalidToken:
                raise ValueError(
                    "a signing secret does not open with VIDJOBS_WEBHOOK_SECRET_KEYS (sealed "
                    "under other keys?)"
                ) from None
            if len(self._opened) > 10_000:
                self._opened.clear()
            self._opened[sealed] = secret
        return secret


def sign(secrets_: Sequence[str], webhook_id: str, timestamp: datetime, body: str) -> str:
    """The ``webhook-signature`` header: one ``v1,<base64>`` per secret, space-separated."""
    return " ".join(Webhook(s).sign(webhook_id, timestamp, body) for s in secrets_)
