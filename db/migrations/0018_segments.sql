-- Long videos as segment jobs: a parent job and its children in the same vidjobs.jobs table.
--
-- A worker that claims a long video (longer than the pipeline's split threshold) does not
-- analyse it: it plans consecutive time ranges on the video's global sampling grid and writes
-- them as child jobs (job_split), and the parent goes back to pending with run_after
-- 9999-01-01 ('infinity' would not load into a Python datetime): no claim can take it while
-- its segments run. Children are ordinary jobs (same
-- claim, lease, fencing, retries, tenant fairness); each writes a partial results blob. When the
-- last child completes, the trigger below makes the parent due again in that same transaction
-- (run_after = now, a NOTIFY): the next claim takes it and its worker merges the partial results
-- into the one document. One level only: a child is never a parent, a parent never a child.
--
-- The trigger also carries failure and cancellation across the tree in the transaction of the
-- change: a child failed for good fails its parent with the child's error; a child cancelled
-- cancels its parent; a parent that ends (failed, cancelled) cancels its unfinished children
-- (a running child's holder learns it at its next heartbeat, as for any cancel). Webhooks speak
-- of the parent only: the outbox trigger skips children.

ALTER TABLE vidjobs.jobs
    ADD COLUMN parent_id uuid REFERENCES vidjobs.jobs (job_id) ON DELETE CASCADE,
    ADD COLUMN segment_index integer,
    ADD COLUMN segment_start_ms bigint,
    ADD COLUMN segment_end_ms bigint,
    ADD COLUMN segments integer;

-- Impossible trees are impossible: a child has its index and a non-empty range and is no
-- parent; a parent has at least two children; nobody is its own parent. That the parent_id
-- names a parent (not a child, not a plain job) is checked by jobs_segment_parent below.
ALTER TABLE vidjobs.jobs
    ADD CONSTRAINT jobs_segment_fields CHECK (
        (parent_id IS NULL) = (segment_index IS NULL)
        AND (parent_id IS NULL) = (segment_start_ms IS NULL)
        AND (parent_id IS NULL) = (segment_end_ms IS NULL)
    ),
    ADD CONSTRAINT jobs_segment_range CHECK (
        parent_id IS NULL OR (
            segment_index >= 0 AND segment_start_ms >= 0 AND segment_end_ms > segment_start_ms
            AND parent_id <> job_id AND segments IS NULL
        )
    ),
    ADD CONSTRAINT jobs_segments_count CHECK (segments IS NULL OR segments >= 2);

-- One child per index of a parent; also serves the foreign key's cascade and every lookup of
-- a parent's children (partial: plain jobs do not enter it).
CREATE UNIQUE INDEX jobs_parent_segment_idx ON vidjobs.jobs (parent_id, segment_index)
    WHERE parent_id IS NOT NULL;

COMMENT ON COLUMN vidjobs.jobs.parent_id IS
    'Set on a segment job: the long video''s job it analyses a time range of.';
COMMENT ON COLUMN vidjobs.jobs.segment_index IS 'A segment''s place in its parent, from 0.';
COMMENT ON COLUMN vidjobs.jobs.segment_start_ms IS
    'Start of the segment''s range in the video (ms, inclusive; on the global sampling grid).';
COMMENT ON COLUMN vidjobs.jobs.segment_end_ms IS 'End of the segment''s range (ms, exclusive).';
COMMENT ON COLUMN vidjobs.jobs.segments IS
    'Set on a parent: how many segment jobs it was split into (NULL: analysed as one job).';

CREATE FUNCTION vidjobs.jobs_segment_parent() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (
        SELECT FROM vidjobs.jobs
        WHERE job_id = NEW.parent_id AND parent_id IS NULL AND segments IS NOT NULL
          AND NEW.segment_index < segments AND tenant = NEW.tenant
    ) THEN
        RAISE EXCEPTION 'job % names % as its parent, which is not a split job of tenant % with '
                        'more than % segments', NEW.job_id, NEW.parent_id, NEW.tenant,
                        NEW.segment_index
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END
$$;

-- Checked at commit (deferred): job_split sets the parent's segments in the statement that
-- inserts the children, and a statement's own changes are not visible while it runs. Row level,
-- and only for rows that name a parent: plain jobs queue no check.
CREATE CONSTRAINT TRIGGER jobs_segment_parent
    AFTER INSERT OR UPDATE OF parent_id, segment_index, tenant ON vidjobs.jobs
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.parent_id IS NOT NULL)
    EXECUTE FUNCTION vidjobs.jobs_segment_parent();

COMMENT ON FUNCTION vidjobs.jobs_segment_parent() IS
    'Refuses (at commit) a segment job whose parent_id does not name a split job of the same '
    'tenant with a slot for its index: one level of segments, no cycles.';

CREATE FUNCTION vidjobs.jobs_segments_fan_in() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    made_due integer;
BEGIN
    -- The common statement (claims, heartbeats, completions of plain jobs) has no row of a
    -- tree: one pass over the transition table.
    IF NOT EXISTS (
        SELECT FROM new_rows WHERE parent_id IS NOT NULL OR segments IS NOT NULL
    ) THEN
        RETURN NULL;
    END IF;

    -- A child failed for good, or cancelled: its parent, still waiting, ends the same way, with
    -- the child's error (a failure wins over a cancel in one statement). The parent's end then
    -- cancels the other children, below, in the nested firing of this trigger.
    WITH ended AS (
        SELECT DISTINCT ON (n.parent_id) n.parent_id, n.state, n.segment_index,
               n.segment_start_ms, n.segment_end_ms, n.error_kind, n.error_message
        FROM new_rows AS n JOIN old_rows AS o USING (job_id)
        WHERE n.parent_id IS NOT NULL AND n.state IN ('failed', 'cancelled')
          AND o.state NOT IN ('completed', 'failed', 'cancelled')
        ORDER BY n.parent_id, (n.state = 'failed') DESC, n.segment_index
    ),
    target AS (
        SELECT p.job_id, p.state AS from_state, e.*
        FROM vidjobs.jobs AS p JOIN ended AS e ON e.parent_id = p.job_id
        WHERE p.state IN ('pending', 'running')
        ORDER BY p.job_id
        FOR UPDATE OF p
    ),
    parent AS (
        UPDATE vidjobs.jobs AS p
        SET state = t.state, run_after = now(), lease_expires_at = NULL, finished_at = now(),
            updated_at = now(),
            error_kind = CASE WHEN t.state = 'failed' THEN t.error_kind END,
            error_message = CASE WHEN t.state = 'failed'
                THEN 'segment ' || t.segment_index || ' (' || t.segment_start_ms || '-'
                     || t.segment_end_ms || ' ms) failed: ' || t.error_message END
        FROM target AS t
        WHERE p.job_id = t.job_id AND p.state IN ('pending', 'running')
        RETURNING p.job_id, p.state, p.attempts, p.error_kind, p.error_message, t.from_state,
                  t.segment_index
    )
    INSERT INTO vidjobs.job_events (
        job_id, at, actor, from_state, to_state, attempt, error_kind, error_message
    )
    SELECT job_id, now(), 'segment ' || segment_index, from_state, state, attempts, error_kind,
           error_message
    FROM parent;

    -- A parent that ended (failed, cancelled; not completed: its children are done by then)
    -- cancels its unfinished children. The lease token stays, so a running child's holder
    -- hears "cancelled" at its next heartbeat (as job_cancel leaves it). SKIP LOCKED: a child
    -- locked by another transaction is being completed, failed (both fine: the parent's end
    -- stands) or claimed at this instant; waiting for it could deadlock (that transaction
    -- locks this parent next), so it is left to finish its segment, whose result is unused.
    WITH ended AS (
        SELECT n.job_id
        FROM new_rows AS n JOIN old_rows AS o USING (job_id)
        WHERE n.segments IS NOT NULL AND n.state IN ('failed', 'cancelled')
          AND o.state NOT IN ('completed', 'failed', 'cancelled')
    ),
    kids AS (
        SELECT c.job_id, c.state AS from_state
        FROM vidjobs.jobs AS c JOIN ended AS e ON c.parent_id = e.job_id
        WHERE c.state IN ('pending', 'running')
        ORDER BY c.job_id
        FOR UPDATE OF c SKIP LOCKED
    ),
    children AS (
        UPDATE vidjobs.jobs AS c
        SET state = 'cancelled', lease_expires_at = NULL, finished_at = now(), updated_at = now()
        FROM kids AS k
        WHERE c.job_id = k.job_id
        RETURNING c.job_id, c.attempts, c.parent_id, k.from_state
    )
    INSERT INTO vidjobs.job_events (job_id, at, actor, from_state, to_state, attempt)
    SELECT job_id, now(), 'parent ' || parent_id, from_state, 'cancelled', attempts
    FROM children;

    -- Fan-in: the last child completed, so the parent's merge is due now (same transaction; no
    -- poller). The parents are locked first, in id order, and re-read by the next statement
    -- (a fresh snapshot): of two last completions committing at once, the second sees the
    -- first and makes the parent due.
    PERFORM FROM vidjobs.jobs
    WHERE job_id IN (
        SELECT n.parent_id FROM new_rows AS n JOIN old_rows AS o USING (job_id)
        WHERE n.parent_id IS NOT NULL AND n.state = 'completed' AND o.state <> 'completed'
    )
    ORDER BY job_id
    FOR UPDATE;
    WITH due AS (
        UPDATE vidjobs.jobs AS p
        SET run_after = now(), updated_at = now()
        WHERE p.job_id IN (
              SELECT n.parent_id FROM new_rows AS n JOIN old_rows AS o USING (job_id)
              WHERE n.parent_id IS NOT NULL AND n.state = 'completed' AND o.state <> 'completed'
          )
          AND p.state = 'pending' AND p.run_after = '9999-01-01 00:00:00+00'
          AND NOT EXISTS (
              SELECT FROM vidjobs.jobs AS c
              WHERE c.parent_id = p.job_id AND c.state <> 'completed'
          )
        RETURNING p.job_id
    )
    SELECT count(*) INTO made_due FROM due;
    IF made_due > 0 THEN
        PERFORM pg_notify('vidjobs_jobs', '');
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_segments_fan_in
    AFTER UPDATE ON vidjobs.jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION vidjobs.jobs_segments_fan_in();

COMMENT ON FUNCTION vidjobs.jobs_segments_fan_in() IS
    'Carries a segment tree''s transitions in the same transaction: the last child completed '
    'makes the parent''s merge due; a child failed for good fails the parent with its error; a '
    'child cancelled cancels the parent; a parent that ended cancels its unfinished children.';

-- Webhooks speak of the parent only: 0016's outbox trigger, with children left out.
CREATE OR REPLACE FUNCTION vidjobs.jobs_webhook_outbox() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- The common case costs two probes: no live endpoint anywhere and no callback_url in this
    -- statement's rows (claims, heartbeats and progress writes never have terminal rows).
    IF NOT EXISTS (SELECT FROM vidjobs.webhook_endpoints WHERE disabled_at IS NULL)
       AND NOT EXISTS (SELECT FROM new_rows WHERE callback_url IS NOT NULL) THEN
        RETURN NULL;
    END IF;
    INSERT INTO vidjobs.webhook_deliveries (
        webhook_id, event_type, job_id, tenant, url, endpoint_id, occurred_at, job,
        next_attempt_at
    )
    SELECT DISTINCT ON (n.job_id, t.url)
           'msg_' || replace(n.job_id::text, '-', ''), 'job.' || n.state::text, n.job_id,
           n.tenant, t.url, t.endpoint_id, coalesce(n.finished_at, n.updated_at),
           to_jsonb(n) - 'idempotency_key' - 'lease_token', now()
    FROM new_rows n
    JOIN old_rows o USING (job_id)
    CROSS JOIN LATERAL (
        SELECT e.endpoint_id, e.url
        FROM vidjobs.webhook_endpoints e
        WHERE e.tenant = n.tenant AND e.disabled_at IS NULL
        UNION ALL
        SELECT NULL, n.callback_url WHERE n.callback_url IS NOT NULL
    ) AS t
    WHERE n.state IN ('completed', 'failed', 'cancelled')
      AND o.state NOT IN ('completed', 'failed', 'cancelled')
      AND n.parent_id IS NULL
    ORDER BY n.job_id, t.url, t.endpoint_id NULLS LAST
    ON CONFLICT (webhook_id, url) DO NOTHING;
    RETURN NULL;
END;
$$;

-- For DBAs: every split job with its children's progress, one row per parent.
CREATE VIEW vidjobs.job_segments AS
SELECT p.job_id, p.tenant, p.state,
       CASE WHEN p.state = 'pending' AND p.run_after = '9999-01-01 00:00:00+00' THEN 'segments running'
            WHEN p.state = 'pending' THEN 'merge due'
            WHEN p.state = 'running' THEN 'merging'
            ELSE p.state::text END AS phase,
       p.segments,
       count(*) FILTER (WHERE c.state = 'pending') AS segments_pending,
       count(*) FILTER (WHERE c.state = 'running') AS segments_running,
       count(*) FILTER (WHERE c.state = 'completed') AS segments_completed,
       count(*) FILTER (WHERE c.state IN ('failed', 'cancelled')) AS segments_ended,
       coalesce(sum(c.frames_done), 0) AS frames_done,
       sum(c.frames_total) AS frames_total,
       sum(c.attempts) AS attempts,
       p.created_at, p.finished_at
FROM vidjobs.jobs AS p
JOIN vidjobs.jobs AS c ON c.parent_id = p.job_id
WHERE p.segments IS NOT NULL
GROUP BY p.job_id;

COMMENT ON VIEW vidjobs.job_segments IS
    'Each job split into segments, with its children''s states, frames and attempts summed; '
    'phase: segments running, merge due, merging, or the final state.';
COMMENT ON COLUMN vidjobs.job_segments.job_id IS 'The split job (the parent).';
COMMENT ON COLUMN vidjobs.job_segments.tenant IS 'Its tenant.';
COMMENT ON COLUMN vidjobs.job_segments.state IS 'The parent''s state (pending while its segments run).';
COMMENT ON COLUMN vidjobs.job_segments.phase IS
    'segments running, merge due (every segment completed), merging, or the final state.';
COMMENT ON COLUMN vidjobs.job_segments.segments IS 'How many segment jobs it was split into.';
COMMENT ON COLUMN vidjobs.job_segments.segments_pending IS 'Segments waiting for a worker.';
COMMENT ON COLUMN vidjobs.job_segments.segments_running IS 'Segments held by a worker now.';
COMMENT ON COLUMN vidjobs.job_segments.segments_completed IS 'Segments done.';
COMMENT ON COLUMN vidjobs.job_segments.segments_ended IS 'Segments failed or cancelled.';
COMMENT ON COLUMN vidjobs.job_segments.frames_done IS 'Sampled frames analysed, over all segments.';
COMMENT ON COLUMN vidjobs.job_segments.frames_total IS 'Sampled frames planned, over all segments.';
COMMENT ON COLUMN vidjobs.job_segments.attempts IS
    'Claims of the segments, summed (segments, when nothing was repeated).';
COMMENT ON COLUMN vidjobs.job_segments.created_at IS 'When the video was submitted.';
COMMENT ON COLUMN vidjobs.job_segments.finished_at IS 'When the parent ended (NULL: not yet).';
