-- The operator dashboard (/ui): reads over the DBA views and the jobs table, all tenants.

-- name: ui_overview
-- One row: jobs per state and the oldest due pending job's wait in seconds (vidjobs.queue_overview).
SELECT pending, pending_due, running, leases_expired, completed, failed, cancelled,
       coalesce(extract(epoch FROM oldest_pending_age), 0)::float8 AS oldest_pending_s
FROM vidjobs.queue_overview;

-- name: ui_tenant_states
-- Jobs per tenant and state, for the overview's per-tenant table.
SELECT tenant, state::text AS state, count(*)::bigint AS n
FROM vidjobs.jobs
GROUP BY tenant, state
ORDER BY tenant, state;

-- name: ui_throughput
-- The last 15 minutes that saw transitions, newest first (vidjobs.throughput_per_minute).
SELECT minute, submitted, claimed, completed, failed, retried
FROM vidjobs.throughput_per_minute
LIMIT 15;

-- name: ui_workers
-- Live workers: those holding a running job, their last heartbeat and their latest claimed job.
SELECT worker_id,
       max(heartbeat_at) AS last_heartbeat,
       count(*)::bigint AS running,
       (array_agg(job_id ORDER BY started_at DESC NULLS LAST))[1] AS current_job
FROM vidjobs.jobs
WHERE state = 'running' AND worker_id IS NOT NULL
GROUP BY worker_id
ORDER BY worker_id;

-- name: ui_job_list
-- One page of every tenant's jobs, newest first, filtered by state, tenant and pipeline (each NULL: any); keyset after (created_at, job_id).
SELECT * FROM vidjobs.jobs
WHERE (%(state)s::vidjobs.job_state IS NULL OR state = %(state)s::vidjobs.job_state)
  AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s::text)
  AND (%(pipeline)s::text IS NULL OR pipeline = %(pipeline)s::text)
  AND (%(after_created_at)s::timestamptz IS NULL
       OR (created_at, job_id) < (%(after_created_at)s::timestamptz, %(after_job_id)s::uuid))
ORDER BY created_at DESC, job_id DESC
LIMIT %(limit)s::integer;
