-- The W3C trace context of a job's submit, so the worker continues the submit's trace.
--
-- NULL unless the API runs with tracing on (VIDJOBS_OTEL_ENABLED): then the submit span's
-- `traceparent` header value (version-traceid-spanid-flags, 55 characters) is stored here, and
-- the worker that claims the job parents its spans on it. A plain nullable column: no default,
-- no index, nothing rewritten (adding it is a catalog change only).

ALTER TABLE vidjobs.jobs ADD COLUMN trace_context text;
ALTER TABLE vidjobs.jobs
    ADD CONSTRAINT jobs_trace_context_length CHECK (length(trace_context) <= 512) NOT VALID;

COMMENT ON COLUMN vidjobs.jobs.trace_context IS
    'W3C traceparent of the submit span (NULL: tracing off at submit); the worker continues this trace.';
