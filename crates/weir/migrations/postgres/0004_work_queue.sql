-- weir's durable state, schema version 4: the durable work queue. A job is
-- queued, claimed by one worker at a time (a lease, fenced like a saga's),
-- then done, skipped, failed or dead; a claim whose lease expired is
-- claimed again.
CREATE TABLE weir_queue_jobs (
    id            BIGSERIAL PRIMARY KEY,
    queue         TEXT NOT NULL,
    dedup_id      TEXT,
    partition_key TEXT,
    priority      INTEGER NOT NULL DEFAULT 0,
    payload       TEXT NOT NULL,
    status        TEXT NOT NULL,
    available_at  BIGINT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    lease_owner   TEXT,
    lease_until   BIGINT,
    claimed_at    BIGINT,
    fence         BIGINT NOT NULL DEFAULT 0,
    last_error    TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE UNIQUE INDEX weir_queue_jobs_dedup ON weir_queue_jobs (queue, dedup_id) WHERE dedup_id IS NOT NULL;
CREATE INDEX weir_queue_jobs_ready ON weir_queue_jobs (queue, status, priority, available_at, id);
CREATE INDEX weir_queue_jobs_claimed ON weir_queue_jobs (queue, claimed_at);
