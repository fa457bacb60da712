-- weir's durable state, schema version 2: a dead letter with a key is
-- stored once per (queue, key); pushing it again updates that one row.
-- Copies stored before (same queue and key) are folded into the oldest.
DELETE FROM weir_dead_letters
 WHERE item_key IS NOT NULL
   AND id NOT IN (SELECT MIN(id) FROM weir_dead_letters WHERE item_key IS NOT NULL GROUP BY queue, item_key);
CREATE UNIQUE INDEX weir_dead_letters_key ON weir_dead_letters (queue, item_key) WHERE item_key IS NOT NULL;
