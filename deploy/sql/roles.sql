-- Least-privilege roles for vidjobs. Run as the schema's OWNER (the role that runs
-- `vidjobs db migrate`; it needs CREATEROLE the first time) in the vidjobs database, after
-- every migration, so new tables get their grants; it is idempotent:
--
--   psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f deploy/sql/roles.sql
--
-- It creates three NOLOGIN group roles; give each process a login role that is a member:
--
--   CREATE ROLE vidjobs_api_login    LOGIN PASSWORD '...' IN ROLE vidjobs_api;
--   CREATE ROLE vidjobs_worker_login LOGIN PASSWORD '...' IN ROLE vidjobs_worker;
--   CREATE ROLE alice                LOGIN PASSWORD '...' IN ROLE vidjobs_readonly;  -- a DBA; KEDA
--
-- None of them may create, alter or drop anything: DDL stays with the owner (migrations), and
-- API keys are created and revoked by the owner too (`vidjobs keys create|revoke`).

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'vidjobs_api') THEN
        CREATE ROLE vidjobs_api NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'vidjobs_worker') THEN
        CREATE ROLE vidjobs_worker NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'vidjobs_readonly') THEN
        CREATE ROLE vidjobs_readonly NOLOGIN;
    END IF;
END
$$;

-- vidjobs_api:      submits, reads, cancels and deletes jobs; reads API key hashes.
-- vidjobs_worker:   claims, heartbeats and finishes jobs; appends events.
-- vidjobs_readonly: DBAs and the KEDA scaler read tables and views, never write.

-- Start from nothing, so a grant removed here is removed in the database too.
REVOKE ALL ON SCHEMA vidjobs FROM PUBLIC, vidjobs_api, vidjobs_worker, vidjobs_readonly;
REVOKE ALL ON ALL TABLES IN SCHEMA vidjobs FROM PUBLIC, vidjobs_api, vidjobs_worker, vidjobs_readonly;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA vidjobs FROM PUBLIC, vidjobs_api, vidjobs_worker, vidjobs_readonly;

-- USAGE only: look objects up; no CREATE.
GRANT USAGE ON SCHEMA vidjobs TO vidjobs_api, vidjobs_worker, vidjobs_readonly;

-- The API: job_insert, job_get, job_list, job_cancel, job_delete, job_count_by_state (and the
-- events those statements write), api_key_authenticate.
GRANT SELECT, INSERT, UPDATE, DELETE ON vidjobs.jobs TO vidjobs_api;
GRANT SELECT, INSERT, DELETE ON vidjobs.job_events TO vidjobs_api;
GRANT SELECT ON vidjobs.api_keys TO vidjobs_api;
GRANT SELECT ON vidjobs.queue_overview TO vidjobs_api;
-- Tenants: the trigger on jobs creates a tenant's row with its first job and keeps its counters;
-- submit reads its limits and draws from its rate bucket.
GRANT SELECT, INSERT, UPDATE ON vidjobs.tenants TO vidjobs_api;

-- The workers: job_claim (SELECT ... FOR UPDATE SKIP LOCKED needs UPDATE), job_heartbeat,
-- job_progress, job_complete, job_fail, job_release, job_retry_later; events are appended,
-- never changed.
-- No DELETE and no access to API keys.
GRANT SELECT, UPDATE ON vidjobs.jobs TO vidjobs_worker;
GRANT SELECT, INSERT ON vidjobs.job_events TO vidjobs_worker;
GRANT SELECT ON vidjobs.queue_overview TO vidjobs_worker;
-- Tenants: the claim locks the rows of the tenants it serves (max_running, last_claimed_at); the
-- trigger on jobs keeps their running counters.
GRANT SELECT, UPDATE ON vidjobs.tenants TO vidjobs_worker;

GRANT USAGE ON ALL SEQUENCES IN SCHEMA vidjobs TO vidjobs_api, vidjobs_worker;

-- Read-only: every table and view (the DBA views: queue_overview, stuck_jobs,
-- recent_failures, throughput_per_minute), except the key hashes.
GRANT SELECT ON ALL TABLES IN SCHEMA vidjobs TO vidjobs_readonly;
REVOKE SELECT ON vidjobs.api_keys FROM vidjobs_readonly;
GRANT SELECT (key_id, tenant, name, prefix, created_at, revoked_at) ON vidjobs.api_keys
    TO vidjobs_readonly;
