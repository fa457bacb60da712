-- weir's durable state, schema version 7: the sagas started on a cron
-- schedule. `last_fired` is the time (ms since the epoch) up to which a
-- schedule's ticks have been fired; the worker that fires moves it with a
-- compare-and-set after storing the ticks' sagas (one saga per tick, its
-- id made of the schedule's name and the tick's time, so a tick fired by
-- two workers, or again after a crash, is one saga).
CREATE TABLE weir_saga_schedules (
    name       TEXT PRIMARY KEY NOT NULL,
    last_fired BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
