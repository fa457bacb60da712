-- What a parked saga waits for: `timer`, `event` or `child`, written when
-- it parks (kept afterwards; it counts only while the saga is parked).
-- Sagas parked before this column existed have none (`unknown`).
ALTER TABLE weir_sagas ADD COLUMN waiting_for TEXT;
