ALTER TABLE vidjobs.jobs DROP COLUMN input_sha256;
