DROP TABLE vidjobs.jobs;
