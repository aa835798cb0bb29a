-- Signed completion webhooks (Standard Webhooks): endpoints, signing secrets, and the outbox.
--
-- When a job reaches a terminal state (completed, failed, cancelled), a trigger on vidjobs.jobs
-- writes one row per target to vidjobs.webhook_deliveries in the same transaction as the state
-- change: if the transition commits, so does the delivery, even if the worker dies a moment
-- later; if it rolls back, no event is ever sent. The targets are the job's own callback_url
-- (a submit field) and the tenant's registered endpoints (vidjobs webhooks add). Dispatchers
-- (in every worker process, or vidjobs webhooks dispatch) claim due rows with FOR UPDATE SKIP
-- LOCKED, as workers claim jobs, and log every attempt in vidjobs.webhook_attempts.
--
-- The row keeps a snapshot of the job (to_jsonb of the row as the transition left it, less the
-- client's idempotency key and the lease token, which the read-only role may not see), so the
-- event says what the job was at its end even if the job is deleted before the delivery.

ALTER TABLE vidjobs.jobs ADD COLUMN callback_url text;
ALTER TABLE vidjobs.jobs
    ADD CONSTRAINT jobs_callback_url_http CHECK (callback_url ~ '^https?://') NOT VALID;
COMMENT ON COLUMN vidjobs.jobs.callback_url IS
    'Where the job''s terminal event is POSTed (a submit field, checked against the operator''s '
    'target policy at submit and again at each delivery); NULL: only the tenant''s endpoints.';

CREATE TABLE vidjobs.webhook_endpoints (
    endpoint_id     bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant          text        NOT NULL,
    url             text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    disabled_at     timestamptz,
    disabled_reason text,
    CONSTRAINT webhook_endpoints_url_http CHECK (url ~ '^https?://'),
    CONSTRAINT webhook_endpoints_disabled_reason CHECK ((disabled_at IS NULL) = (disabled_reason IS NULL))
);
-- One live registration of a URL per tenant; the trigger reads a tenant's live endpoints.
CREATE UNIQUE INDEX webhook_endpoints_live_idx
    ON vidjobs.webhook_endpoints (tenant, url) WHERE disabled_at IS NULL;
COMMENT ON TABLE vidjobs.webhook_endpoints IS
    'URLs that receive the terminal events of every job of a tenant (vidjobs webhooks add). '
    'Rows are never deleted: a removed endpoint, or one that answered 410 Gone, is disabled '
    '(disabled_at, disabled_reason), and its pending deliveries fail.';

CREATE TABLE vidjobs.webhook_secrets (
    secret_id  bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant     text        NOT NULL,
    sealed     text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz
);
-- One current secret per tenant (expires_at NULL); rotated ones stay valid until expires_at.
CREATE UNIQUE INDEX webhook_secrets_current_idx
    ON vidjobs.webhook_secrets (tenant) WHERE expires_at IS NULL;
CREATE INDEX webhook_secrets_tenant_idx ON vidjobs.webhook_secrets (tenant);
COMMENT ON TABLE vidjobs.webhook_secrets IS
    'Each tenant''s Standard Webhooks signing secrets (whsec_...), sealed: a Fernet token '
    'encrypted with the operator''s VIDJOBS_WEBHOOK_SECRET_KEYS, which never enter the '
    'database, so a dump or a replica alone cannot forge signatures. Every delivery is signed '
    'with each secret not yet expired (a rotation keeps the old one for a grace period).';
COMMENT ON COLUMN vidjobs.webhook_secrets.sealed IS
    'The secret, Fernet-encrypted (vidjobs webhooks secret shows it once, in the clear).';
COMMENT ON COLUMN vidjobs.webhook_secrets.expires_at IS
    'NULL: the current secret. Else the end of its grace period after a rotation.';

CREATE TABLE vidjobs.webhook_deliveries (
    delivery_id     bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id      text        NOT NULL,
    event_type      text        NOT NULL,
    job_id          uuid        NOT NULL,
    tenant          text        NOT NULL,
    url             text        NOT NULL,
    endpoint_id     bigint,
    occurred_at     timestamptz NOT NULL,
    job             jsonb       NOT NULL,
    state           text        NOT NULL DEFAULT 'pending',
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    last_attempt_at timestamptz,
    last_status     integer,
    last_error      text,
    delivered_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    CONSTRAINT webhook_deliveries_state CHECK (state IN ('pending', 'delivered', 'failed')),
    CONSTRAINT webhook_deliveries_event_type
        CHECK (event_type IN ('job.completed', 'job.failed', 'job.cancelled')),
    CONSTRAINT webhook_deliveries_once UNIQUE (webhook_id, url)
);
-- The dispatcher's claim: due pending rows, oldest due first.
CREATE INDEX webhook_deliveries_due_idx
    ON vidjobs.webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_job_idx ON vidjobs.webhook_deliveries (job_id);
CREATE INDEX webhook_deliveries_finished_idx
    ON vidjobs.webhook_deliveries (finished_at) WHERE finished_at IS NOT NULL;
COMMENT ON TABLE vidjobs.webhook_deliveries IS
    'The webhook outbox: one row per terminal event of a job and target URL, written by a '
    'trigger on vidjobs.jobs in the state change''s own transaction, delivered at least once by '
    'the dispatchers. pending -> delivered (a 2xx) or failed (retries ran out, 410 Gone, the '
    'endpoint removed). Every attempt is in vidjobs.webhook_attempts.';
COMMENT ON COLUMN vidjobs.webhook_deliveries.webhook_id IS
    'The webhook-id header: one per event (msg_ + the job id), the same on every retry and '
    'every target, so receivers deduplicate on it.';
COMMENT ON COLUMN vidjobs.webhook_deliveries.job IS
    'The job row as the transition left it, without idempotency_key and lease_token (the '
    'event''s data is its status body).';
COMMENT ON COLUMN vidjobs.webhook_deliveries.next_attempt_at IS
    'When a dispatcher may try next; while an attempt is in flight, the end of its lease.';

CREATE TABLE vidjobs.webhook_attempts (
    delivery_id     bigint      NOT NULL REFERENCES vidjobs.webhook_deliveries (delivery_id)
                                ON DELETE CASCADE,
    attempt         integer     NOT NULL,
    started_at      timestamptz NOT NULL,
    duration_ms     double precision NOT NULL,
    status          integer,
    error           text,
    response_prefix text,
    dispatcher      text        NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);
COMMENT ON TABLE vidjobs.webhook_attempts IS
    'Every delivery attempt: when, how long, the HTTP status (NULL: no answer) or the error, '
    'the first bytes of the answer (at most 256), and which dispatcher made it. The retry '
    'schedule of a delivery is its started_at column.';

-- Every column, for the DBA reading the tables straight.
COMMENT ON COLUMN vidjobs.webhook_endpoints.endpoint_id IS
    'The endpoint (vidjobs webhooks list shows it; remove takes it).';
COMMENT ON COLUMN vidjobs.webhook_endpoints.tenant IS
    'The tenant whose jobs terminal events are sent here.';
COMMENT ON COLUMN vidjobs.webhook_endpoints.url IS
    'The receiver (https://, or http:// where the operator allows it).';
COMMENT ON COLUMN vidjobs.webhook_endpoints.created_at IS
    'When it was registered.';
COMMENT ON COLUMN vidjobs.webhook_endpoints.disabled_at IS
    'When it stopped receiving (removed, or answered 410 Gone); NULL: live.';
COMMENT ON COLUMN vidjobs.webhook_endpoints.disabled_reason IS
    'Why it stopped receiving; NULL while live.';
COMMENT ON COLUMN vidjobs.webhook_secrets.secret_id IS
    'The secret (not the secret itself).';
COMMENT ON COLUMN vidjobs.webhook_secrets.tenant IS
    'Whose deliveries it signs.';
COMMENT ON COLUMN vidjobs.webhook_secrets.created_at IS
    'When it was made.';
COMMENT ON COLUMN vidjobs.webhook_deliveries.delivery_id IS
    'The delivery (one event to one URL).';
COMMENT ON COLUMN vidjobs.webhook_deliveries.event_type IS
    'job.completed, job.failed or job.cancelled.';
COMMENT ON COLUMN vidjobs.webhook_deliveries.job_id IS
    'The job whose terminal state this is (no foreign key: the event outlives a deleted job).';
COMMENT ON COLUMN vidjobs.webhook_deliveries.tenant IS
    'The jobs tenant (its secrets sign the delivery).';
COMMENT ON COLUMN vidjobs.webhook_deliveries.url IS
    'Where it is sent: the jobs callback_url or one of the tenants endpoints.';
COMMENT ON COLUMN vidjobs.webhook_deliveries.endpoint_id IS
    'The tenant endpoint it goes to; NULL for the jobs callback_url.';
COMMENT ON COLUMN vidjobs.webhook_deliveries.occurred_at IS
    'When the job reached its terminal state (the events timestamp).';
COMMENT ON COLUMN vidjobs.webhook_deliveries.state IS
    'pending (to be sent), delivered (a 2xx) or failed (given up; last_error says why).';
COMMENT ON COLUMN vidjobs.webhook_deliveries.attempts IS
    'Attempts started so far.';
COMMENT ON COLUMN vidjobs.webhook_deliveries.last_attempt_at IS
    'When the latest attempt started.';
COMMENT ON COLUMN vidjobs.webhook_deliveries.last_status IS
    'The HTTP status of the latest answer; NULL: no answer (refused, timed out).';
COMMENT ON COLUMN vidjobs.webhook_deliveries.last_error IS
    'Why the latest attempt did not deliver; NULL once delivered.';
COMMENT ON COLUMN vidjobs.webhook_deliveries.delivered_at IS
    'When a receiver answered 2xx.';
COMMENT ON COLUMN vidjobs.webhook_deliveries.created_at IS
    'When the trigger wrote it (in the state changes transaction).';
COMMENT ON COLUMN vidjobs.webhook_deliveries.finished_at IS
    'When it was delivered or failed for good; NULL while pending.';
COMMENT ON COLUMN vidjobs.webhook_attempts.delivery_id IS
    'The delivery.';
COMMENT ON COLUMN vidjobs.webhook_attempts.attempt IS
    'Its number, from 1.';
COMMENT ON COLUMN vidjobs.webhook_attempts.started_at IS
    'When the request started (the retry schedule).';
COMMENT ON COLUMN vidjobs.webhook_attempts.duration_ms IS
    'How long it took, connect to answer (or to the error).';
COMMENT ON COLUMN vidjobs.webhook_attempts.status IS
    'The HTTP status answered; NULL: no answer.';
COMMENT ON COLUMN vidjobs.webhook_attempts.error IS
    'Why it did not deliver (connection refused, timeout, a non-2xx status, a refused target).';
COMMENT ON COLUMN vidjobs.webhook_attempts.response_prefix IS
    'At most the first 256 bytes of the answers body.';
COMMENT ON COLUMN vidjobs.webhook_attempts.dispatcher IS
    'The dispatcher that made it (a worker id, or vidjobs webhooks dispatchs).';

CREATE FUNCTION vidjobs.jobs_webhook_outbox() RETURNS trigger
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
    ORDER BY n.job_id, t.url, t.endpoint_id NULLS LAST
    ON CONFLICT (webhook_id, url) DO NOTHING;
    RETURN NULL;
END;
$$;

CREATE TRIGGER jobs_webhook_outbox
    AFTER UPDATE ON vidjobs.jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION vidjobs.jobs_webhook_outbox();

COMMENT ON FUNCTION vidjobs.jobs_webhook_outbox() IS
    'Writes the webhook outbox rows of the jobs a statement moved into a terminal state, in its '
    'transaction: the job''s callback_url and its tenant''s live endpoints, once per URL.';
