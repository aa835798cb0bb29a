DROP VIEW vidjobs.throughput_per_minute;
DROP VIEW vidjobs.recent_failures;
DROP VIEW vidjobs.stuck_jobs;
DROP VIEW vidjobs.queue_overview;
