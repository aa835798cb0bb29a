ALTER TABLE vidjobs.jobs DROP COLUMN trace_context;
