-- Jobs leaving running are counted off the tenant's row: vidjobs.tenant_releases.
--
-- 0012 kept tenants.running with +n at each claim and -n at each completion, failure, hand-back
-- or cancel, on the tenant's one row. A row lock lasts until commit, WAL flush included, so every
-- claim and every completion batch of one tenant, from every worker, waited for the one before it
-- (measured, bench/queue_bench.py --observe, one tenant, 2 worker processes x 8: 30-39% of the
-- active backends' samples waited on a lock, all on that row; with the UPDATE trigger dropped,
-- none, and the drain ran ~1.4x faster).
--
-- Now the row keeps only what goes up: tenants.claimed counts jobs that moved into running (the
-- claim, under the lock the max_running check needs anyway), and the jobs that left running are
-- added to a row of vidjobs.tenant_releases picked by the writing connection (pg_backend_pid()
-- mod 32), so completions of different connections touch different rows and never wait for a
-- claim or for each other. Running now is claimed minus the tenant's releases (the view
-- tenant_usage shows it). Both are monotonic bigint counters (like Prometheus counters), never
-- folded: nothing to vacuum away, no overflow in any deployment's lifetime.
--
-- max_running stays exact: the claim still locks a limited tenant's row and reads `claimed` from
-- its newest version (every claim committed before it); releases are summed in the statement's
-- snapshot, which may miss one committed a moment ago: that can only make running look higher,
-- so a claim may grant one job less, never one more.
--
-- Lock order, as in 0012: a statement locks tenant rows (in tenant order) before release rows
-- (in tenant order), so no two statements can deadlock on them.

CREATE TABLE vidjobs.tenant_releases (
    tenant   text    NOT NULL,
    slot     integer NOT NULL,
    released bigint  NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, slot),
    CONSTRAINT tenant_releases_slot_range CHECK (slot >= 0 AND slot < 32),
    CONSTRAINT tenant_releases_released_nonnegative CHECK (released >= 0)
);

COMMENT ON TABLE vidjobs.tenant_releases IS
    'Jobs of each tenant that left state running (completed, failed, handed back, cancelled, '
    'deleted), counted by a trigger on vidjobs.jobs in one of 32 rows per tenant (the writing '
    'connection''s pg_backend_pid() mod 32), so completions never wait for the tenant''s row. '
    'Running = tenants.claimed - sum(released) (vidjobs.tenant_usage).';
COMMENT ON COLUMN vidjobs.tenant_releases.tenant IS 'The tenant.';
COMMENT ON COLUMN vidjobs.tenant_releases.slot IS 'pg_backend_pid() mod 32 of the writers.';
COMMENT ON COLUMN vidjobs.tenant_releases.released IS 'Jobs counted here that left running.';

DROP VIEW vidjobs.tenant_usage;
ALTER TABLE vidjobs.tenants DROP CONSTRAINT tenants_running_nonnegative;
ALTER TABLE vidjobs.tenants RENAME COLUMN running TO claimed;
ALTER TABLE vidjobs.tenants ALTER COLUMN claimed TYPE bigint;
ALTER TABLE vidjobs.tenants
    ADD CONSTRAINT tenants_claimed_nonnegative CHECK (claimed >= 0);
COMMENT ON COLUMN vidjobs.tenants.claimed IS
    'Jobs of the tenant that moved into state running, ever (a counter kept by the trigger on '
    'vidjobs.jobs); running now = claimed - the tenant''s vidjobs.tenant_releases.';

CREATE OR REPLACE FUNCTION vidjobs.tenants_track_jobs() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    IF TG_OP = 'INSERT' THEN
        -- The common submit: pending, no bytes to count, the tenant's row already there: nothing
        -- to write, and one probe of tenants_pkey instead of a GROUP BY and an INSERT ... ON
        -- CONFLICT per tenant (a single submit's trigger: 80 us before, 29 us with it).
        IF NOT EXISTS (
            SELECT FROM new_rows n
            WHERE n.state = 'running' OR coalesce(n.input_bytes, 0) <> 0
               OR NOT EXISTS (SELECT FROM vidjobs.tenants t WHERE t.tenant = n.tenant)
        ) THEN
            RETURN NULL;
        END IF;
        FOR r IN
            SELECT n.tenant,
                   count(*) FILTER (WHERE n.state = 'running') AS d_claimed,
                   coalesce(sum(n.input_bytes), 0)             AS d_bytes
            FROM new_rows n
            GROUP BY n.tenant
            ORDER BY n.tenant
        LOOP
            IF r.d_claimed = 0 AND r.d_bytes = 0 THEN
                -- Nothing to count: create the row if missing, without locking an existing one.
                INSERT INTO vidjobs.tenants (tenant) VALUES (r.tenant)
                ON CONFLICT (tenant) DO NOTHING;
            ELSE
                INSERT INTO vidjobs.tenants AS t (tenant, claimed, stored_bytes)
                VALUES (r.tenant, r.d_claimed, r.d_bytes)
                ON CONFLICT (tenant) DO UPDATE
                SET claimed = t.claimed + excluded.claimed,
                    stored_bytes = t.stored_bytes + excluded.stored_bytes,
                    updated_at = now();
            END IF;
        END LOOP;
    ELSIF TG_OP = 'UPDATE' THEN
        -- Up: the rows of the tenants whose jobs moved into running (a claim, which holds them
        -- anyway for max_running) or whose stored bytes changed, locked in tenant order, then
        -- one UPDATE. claimed_at: the latest started_at of the jobs the statement moved from
        -- pending to running, which the claim sets to its now plus the job's place in its fair
        -- order (microseconds): the turn's record. A completion batch touches none of them.
        PERFORM 1
        FROM vidjobs.tenants AS t
        WHERE t.tenant IN (
            SELECT n.tenant
            FROM new_rows n
            JOIN old_rows o USING (job_id)
            GROUP BY n.tenant
            HAVING bool_or(n.state = 'running' AND o.state <> 'running')
                OR sum(coalesce(n.input_bytes, 0) - coalesce(o.input_bytes, 0)) <> 0
        )
        ORDER BY t.tenant
        FOR UPDATE;
        IF FOUND THEN
            UPDATE vidjobs.tenants AS t
            SET claimed = t.claimed + d.d_claimed,
                stored_bytes = t.stored_bytes + d.d_bytes,
                last_claimed_at = coalesce(d.claimed_at, t.last_claimed_at),
                updated_at = now()
            FROM (
                SELECT n.tenant,
                       count(*) FILTER (WHERE n.state = 'running' AND o.state <> 'running')
                           AS d_claimed,
                       sum(coalesce(n.input_bytes, 0) - coalesce(o.input_bytes, 0)) AS d_bytes,
                       max(n.started_at) FILTER (WHERE n.state = 'running'
                                                   AND o.state = 'pending') AS claimed_at
                FROM new_rows n
                JOIN old_rows o USING (job_id)
                GROUP BY n.tenant
            ) AS d
            WHERE t.tenant = d.tenant AND (d.d_claimed <> 0 OR d.d_bytes <> 0);
        END IF;
        -- Down: the jobs that left running, on this connection's release rows, after every
        -- tenant row (the lock order), in tenant order.
        INSERT INTO vidjobs.tenant_releases AS x (tenant, slot, released)
        SELECT n.tenant, pg_backend_pid() % 32, count(*)
        FROM new_rows n
        JOIN old_rows o USING (job_id)
        WHERE o.state = 'running' AND n.state <> 'running'
        GROUP BY n.tenant
        ORDER BY n.tenant
        ON CONFLICT (tenant, slot) DO UPDATE SET released = x.released + excluded.released;
    ELSE  -- DELETE
        FOR r IN
            SELECT o.tenant, coalesce(sum(o.input_bytes), 0) AS d_bytes
            FROM old_rows o
            GROUP BY o.tenant
            HAVING coalesce(sum(o.input_bytes), 0) <> 0
            ORDER BY o.tenant
        LOOP
            UPDATE vidjobs.tenants
            SET stored_bytes = stored_bytes - r.d_bytes, updated_at = now()
            WHERE tenant = r.tenant;
        END LOOP;
        INSERT INTO vidjobs.tenant_releases AS x (tenant, slot, released)
        SELECT o.tenant, pg_backend_pid() % 32, count(*)
        FROM old_rows o
        WHERE o.state = 'running'
        GROUP BY o.tenant
        ORDER BY o.tenant
        ON CONFLICT (tenant, slot) DO UPDATE SET released = x.released + excluded.released;
    END IF;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION vidjobs.tenants_track_jobs() IS
    'Keeps tenants.claimed, tenants.stored_bytes and tenants.last_claimed_at and the tenant''s '
    'vidjobs.tenant_releases true, and creates a tenant''s row with its first job; '
    'statement-level triggers on vidjobs.jobs call it.';

-- The DBA's view of each tenant, as in 0012; running = claimed - releases.
CREATE VIEW vidjobs.tenant_usage AS
SELECT t.tenant, t.weight, t.max_running, t.max_pending, t.submit_rate_per_min, t.submit_burst,
       t.max_stored_bytes, (t.claimed - r.released)::integer AS running, p.pending,
       t.stored_bytes, t.last_claimed_at, t.created_at, t.updated_at
FROM vidjobs.tenants AS t
CROSS JOIN LATERAL (
    SELECT coalesce(sum(x.released), 0) AS released
    FROM vidjobs.tenant_releases AS x
    WHERE x.tenant = t.tenant
) AS r
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
COMMENT ON COLUMN vidjobs.tenant_usage.running IS
    'Jobs running now (tenants.claimed - the tenant''s vidjobs.tenant_releases).';
COMMENT ON COLUMN vidjobs.tenant_usage.pending IS 'Jobs pending now (due or not).';
COMMENT ON COLUMN vidjobs.tenant_usage.stored_bytes IS 'Upload bytes stored now.';
COMMENT ON COLUMN vidjobs.tenant_usage.last_claimed_at IS
    'When a claim last gave the tenant a job; NULL = never.';
COMMENT ON COLUMN vidjobs.tenant_usage.created_at IS 'When the tenant''s row was created.';
COMMENT ON COLUMN vidjobs.tenant_usage.updated_at IS 'Last change of a limit or a counter.';
