-- The vidjobs schema and the job state type.
-- Everything vidjobs owns lives in its own schema so a DBA can grant, dump and drop it as one unit.
CREATE SCHEMA vidjobs;

COMMENT ON SCHEMA vidjobs IS
    'vidjobs: video-analysis jobs. The jobs table is the queue; see the views for the DBA surface.';

-- Mirrors schema.JobState in Python; order is the life of a job.
CREATE TYPE vidjobs.job_state AS ENUM ('pending', 'running', 'completed', 'failed', 'cancelled');

COMMENT ON TYPE vidjobs.job_state IS
    'Life of a job: pending -> running -> completed | failed | cancelled (terminal); '
    'a transient failure or a graceful release sends a running job back to pending.';
