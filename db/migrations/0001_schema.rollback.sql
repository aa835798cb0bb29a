DROP TYPE vidjobs.job_state;
DROP SCHEMA vidjobs;
