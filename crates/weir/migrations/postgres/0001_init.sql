-- weir's durable state, schema version 1.
CREATE TABLE weir_sagas (
    id          TEXT PRIMARY KEY,
    definition  TEXT NOT NULL,
    input       TEXT NOT NULL,
    status      TEXT NOT NULL,
    steps       TEXT NOT NULL,
    error       TEXT,
    fence       BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX weir_sagas_claimable ON weir_sagas (status, lease_until);

CREATE TABLE weir_cursors (
    name       TEXT PRIMARY KEY,
    position   TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE weir_dead_letters (
    id            BIGSERIAL PRIMARY KEY,
    queue         TEXT NOT NULL,
    item          TEXT NOT NULL,
    error_chain   TEXT NOT NULL,
    stage         TEXT NOT NULL,
    item_index    BIGINT,
    item_key      TEXT,
    tenant        TEXT,
    attempts      INTEGER NOT NULL,
    first_failure BIGINT NOT NULL,
    last_failure  BIGINT NOT NULL
);
CREATE INDEX weir_dead_letters_queue ON weir_dead_letters (queue, id);
