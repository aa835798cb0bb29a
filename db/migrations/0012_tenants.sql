-- vidjobs.tenants: one row per tenant, holding what an operator may set for it (its share of the
-- workers and its limits) and what the queue keeps about it (how many of its jobs run, how many
-- bytes it stores, when the claim last served it, its submit-rate bucket).
--
-- A row exists for every tenant that has a key or a job: this migration creates them, and the
-- trigger below creates one for the tenant of any job inserted later (with every limit NULL, which
-- means "the deployment's default", from the settings). An operator sets limits with
-- `vidjobs tenants set` or a plain UPDATE.
--
-- `running` and `stored_bytes` are counters kept by a statement-level trigger on vidjobs.jobs, so
-- every path that changes a job (the claim, completions, failures, hand-backs, cancel, delete,
-- prune, a DBA's own UPDATE) keeps them true; nothing else writes them. `running` is what lets
-- the claim hold `max_running` exactly across any number of workers: the claim locks a tenant's
-- row and re-checks `running` against the limit (READ COMMITTED re-reads a locked row's newest
-- version, which a count over jobs in the statement's snapshot would not see).

CREATE TABLE vidjobs.tenants (
    tenant              text             PRIMARY KEY,
    weight              integer,
    max_running         integer,
    max_pending         integer,
    submit_rate_per_min double precision,
    submit_burst        integer,
    max_stored_bytes    bigint,
    running             integer          NOT NULL DEFAULT 0,
    stored_bytes        bigint           NOT NULL DEFAULT 0,
    last_claimed_at     timestamptz,
    submit_tokens       double precision,
    submit_refilled_at  timestamptz,
    created_at          timestamptz      NOT NULL DEFAULT now(),
    updated_at          timestamptz      NOT NULL DEFAULT now(),

    CONSTRAINT tenants_tenant_not_blank CHECK (tenant <> ''),
    CONSTRAINT tenants_weight_range CHECK (weight BETWEEN 1 AND 100),
    CONSTRAINT tenants_max_running_nonnegative CHECK (max_running >= 0),
    CONSTRAINT tenants_max_pending_nonnegative CHECK (max_pending >= 0),
    CONSTRAINT tenants_submit_rate_positive CHECK (submit_rate_per_min > 0),
    CONSTRAINT tenants_submit_burst_positive CHECK (submit_burst >= 1),
    CONSTRAINT tenants_max_stored_bytes_nonnegative CHECK (max_stored_bytes >= 0),
    CONSTRAINT tenants_running_nonnegative CHECK (running >= 0),
    CONSTRAINT tenants_stored_bytes_nonnegative CHECK (stored_bytes >= 0),
    CONSTRAINT tenants_submit_tokens_nonnegative CHECK (submit_tokens >= 0),
    -- The bucket is either untouched (full) or has both its level and the time of that level.
    CONSTRAINT tenants_submit_bucket_whole
        CHECK ((submit_tokens IS NULL) = (submit_refilled_at IS NULL))
);

-- The size of each uploaded video, so a tenant's stored bytes can be counted (and limited).
-- NULL for jobs submitted before this migration and for jobs inserted without an upload; a
-- catalog-only change (no default, no rewrite), the CHECK added NOT VALID for the same reason as
-- in 0011.
ALTER TABLE vidjobs.jobs ADD COLUMN input_bytes bigint;
ALTER TABLE vidjobs.jobs
    ADD CONSTRAINT jobs_input_bytes_nonnegative CHECK (input_bytes >= 0) NOT VALID;

-- Serves the fair claim: one tenant's due pending jobs, best first, read from the head of the
-- index in the claim's per-tenant order. Partial, so it stays as small as the backlog.
CREATE INDEX jobs_tenant_pending_idx ON vidjobs.jobs (tenant, priority DESC, run_after, created_at)
    WHERE state = 'pending';

-- The fair claim reads jobs_tenant_pending_idx only; the global pending index of 0002 served the
-- claim before it and nothing else reads it, so it goes (one index less to write per submit and
-- per claim).
DROP INDEX vidjobs.jobs_claim_pending_idx;

-- Every tenant that has a key or a job gets its row, with its counters as they are now.
INSERT INTO vidjobs.tenants (tenant, running, stored_bytes)
SELECT tenant,
       count(*) FILTER (WHERE state = 'running'),
       coalesce(sum(input_bytes), 0)
FROM vidjobs.jobs
GROUP BY tenant;
INSERT INTO vidjobs.tenants (tenant)
SELECT DISTINCT tenant FROM vidjobs.api_keys
ON CONFLICT (tenant) DO NOTHING;

-- Keeps tenants.running and tenants.stored_bytes equal to what vidjobs.jobs holds, and creates
-- the row of a tenant's first job. Statement-level with transition tables: one pass per
-- statement, however many rows it changed (a claim or a completion batch of hundreds is one
-- UPDATE per tenant). Tenant rows are updated in tenant order, so two statements that touch the
-- same tenants lock their rows in the same order and cannot deadlock on them.
CREATE FUNCTION vidjobs.tenants_track_jobs() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    IF TG_OP = 'INSERT' THEN
        FOR r IN
            SELECT n.tenant,
                   count(*) FILTER (WHERE n.state = 'running') AS d_running,
                   coalesce(sum(n.input_bytes), 0)             AS d_bytes
            FROM new_rows n
            GROUP BY n.tenant
            ORDER BY n.tenant
        LOOP
            IF r.d_running = 0 AND r.d_bytes = 0 THEN
                -- Nothing to count: create the row if missing, without locking an existing one.
                INSERT INTO vidjobs.tenants (tenant) VALUES (r.tenant)
                ON CONFLICT (tenant) DO NOTHING;
            ELSE
                INSERT INTO vidjobs.tenants AS t (tenant, running, stored_bytes)
                VALUES (r.tenant, r.d_running, r.d_bytes)
                ON CONFLICT (tenant) DO UPDATE
                SET running = t.running + excluded.running,
                    stored_bytes = t.stored_bytes + excluded.stored_bytes,
                    updated_at = now();
            END IF;
        END LOOP;
    ELSIF TG_OP = 'UPDATE' THEN
        -- claimed_at: the latest started_at of the tenant's jobs this statement moved from
        -- pending to running (a claim), which the claim sets to its now plus the job's place in
        -- its fair order (microseconds): the turn's record, kept here with the counter so the
        -- claim itself writes no tenant row. Set-based (lock the rows in tenant order, then one
        -- UPDATE), not a loop of one UPDATE per tenant: a claim or a completion batch spread
        -- over 100 tenants took 5 ms in the loop.
        PERFORM 1
        FROM vidjobs.tenants AS t
        WHERE t.tenant IN (
            SELECT n.tenant
            FROM new_rows n
            JOIN old_rows o USING (job_id)
            GROUP BY n.tenant
            HAVING sum((n.state = 'running')::int - (o.state = 'running')::int) <> 0
                OR sum(coalesce(n.input_bytes, 0) - coalesce(o.input_bytes, 0)) <> 0
                OR bool_or(n.state = 'running' AND o.state = 'pending')
        )
        ORDER BY t.tenant
        FOR UPDATE;
        IF FOUND THEN
            UPDATE vidjobs.tenants AS t
            SET running = t.running + d.d_running,
                stored_bytes = t.stored_bytes + d.d_bytes,
                last_claimed_at = coalesce(d.claimed_at, t.last_claimed_at),
                updated_at = now()
            FROM (
                SELECT n.tenant,
                       sum((n.state = 'running')::int - (o.state = 'running')::int) AS d_running,
                       sum(coalesce(n.input_bytes, 0) - coalesce(o.input_bytes, 0)) AS d_bytes,
                       max(n.started_at) FILTER (WHERE n.state = 'running' AND o.state = 'pending')
                           AS claimed_at
                FROM new_rows n
                JOIN old_rows o USING (job_id)
                GROUP BY n.tenant
            ) AS d
            WHERE t.tenant = d.tenant
              AND (d.d_running <> 0 OR d.d_bytes <> 0 OR d.claimed_at IS NOT NULL);
        END IF;
    ELSE  -- DELETE
        FOR r IN
            SELECT o.tenant,
                   count(*) FILTER (WHERE o.state = 'running') AS d_running,
                   coalesce(sum(o.input_bytes), 0)             AS d_bytes
            FROM old_rows o
            GROUP BY o.tenant
            HAVING count(*) FILTER (WHERE o.state = 'running') <> 0
                OR coalesce(sum(o.input_bytes), 0) <> 0
            ORDER BY o.tenant
        LOOP
            UPDATE vidjobs.tenants
            SET running = running - r.d_running,
                stored_bytes = stored_bytes - r.d_bytes,
                updated_at = now()
            WHERE tenant = r.tenant;
        END LOOP;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_track_tenants_insert
    AFTER INSERT ON vidjobs.jobs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION vidjobs.tenants_track_jobs();
CREATE TRIGGER jobs_track_tenants_update
    AFTER UPDATE ON vidjobs.jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION vidjobs.tenants_track_jobs();
CREATE TRIGGER jobs_track_tenants_delete
    AFTER DELETE ON vidjobs.jobs
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION vidjobs.tenants_track_jobs();

COMMENT ON TABLE vidjobs.tenants IS
    'One row per tenant: its share of the workers and its limits (NULL = the deployment default, '
    'set in the settings), and counters kept by triggers on vidjobs.jobs. Set limits with '
    '"vidjobs tenants set" or UPDATE; never write the counters.';
COMMENT ON COLUMN vidjobs.tenants.tenant IS 'The tenant, as in jobs.tenant and api_keys.tenant.';
COMMENT ON COLUMN vidjobs.tenants.weight IS
    'Share of the workers when tenants compete: a tenant of weight 2 gets about twice the jobs '
    'per claim round of a tenant of weight 1; NULL = the default setting.';
COMMENT ON COLUMN vidjobs.tenants.max_running IS
    'Most of the tenant''s jobs running at once across all workers; NULL = the default setting.';
COMMENT ON COLUMN vidjobs.tenants.max_pending IS
    'Most pending jobs the tenant may have; a submit beyond it is refused (429); NULL = default.';
COMMENT ON COLUMN vidjobs.tenants.submit_rate_per_min IS
    'Submits per minute allowed on average (token bucket); NULL = default.';
COMMENT ON COLUMN vidjobs.tenants.submit_burst IS
    'Submits allowed at once above the average rate (bucket size); NULL = default.';
COMMENT ON COLUMN vidjobs.tenants.max_stored_bytes IS
    'Most bytes of uploaded video the tenant may store (until its jobs are deleted or pruned); '
    'NULL = default.';
COMMENT ON COLUMN vidjobs.tenants.running IS
    'Jobs of the tenant in state running now; kept by triggers on vidjobs.jobs.';
COMMENT ON COLUMN vidjobs.tenants.stored_bytes IS
    'Sum of jobs.input_bytes of the tenant''s jobs still stored; kept by triggers on vidjobs.jobs.';
COMMENT ON COLUMN vidjobs.tenants.last_claimed_at IS
    'When a claim last gave the tenant a job (its now plus the place of the tenant''s last job in '
    'the claim, in microseconds; kept by the trigger); the claim serves the longest-waiting '
    'tenants first.';
COMMENT ON COLUMN vidjobs.tenants.submit_tokens IS
    'Submit-rate bucket: tokens left at submit_refilled_at; NULL = full (never used).';
COMMENT ON COLUMN vidjobs.tenants.submit_refilled_at IS
    'When submit_tokens was last computed; NULL = the bucket was never used.';
COMMENT ON COLUMN vidjobs.tenants.created_at IS 'When the row was created.';
COMMENT ON COLUMN vidjobs.tenants.updated_at IS 'Last change of a limit or a counter.';
COMMENT ON COLUMN vidjobs.jobs.input_bytes IS
    'Size of the uploaded video in bytes; counted in tenants.stored_bytes. NULL before 0012.';
COMMENT ON FUNCTION vidjobs.tenants_track_jobs() IS
    'Keeps tenants.running, tenants.stored_bytes and tenants.last_claimed_at true and creates a '
    'tenant''s row with its first job; statement-level triggers on vidjobs.jobs call it.';

-- The DBA's view of each tenant: its limits as set on its row (NULL = the deployment default,
-- VIDJOBS_TENANT_DEFAULT_*), what it uses now, and when the claim last served it. pending is
-- counted from jobs_tenant_pending_idx (the backlog's partial index, never a finished row).
CREATE VIEW vidjobs.tenant_usage AS
SELECT t.tenant, t.weight, t.max_running, t.max_pending, t.submit_rate_per_min, t.submit_burst,
       t.max_stored_bytes, t.running, p.pending, t.stored_bytes, t.last_claimed_at,
       t.created_at, t.updated_at
FROM vidjobs.tenants AS t
CROSS JOIN LATERAL (
    SELECT count(*) AS pending
    FROM vidjobs.jobs AS j
    WHERE j.tenant = t.tenant AND j.state = 'pending'
) AS p;

COMMENT ON VIEW vidjobs.tenant_usage IS
    'Each tenant''s limits (NULL = the deployment default from VIDJOBS_TENANT_DEFAULT_*) beside '
    'its usage: running, pending, stored bytes, and when the claim last served it.';
COMMENT ON COLUMN vidjobs.tenant_usage.tenant IS 'The tenant.';
COMMENT ON COLUMN vidjobs.tenant_usage.weight IS 'Its weight; NULL = the default weight.';
COMMENT ON COLUMN vidjobs.tenant_usage.max_running IS
    'Most jobs running at once; NULL = the default (VIDJOBS_TENANT_DEFAULT_MAX_RUNNING).';
COMMENT ON COLUMN vidjobs.tenant_usage.max_pending IS
    'Most pending jobs; NULL = the default (VIDJOBS_TENANT_DEFAULT_MAX_PENDING).';
COMMENT ON COLUMN vidjobs.tenant_usage.submit_rate_per_min IS
    'Average submits per minute; NULL = the default (VIDJOBS_TENANT_DEFAULT_SUBMIT_RATE_PER_MIN).';
COMMENT ON COLUMN vidjobs.tenant_usage.submit_burst IS
    'Submits at once above the rate; NULL = the default (VIDJOBS_TENANT_DEFAULT_SUBMIT_BURST).';
COMMENT ON COLUMN vidjobs.tenant_usage.max_stored_bytes IS
    'Most stored upload bytes; NULL = the default (VIDJOBS_TENANT_DEFAULT_MAX_STORED_BYTES).';
COMMENT ON COLUMN vidjobs.tenant_usage.running IS 'Jobs running now (tenants.running).';
COMMENT ON COLUMN vidjobs.tenant_usage.pending IS 'Jobs pending now (due or not).';
COMMENT ON COLUMN vidjobs.tenant_usage.stored_bytes IS 'Upload bytes stored now.';
COMMENT ON COLUMN vidjobs.tenant_usage.last_claimed_at IS
    'When a claim last gave the tenant a job; NULL = never.';
COMMENT ON COLUMN vidjobs.tenant_usage.created_at IS 'When the tenant''s row was created.';
COMMENT ON COLUMN vidjobs.tenant_usage.updated_at IS 'Last change of a limit or a counter.';
