DROP VIEW vidjobs.tenant_usage;
DROP TRIGGER jobs_track_tenants_delete ON vidjobs.jobs;
DROP TRIGGER jobs_track_tenants_update ON vidjobs.jobs;
DROP TRIGGER jobs_track_tenants_insert ON vidjobs.jobs;
DROP FUNCTION vidjobs.tenants_track_jobs();
DROP INDEX vidjobs.jobs_tenant_pending_idx;
CREATE INDEX jobs_claim_pending_idx ON vidjobs.jobs (priority DESC, run_after, created_at)
    WHERE state = 'pending';
ALTER TABLE vidjobs.jobs DROP COLUMN input_bytes;
DROP TABLE vidjobs.tenants;
