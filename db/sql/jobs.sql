-- Runtime SQL for vidjobs.jobs (and its audit trail vidjobs.job_events).
-- Conventions: every statement that depends on the clock takes %(now)s (NULL: the server's now()),
-- so tests control time, and says so once: one that needs it more than once starts with the CTE
-- clock (one row, one column now) and reads clock.now. Every transition writes its job_events
-- row in the same statement (a data-modifying CTE), so the trail and the state cannot disagree.
-- Worker writes are fenced: they match only WHERE job_id AND lease_token AND state = 'running'.

-- name: job_insert
-- Insert one job (or return its twin with the same idempotency key), log the submit, wake workers.
WITH
clock AS (SELECT coalesce(%(now)s::timestamptz, now()) AS now),
-- The row itself; run_after defaults to now so the job is due at once.
inserted AS (
    INSERT INTO vidjobs.jobs AS j (
        job_id, tenant, pipeline, params, priority, run_after, max_attempts, input_key,
        input_bytes, input_sha256, callback_url, trace_context, idempotency_key, created_at,
        updated_at
    )
    SELECT %(job_id)s::uuid, %(tenant)s::text, %(pipeline)s::text, %(params)s::jsonb,
           %(priority)s::integer, coalesce(%(run_after)s::timestamptz, clock.now),
           %(max_attempts)s::integer, %(input_key)s::text, %(input_bytes)s::bigint,
           %(input_sha256)s::text, %(callback_url)s::text, %(trace_context)s::text,
           %(idempotency_key)s::text, clock.now, clock.now
    FROM clock
    -- A retried submit inserts nothing; the existing job is returned by the second branch.
    ON CONFLICT (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING j.*
),
-- The first event of the audit trail, in the same statement as the row.
submitted AS (
    INSERT INTO vidjobs.job_events (job_id, at, actor, from_state, to_state, attempt)
    SELECT job_id, created_at, tenant, NULL, state, attempts FROM inserted
),
-- NOTIFY is transactional: idle workers wake only once the row is committed. Materialized
-- (volatile), so it runs once, and only when a row was inserted.
wake AS (
    SELECT pg_notify('vidjobs_jobs', '') AS woke
)
SELECT i.*, true AS created FROM inserted AS i CROSS JOIN wake
UNION ALL
SELECT j.*, false AS created FROM vidjobs.jobs AS j
WHERE %(idempotency_key)s::text IS NOT NULL
  AND j.tenant = %(tenant)s AND j.idempotency_key = %(idempotency_key)s::text
  AND NOT EXISTS (SELECT FROM inserted);

-- name: job_insert_many
-- Insert a batch of jobs from parallel arrays in one statement, with their submit events and one NOTIFY.
WITH
clock AS (SELECT coalesce(%(now)s::timestamptz, now()) AS now),
-- Parallel arrays + unnest: the whole batch is one statement, one round trip, one commit.
inserted AS (
    INSERT INTO vidjobs.jobs (
        job_id, tenant, pipeline, params, priority, run_after, max_attempts, input_key,
        created_at, updated_at
    )
    SELECT i.job_id, i.tenant, i.pipeline, i.params::jsonb, i.priority,
           coalesce(i.run_after, clock.now), i.max_attempts, i.input_key, clock.now, clock.now
    FROM unnest(
        %(job_ids)s::uuid[], %(tenants)s::text[], %(pipelines)s::text[], %(params)s::text[],
        %(priorities)s::integer[], %(run_afters)s::timestamptz[], %(max_attempts)s::integer[],
        %(input_keys)s::text[]
    ) AS i(job_id, tenant, pipeline, params, priority, run_after, max_attempts, input_key)
    CROSS JOIN clock
    RETURNING job_id, tenant, state, attempts, created_at
),
-- One submit event per job, same statement.
submitted AS (
    INSERT INTO vidjobs.job_events (job_id, at, actor, from_state, to_state, attempt)
    SELECT job_id, created_at, tenant, NULL, state, attempts FROM inserted
),
-- One notification for the whole batch (Postgres would fold duplicates anyway, at a cost).
wake AS (
    SELECT pg_notify('vidjobs_jobs', '') AS woke
)
SELECT count(*) AS inserted FROM inserted CROSS JOIN wake;

-- name: job_get
-- One job by id; with a tenant given, another tenant's job is not found.
SELECT * FROM vidjobs.jobs
WHERE job_id = %(job_id)s AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s::text);

-- name: job_get_by_idempotency_key
-- The job a tenant submitted under an idempotency key.
SELECT * FROM vidjobs.jobs WHERE tenant = %(tenant)s AND idempotency_key = %(idempotency_key)s;

-- name: job_list
-- One page of a tenant's jobs, newest first; keyset pagination after (created_at, job_id).
SELECT * FROM vidjobs.jobs
WHERE tenant = %(tenant)s
  -- A split job's segments are listed in its status, not here.
  AND parent_id IS NULL
  AND (%(state)s::vidjobs.job_state IS NULL OR state = %(state)s::vidjobs.job_state)
  AND (%(after_created_at)s::timestamptz IS NULL
       OR (created_at, job_id) < (%(after_created_at)s::timestamptz, %(after_job_id)s::uuid))
ORDER BY created_at DESC, job_id DESC
LIMIT %(limit)s::integer;

-- name: job_claim
-- THE claim: up to batch_size jobs for one worker (expired leases first, then due pending jobs, round-robin across tenants by weight and max_running, by priority, run_after, age within a tenant).
-- Fair: a tenant's priority orders its own jobs only. Tenants take turns, the longest unserved
-- first (tenants.last_claimed_at), each getting about weight × batch / (tenants in turn) jobs,
-- interleaved one round at a time; so every tenant with due work is served within
-- ceil(active tenants / batch) claims, whatever the others' backlogs or priorities.
-- Only the pipelines this worker can run (parameter pipelines, a text[]; NULL: every pipeline),
-- in the take-back, the turn and the pending pick: a noop-only worker (`vidjobs worker
-- --no-video`) leaves yolo_ocr jobs, expired ones included, to workers that run them instead of
-- failing them with unknown_pipeline. "NULL OR = ANY" keeps ONE claim statement for both uses:
-- a custom plan folds the NULL test away, a generic plan checks it per row as a cheap filter.
-- The filter does not change the index scans: rows still come from the head of a partial index
-- in the claim's order (no sort of the backlog); rows of other pipelines ahead of this worker's
-- are read and skipped. default_max_running and default_weight are the deployment's defaults
-- (TenantDefaults) for a tenant whose row leaves them NULL; default_max_running NULL = no limit.
-- EXPLAIN over 100k finished rows and 100k pending rows of 1,000 tenants: test_queue_claim.py.
WITH
-- The claim's one "now". The picks below compare with it as a scalar subquery (evaluated
-- once, before the scans), not a join, so each still reads its index in order with no sort.
clock AS (SELECT coalesce(%(now)s::timestamptz, now()) AS now),
-- Running jobs whose worker stopped heartbeating (crashed, partitioned, paused). Taken first:
-- they were due before anything still pending (and already count in their tenant's running).
-- Served by jobs_running_lease_idx. SKIP LOCKED: a row another claimer is taking right now is
-- simply not ours; nobody waits on anybody.
expired AS (
    SELECT job_id, tenant, state AS from_state, attempts, max_attempts,
           worker_id AS old_worker_id, lease_expires_at AS old_lease_expires_at
    FROM vidjobs.jobs
    WHERE state = 'running' AND lease_expires_at < (SELECT now FROM clock)
      AND (%(pipelines)s::text[] IS NULL OR pipeline = ANY(%(pipelines)s::text[]))
    ORDER BY lease_expires_at
    LIMIT %(batch_size)s::integer
    FOR UPDATE SKIP LOCKED
),
-- How many pending jobs the batch still has room for.
room AS (
    SELECT greatest(%(batch_size)s::integer - (SELECT count(*) FROM expired), 0)::integer AS n
),
-- Whose turn it is: tenants with a due pending job of this worker's pipelines (one probe each,
-- on the head of jobs_tenant_pending_idx) and a free slot under max_running (a snapshot read;
-- the exact check is `locked` below), the longest unserved first. At most a batch of tenants,
-- so each one in turn gets a job in this claim. The scan is over tenants (one row each), never
-- over the backlog. The probe is a LATERAL ... ORDER BY (the index's order) LIMIT 1, not an
-- EXISTS: Postgres plans an EXISTS as a semi join free to read the heap in physical order, and
-- it does so with the stats of a fresh backlog (nearly every row pending): a seq scan that,
-- through a drain, passes every row finished so far before it meets a pending one (a cost that
-- grows with each claim). The index order makes the head of the index the cheapest plan.
turn AS (
    SELECT t.tenant, t.last_claimed_at,
           coalesce(t.weight, %(default_weight)s::integer) AS weight,
           lim.max_running, lim.max_running - lim.running AS free
    FROM vidjobs.tenants AS t
    -- Running now (migration 0015): claimed minus the tenant's releases, summed only for a
    -- tenant with a limit (CASE evaluates the sum lazily).
    CROSS JOIN LATERAL (
        SELECT coalesce(t.max_running, %(default_max_running)s::integer) AS max_running,
               CASE WHEN coalesce(t.max_running, %(default_max_running)s::integer) IS NOT NULL
                    THEN t.claimed - coalesce((SELECT sum(x.released)
                                               FROM vidjobs.tenant_releases AS x
                                               WHERE x.tenant = t.tenant), 0)
               END AS running
    ) AS lim
    CROSS JOIN LATERAL (
        SELECT FROM vidjobs.jobs AS j
        WHERE j.tenant = t.tenant AND j.state = 'pending'
          AND j.run_after <= (SELECT now FROM clock)
          AND (%(pipelines)s::text[] IS NULL OR j.pipeline = ANY(%(pipelines)s::text[]))
        ORDER BY j.priority DESC, j.run_after, j.created_at
        LIMIT 1
    ) AS head
    WHERE lim.max_running IS NULL OR lim.max_running > lim.running
    ORDER BY t.last_claimed_at NULLS FIRST, t.tenant
    LIMIT %(batch_size)s::integer
),
-- Each tenant's share of the room: weight × ceil(room / tenants in turn), never more than its
-- free slots.
shares AS (
    SELECT turn.*,
           least(coalesce(turn.free, room.n),
                 turn.weight * ceil(room.n::numeric / (SELECT count(*) FROM turn)))::integer
               AS share
    FROM turn CROSS JOIN room
),
-- Each tenant's best due jobs: a LATERAL read of the head of jobs_tenant_pending_idx, whose
-- WHERE and ORDER BY it is exactly (no sort, no heap scan beyond the rows taken), LIMIT its
-- share. SKIP LOCKED: jobs another claimer is taking are not ours.
due AS (
    SELECT d.*, s.weight, s.max_running, s.last_claimed_at
    FROM shares AS s
    CROSS JOIN LATERAL (
        SELECT j.job_id, j.tenant, j.priority, j.run_after, j.created_at
        FROM vidjobs.jobs AS j
        WHERE j.tenant = s.tenant AND j.state = 'pending'
          AND j.run_after <= (SELECT now FROM clock)
          AND (%(pipelines)s::text[] IS NULL OR j.pipeline = ANY(%(pipelines)s::text[]))
        ORDER BY j.priority DESC, j.run_after, j.created_at
        LIMIT s.share
        FOR UPDATE SKIP LOCKED
    ) AS d
),
-- Round-robin: a tenant's k-th job comes in round (k - 1) / weight, so a tenant of weight 2
-- puts two jobs in each round; within a round the longest unserved tenant goes first. The sort
-- is over the few rows taken above (at most about two batches), not over the backlog.
pick AS (
    SELECT r.*, row_number() OVER (
               ORDER BY (r.rank - 1) / r.weight, r.last_claimed_at NULLS FIRST, r.tenant, r.rank
           ) AS ord
    FROM (
        SELECT due.*, row_number() OVER (
                   PARTITION BY due.tenant ORDER BY due.priority DESC, due.run_after, due.created_at
               ) AS rank
        FROM due
    ) AS r
    ORDER BY ord
    LIMIT (SELECT n FROM room)
),
-- The tenant rows this claim changes, locked in tenant order (the order the counters' trigger
-- locks them in, so no deadlock): READ COMMITTED returns each locked row's newest version, so
-- `claimed` here counts every claim committed before ours, and none can commit in between; that
-- is what holds max_running exactly across workers. The releases are summed in the statement's
-- snapshot and may miss one committed a moment ago: running can only look higher than it is,
-- so a claim may grant one job less, never one more (0015). Taken only when a served tenant has a
-- limit; then every row the trigger will update is taken here, all in one sorted pass
-- (tenants of expired jobs too: the trigger updates theirs when one fails for good), so the
-- claim never waits for a row while holding another out of order. Without a limit the claim
-- locks no tenant row itself: the trigger's counter update at the statement's end is the only
-- tenant write, as it would be without fairness (measured: this lock held from here to the
-- commit on all served tenants cost a third of a 100-tenant drain).
locked AS (
    SELECT t.tenant,
           t.claimed - coalesce((SELECT sum(x.released) FROM vidjobs.tenant_releases AS x
                                 WHERE x.tenant = t.tenant), 0) AS running,
           coalesce(t.max_running, %(default_max_running)s::integer) AS max_running
    FROM vidjobs.tenants AS t
    WHERE t.tenant IN (SELECT tenant FROM pick UNION SELECT tenant FROM expired)
      AND EXISTS (SELECT FROM pick WHERE max_running IS NOT NULL)
    ORDER BY t.tenant
    FOR UPDATE
),
-- The picks the locked counters allow: a tenant under its limit gets its first (limit - running)
-- picks; the rest stay pending (their row locks go at commit) for a later claim.
granted AS (
    SELECT p.job_id, p.tenant, p.ord
    FROM pick AS p
    LEFT JOIN locked AS l ON l.tenant = p.tenant
    WHERE CASE WHEN l.tenant IS NULL THEN p.max_running IS NULL
               ELSE l.max_running IS NULL OR p.rank <= l.max_running - l.running END
),
-- An expired job already on its last attempt is not run again: it fails for good here with
-- error_kind lease_expired, so a job that kills its worker every time cannot loop forever.
exhausted AS (
    UPDATE vidjobs.jobs AS j
    SET state = 'failed', lease_expires_at = NULL, finished_at = clock.now,
        updated_at = clock.now, error_kind = 'lease_expired',
        error_message = 'worker ' || e.old_worker_id || ' stopped heartbeating (lease expired at '
            || e.old_lease_expires_at || ') on the last attempt, '
            || j.attempts || ' of ' || j.max_attempts
    FROM expired AS e CROSS JOIN clock
    WHERE j.job_id = e.job_id AND e.attempts >= e.max_attempts
    RETURNING j.job_id, j.attempts, j.error_kind, j.error_message, j.updated_at
),
-- The claim: every chosen job becomes running under a fresh lease token (the fencing token of
-- this attempt; the previous holder's writes stop matching) and counts an attempt. A pending
-- job's started_at is now plus its place in the fair order minus one, in microseconds (the
-- first is now): the trigger on jobs adds the jobs to their tenant's claimed and stamps its
-- last_claimed_at with its last job's started_at, so a tenant whose round was cut by the end of
-- the batch is served earlier next time than one that got its whole round (the remainder
-- rotates instead of going to the same tenant by name every time).
claimed AS (
    UPDATE vidjobs.jobs AS j
    SET state = 'running', attempts = j.attempts + 1, lease_token = gen_random_uuid(),
        lease_expires_at = clock.now + make_interval(secs => %(lease_seconds)s::double precision),
        worker_id = %(worker_id)s, heartbeat_at = clock.now,
        started_at = clock.now + make_interval(secs => greatest(c.ord - 1, 0) / 1e6),
        updated_at = clock.now, progress = 0, frames_done = 0, frames_total = NULL
    FROM (
        SELECT job_id, from_state, old_worker_id, 0::bigint AS ord
        FROM expired WHERE attempts < max_attempts
        UNION ALL
        SELECT job_id, 'pending'::vidjobs.job_state, NULL::text, ord FROM granted
    ) AS c
    CROSS JOIN clock
    WHERE j.job_id = c.job_id
    RETURNING j.*, c.from_state, c.old_worker_id, c.ord AS claim_ord
),
-- The audit trail of both transitions, same statement. A take-back is running -> running with
-- error_kind lease_expired, naming the worker that lost the job.
events AS (
    INSERT INTO vidjobs.job_events (
        job_id, at, actor, from_state, to_state, attempt, error_kind, error_message
    )
    SELECT job_id, updated_at, worker_id, from_state, 'running'::vidjobs.job_state, attempts,
           CASE WHEN from_state = 'running' THEN 'lease_expired' END,
           CASE WHEN from_state = 'running'
                THEN 'lease of worker ' || old_worker_id || ' expired; job taken back' END
    FROM claimed
    UNION ALL
    SELECT job_id, updated_at, %(worker_id)s, 'running'::vidjobs.job_state,
           'failed'::vidjobs.job_state, attempts, error_kind,
           error_message
    FROM exhausted
)
-- Take-backs first, then the fair order.
SELECT * FROM claimed ORDER BY claim_ord;

-- name: job_heartbeat
-- Extend the lease of a job this worker holds; answers ok, cancelled or lease_lost.
WITH
clock AS (SELECT coalesce(%(now)s::timestamptz, now()) AS now),
-- Fenced: only the holder of this attempt's token moves the lease.
beat AS (
    UPDATE vidjobs.jobs
    SET lease_expires_at = clock.now + make_interval(secs => %(lease_seconds)s::double precision),
        heartbeat_at = clock.now, updated_at = clock.now
    FROM clock
    WHERE job_id = %(job_id)s AND lease_token = %(lease_token)s AND state = 'running'
    RETURNING job_id
)
SELECT CASE
    WHEN EXISTS (SELECT FROM beat) THEN 'ok'
    -- A cancelled job keeps the token of the attempt it interrupted, so its holder learns why.
    WHEN EXISTS (
        SELECT FROM vidjobs.jobs
        WHERE job_id = %(job_id)s AND lease_token = %(lease_token)s AND state = 'cancelled'
    ) THEN 'cancelled'
    ELSE 'lease_lost'
END AS status;

-- name: job_progress
-- Record frames done (fenced); frames_total grows to frames_done because decoders' frame counts are estimates.
UPDATE vidjobs.jobs
SET frames_done = %(frames_done)s::bigint,
    frames_total = greatest(coalesce(%(frames_total)s::bigint, frames_total), %(frames_done)s::bigint),
    progress = CASE
        WHEN coalesce(%(frames_total)s::bigint, frames_total) > 0
        THEN least(1.0, %(frames_done)s::double precision
                        / greatest(coalesce(%(frames_total)s::bigint, frames_total), %(frames_done)s::bigint))
        ELSE progress
    END,
    updated_at = coalesce(%(now)s::timestamptz, now())
WHERE job_id = %(job_id)s AND lease_token = %(lease_token)s AND state = 'running'
RETURNING job_id;

-- name: job_complete
-- Complete a job this worker holds (fenced), with its event.
WITH
clock AS (SELECT coalesce(%(now)s::timestamptz, now()) AS now),
-- Fenced: matches only while this attempt's token still holds the job.
done AS (
    UPDATE vidjobs.jobs
    SET state = 'completed', progress = 1, frames_done = coalesce(frames_total, frames_done),
        output_key = %(output_key)s, lease_expires_at = NULL, error_kind = NULL,
        error_message = NULL, finished_at = clock.now, updated_at = clock.now
    FROM clock
    WHERE job_id = %(job_id)s AND lease_token = %(lease_token)s AND state = 'running'
    RETURNING job_id, worker_id, attempts, finished_at
),
-- Same statement: the trail cannot miss the completion.
events AS (
    INSERT INTO vidjobs.job_events (job_id, at, actor, from_state, to_state, attempt)
    SELECT job_id, finished_at, worker_id, 'running', 'completed', attempts FROM done
)
SELECT job_id FROM done;

-- name: job_complete_many
-- Complete a batch of held jobs in one statement (each fenced by its own token); returns the ids completed.
WITH
clock AS (SELECT coalesce(%(now)s::timestamptz, now()) AS now),
-- The batch as rows: one statement for the whole batch instead of one commit per job.
input AS (
    SELECT * FROM unnest(%(job_ids)s::uuid[], %(lease_tokens)s::uuid[], %(output_keys)s::text[])
        AS i(job_id, lease_token, output_key)
),
-- Rows whose token no longer matches (lease lost, cancelled) are simply not in the result.
-- state::text, not state: the plain test matches jobs_running_lease_idx's predicate, and with
-- stats taken while few jobs ran the planner scans that whole index (every running job, and the
-- dead entries of finished ones) once per statement, then joins the batch to it: a completion
-- cost that grows with the running jobs, which then pile up (a 20k no-op drain fell from 5,000
-- to 800 jobs/s). The cast leaves only the primary key: one lookup per job of the batch.
done AS (
    UPDATE vidjobs.jobs AS j
    SET state = 'completed', progress = 1, frames_done = coalesce(j.frames_total, j.frames_done),
        output_key = i.output_key, lease_expires_at = NULL, error_kind = NULL,
        error_message = NULL, finished_at = clock.now, updated_at = clock.now
    FROM input AS i CROSS JOIN clock
    WHERE j.job_id = i.job_id AND j.lease_token = i.lease_token AND j.state::text = 'running'
    RETURNING j.job_id, j.worker_id, j.attempts, j.finished_at
),
-- Same statement: only the completions that happened are logged.
events AS (
    INSERT INTO vidjobs.job_events (job_id, at, actor, from_state, to_state, attempt)
    SELECT job_id, finished_at, worker_id, 'running', 'completed', attempts FROM done
)
SELECT job_id FROM done;

-- name: job_fail
-- Fail an attempt (fenced): transient with attempts left -> pending after jittered exponential backoff, else failed.
WITH
clock AS (SELECT coalesce(%(now)s::timestamptz, now()) AS now),
-- One UPDATE decides retry or final failure from the row's own attempts, so no read-then-write
-- race. The decision, final, is made once per row in the sub-select that sets the columns it
-- governs.
failed AS (
    UPDATE vidjobs.jobs AS j
    SET (state, run_after, lease_token, finished_at) = (
            SELECT CASE WHEN final THEN 'failed' ELSE 'pending' END::vidjobs.job_state,
                   -- Backoff d = min(cap, base * 2^(attempt-1)), "equal jitter": d/2 + random
                   -- * d/2, so retries of many jobs spread out and each waits longer than the last.
                   CASE WHEN final THEN j.run_after
                        ELSE clock.now + make_interval(secs =>
                            least(%(backoff_max_s)s::double precision,
                                  %(backoff_base_s)s::double precision
                                  * power(2, least(j.attempts - 1, 30)))
                            * (0.5 + random() / 2))
                   END,
                   -- The token is kept on a final failure (history), cleared when pending again.
                   CASE WHEN final THEN j.lease_token END,
                   CASE WHEN final THEN clock.now END
            FROM (SELECT %(permanent)s::boolean OR j.attempts >= j.max_attempts AS final) AS d
        ),
        lease_expires_at = NULL,
        error_kind = %(error_kind)s, error_message = %(error_message)s,
        updated_at = clock.now
    FROM clock
    WHERE j.job_id = %(job_id)s AND j.lease_token = %(lease_token)s AND j.state = 'running'
    RETURNING j.*
),
-- The error goes into the trail too: the row keeps only the last one.
events AS (
    INSERT INTO vidjobs.job_events (
        job_id, at, actor, from_state, to_state, attempt, error_kind, error_message
    )
    SELECT job_id, updated_at, worker_id, 'running', state, attempts, error_kind, error_message
    FROM failed
)
SELECT * FROM failed;

-- name: job_release
-- Hand a held job back (graceful shutdown, fenced): pending again, the attempt not counted, workers woken.
-- run_after is kept, so the job goes back to the front of its priority.
WITH released AS (
    UPDATE vidjobs.jobs
    SET state = 'pending', attempts = attempts - 1, lease_token = NULL, lease_expires_at = NULL,
        updated_at = coalesce(%(now)s::timestamptz, now())
    WHERE job_id = %(job_id)s AND lease_token = %(lease_token)s AND state = 'running'
    RETURNING job_id, worker_id, attempts, updated_at
),
-- Same statement, as every transition.
events AS (
    INSERT INTO vidjobs.job_events (job_id, at, actor, from_state, to_state, attempt)
    SELECT job_id, updated_at, worker_id, 'running', 'pending', attempts FROM released
),
-- Another worker may take it at once.
wake AS (
    SELECT pg_notify('vidjobs_jobs', '') AS woke
)
SELECT job_id FROM released CROSS JOIN wake;

-- name: job_retry_later
-- Hand a held job back after an infrastructure error (fenced): pending after a growing delay, the attempt not counted, within a limit.
-- The blob store or the database failed, not the job: an outage must not use up max_attempts.
-- Past max_infra_retries hand-backs the attempt counts after all (as job_fail's transient
-- failure), so a job cannot wait forever. One UPDATE decides from the row's own counters.
WITH
clock AS (SELECT coalesce(%(now)s::timestamptz, now()) AS now),
-- As in job_fail, the decisions are made once per row in the sub-select that sets the columns
-- they govern: counted (past the limit: this attempt counts) and final (failed for good).
retried AS (
    UPDATE vidjobs.jobs AS j
    SET (state, attempts, run_after, lease_token, finished_at) = (
            SELECT CASE WHEN final THEN 'failed' ELSE 'pending' END::vidjobs.job_state,
                   -- Within the limit the claim's attempt is given back, as job_release does.
                   CASE WHEN counted THEN j.attempts ELSE j.attempts - 1 END,
                   -- d = min(cap, base * 2^infra_retries), "equal jitter" d/2 + random * d/2:
                   -- the workers' retries of many jobs spread out over the outage, and each
                   -- waits longer than the last. The exponent is clamped so a long-lived job
                   -- cannot overflow power().
                   CASE WHEN final THEN j.run_after
                        ELSE clock.now + make_interval(secs =>
                            least(%(backoff_max_s)s::double precision,
                                  %(backoff_base_s)s::double precision
                                  * power(2, least(j.infra_retries, 30)))
                            * (0.5 + random() / 2))
                   END,
                   -- As in job_fail: the token stays on a final failure (history).
                   CASE WHEN final THEN j.lease_token END,
                   CASE WHEN final THEN clock.now END
            FROM (SELECT j.infra_retries >= %(max_infra_retries)s::integer AS counted) AS c
            CROSS JOIN LATERAL (SELECT c.counted AND j.attempts >= j.max_attempts AS final) AS d
        ),
        infra_retries = j.infra_retries + 1,
        lease_expires_at = NULL,
        -- Kept on the row and in the trail, so a DBA sees why the job waits.
        error_kind = %(error_kind)s, error_message = %(error_message)s,
        updated_at = clock.now
    FROM clock
    WHERE j.job_id = %(job_id)s AND j.lease_token = %(lease_token)s AND j.state = 'running'
    RETURNING j.*
),
-- Same statement, as every transition. No NOTIFY: the job is not due before run_after, and the
-- workers' idle poll finds it then.
events AS (
    INSERT INTO vidjobs.job_events (
        job_id, at, actor, from_state, to_state, attempt, error_kind, error_message
    )
    SELECT job_id, updated_at, worker_id, 'running', state, attempts, error_kind, error_message
    FROM retried
)
SELECT * FROM retried;

-- name: job_split
-- Split a held job into segment jobs (fenced): the children are inserted pending, the parent waits pending with run_after 9999-01-01 (never due) until its last child completes (0018's trigger), its attempt not counted.
-- The children are ordinary jobs of the parent's tenant, pipeline, params and priority; their
-- ids are the caller's (derived from the parent's, so a repeated split inserts nothing twice)
-- and they read the parent's upload (input_key). input_bytes stays NULL on them: the upload is
-- the parent's and is counted once in the tenant's stored bytes. No idempotency key, no
-- callback URL: webhooks speak of the parent only.
WITH
clock AS (SELECT coalesce(%(now)s::timestamptz, now()) AS now),
parent AS (
    UPDATE vidjobs.jobs
    SET state = 'pending', attempts = attempts - 1, lease_token = NULL, lease_expires_at = NULL,
        run_after = '9999-01-01 00:00:00+00', segments = cardinality(%(child_ids)s::uuid[]),
        frames_done = 0, frames_total = %(frames_total)s::bigint, progress = 0,
        updated_at = clock.now
    FROM clock
    WHERE job_id = %(job_id)s AND lease_token = %(lease_token)s AND state = 'running'
      AND segments IS NULL AND parent_id IS NULL
    RETURNING vidjobs.jobs.*
),
children AS (
    INSERT INTO vidjobs.jobs (
        job_id, tenant, pipeline, params, priority, max_attempts, input_key, trace_context,
        parent_id, segment_index, segment_start_ms, segment_end_ms, frames_total,
        created_at, updated_at, run_after
    )
    SELECT s.job_id, p.tenant, p.pipeline, p.params, p.priority, p.max_attempts, p.input_key,
           p.trace_context, p.job_id, s.ord - 1, s.start_ms, s.end_ms, s.frames,
           clock.now, clock.now, clock.now
    FROM parent AS p CROSS JOIN clock
    CROSS JOIN LATERAL unnest(
        %(child_ids)s::uuid[], %(starts_ms)s::bigint[], %(ends_ms)s::bigint[],
        %(child_frames)s::bigint[]
    ) WITH ORDINALITY AS s(job_id, start_ms, end_ms, frames, ord)
    RETURNING job_id, created_at
),
-- Every transition with its event: the parent's hand-over, each child's creation.
events AS (
    INSERT INTO vidjobs.job_events (job_id, at, actor, from_state, to_state, attempt)
    SELECT job_id, updated_at, worker_id, 'running'::vidjobs.job_state,
           'pending'::vidjobs.job_state, attempts
    FROM parent
    UNION ALL
    SELECT job_id, created_at, 'parent ' || %(job_id)s::text, NULL, 'pending', 0 FROM children
),
-- The children are due now: wake idle workers.
wake AS (
    SELECT pg_notify('vidjobs_jobs', '') AS woke
)
SELECT p.* FROM parent AS p CROSS JOIN wake;

-- name: job_children
-- A split job's segments in order (a tenant given: only that tenant's).
SELECT * FROM vidjobs.jobs
WHERE parent_id = %(job_id)s AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s::text)
ORDER BY segment_index;

-- name: job_cancel
-- Cancel a pending or running job (a terminal one is returned unchanged); a running holder learns it at its next heartbeat.
WITH
clock AS (SELECT coalesce(%(now)s::timestamptz, now()) AS now),
-- Lock first, so a concurrent claim or completion is seen as it committed (not a stale snapshot).
target AS (
    SELECT * FROM vidjobs.jobs
    WHERE job_id = %(job_id)s AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s::text)
    FOR UPDATE
),
-- The lease token is kept, so the holder's heartbeat can answer "cancelled" (not "lease lost").
cancelled AS (
    UPDATE vidjobs.jobs AS j
    SET state = 'cancelled', lease_expires_at = NULL, finished_at = clock.now,
        updated_at = clock.now
    FROM target AS t CROSS JOIN clock
    WHERE j.job_id = t.job_id AND t.state IN ('pending', 'running')
    RETURNING j.*, t.state AS from_state
),
-- Who cancelled, from which state.
events AS (
    INSERT INTO vidjobs.job_events (job_id, at, actor, from_state, to_state, attempt)
    SELECT job_id, updated_at, coalesce(%(tenant)s::text, 'operator'), from_state, 'cancelled',
           attempts
    FROM cancelled
)
SELECT * FROM cancelled
UNION ALL
SELECT *, NULL::vidjobs.job_state FROM target WHERE state NOT IN ('pending', 'running');

-- name: job_delete
-- Delete a terminal job, its segments (a split job's) and their events; a non-terminal job, or a segment, is returned unchanged.
-- Locked, so a job cannot finish (or restart) between the check and the delete.
WITH target AS (
    SELECT * FROM vidjobs.jobs
    WHERE job_id = %(job_id)s AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s::text)
    FOR UPDATE
),
-- Only terminal jobs: a live job's row is the queue entry a worker may be holding. A segment
-- goes only with its parent (the merge reads it).
deleted AS (
    DELETE FROM vidjobs.jobs AS j USING target AS t
    WHERE j.job_id = t.job_id AND t.state IN ('completed', 'failed', 'cancelled')
      AND t.parent_id IS NULL
    RETURNING j.*
),
-- A split job's segments go with it (the foreign key cascades); they come back too, so the
-- caller deletes their partial results.
kids AS (
    SELECT c.* FROM vidjobs.jobs AS c JOIN deleted AS d ON c.parent_id = d.job_id
),
-- job_events has no foreign key (hot path); its rows go in the same statement instead.
trail AS (
    DELETE FROM vidjobs.job_events AS e
    WHERE e.job_id IN (SELECT job_id FROM deleted UNION ALL SELECT job_id FROM kids)
),
-- Its webhook log too, once delivered or failed; a delivery still pending carries its own
-- snapshot of the job and is sent all the same.
webhooks AS (
    DELETE FROM vidjobs.webhook_deliveries AS w USING deleted AS d
    WHERE w.job_id = d.job_id AND w.state <> 'pending'
)
SELECT * FROM deleted
UNION ALL
SELECT * FROM kids
UNION ALL
SELECT * FROM target
WHERE state NOT IN ('completed', 'failed', 'cancelled') OR parent_id IS NOT NULL;

-- name: job_prune
-- Delete up to a batch of jobs finished before now - older_than, with their events; returns them.
-- Bounded batches (served by jobs_finished_at_idx) keep each delete short; SKIP LOCKED lets two pruners run.
-- A segment is never pruned alone (its parent may still merge it, and its input_key is the
-- parent's upload): it goes with its parent, through the foreign key's cascade.
WITH old AS (
    SELECT job_id FROM vidjobs.jobs
    WHERE finished_at < coalesce(%(now)s::timestamptz, now()) - %(older_than)s::interval
      AND parent_id IS NULL
    ORDER BY finished_at
    LIMIT %(limit)s::integer
    FOR UPDATE SKIP LOCKED
),
-- Rows come back so the caller can delete their blobs.
pruned AS (
    DELETE FROM vidjobs.jobs AS j USING old AS o WHERE j.job_id = o.job_id RETURNING j.*
),
-- The segments of pruned split jobs (deleted by the cascade), returned for their blobs.
kids AS (
    SELECT c.* FROM vidjobs.jobs AS c JOIN old AS o ON c.parent_id = o.job_id
),
-- No foreign key on job_events: the trail goes in the same statement.
trail AS (
    DELETE FROM vidjobs.job_events AS e
    WHERE e.job_id IN (SELECT job_id FROM pruned UNION ALL SELECT job_id FROM kids)
)
SELECT * FROM pruned
UNION ALL
SELECT * FROM kids;

-- name: job_count_by_state
-- How many jobs are in each state (states with none are absent).
SELECT state, count(*) AS jobs FROM vidjobs.jobs GROUP BY state;

-- name: job_count_queued
-- Pending and running jobs per tenant, read from the partial indexes alone (never a finished row): the queue depth /metrics shows.
SELECT tenant, 'pending' AS state, count(*) AS jobs
FROM vidjobs.jobs
WHERE state = 'pending'
GROUP BY tenant
UNION ALL
SELECT tenant, 'running', count(*)
FROM vidjobs.jobs
WHERE state = 'running'
GROUP BY tenant;

-- name: queue_health
-- What the alerts watch, beside the depth: the oldest due pending job's age, running jobs whose lease expired, and the webhook backlog (seconds; 0 when none).
-- Each part reads a partial index's rows only (pending jobs, running jobs, pending deliveries),
-- never a finished row, like job_count_queued.
SELECT
    coalesce((SELECT extract(epoch FROM now() - min(run_after))
              FROM vidjobs.jobs WHERE state = 'pending' AND run_after <= now()), 0)
        AS oldest_pending_s,
    (SELECT count(*) FROM vidjobs.jobs WHERE state = 'running' AND lease_expires_at < now())
        AS lease_expired,
    (SELECT count(*) FROM vidjobs.webhook_deliveries WHERE state = 'pending')
        AS webhook_pending,
    coalesce((SELECT extract(epoch FROM now() - min(created_at))
              FROM vidjobs.webhook_deliveries WHERE state = 'pending'), 0)
        AS webhook_oldest_s;

-- name: job_event_list
-- A job's audit trail, oldest first.
SELECT event_id, job_id, at, actor, from_state, to_state, attempt, error_kind, error_message
FROM vidjobs.job_events
WHERE job_id = %(job_id)s
ORDER BY event_id;

-- name: job_listen
-- Subscribe this connection to the wake-up channel that job_insert, job_insert_many and job_release notify.
LISTEN vidjobs_jobs;
