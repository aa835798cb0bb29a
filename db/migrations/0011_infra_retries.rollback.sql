ALTER TABLE vidjobs.jobs DROP COLUMN infra_retries;

COMMENT ON COLUMN vidjobs.jobs.attempts IS
    'Claims so far, counting the current one; a graceful release does not count.';
