-- vidjobs.jobs: one row per job; the row is also the queue entry (no broker, no queue table).

CREATE TABLE vidjobs.jobs (
    job_id           uuid              PRIMARY KEY,
    tenant           text              NOT NULL,
    state            vidjobs.job_state NOT NULL DEFAULT 'pending',
    pipeline         text              NOT NULL,
    params           jsonb             NOT NULL DEFAULT '{}'::jsonb,
    priority         integer           NOT NULL DEFAULT 0,
    run_after        timestamptz       NOT NULL DEFAULT now(),
    attempts         integer           NOT NULL DEFAULT 0,
    max_attempts     integer           NOT NULL DEFAULT 3,
    lease_token      uuid,
    lease_expires_at timestamptz,
    worker_id        text,
    heartbeat_at     timestamptz,
    progress         double precision  NOT NULL DEFAULT 0,
    frames_done      bigint            NOT NULL DEFAULT 0,
    frames_total     bigint,
    input_key        text,
    output_key       text,
    error_kind       text,
    error_message    text,
    idempotency_key  text,
    created_at       timestamptz       NOT NULL DEFAULT now(),
    updated_at       timestamptz       NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,

    -- Impossible rows are made impossible here, not in application code.
    CONSTRAINT jobs_tenant_not_blank CHECK (tenant <> ''),
    CONSTRAINT jobs_pipeline_not_blank CHECK (pipeline <> ''),
    CONSTRAINT jobs_params_is_object CHECK (jsonb_typeof(params) = 'object'),
    CONSTRAINT jobs_idempotency_key_not_blank CHECK (idempotency_key <> ''),
    CONSTRAINT jobs_progress_range CHECK (progress >= 0 AND progress <= 1),
    CONSTRAINT jobs_frames_done_nonnegative CHECK (frames_done >= 0),
    CONSTRAINT jobs_frames_within_total
        CHECK (frames_total IS NULL OR (frames_total >= 0 AND frames_done <= frames_total)),
    CONSTRAINT jobs_max_attempts_positive CHECK (max_attempts >= 1),
    CONSTRAINT jobs_attempts_range CHECK (attempts >= 0 AND attempts <= max_attempts),
    -- A running job is held by exactly one worker under a live lease.
    CONSTRAINT jobs_running_has_lease CHECK (
        state <> 'running' OR (
            lease_token IS NOT NULL AND lease_expires_at IS NOT NULL AND worker_id IS NOT NULL
            AND heartbeat_at IS NOT NULL AND started_at IS NOT NULL AND attempts >= 1
        )
    ),
    -- A lease expiry only means something while the job runs.
    CONSTRAINT jobs_lease_expiry_iff_running
        CHECK ((state = 'running') = (lease_expires_at IS NOT NULL)),
    -- A pending job is nobody's and still has an attempt left (else it would be failed).
    CONSTRAINT jobs_pending_unleased_with_attempt_left
        CHECK (state <> 'pending' OR (lease_token IS NULL AND attempts < max_attempts)),
    CONSTRAINT jobs_finished_iff_terminal CHECK (
        (state IN ('completed', 'failed', 'cancelled')) = (finished_at IS NOT NULL)
    ),
    CONSTRAINT jobs_completed_progress_full CHECK (state <> 'completed' OR progress = 1),
    CONSTRAINT jobs_failed_has_error
        CHECK (state <> 'failed' OR (error_kind IS NOT NULL AND error_message IS NOT NULL))
)
-- Storage for a hot, update-heavy table: every job is written 3+ times (claim, progress,
-- heartbeats, complete). fillfactor 70 leaves room on each page so a new row version can stay on
-- its page (HOT update: no index writes for progress/heartbeat-only changes, less bloat).
-- Autovacuum runs after 1 percent of the rows are dead instead of the default 20 percent, so dead
-- versions of finished jobs do not pile up in the heap and in the small pending index that every
-- claim reads from its head; analyze follows often so the planner keeps seeing a tiny pending set.
WITH (
    fillfactor = 70,
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 500,
    autovacuum_vacuum_insert_scale_factor = 0.05,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 1
);

-- Serves job_claim's first step: the due pending jobs, best first, read from the head of the
-- index in exactly the claim's ORDER BY. Partial, so it stays as small as the backlog
-- however many finished jobs the table keeps.
CREATE INDEX jobs_claim_pending_idx ON vidjobs.jobs (priority DESC, run_after, created_at)
    WHERE state = 'pending';

-- Serves job_claim's second step (running jobs whose lease expired) and the stuck_jobs view.
-- Partial: only the handful of running jobs.
CREATE INDEX jobs_running_lease_idx ON vidjobs.jobs (lease_expires_at)
    WHERE state = 'running';

-- An idempotency key is unique per tenant; jobs without one do not enter the index.
CREATE UNIQUE INDEX jobs_tenant_idempotency_key_idx ON vidjobs.jobs (tenant, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- Serves job_list: one tenant's jobs, newest first, keyset pagination on (created_at, job_id).
CREATE INDEX jobs_tenant_created_idx ON vidjobs.jobs (tenant, created_at DESC, job_id DESC);

-- Serves job_prune (finished before a cutoff) and the DBA views over finished jobs.
CREATE INDEX jobs_finished_at_idx ON vidjobs.jobs (finished_at)
    WHERE finished_at IS NOT NULL;

COMMENT ON TABLE vidjobs.jobs IS
    'One row per video-analysis job; the row is the queue entry. Workers claim with '
    'FOR UPDATE SKIP LOCKED (query job_claim) and write under their lease_token (fencing).';
COMMENT ON COLUMN vidjobs.jobs.job_id IS 'Job identifier, chosen by the submitter (blob keys use it).';
COMMENT ON COLUMN vidjobs.jobs.tenant IS 'Owner of the job; every API read is scoped to it.';
COMMENT ON COLUMN vidjobs.jobs.state IS 'Where the job is in its life (see type vidjobs.job_state).';
COMMENT ON COLUMN vidjobs.jobs.pipeline IS 'Which worker pipeline runs the job, e.g. yolo_ocr or noop.';
COMMENT ON COLUMN vidjobs.jobs.params IS 'Pipeline parameters as a JSON object.';
COMMENT ON COLUMN vidjobs.jobs.priority IS 'Higher runs first among due pending jobs.';
COMMENT ON COLUMN vidjobs.jobs.run_after IS
    'Not claimed before this time; set by submit (delay) and by retry backoff.';
COMMENT ON COLUMN vidjobs.jobs.attempts IS
    'Claims so far, counting the current one; a graceful release does not count.';
COMMENT ON COLUMN vidjobs.jobs.max_attempts IS
    'Attempts allowed; a transient failure on the last one fails the job for good.';
COMMENT ON COLUMN vidjobs.jobs.lease_token IS
    'Fencing token of the current (or last) attempt, new per claim; every worker write must present it.';
COMMENT ON COLUMN vidjobs.jobs.lease_expires_at IS
    'While running: when the lease lapses unless heartbeated; after that job_claim may take the job back.';
COMMENT ON COLUMN vidjobs.jobs.worker_id IS 'Worker holding (or that last held) the job.';
COMMENT ON COLUMN vidjobs.jobs.heartbeat_at IS 'Last claim or heartbeat by the holding worker.';
COMMENT ON COLUMN vidjobs.jobs.progress IS 'Fraction done in [0, 1]; 1 once completed.';
COMMENT ON COLUMN vidjobs.jobs.frames_done IS 'Video frames processed in the current attempt.';
COMMENT ON COLUMN vidjobs.jobs.frames_total IS 'Frames in the video, once the decoder knows.';
COMMENT ON COLUMN vidjobs.jobs.input_key IS 'Blob key of the uploaded video (video_jobs/{job_id}.mp4).';
COMMENT ON COLUMN vidjobs.jobs.output_key IS
    'Blob key of the results document (video_jobs/{job_id}_results.json) once completed.';
COMMENT ON COLUMN vidjobs.jobs.error_kind IS
    'Machine-readable class of the last error (e.g. decode_error, lease_expired).';
COMMENT ON COLUMN vidjobs.jobs.error_message IS 'Human-readable message of the last error.';
COMMENT ON COLUMN vidjobs.jobs.idempotency_key IS
    'Client key making submit safe to retry; unique per tenant.';
COMMENT ON COLUMN vidjobs.jobs.created_at IS 'When the job was submitted.';
COMMENT ON COLUMN vidjobs.jobs.updated_at IS 'Last write to the row.';
COMMENT ON COLUMN vidjobs.jobs.started_at IS 'When the current (or last) attempt was claimed.';
COMMENT ON COLUMN vidjobs.jobs.finished_at IS 'When the job reached a terminal state; set iff terminal.';
