-- name: api_key_insert
-- Store a new key's hash for a tenant; the plaintext never reaches the database.
INSERT INTO vidjobs.api_keys (key_id, tenant, name, key_hash, prefix, created_at)
VALUES (%(key_id)s, %(tenant)s, %(name)s, %(key_hash)s, %(prefix)s, coalesce(%(now)s, now()))
RETURNING key_id, tenant, name, prefix, created_at, revoked_at;

-- name: api_key_authenticate
-- The active key with this hash (one unique-index probe); revoked keys match nothing.
SELECT key_hash, tenant
FROM vidjobs.api_keys
WHERE key_hash = %(key_hash)s AND revoked_at IS NULL;

-- name: api_key_revoke
-- Revoke a key; revoking twice keeps the first time. Returns the row if the key exists.
UPDATE vidjobs.api_keys
SET revoked_at = coalesce(revoked_at, coalesce(%(now)s, now()))
WHERE key_id = %(key_id)s
RETURNING key_id, tenant, name, prefix, created_at, revoked_at;

-- name: api_key_list
-- Every key (or one tenant's), newest first, without hashes.
SELECT key_id, tenant, name, prefix, created_at, revoked_at
FROM vidjobs.api_keys
WHERE %(tenant)s::text IS NULL OR tenant = %(tenant)s::text
ORDER BY created_at DESC, key_id;

-- name: api_key_job_get
-- The key's tenant and, if it is that tenant's, one job: auth and read in one round trip.
-- No row: unknown or revoked key. A row with NULL job columns: no such job for the tenant.
SELECT k.tenant AS key_tenant, j.*
FROM vidjobs.api_keys AS k
LEFT JOIN vidjobs.jobs AS j ON j.job_id = %(job_id)s AND j.tenant = k.tenant
WHERE k.key_hash = %(key_hash)s AND k.revoked_at IS NULL;

-- name: api_key_job_get_many
-- api_key_job_get for many (key hash, job id) pairs: one row per pair, in input order (n).
SELECT r.n, k.tenant AS key_tenant, j.*
FROM unnest(%(key_hashes)s::bytea[], %(job_ids)s::uuid[])
     WITH ORDINALITY AS r(key_hash, job_id, n)
LEFT JOIN vidjobs.api_keys AS k ON k.key_hash = r.key_hash AND k.revoked_at IS NULL
LEFT JOIN vidjobs.jobs AS j ON j.job_id = r.job_id AND j.tenant = k.tenant
ORDER BY r.n;
