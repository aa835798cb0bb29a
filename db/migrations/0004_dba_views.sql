-- The DBA surface: plain views a person can SELECT from psql to see how the queue is doing.

CREATE VIEW vidjobs.queue_overview AS
SELECT
    count(*) FILTER (WHERE state = 'pending')                            AS pending,
    count(*) FILTER (WHERE state = 'pending' AND run_after <= now())     AS pending_due,
    count(*) FILTER (WHERE state = 'running')                            AS running,
    count(*) FILTER (WHERE state = 'running' AND lease_expires_at < now()) AS leases_expired,
    count(*) FILTER (WHERE state = 'completed')                          AS completed,
    count(*) FILTER (WHERE state = 'failed')                             AS failed,
    count(*) FILTER (WHERE state = 'cancelled')                          AS cancelled,
    now() - min(run_after) FILTER (WHERE state = 'pending' AND run_after <= now())
                                                                         AS oldest_pending_age
FROM vidjobs.jobs;

COMMENT ON VIEW vidjobs.queue_overview IS
    'One row: jobs per state, how many pending jobs are due, running jobs whose lease expired '
    '(their worker is gone), and how long the oldest due pending job has been waiting.';
COMMENT ON COLUMN vidjobs.queue_overview.pending IS 'Jobs waiting to be claimed (due or not).';
COMMENT ON COLUMN vidjobs.queue_overview.pending_due IS 'Pending jobs whose run_after has passed.';
COMMENT ON COLUMN vidjobs.queue_overview.running IS 'Jobs held by a worker.';
COMMENT ON COLUMN vidjobs.queue_overview.leases_expired IS
    'Running jobs whose lease lapsed: the worker stopped heartbeating; the next claim takes them back.';
COMMENT ON COLUMN vidjobs.queue_overview.completed IS 'Jobs completed (until pruned).';
COMMENT ON COLUMN vidjobs.queue_overview.failed IS 'Jobs failed for good (until pruned).';
COMMENT ON COLUMN vidjobs.queue_overview.cancelled IS 'Jobs cancelled (until pruned).';
COMMENT ON COLUMN vidjobs.queue_overview.oldest_pending_age IS
    'How long the longest-waiting due pending job has waited since its run_after; NULL if none.';

CREATE VIEW vidjobs.stuck_jobs AS
SELECT
    job_id, tenant, state, pipeline, worker_id, attempts, max_attempts,
    'lease_expired'::text             AS reason,
    now() - lease_expires_at          AS overdue,
    heartbeat_at, lease_expires_at, run_after
FROM vidjobs.jobs
WHERE state = 'running' AND lease_expires_at < now()
UNION ALL
SELECT
    job_id, tenant, state, pipeline, worker_id, attempts, max_attempts,
    'not_claimed'::text               AS reason,
    now() - run_after                 AS overdue,
    heartbeat_at, lease_expires_at, run_after
FROM vidjobs.jobs
WHERE state = 'pending' AND run_after < now() - interval '5 minutes';

COMMENT ON VIEW vidjobs.stuck_jobs IS
    'Jobs that are not moving: running jobs whose lease expired (worker died) and due pending '
    'jobs nobody claimed for over 5 minutes (no worker, or workers saturated).';
COMMENT ON COLUMN vidjobs.stuck_jobs.job_id IS 'The job.';
COMMENT ON COLUMN vidjobs.stuck_jobs.tenant IS 'Owner of the job.';
COMMENT ON COLUMN vidjobs.stuck_jobs.state IS 'running or pending.';
COMMENT ON COLUMN vidjobs.stuck_jobs.pipeline IS 'Pipeline of the job.';
COMMENT ON COLUMN vidjobs.stuck_jobs.worker_id IS 'Worker that holds (or last held) the job.';
COMMENT ON COLUMN vidjobs.stuck_jobs.attempts IS 'Attempts so far.';
COMMENT ON COLUMN vidjobs.stuck_jobs.max_attempts IS 'Attempts allowed.';
COMMENT ON COLUMN vidjobs.stuck_jobs.reason IS 'lease_expired or not_claimed.';
COMMENT ON COLUMN vidjobs.stuck_jobs.overdue IS 'How long past its lease expiry / run_after.';
COMMENT ON COLUMN vidjobs.stuck_jobs.heartbeat_at IS 'Last heartbeat of the holding worker.';
COMMENT ON COLUMN vidjobs.stuck_jobs.lease_expires_at IS 'When the lease lapsed (running only).';
COMMENT ON COLUMN vidjobs.stuck_jobs.run_after IS 'When the job became due.';

CREATE VIEW vidjobs.recent_failures AS
SELECT
    e.at, e.job_id, j.tenant, j.pipeline, e.actor AS worker_id, e.attempt,
    e.to_state = 'failed' AS final,
    e.error_kind, e.error_message
FROM vidjobs.job_events AS e
LEFT JOIN vidjobs.jobs AS j USING (job_id)
WHERE e.error_kind IS NOT NULL AND e.at > now() - interval '24 hours'
ORDER BY e.at DESC, e.event_id DESC;

COMMENT ON VIEW vidjobs.recent_failures IS
    'Every failed attempt of the last 24 hours, newest first: transient ones (retried), final '
    'ones, and leases that expired.';
COMMENT ON COLUMN vidjobs.recent_failures.at IS 'When the attempt failed.';
COMMENT ON COLUMN vidjobs.recent_failures.job_id IS 'The job.';
COMMENT ON COLUMN vidjobs.recent_failures.tenant IS 'Owner of the job (NULL once pruned).';
COMMENT ON COLUMN vidjobs.recent_failures.pipeline IS 'Pipeline of the job (NULL once pruned).';
COMMENT ON COLUMN vidjobs.recent_failures.worker_id IS 'Worker that reported (or reclaimed) it.';
COMMENT ON COLUMN vidjobs.recent_failures.attempt IS 'Attempts counter at that point.';
COMMENT ON COLUMN vidjobs.recent_failures.final IS 'True when the job failed for good.';
COMMENT ON COLUMN vidjobs.recent_failures.error_kind IS 'Class of the error.';
COMMENT ON COLUMN vidjobs.recent_failures.error_message IS 'Message of the error.';

CREATE VIEW vidjobs.throughput_per_minute AS
SELECT
    date_trunc('minute', at)                                              AS minute,
    count(*) FILTER (WHERE to_state = 'pending' AND from_state IS NULL)   AS submitted,
    count(*) FILTER (WHERE to_state = 'running')                          AS claimed,
    count(*) FILTER (WHERE to_state = 'completed')                        AS completed,
    count(*) FILTER (WHERE to_state = 'failed')                           AS failed,
    count(*) FILTER (WHERE to_state = 'pending' AND from_state = 'running') AS retried
FROM vidjobs.job_events
WHERE at > now() - interval '1 hour'
GROUP BY 1
ORDER BY 1 DESC;

COMMENT ON VIEW vidjobs.throughput_per_minute IS
    'Transitions per minute over the last hour, newest first: how fast jobs arrive and drain.';
COMMENT ON COLUMN vidjobs.throughput_per_minute.minute IS 'Start of the minute.';
COMMENT ON COLUMN vidjobs.throughput_per_minute.submitted IS 'Jobs submitted.';
COMMENT ON COLUMN vidjobs.throughput_per_minute.claimed IS 'Claims (first attempts, retries and lease take-backs).';
COMMENT ON COLUMN vidjobs.throughput_per_minute.completed IS 'Jobs completed.';
COMMENT ON COLUMN vidjobs.throughput_per_minute.failed IS 'Jobs failed for good.';
COMMENT ON COLUMN vidjobs.throughput_per_minute.retried IS
    'Attempts sent back to pending (transient failure or graceful release).';
