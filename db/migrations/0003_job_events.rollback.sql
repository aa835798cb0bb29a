DROP TABLE vidjobs.job_events;
DROP FUNCTION vidjobs.job_events_refuse_update();
