-- vidjobs.job_events keyed by (job_id, event_id): one index where there were two.
--
-- Every job writes an event at submit, at each claim and at its end, and each event inserted an
-- entry in two B-trees: the primary key (event_id) and job_events_job_idx (job_id, event_id),
-- which serves every read of the trail (a job's history, job_delete, job_prune). Nothing reads
-- events by event_id alone (the time-window views use the BRIN index on at), and event_id is an
-- identity, unique by itself, so (job_id, event_id) is as unique a key and the index the reads
-- use. Measured on a 50k no-op drain (bench/queue_bench.py --observe): WAL records per job
-- 16.4 -> 14.4, WAL bytes 1,884 -> 1,754.
--
-- On a large trail, ADD PRIMARY KEY builds the index under an ACCESS EXCLUSIVE lock on
-- job_events (writers wait); see docs/operations.md for building it CONCURRENTLY first.

ALTER TABLE vidjobs.job_events DROP CONSTRAINT job_events_pkey;
DROP INDEX vidjobs.job_events_job_idx;
ALTER TABLE vidjobs.job_events ADD CONSTRAINT job_events_pkey PRIMARY KEY (job_id, event_id);

COMMENT ON INDEX vidjobs.job_events_pkey IS
    'A job''s history in order (status pages, job_delete, job_prune); event_id alone is an identity.';
