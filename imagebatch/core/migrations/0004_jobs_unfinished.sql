-- Deliveries in a row that claimed a job and ended without recording any outcome (completed,
-- failed, retrying, or given back): each one's worker died processing it. A claim adds one,
-- every recorded outcome sets it back to 0, so the worker can tell a job that kills whoever
-- takes it (a poison message) on any queue type and dead-letter it (`delivery_limit`).
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS unfinished INTEGER NOT NULL DEFAULT 0;
