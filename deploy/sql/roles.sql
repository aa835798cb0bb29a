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
-- A cancel or delete of a running job counts it in the tenant's releases (the same trigger).
GRANT SELECT, INSERT, UPDATE ON vidjobs.tenant_releases TO vidjobs_api;
-- Webhooks (0016): a cancel's terminal event goes to the outbox (the trigger on jobs reads the
-- tenant's endpoints); a submit with a callback_url checks that the tenant has a signing secret
-- (whether one exists, never the sealed secret itself); a job's delete takes its delivery log.
GRANT SELECT ON vidjobs.webhook_endpoints TO vidjobs_api;
GRANT SELECT, INSERT, DELETE ON vidjobs.webhook_deliveries TO vidjobs_api;
GRANT SELECT (secret_id, tenant, created_at, expires_at) ON vidjobs.webhook_secrets TO vidjobs_api;

-- The workers: job_claim (SELECT ... FOR UPDATE SKIP LOCKED needs UPDATE), job_heartbeat,
-- job_progress, job_complete, job_fail, job_release, job_retry_later; events are appended,
-- never changed.
-- job_split (0018) inserts a long video's segment jobs. No DELETE and no access to API keys.
GRANT SELECT, INSERT, UPDATE ON vidjobs.jobs TO vidjobs_worker;
GRANT SELECT, INSERT ON vidjobs.job_events TO vidjobs_worker;
GRANT SELECT ON vidjobs.queue_overview TO vidjobs_worker;
-- Tenants: the claim locks the rows of the tenants it serves (max_running, last_claimed_at); the
-- trigger on jobs keeps their running counters.
GRANT SELECT, UPDATE ON vidjobs.tenants TO vidjobs_worker;
-- Completions, failures and hand-backs count the jobs leaving running there (0015).
GRANT SELECT, INSERT, UPDATE ON vidjobs.tenant_releases TO vidjobs_worker;
-- Webhooks (0016): completions and failures write the outbox (the trigger on jobs); the
-- dispatcher claims and updates deliveries, logs attempts, reads the sealed signing secrets
-- (useless without VIDJOBS_WEBHOOK_SECRET_KEYS) and disables an endpoint that answered 410.
GRANT SELECT, UPDATE ON vidjobs.webhook_endpoints TO vidjobs_worker;
GRANT SELECT, INSERT, UPDATE ON vidjobs.webhook_deliveries TO vidjobs_worker;
GRANT SELECT, INSERT ON vidjobs.webhook_attempts TO vidjobs_worker;
GRANT SELECT ON vidjobs.webhook_secrets TO vidjobs_worker;

GRANT USAGE ON ALL SEQUENCES IN SCHEMA vidjobs TO vidjobs_api, vidjobs_worker;

-- Read-only: every table and view (the DBA views: queue_overview, stuck_jobs,
-- recent_failures, throughput_per_minute, tenant_usage, job_segments; the tenants table and its limits),
-- except the key hashes and the tenants' idempotency keys. A view runs with its owner's
-- rights, so the views keep working whatever columns the role may read itself.
GRANT SELECT ON ALL TABLES IN SCHEMA vidjobs TO vidjobs_readonly;
REVOKE SELECT ON vidjobs.api_keys FROM vidjobs_readonly;
GRANT SELECT (key_id, tenant, name, prefix, created_at, revoked_at) ON vidjobs.api_keys
    TO vidjobs_readonly;
-- Signing secrets: which exist and when they expire, not the sealed secrets.
REVOKE SELECT ON vidjobs.webhook_secrets FROM vidjobs_readonly;
GRANT SELECT (secret_id, tenant, created_at, expires_at) ON vidjobs.webhook_secrets
    TO vidjobs_readonly;
-- jobs: every column but idempotency_key (a client's own identifier of its request; one tenant's
-- keys are not another's business, nor the DBA's). The list is read from the catalog, so a
-- column a later migration adds is readable once this file is applied again. `SELECT *` on jobs
-- is refused: name the columns, or read the views.
REVOKE SELECT ON vidjobs.jobs FROM vidjobs_readonly;
DO $$
BEGIN
    EXECUTE (
        SELECT format('GRANT SELECT (%s) ON vidjobs.jobs TO vidjobs_readonly',
                      string_agg(quote_ident(attname), ', ' ORDER BY attnum))
        FROM pg_attribute
        WHERE attrelid = 'vidjobs.jobs'::regclass AND attnum > 0 AND NOT attisdropped
          AND attname <> 'idempotency_key'
    );
END
$$;

-- Read-only sessions get time limits: a forgotten transaction in psql holds its snapshot (vacuum
-- cannot clean the hot jobs table behind it) and its locks (a migration's ALTER waits behind
-- them, and every statement queues behind that ALTER). They are defaults, not caps: a DBA who
-- needs a longer query says `SET statement_timeout = '10min'` in the session.
--
-- Postgres applies ALTER ROLE ... SET only to the role a session logs in as, never to the groups
-- it is a member of (tests/integration/test_roles.py shows it), so setting them on
-- vidjobs_readonly alone would do nothing. They are set on the group (the reference values) and
-- on every login role that is a member of it (not of vidjobs_api or vidjobs_worker) at the time
-- this file runs. For a DBA login created later, run this file again or say it yourself:
--
--   ALTER ROLE alice SET statement_timeout = '30s';
--   ALTER ROLE alice SET idle_in_transaction_session_timeout = '60s';
--
-- NOTIFY cannot be revoked: any role that can connect may NOTIFY any channel, vidjobs_jobs
-- included. A spurious NOTIFY costs little: each idle worker wakes, runs one claim that finds
-- nothing, and goes back to waiting (a DBA looping on it would cost one empty claim per worker per
-- NOTIFY, like a flood of polls). Nothing is claimed, skipped or delayed by it.
ALTER ROLE vidjobs_readonly SET statement_timeout = '30s';
ALTER ROLE vidjobs_readonly SET idle_in_transaction_session_timeout = '60s';
DO $$
DECLARE
    member name;
BEGIN
    FOR member IN
        SELECT r.rolname
        FROM pg_roles r
        WHERE r.rolcanlogin AND NOT r.rolsuper AND r.rolname <> current_user
          AND r.oid <> (SELECT nspowner FROM pg_namespace WHERE nspname = 'vidjobs')
          AND pg_has_role(r.oid, 'vidjobs_readonly', 'MEMBER')
          AND NOT pg_has_role(r.oid, 'vidjobs_api', 'MEMBER')
          AND NOT pg_has_role(r.oid, 'vidjobs_worker', 'MEMBER')
        ORDER BY r.rolname
    LOOP
        BEGIN
            EXECUTE format('ALTER ROLE %I SET statement_timeout = %L', member, '30s');
            EXECUTE format('ALTER ROLE %I SET idle_in_transaction_session_timeout = %L',
                           member, '60s');
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE WARNING 'cannot set the read-only time limits on role %: run ALTER ROLE % SET '
                          'statement_timeout = ''30s'' (and idle_in_transaction_session_timeout '
                          '= ''60s'') as a role that may', member, member;
        END;
    END LOOP;
END
$$;
