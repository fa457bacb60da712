-- weir's durable state, schema version 1.
CREATE TABLE weir_sagas (
    id          TEXT PRIMARY KEY NOT NULL,
    definition  TEXT NOT NULL,
    input       TEXT NOT NULL,          -- JSON
    status      TEXT NOT NULL,          -- running | compensating | completed | compensated | failed
    steps       TEXT NOT NULL,          -- JSON array: per-step status, output, attempts, error
    error       TEXT,
    fence       INTEGER NOT NULL,       -- bumped on every claim; writes must match it
    lease_owner TEXT,
    lease_until INTEGER,                -- ms since the epoch
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX weir_sagas_claimable ON weir_sagas (status, lease_until);

CREATE TABLE weir_cursors (
    name       TEXT PRIMARY KEY NOT NULL,
    position   TEXT NOT NULL,           -- JSON
    updated_at INTEGER NOT NULL
);

CREATE TABLE weir_dead_letters (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    queue         TEXT NOT NULL,
    item          TEXT NOT NULL,        -- JSON
    error_chain   TEXT NOT NULL,        -- JSON array of messages
    stage         TEXT NOT NULL,
    item_index    INTEGER,
    item_key      TEXT,
    tenant        TEXT,
    attempts      INTEGER NOT NULL,
    first_failure INTEGER NOT NULL,
    last_failure  INTEGER NOT NULL
);
CREATE INDEX weir_dead_letters_queue ON weir_dead_letters (queue, id);
