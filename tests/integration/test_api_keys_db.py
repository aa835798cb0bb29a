"""API keys in a real Postgres: created once, stored as hashes, revoked at once."""

from __future__ import annotations

import psycopg
import pytest

from vidjobs.db.api_keys import (
    KEY_MARKER,
    api_key_authenticate,
    api_key_create,
    api_key_list,
    api_key_revoke,
    hash_key,
)

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


async def test_create_authenticate_revoke(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        key_id, plaintext = await api_key_create(conn, "acme", "ci")
        assert plaintext.startswith(KEY_MARKER)
        assert len(plaintext) > 40
        assert await api_key_authenticate(conn, plaintext) == "acme"
        assert await api_key_authenticate(conn, plaintext + "x") is None
        assert await api_key_authenticate(conn, "") is None

        # Only the hash is stored: the plaintext appears in no column.
        cur = await conn.execute("SELECT * FROM vidjobs.api_keys")
        row = await cur.fetchone()
        assert row is not None
        assert plaintext not in repr(row)
        assert hash_key(plaintext) in row

        keys = await api_key_list(conn)
        assert [(k.key_id, k.tenant, k.name, k.revoked_at) for k in keys] == [
            (key_id, "acme", "ci", None)
        ]
        assert plaintext.startswith(keys[0].prefix)

        assert await api_key_revoke(conn, key_id) is True
        assert await api_key_authenticate(conn, plaintext) is None
        assert await api_key_revoke(conn, key_id) is True  # idempotent
        listed = await api_key_list(conn, tenant="acme")
        assert listed[0].revoked_at is not None
        assert await api_key_list(conn, tenant="other") == []


async def test_revoke_unknown_key_is_false(database_url: str) -> None:
    import uuid

    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        assert await api_key_revoke(conn, uuid.uuid4()) is False


async def test_blank_tenant_rejected(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        with pytest.raises(ValueError):
            await api_key_create(conn, "  ")


async def test_key_and_job_in_one_round_trip(database_url: str) -> None:
    import uuid

    from vidjobs.db.api_keys import api_key_job_get
    from vidjobs.db.jobs import job_insert

    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        key_id, acme = await api_key_create(conn, "acme")
        _, globex = await api_key_create(conn, "globex")
        job_id = uuid.uuid4()
        await job_insert(conn, job_id=job_id, tenant="acme", pipeline="noop", params={})

        tenant, job = await api_key_job_get(conn, acme, job_id)
        assert tenant == "acme"
        assert job is not None
        assert (job.job_id, job.tenant, job.state) == (job_id, "acme", "pending")
        # Another tenant's job looks exactly like a missing one.
        assert await api_key_job_get(conn, globex, job_id) == ("globex", None)
        assert await api_key_job_get(conn, acme, uuid.uuid4()) == ("acme", None)
        # Unknown and revoked keys get nothing at all.
        assert await api_key_job_get(conn, "vj_nope", job_id) == (None, None)
        await api_key_revoke(conn, key_id)
        assert await api_key_job_get(conn, acme, job_id) == (None, None)
