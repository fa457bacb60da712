-- weir's durable state, schema version 5: a request to cancel a running
-- saga (its reason), durable until the saga's holder (or the next worker
-- to claim it) stops it and compensates its completed steps; and a
-- saga's deadline (ms since the epoch), past which it is cancelled the
-- same way.
ALTER TABLE weir_sagas ADD COLUMN cancel_requested TEXT;
ALTER TABLE weir_sagas ADD COLUMN deadline_at BIGINT;
