-- weir's durable state, schema version 6: events sent to sagas
-- (`SagaEngine::send_event`). An event is kept until its saga is deleted;
-- a waiting step takes the oldest one of its name not taken yet and
-- records itself in `consumed_by`, so it is consumed once, by one step,
-- even when the step runs again after a crash. A saga that sleeps or
-- waits holds no lease: its `lease_owner` is NULL and its `lease_until`
-- is when it is due (the wake-up time, or now once an event arrives).
CREATE TABLE weir_saga_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    saga_id     TEXT NOT NULL,
    name        TEXT NOT NULL,
    payload     TEXT NOT NULL,          -- JSON
    sent_at     INTEGER NOT NULL,       -- ms since the epoch
    consumed_by TEXT,                   -- the step that took it
    consumed_at INTEGER
);
CREATE INDEX weir_saga_events_saga ON weir_saga_events (saga_id, name, id);
