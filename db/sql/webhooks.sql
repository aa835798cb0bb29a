-- Runtime SQL for the webhooks: endpoints, signing secrets, and the outbox the dispatchers drain
-- (migration 0016; the outbox rows are written by the trigger on vidjobs.jobs).

-- name: webhook_endpoint_add
-- Register URL for every terminal event of TENANT's jobs; an already live registration is returned as it is.
WITH inserted AS (
    INSERT INTO vidjobs.webhook_endpoints (tenant, url)
    VALUES (%(tenant)s, %(url)s)
    ON CONFLICT (tenant, url) WHERE disabled_at IS NULL DO NOTHING
    RETURNING *, true AS created
)
SELECT * FROM inserted
UNION ALL
SELECT *, false FROM vidjobs.webhook_endpoints
WHERE tenant = %(tenant)s AND url = %(url)s AND disabled_at IS NULL
  AND NOT EXISTS (SELECT FROM inserted);

-- name: webhook_endpoint_list
-- A tenant's endpoints (every tenant's when NULL), live first, with their delivery counts.
SELECT e.*,
       (SELECT count(*) FROM vidjobs.webhook_deliveries d
        WHERE d.endpoint_id = e.endpoint_id AND d.state = 'pending') AS pending,
       (SELECT count(*) FROM vidjobs.webhook_deliveries d
        WHERE d.endpoint_id = e.endpoint_id AND d.state = 'failed') AS failed
FROM vidjobs.webhook_endpoints e
WHERE (%(tenant)s::text IS NULL OR e.tenant = %(tenant)s::text)
  AND (%(include_disabled)s OR e.disabled_at IS NULL)
ORDER BY e.tenant, e.disabled_at IS NOT NULL, e.endpoint_id;

-- name: webhook_endpoint_disable
-- Disable a tenant's live endpoint (by id or URL) and fail its pending deliveries; returns it, or nothing.
WITH
clock AS (SELECT coalesce(%(now)s::timestamptz, now()) AS now),
disabled AS (
    UPDATE vidjobs.webhook_endpoints AS e
    SET disabled_at = clock.now, disabled_reason = %(reason)s
    FROM clock
    WHERE e.tenant = %(tenant)s AND e.disabled_at IS NULL
      AND (e.endpoint_id = %(endpoint_id)s::bigint OR e.url = %(url)s::text)
    RETURNING e.*
),
-- What was still to be sent there never will be; the log says why.
abandoned AS (
    UPDATE vidjobs.webhook_deliveries AS d
    SET state = 'failed', finished_at = clock.now,
        last_error = 'endpoint disabled: ' || x.disabled_reason
    FROM disabled AS x CROSS JOIN clock
    WHERE d.endpoint_id = x.endpoint_id AND d.state = 'pending'
    RETURNING d.delivery_id
)
SELECT x.*, (SELECT count(*) FROM abandoned) AS abandoned FROM disabled AS x;

-- name: webhook_secret_info
-- TENANT's signing secrets not yet expired, current first (never the sealed secret).
SELECT secret_id, tenant, created_at, expires_at
FROM vidjobs.webhook_secrets
WHERE tenant = %(tenant)s AND (expires_at IS NULL OR expires_at > coalesce(%(now)s::timestamptz, now()))
ORDER BY expires_at IS NOT NULL, created_at DESC;

-- name: webhook_secret_expire_current
-- Rotation, first half: the current secret keeps signing until now + grace; returns it.
UPDATE vidjobs.webhook_secrets
SET expires_at = coalesce(%(now)s::timestamptz, now()) + make_interval(secs => %(grace_s)s)
WHERE tenant = %(tenant)s AND expires_at IS NULL
RETURNING secret_id, tenant, created_at, expires_at;

-- name: webhook_secret_insert
-- A new current secret for TENANT (sealed); nothing if it has one (the caller rotates first).
INSERT INTO vidjobs.webhook_secrets (tenant, sealed)
VALUES (%(tenant)s, %(sealed)s)
ON CONFLICT (tenant) WHERE expires_at IS NULL DO NOTHING
RETURNING secret_id, tenant, created_at, expires_at;

-- name: webhook_delivery_claim
-- Take up to LIMIT due deliveries (SKIP LOCKED, like the job claim), at most tenant_cap in flight per tenant for this dispatcher, each with its tenant's live sealed secrets, and lease them.
-- The lease is next_attempt_at itself: a dispatcher that dies mid-attempt leaves the row due
-- again when it ends; the attempt counter it raised fences that dispatcher's late record.
-- Per tenant: in_flight_tenants/in_flight (parallel arrays) say what this dispatcher already
-- sends; a tenant at tenant_cap is skipped, and the others get no more than their free slots,
-- so one tenant whose receivers hang cannot hold every slot while other tenants' events wait.
WITH
clock AS (SELECT coalesce(%(now)s::timestamptz, now()) AS now),
flying AS (
    SELECT f.tenant, f.n
    FROM unnest(%(in_flight_tenants)s::text[], %(in_flight)s::integer[]) AS f(tenant, n)
),
-- The oldest due rows of tenants with a free slot (a few batches' worth), locked: the window
-- below cannot be used with FOR UPDATE, and the rows it leaves out are unlocked at commit.
candidates AS (
    SELECT d.delivery_id, d.tenant, d.next_attempt_at
    FROM vidjobs.webhook_deliveries AS d, clock
    WHERE d.state = 'pending' AND d.next_attempt_at <= clock.now
      AND NOT d.tenant = ANY(ARRAY(SELECT tenant FROM flying WHERE n >= %(tenant_cap)s))
    ORDER BY d.next_attempt_at
    LIMIT 4 * %(limit)s::integer
    FOR UPDATE OF d SKIP LOCKED
),
due AS (
    SELECT r.delivery_id
    FROM (
        SELECT c.*, row_number() OVER (PARTITION BY c.tenant ORDER BY c.next_attempt_at) AS k
        FROM candidates AS c
    ) AS r
    LEFT JOIN flying AS f USING (tenant)
    WHERE r.k + coalesce(f.n, 0) <= %(tenant_cap)s
    ORDER BY r.next_attempt_at
    LIMIT %(limit)s
),
claimed AS (
    UPDATE vidjobs.webhook_deliveries AS d
    SET attempts = d.attempts + 1, last_attempt_at = clock.now,
        next_attempt_at = clock.now + make_interval(secs => %(lease_s)s)
    FROM due, clock
    WHERE d.delivery_id = due.delivery_id
    RETURNING d.*
)
SELECT c.delivery_id, c.webhook_id, c.event_type, c.job_id, c.tenant, c.url, c.endpoint_id,
       c.occurred_at, c.job, c.attempts, c.created_at,
       coalesce(s.sealed, '{}') AS sealed_secrets
FROM claimed AS c
LEFT JOIN LATERAL (
    SELECT array_agg(w.sealed ORDER BY w.expires_at IS NOT NULL, w.created_at DESC) AS sealed
    FROM vidjobs.webhook_secrets AS w, clock
    WHERE w.tenant = c.tenant AND (w.expires_at IS NULL OR w.expires_at > clock.now)
) AS s ON true;

-- name: webhook_delivery_record
-- Log one attempt and decide the delivery (fenced by its attempt number): delivered, failed (gone, or past retry_for), or pending after a jittered exponential backoff.
-- outcome: 'delivered' (a 2xx), 'gone' (410: the endpoint is disabled and its other pending
-- deliveries fail), or 'retry' (anything else).
WITH
clock AS (SELECT coalesce(%(now)s::timestamptz, now()) AS now),
attempt AS (
    INSERT INTO vidjobs.webhook_attempts (
        delivery_id, attempt, started_at, duration_ms, status, error, response_prefix, dispatcher
    )
    VALUES (%(delivery_id)s::bigint, %(attempt)s::integer, %(started_at)s::timestamptz,
            %(duration_ms)s::double precision, %(status)s::integer, %(error)s::text,
            %(response_prefix)s::text, %(dispatcher)s::text)
    ON CONFLICT (delivery_id, attempt) DO NOTHING
),
decided AS (
    UPDATE vidjobs.webhook_deliveries AS d
    SET (state, next_attempt_at, delivered_at, finished_at) = (
            SELECT x.state,
                   -- Backoff b = min(cap, base * 2^(attempt-1)), "equal jitter" b/2 + random *
                   -- b/2 (as job_fail's), never past the end of retry_for: the last attempt is
                   -- made then, so retries span at least retry_for.
                   CASE WHEN x.state = 'pending' THEN
                       least(clock.now + make_interval(secs =>
                                 least(%(retry_max_delay_s)s::double precision,
                                       %(retry_base_s)s::double precision
                                       * power(2, least(d.attempts - 1, 30)))
                                 * (0.5 + random() / 2)),
                             d.created_at + make_interval(secs => %(retry_for_s)s))
                   ELSE d.next_attempt_at END,
                   CASE WHEN x.state = 'delivered' THEN clock.now END,
                   CASE WHEN x.state <> 'pending' THEN clock.now END
            FROM (SELECT CASE
                    WHEN %(outcome)s::text = 'delivered' THEN 'delivered'
                    WHEN %(outcome)s::text = 'gone' THEN 'failed'
                    WHEN clock.now >= d.created_at + make_interval(secs => %(retry_for_s)s)
                        THEN 'failed'
                    ELSE 'pending' END AS state) AS x
        ),
        last_status = %(status)s::integer, last_error = %(error)s::text
    FROM clock
    WHERE d.delivery_id = %(delivery_id)s AND d.attempts = %(attempt)s AND d.state = 'pending'
    RETURNING d.*
),
-- 410 Gone from a registered endpoint: the receiver says it is gone for good.
gone AS (
    UPDATE vidjobs.webhook_endpoints AS e
    SET disabled_at = clock.now,
        disabled_reason = 'answered 410 Gone to delivery ' || u.delivery_id
    FROM decided AS u CROSS JOIN clock
    WHERE %(outcome)s::text = 'gone' AND e.endpoint_id = u.endpoint_id AND e.disabled_at IS NULL
    RETURNING e.endpoint_id, e.disabled_reason
),
abandoned AS (
    UPDATE vidjobs.webhook_deliveries AS d
    SET state = 'failed', finished_at = clock.now,
        last_error = 'endpoint disabled: ' || g.disabled_reason
    FROM gone AS g CROSS JOIN clock
    WHERE d.endpoint_id = g.endpoint_id AND d.state = 'pending'
      AND d.delivery_id <> %(delivery_id)s
)
SELECT delivery_id, state, attempts, next_attempt_at, last_status, last_error FROM decided;

-- name: webhook_delivery_list
-- The delivery log of one job, or of a tenant's latest deliveries (newest first).
SELECT d.delivery_id, d.webhook_id, d.event_type, d.job_id, d.tenant, d.url, d.endpoint_id,
       d.state, d.attempts, d.occurred_at, d.created_at, d.last_attempt_at, d.next_attempt_at,
       d.last_status, d.last_error, d.delivered_at, d.finished_at
FROM vidjobs.webhook_deliveries AS d
WHERE (%(job_id)s::uuid IS NULL OR d.job_id = %(job_id)s::uuid)
  AND (%(tenant)s::text IS NULL OR d.tenant = %(tenant)s::text)
  AND (%(state)s::text IS NULL OR d.state = %(state)s::text)
ORDER BY d.delivery_id DESC
LIMIT %(limit)s;

-- name: webhook_attempt_list
-- Every attempt of the given deliveries, in order: the retry schedule.
SELECT delivery_id, attempt, started_at, duration_ms, status, error, response_prefix, dispatcher
FROM vidjobs.webhook_attempts
WHERE delivery_id = ANY(%(delivery_ids)s::bigint[])
ORDER BY delivery_id, attempt;

-- name: webhook_delivery_prune
-- Delete up to a batch of deliveries (and their attempts) that ended before now - older_than.
-- No FOR UPDATE: nothing else writes an ended delivery (the dispatchers' writes match only
-- pending ones), so no lock is needed to choose them, and the API role that may prune has no
-- UPDATE on the table. Two pruners at once may pick the same rows; one deletes them.
WITH old AS (
    SELECT delivery_id FROM vidjobs.webhook_deliveries
    WHERE finished_at < coalesce(%(now)s::timestamptz, now()) - %(older_than)s::interval
    ORDER BY finished_at
    LIMIT %(limit)s::integer
)
DELETE FROM vidjobs.webhook_deliveries AS d USING old AS o
WHERE d.delivery_id = o.delivery_id
RETURNING d.delivery_id;
