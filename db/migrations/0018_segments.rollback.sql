DROP VIEW vidjobs.job_segments;
DROP TRIGGER jobs_segments_fan_in ON vidjobs.jobs;
DROP FUNCTION vidjobs.jobs_segments_fan_in();
DROP TRIGGER jobs_segment_parent ON vidjobs.jobs;
DROP FUNCTION vidjobs.jobs_segment_parent();
-- 0016's outbox trigger, as it was.
CREATE OR REPLACE FUNCTION vidjobs.jobs_webhook_outbox() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
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
    ORDER BY n.job_id, t.url, t.endpoint_id NULLS LAST
    ON CONFLICT (webhook_id, url) DO NOTHING;
    RETURN NULL;
END;
$$;
-- Segment jobs go with the columns that make them segments.
DELETE FROM vidjobs.jobs WHERE parent_id IS NOT NULL;
DROP INDEX vidjobs.jobs_parent_segment_idx;
ALTER TABLE vidjobs.jobs
    DROP CONSTRAINT jobs_segments_count,
    DROP CONSTRAINT jobs_segment_range,
    DROP CONSTRAINT jobs_segment_fields,
    DROP COLUMN segments,
    DROP COLUMN segment_end_ms,
    DROP COLUMN segment_start_ms,
    DROP COLUMN segment_index,
    DROP COLUMN parent_id;
