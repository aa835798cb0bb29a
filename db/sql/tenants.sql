-- name: tenant_submit_admit
-- Admit one submit or name the limit that refuses it; a token leaves the tenant's bucket only when every limit allows the submit.
WITH
clock AS (SELECT coalesce(%(now)s::timestamptz, now()) AS now),
-- The tenant's row, locked: concurrent submits of one tenant, from any API process, queue here
-- and each reads the bucket its predecessor left (READ COMMITTED returns a locked row's newest
-- version). Its limits are its own, else the deployment's defaults (NULL = no limit).
tenant AS (
    SELECT t.tenant, t.stored_bytes, t.submit_tokens, t.submit_refilled_at,
           coalesce(t.submit_rate_per_min, %(rate_per_min)s::double precision) AS rate_per_min,
           coalesce(t.submit_burst, %(burst)s::integer) AS burst_set,
           coalesce(t.max_pending, %(max_pending)s::integer) AS max_pending,
           coalesce(t.max_stored_bytes, %(max_stored_bytes)s::bigint) AS max_stored_bytes
    FROM vidjobs.tenants AS t
    WHERE t.tenant = %(tenant)s::text
    FOR UPDATE
),
-- The bucket refilled to now: its level plus elapsed seconds × rate / 60, capped at its size (a
-- bucket never used is full). A size left unset is a minute of the rate, at least 1. No rate,
-- no bucket (tokens NULL).
bucket AS (
    SELECT tenant.*, size.burst,
           CASE
               WHEN tenant.rate_per_min IS NULL THEN NULL
               WHEN tenant.submit_refilled_at IS NULL THEN size.burst::double precision
               ELSE least(
                   size.burst::double precision,
                   tenant.submit_tokens
                   + greatest(0, extract(epoch FROM clock.now - tenant.submit_refilled_at))
                     * tenant.rate_per_min / 60
               )
           END AS tokens
    FROM tenant
    CROSS JOIN clock
    CROSS JOIN LATERAL (
        SELECT coalesce(tenant.burst_set, greatest(1, ceil(tenant.rate_per_min))::integer) AS burst
    ) AS size
),
-- The tenant's pending jobs, read from jobs_tenant_pending_idx and counted no further than its
-- limit (not at all without one): a backlog of millions costs no more than the limit. The ORDER
-- BY is the index's own order, so it costs nothing; without it the planner may guess that a
-- sequential scan finds "limit" pending rows early, when they sit behind every finished row.
pending AS (
    SELECT count(*) AS pending
    FROM (
        SELECT FROM vidjobs.jobs AS j
        WHERE j.tenant = %(tenant)s::text AND j.state = 'pending'
        ORDER BY j.priority DESC, j.run_after, j.created_at
        LIMIT (SELECT coalesce(max_pending, 0) FROM tenant)
    ) AS p
),
-- The first limit the submit is over, in the order a client can act on: the rate (wait a few
-- seconds), then the pending jobs (wait for some to run), then the stored bytes (delete jobs).
-- Without a Content-Length (incoming_bytes NULL) the bytes refuse only a tenant already full.
verdict AS (
    SELECT bucket.*, pending.pending, clock.now,
           CASE
               WHEN bucket.tokens < 1 THEN 'submit_rate_per_min'
               WHEN pending.pending >= bucket.max_pending THEN 'max_pending'
               WHEN bucket.stored_bytes >= bucket.max_stored_bytes
                 OR bucket.stored_bytes + coalesce(%(incoming_bytes)s::bigint, 0)
                    > bucket.max_stored_bytes THEN 'max_stored_bytes'
           END AS refused_by
    FROM bucket CROSS JOIN pending CROSS JOIN clock
),
-- An admitted submit takes its token (nothing changes for a refused one, or without a rate).
took AS (
    UPDATE vidjobs.tenants AS t
    SET submit_tokens = v.tokens - 1, submit_refilled_at = v.now
    FROM verdict AS v
    WHERE t.tenant = v.tenant AND v.refused_by IS NULL AND v.tokens IS NOT NULL
)
SELECT tenant, refused_by, tokens, rate_per_min, burst, pending, max_pending, stored_bytes,
       max_stored_bytes
FROM verdict;

-- name: tenant_submit_row
-- Create the row of a tenant submitting for the first time (its key was made after 0012); an existing row is left alone.
INSERT INTO vidjobs.tenants (tenant) VALUES (%(tenant)s::text)
ON CONFLICT (tenant) DO NOTHING;

-- name: tenant_get
-- One tenant's limits (NULL = the deployment default) and usage, from the DBA view tenant_usage.
SELECT * FROM vidjobs.tenant_usage WHERE tenant = %(tenant)s::text;

-- name: tenant_list
-- Every tenant's limits and usage, by name.
SELECT * FROM vidjobs.tenant_usage ORDER BY tenant;

-- name: tenant_set
-- Set some of a tenant's limits (creating its row if it has none yet); a limit set to NULL goes back to the deployment default, one not named is left as it is.
-- Each limit comes as a pair: <name>_set (whether to change it) and <name> (the new value, NULL
-- for the default), so one statement covers every combination of flags.
WITH
changed AS (
    INSERT INTO vidjobs.tenants AS t (
        tenant, weight, max_running, max_pending, submit_rate_per_min, submit_burst,
        max_stored_bytes
    )
    VALUES (
        %(tenant)s::text, %(weight)s::integer, %(max_running)s::integer,
        %(max_pending)s::integer, %(submit_rate_per_min)s::double precision,
        %(submit_burst)s::integer, %(max_stored_bytes)s::bigint
    )
    ON CONFLICT (tenant) DO UPDATE
    SET weight = CASE WHEN %(weight_set)s::boolean THEN excluded.weight ELSE t.weight END,
        max_running = CASE WHEN %(max_running_set)s::boolean
                           THEN excluded.max_running ELSE t.max_running END,
        max_pending = CASE WHEN %(max_pending_set)s::boolean
                           THEN excluded.max_pending ELSE t.max_pending END,
        submit_rate_per_min = CASE WHEN %(submit_rate_per_min_set)s::boolean
                                   THEN excluded.submit_rate_per_min
                                   ELSE t.submit_rate_per_min END,
        submit_burst = CASE WHEN %(submit_burst_set)s::boolean
                            THEN excluded.submit_burst ELSE t.submit_burst END,
        max_stored_bytes = CASE WHEN %(max_stored_bytes_set)s::boolean
                                THEN excluded.max_stored_bytes ELSE t.max_stored_bytes END,
        updated_at = now()
    RETURNING t.tenant
)
SELECT tenant FROM changed;
