-- weir's durable state, schema version 3: an operator (`weir dlq replay`)
-- marks dead letters for replay; the application that owns the queue
-- replays the marked ones and removes those that go through.
ALTER TABLE weir_dead_letters ADD COLUMN replay_requested_at BIGINT;
