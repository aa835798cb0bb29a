-- The SHA-256 of each job's uploaded video, hashed by the API while the upload streams to the
-- blob store. An Idempotency-Key repeat is a replay only when the file is the same too: the same
-- key with another file is refused (409 idempotency-key-reused) instead of silently keeping the
-- first video. Clients see it in the status body (input_sha256) and can check their upload.
--
-- Nullable with no default, so ADD COLUMN is a catalog-only change (no table rewrite, a short
-- ACCESS EXCLUSIVE lock): jobs submitted before this migration, and jobs inserted by the queue
-- API without an upload, keep NULL (no content to compare; a repeat then matches on its
-- parameters alone). The CHECK is NOT VALID for the same reason as 0011's: existing rows are all
-- NULL; every insert and update is checked. Nothing reads it in the claim; no index.

ALTER TABLE vidjobs.jobs ADD COLUMN input_sha256 text;

ALTER TABLE vidjobs.jobs
    ADD CONSTRAINT jobs_input_sha256_hex CHECK (input_sha256 ~ '^[0-9a-f]{64}$') NOT VALID;

COMMENT ON COLUMN vidjobs.jobs.input_sha256 IS
    'SHA-256 of the uploaded video (64 lowercase hex digits), computed by the API while it '
    'streamed the upload; NULL for jobs without an upload or submitted before migration 0013. '
    'An Idempotency-Key repeat with a different file is refused (409).';
