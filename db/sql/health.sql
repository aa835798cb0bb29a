-- Readiness probes (`vidjobs worker --check`): cheap catalog reads that every role may run.

-- name: schema_worker_check
-- Whether the tables a worker uses exist and this role holds the grants it needs (deploy/sql/roles.sql).
-- to_regclass gives NULL for a missing table, and has_table_privilege(NULL, ...) is NULL, so a
-- database that was never migrated answers false instead of raising.
SELECT
    to_regclass('vidjobs.jobs') IS NOT NULL AS jobs_exists,
    to_regclass('vidjobs.job_events') IS NOT NULL AS events_exists,
    coalesce(
        has_table_privilege(to_regclass('vidjobs.jobs'), 'SELECT')
        AND has_table_privilege(to_regclass('vidjobs.jobs'), 'UPDATE')
        AND has_table_privilege(to_regclass('vidjobs.job_events'), 'INSERT'),
        false
    ) AS worker_grants,
    -- yoyo's bookkeeping table: the schema owner can read it, the least-privilege worker cannot.
    coalesce(has_table_privilege(to_regclass('_yoyo_migration'), 'SELECT'), false)
        AS migrations_readable;

-- name: schema_migration_ids
-- The ids of the migrations yoyo has applied; run only when schema_worker_check says it may be read.
SELECT migration_id FROM _yoyo_migration ORDER BY migration_id;
