-- vidjobs.job_events: the append-only audit trail of every state transition.
-- Rows are written by the same statement as the transition (a data-modifying CTE in each query
-- of db/sql/jobs.sql), so the trail and the state can never disagree.
--
-- No foreign key to jobs on purpose: its per-row referential check would run on the queue's hot
-- path (three events per job); job_delete and job_prune delete a job's events in the same
-- statement as the job instead.

CREATE TABLE vidjobs.job_events (
    event_id      bigint            GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id        uuid              NOT NULL,
    at            timestamptz       NOT NULL DEFAULT now(),
    actor         text              NOT NULL,
    from_state    vidjobs.job_state,
    to_state      vidjobs.job_state NOT NULL,
    attempt       integer           NOT NULL,
    error_kind    text,
    error_message text,
    CONSTRAINT job_events_attempt_nonnegative CHECK (attempt >= 0),
    CONSTRAINT job_events_actor_not_blank CHECK (actor <> '')
)
-- Insert-only: vacuum it for the visibility map after inserts, not for dead rows.
WITH (autovacuum_vacuum_insert_scale_factor = 0.05);

-- A job's history in order (status pages, job_delete, job_prune).
CREATE INDEX job_events_job_idx ON vidjobs.job_events (job_id, event_id);

-- Rows arrive in time order, so a BRIN index on the time costs almost nothing to maintain and
-- serves the time-window views (recent_failures, throughput_per_minute).
CREATE INDEX job_events_at_brin ON vidjobs.job_events USING brin (at);

-- Append-only is enforced, not just promised: updates are refused. A statement-level trigger
-- costs nothing per inserted row. (Deletes stay allowed for pruning.)
CREATE FUNCTION vidjobs.job_events_refuse_update() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'vidjobs.job_events is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER job_events_append_only
    BEFORE UPDATE OR TRUNCATE ON vidjobs.job_events
    FOR EACH STATEMENT EXECUTE FUNCTION vidjobs.job_events_refuse_update();

COMMENT ON FUNCTION vidjobs.job_events_refuse_update() IS
    'Trigger function keeping vidjobs.job_events append-only.';
COMMENT ON TABLE vidjobs.job_events IS
    'Append-only audit trail: one row per job state transition, written by the same statement '
    'as the transition. Updates are refused by trigger job_events_append_only.';
COMMENT ON COLUMN vidjobs.job_events.event_id IS 'Order of the events (identity).';
COMMENT ON COLUMN vidjobs.job_events.job_id IS 'The job (vidjobs.jobs.job_id) that moved.';
COMMENT ON COLUMN vidjobs.job_events.at IS 'When the transition happened.';
COMMENT ON COLUMN vidjobs.job_events.actor IS
    'Who moved it: the worker_id for worker transitions, the tenant for submit and cancel.';
COMMENT ON COLUMN vidjobs.job_events.from_state IS 'State before; NULL for the submit.';
COMMENT ON COLUMN vidjobs.job_events.to_state IS
    'State after (running -> running means a lease expired and another worker took the job back).';
COMMENT ON COLUMN vidjobs.job_events.attempt IS 'The job''s attempts counter after the transition.';
COMMENT ON COLUMN vidjobs.job_events.error_kind IS 'Class of the error that caused it, if any.';
COMMENT ON COLUMN vidjobs.job_events.error_message IS 'Message of the error that caused it, if any.';
