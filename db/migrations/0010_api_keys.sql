-- vidjobs.api_keys: API keys, stored only as hashes; each key is bound to one tenant.

CREATE TABLE vidjobs.api_keys (
    key_id      uuid        PRIMARY KEY,
    tenant      text        NOT NULL,
    name        text        NOT NULL DEFAULT '',
    key_hash    bytea       NOT NULL,
    prefix      text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,

    CONSTRAINT api_keys_tenant_not_blank CHECK (tenant <> ''),
    -- SHA-256 is 32 bytes; anything else is a bug in the writer.
    CONSTRAINT api_keys_hash_is_sha256 CHECK (octet_length(key_hash) = 32),
    CONSTRAINT api_keys_revoked_after_created CHECK (revoked_at IS NULL OR revoked_at >= created_at)
);

-- Every request authenticates by hash: one index probe, and no two keys can share a hash.
CREATE UNIQUE INDEX api_keys_key_hash_key ON vidjobs.api_keys (key_hash);
CREATE INDEX api_keys_tenant_idx ON vidjobs.api_keys (tenant, created_at);

COMMENT ON TABLE vidjobs.api_keys IS
    'API keys of the HTTP API. Only a SHA-256 of each key is stored; the key itself is shown once '
    'by "vidjobs keys create". A request''s Bearer key is hashed and looked up here.';
COMMENT ON COLUMN vidjobs.api_keys.key_id IS
    'Public id of the key: what "vidjobs keys list" shows and "vidjobs keys revoke" takes.';
COMMENT ON COLUMN vidjobs.api_keys.tenant IS
    'The tenant every request made with this key acts for; jobs.tenant of the jobs it submits.';
COMMENT ON COLUMN vidjobs.api_keys.name IS
    'Free text to tell keys apart (who or what uses it).';
COMMENT ON COLUMN vidjobs.api_keys.key_hash IS
    'SHA-256 of the key. A fast unsalted hash is right here: keys are 256 random bits, so there '
    'is nothing to brute-force or precompute (unlike passwords), and a lookup by hash stays one '
    'index probe per request.';
COMMENT ON COLUMN vidjobs.api_keys.prefix IS
    'First characters of the key, safe to display, so a person can tell which key is which.';
COMMENT ON COLUMN vidjobs.api_keys.created_at IS 'When the key was created.';
COMMENT ON COLUMN vidjobs.api_keys.revoked_at IS
    'When the key was revoked; a revoked key authenticates nothing. NULL while active.';
