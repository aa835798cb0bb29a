-- Infrastructure hand-backs (query job_retry_later): when the blob store or the database fails a
-- job's attempt, the job itself did nothing wrong, so it goes back to pending after a growing
-- delay without counting an attempt; an outage must not use up max_attempts. This column counts
-- those hand-backs: it sets the delay (exponential in it) and bounds them (past the limit the
-- worker passes, the next one counts as a failed attempt), so a job cannot wait forever.
--
-- A constant default makes ADD COLUMN a catalog-only change (no table rewrite). The CHECK is
-- added NOT VALID: every existing row holds the default 0, so validating it would only be a full
-- scan under the ACCESS EXCLUSIVE lock that stops the queue; every insert and update is checked.
-- The claim does not read the column, and no index covers it (jobs_claim_pending_idx unchanged).

ALTER TABLE vidjobs.jobs ADD COLUMN infra_retries integer NOT NULL DEFAULT 0;

ALTER TABLE vidjobs.jobs
    ADD CONSTRAINT jobs_infra_retries_nonnegative CHECK (infra_retries >= 0) NOT VALID;

COMMENT ON COLUMN vidjobs.jobs.infra_retries IS
    'Times an infrastructure error (blob_unavailable, database_unavailable) handed the job back '
    'to pending (job_retry_later); up to the worker''s limit these do not count in attempts. '
    'Sets the retry delay; kept after the job finishes, as attempts is.';
COMMENT ON COLUMN vidjobs.jobs.attempts IS
    'Claims so far, counting the current one; a graceful release and an infrastructure '
    'hand-back (job_retry_later, within its limit) do not count.';
