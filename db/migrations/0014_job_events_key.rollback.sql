ALTER TABLE vidjobs.job_events DROP CONSTRAINT job_events_pkey;
ALTER TABLE vidjobs.job_events ADD CONSTRAINT job_events_pkey PRIMARY KEY (event_id);
CREATE INDEX job_events_job_idx ON vidjobs.job_events (job_id, event_id);
