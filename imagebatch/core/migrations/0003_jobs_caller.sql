-- Who asked for a task or an upload (the api's authenticated caller: a Kubernetes user, a static
-- token's name, or `anonymous@<address>`), so the api can bound each caller's unfinished work
-- (MAX_OPEN_TASKS). Seed rows and batch items have none.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS caller TEXT;
CREATE INDEX IF NOT EXISTS jobs_caller_open_idx
    ON jobs (caller) WHERE caller IS NOT NULL AND status IN ('pending', 'processing');
